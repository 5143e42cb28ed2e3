//! Running a command and measuring it: wall time, exit status and peak RSS (wait4's rusage).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One measured run of a command.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Wall time in milliseconds.
    pub ms: f64,
    /// Peak RSS in kB of the command or any descendant it waited for.
    pub maxrss_kb: i64,
}

/// Runs `cmd` with stdio discarded; fails when it exits non-zero.
pub fn timed(cmd: &mut Command) -> Result<Run> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, writing into values we own.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if r < 0 {
        bail!("wait4 {cmd:?}: {}", std::io::Error::last_os_error());
    }
    let exit = std::process::ExitStatus::from_raw(status);
    if !exit.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{cmd:?} failed ({exit}): {}", err.trim());
    }
    Ok(Run {
        ms,
        maxrss_kb: usage.ru_maxrss,
    })
}

/// Makes this process the subreaper of everything it starts, so container inits whose
/// `create` exited become our children and can be waited for.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        bail!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Waits for a specific child (an adopted container init).
pub fn wait_pid(pid: i32) {
    let mut status = 0;
    // SAFETY: waits for a child of ours.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Reaps any adopted inits that already exited, without blocking.
pub fn reap_all() {
    let mut status = 0;
    // SAFETY: non-blocking wait for any child.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}
