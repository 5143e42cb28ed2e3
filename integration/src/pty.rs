//! Running a command on a pseudo-terminal (for `ctr run -t`, which insists on one), with a
//! window size, collecting what it prints.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// What the command printed on the terminal and its exit code (-1: killed on timeout).
pub struct PtyOutput {
    /// Exit code.
    pub code: i32,
    /// Everything read from the terminal.
    pub text: String,
}

/// Runs `cmd` with a new pty of `rows`x`cols` as its controlling terminal and stdio.
pub fn run(mut cmd: Command, rows: u16, cols: u16, timeout: Duration) -> Result<PtyOutput> {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).context("openpty")?;
    let slave: OwnedFd = pty.slave;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe and use no parent memory;
    // fd 0 is the pty slave set up above.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("spawning under a pty")?;
    // The Command holds copies of the slave too: every copy must go for the master to see
    // EIO when the child is done.
    drop(cmd);
    drop(slave);
    let mut master = File::from(pty.master);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once every slave descriptor is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(all);
    });
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(st) = child.try_wait()? {
            break st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = rx
        .recv_timeout(Duration::from_secs(5))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(PtyOutput { code, text })
}
