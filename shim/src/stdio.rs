//! A process's stdio: the FIFOs (or `file://` / `binary://` URIs) containerd passes, joined to
//! the process through pipes (no terminal) or the pty master the runtime sends over the console
//! socket.
//!
//! Copy threads move bytes; each output copy closes its FIFO when the process side reaches
//! EOF, which is how `ctr` knows the output is complete. FIFOs are opened O_RDWR on the output
//! side (as containerd's own fifo package keeps a reader): the open never blocks and a client
//! that goes away never turns into SIGPIPE/EPIPE for the container.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::logger::{BinaryLogger, LogIdentity};
use crate::runtime::CmdIo;

/// The stdio containerd asked for (paths or URIs; empty means none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioPaths {
    /// stdin FIFO.
    pub stdin: String,
    /// stdout FIFO, `file://` or `binary://` URI.
    pub stdout: String,
    /// stderr FIFO or `file://` URI (ignored when stdout is `binary://`, as runc-v2 does).
    pub stderr: String,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

/// Where one output stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    None,
    Fifo(PathBuf),
    File(PathBuf),
    /// A logging binary (`binary://PATH?ARGS`), spawned per process.
    Binary(String),
}

fn target(uri: &str) -> std::io::Result<Target> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Target::File(PathBuf::from(path)));
    }
    if let Some(path) = uri.strip_prefix("fifo://") {
        return Ok(Target::Fifo(PathBuf::from(path)));
    }
    if uri.starts_with("binary://") {
        return Ok(Target::Binary(uri.to_string()));
    }
    Ok(Target::Fifo(PathBuf::from(uri)))
}

/// Counts running output copies; lets Delete wait (bounded) until output is flushed.
#[derive(Default)]
struct Countdown {
    left: Mutex<usize>,
    cv: Condvar,
}

impl Countdown {
    fn add(&self) {
        if let Ok(mut n) = self.left.lock() {
            *n += 1;
        }
    }

    fn done(&self) {
        if let Ok(mut n) = self.left.lock() {
            *n = n.saturating_sub(1);
            self.cv.notify_all();
        }
    }

    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(mut n) = self.left.lock() else {
            return false;
        };
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match self.cv.wait_timeout(n, deadline - now) {
                Ok((g, _)) => n = g,
                Err(_) => return false,
            }
        }
        true
    }
}

/// The shim's side of a process's stdio.
pub struct ProcessIo {
    /// Where stdin bytes go: the pipe into the process, or the pty master. `None` once closed.
    stdin: Arc<Mutex<Option<File>>>,
    stdin_fifo: Option<PathBuf>,
    copies: Arc<Countdown>,
    console: Option<File>,
    /// The logging binary of a `binary://` URI; stopped when the process's IO is released.
    logger: Option<BinaryLogger>,
}

/// Opens an output target for writing.
fn open_output(t: &Target) -> std::io::Result<Option<File>> {
    match t {
        // Callers spawn the logger themselves (it takes both streams at once).
        Target::None | Target::Binary(_) => Ok(None),
        Target::Fifo(p) => OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(p)
            .map(Some),
        Target::File(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
                .map(Some)
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn chown_fd(fd: &OwnedFd, uid: u32, gid: u32) -> std::io::Result<()> {
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    nix::unistd::fchown(
        fd.as_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(std::io::Error::from)
}

fn dev_null() -> std::io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
}

/// Copies `src` into `dst` until EOF (or EIO: a pty whose slave side is gone), then drops
/// both. Write errors do not stop the copy: the process must never block on a full pipe
/// because the client went away.
fn spawn_output_copy(mut src: File, dst: Arc<File>, copies: Arc<Countdown>) {
    copies.add();
    let spawned = thread::Builder::new().name("stdio-out".into()).spawn({
        let copies = copies.clone();
        move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = (&*dst).write_all(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            drop(dst);
            copies.done();
        }
    });
    if spawned.is_err() {
        copies.done();
    }
}

/// Opens the stdin FIFO (blocking until the client opens its end, as containerd's fifo
/// package does) and copies it into the process until EOF; a pipe is then closed so the
/// process sees EOF too (`close_on_eof`), a pty master is left alone.
fn spawn_stdin_copy(fifo: PathBuf, dst: Arc<Mutex<Option<File>>>, close_on_eof: bool) {
    let _ = thread::Builder::new()
        .name("stdio-in".into())
        .spawn(move || {
            let Ok(mut src) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&fifo)
            else {
                return;
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let Ok(mut guard) = dst.lock() else { return };
                let Some(out) = guard.as_mut() else { return };
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            if close_on_eof {
                if let Ok(mut guard) = dst.lock() {
                    guard.take();
                }
            }
        });
}

impl ProcessIo {
    /// Pipes for a process without a terminal. Returns the runtime's ends (to pass to
    /// `create`/`exec`, which hand them to the process) and the shim's side, already copying.
    pub fn pipes(
        stdio: &StdioPaths,
        who: &LogIdentity,
        uid: u32,
        gid: u32,
    ) -> std::io::Result<(CmdIo, ProcessIo)> {
        let copies = Arc::new(Countdown::default());
        let stdin = Arc::new(Mutex::new(None));
        let mut cmd = CmdIo::default();
        let mut stdin_fifo = None;
        if !stdio.stdin.is_empty() {
            let (r, w) = pipe()?;
            chown_fd(&r, uid, gid)?;
            cmd.stdin = Some(r);
            if let Ok(mut g) = stdin.lock() {
                *g = Some(File::from(w));
            }
            let fifo = PathBuf::from(stdio.stdin.trim_start_matches("fifo://"));
            stdin_fifo = Some(fifo.clone());
            spawn_stdin_copy(fifo, stdin.clone(), true);
        }
        let out_t = target(&stdio.stdout)?;
        if let Target::Binary(uri) = &out_t {
            // The logger reads both streams; the process writes straight into its pipes, so
            // the shim copies nothing (containerd's binary IO hands the pipes over the same way).
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            chown_fd(&out_w, uid, gid)?;
            chown_fd(&err_w, uid, gid)?;
            let logger = BinaryLogger::spawn(uri, who, out_r, err_r)?;
            cmd.stdout = Some(out_w);
            cmd.stderr = Some(err_w);
            return Ok((
                cmd,
                ProcessIo {
                    stdin,
                    stdin_fifo,
                    copies,
                    console: None,
                    logger: Some(logger),
                },
            ));
        }
        let err_t = target(&stdio.stderr)?;
        let out_dst = open_output(&out_t)?;
        // stdout and stderr naming the same place share one descriptor (and one order).
        let err_dst = if err_t == out_t && err_t != Target::None {
            out_dst.as_ref().map(File::try_clone).transpose()?
        } else {
            open_output(&err_t)?
        };
        let wire = |t: &Target, dst: Option<File>| -> std::io::Result<OwnedFd> {
            match (t, dst) {
                // A file takes the process's output directly: nothing to copy.
                (Target::File(_), Some(f)) => Ok(OwnedFd::from(f)),
                (_, Some(f)) => {
                    let (r, w) = pipe()?;
                    chown_fd(&w, uid, gid)?;
                    spawn_output_copy(File::from(r), Arc::new(f), copies.clone());
                    Ok(w)
                }
                (_, None) => dev_null(),
            }
        };
        cmd.stdout = Some(wire(&out_t, out_dst)?);
        cmd.stderr = Some(wire(&err_t, err_dst)?);
        Ok((
            cmd,
            ProcessIo {
                stdin,
                stdin_fifo,
                copies,
                console: None,
                logger: None,
            },
        ))
    }

    /// Joins a pty master (received from the runtime) to the FIFOs.
    pub fn console(
        master: File,
        stdio: &StdioPaths,
        who: &LogIdentity,
    ) -> std::io::Result<ProcessIo> {
        let copies = Arc::new(Countdown::default());
        let stdin = Arc::new(Mutex::new(None));
        let mut stdin_fifo = None;
        if !stdio.stdin.is_empty() {
            if let Ok(mut g) = stdin.lock() {
                *g = Some(master.try_clone()?);
            }
            let fifo = PathBuf::from(stdio.stdin.trim_start_matches("fifo://"));
            stdin_fifo = Some(fifo.clone());
            spawn_stdin_copy(fifo, stdin.clone(), false);
        }
        let out_t = target(&stdio.stdout)?;
        let mut logger = None;
        let dst = if let Target::Binary(uri) = &out_t {
            // A terminal has one output stream: it goes to the logger's stdout (fd 3); its
            // stderr pipe is closed at once, so the logger sees EOF there.
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            drop(err_w);
            logger = Some(BinaryLogger::spawn(uri, who, out_r, err_r)?);
            Some(File::from(out_w))
        } else {
            open_output(&out_t)?
        };
        if let Some(dst) = dst {
            spawn_output_copy(master.try_clone()?, Arc::new(dst), copies.clone());
        }
        Ok(ProcessIo {
            stdin,
            stdin_fifo,
            copies,
            console: Some(master),
            logger,
        })
    }

    /// Closes the process's stdin (CloseIO): EOF for a pipe; for a terminal, stdin bytes
    /// stop flowing.
    pub fn close_stdin(&self) {
        if let Ok(mut g) = self.stdin.lock() {
            g.take();
        }
    }

    /// Sets the terminal's window size (ResizePty). A process without a terminal ignores it,
    /// as runc-v2 does.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let Some(master) = &self.console else {
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives for the call;
        // the fd is a pty master we own.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until every output copy reached EOF, at most `timeout`.
    pub fn wait_output(&self, timeout: Duration) -> bool {
        self.copies.wait(timeout)
    }

    /// Releases everything: closes stdin and wakes a stdin thread still blocked opening its
    /// FIFO (no client ever opened it) by opening the write side once, so it sees EOF.
    pub fn shutdown(&self) {
        self.close_stdin();
        if let Some(fifo) = &self.stdin_fifo {
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(fifo);
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.shutdown();
        // Last: the copies (terminal case) have let go of the logger's pipe by now or never
        // will; the logger gets SIGTERM and time to flush, as containerd gives it.
        if let Some(logger) = self.logger.take() {
            logger.stop();
        }
    }
}

/// A temp dir holding the unix socket the runtime sends a pty master to
/// (`--console-socket`), as runc-v2 makes one per terminal process.
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    /// Binds a fresh socket under /tmp (short: unix socket paths are limited to 108 bytes).
    pub fn new() -> std::io::Result<ConsoleSocket> {
        let dir = tempfile::Builder::new().prefix("pty").tempdir_in("/tmp")?;
        let path = dir.path().join("pty.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master (SCM_RIGHTS), waiting
    /// at most `timeout`: the runtime has already exited successfully when this is called,
    /// so the message is queued or never coming.
    pub fn receive(&self, timeout: Duration) -> std::io::Result<File> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the runtime never connected to the console socket",
                        ));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // Close any extra descriptors rather than leak them.
                    for &extra in &fds[1..] {
                        // SAFETY: the kernel just installed these fds for us; nothing else
                        // refers to them.
                        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(extra) });
                    }
                    // SAFETY: as above; from here on the File owns the fd.
                    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                    return Ok(File::from(owned));
                }
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the console socket message carried no file descriptor",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target("").expect("empty"), Target::None);
        assert_eq!(
            target("/run/x/stdout").expect("fifo"),
            Target::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            target("file:///var/log/x.log").expect("file"),
            Target::File("/var/log/x.log".into())
        );
        assert_eq!(
            target("binary:///usr/bin/logger?x=y").expect("binary"),
            Target::Binary("binary:///usr/bin/logger?x=y".into())
        );
    }

    #[test]
    fn output_reaches_the_fifo_and_closes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let stdio = StdioPaths {
            stdout: fifo.to_string_lossy().into_owned(),
            stderr: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        // The client's reader, opened non-blocking so it does not wait for us.
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open reader");
        let (cmd, io) = ProcessIo::pipes(&stdio, &LogIdentity::default(), 0, 0).expect("pipes");
        let mut out = File::from(cmd.stdout.expect("stdout"));
        let mut err = File::from(cmd.stderr.expect("stderr"));
        out.write_all(b"hello ").expect("write");
        err.write_all(b"world").expect("write");
        drop((out, err));
        assert!(io.wait_output(Duration::from_secs(5)), "copies finished");
        let mut got = String::new();
        let _ = reader.read_to_string(&mut got);
        assert!(got.contains("hello") && got.contains("world"), "{got:?}");
    }

    #[test]
    fn file_uri_is_handed_over_directly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("sub/x.log");
        let stdio = StdioPaths {
            stdout: format!("file://{}", log.display()),
            ..Default::default()
        };
        let (cmd, io) = ProcessIo::pipes(&stdio, &LogIdentity::default(), 0, 0).expect("pipes");
        let mut out = File::from(cmd.stdout.expect("stdout"));
        out.write_all(b"logged\n").expect("write");
        drop(out);
        assert!(io.wait_output(Duration::from_secs(1)));
        assert_eq!(std::fs::read_to_string(&log).expect("read"), "logged\n");
    }

    #[test]
    fn stdin_thread_blocked_on_open_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let stdio = StdioPaths {
            stdin: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let (cmd, io) = ProcessIo::pipes(&stdio, &LogIdentity::default(), 0, 0).expect("pipes");
        let mut proc_stdin = File::from(cmd.stdin.expect("stdin"));
        thread::sleep(Duration::from_millis(50));
        drop(io);
        // The process side sees EOF once the shim let go of the write end.
        let mut s = String::new();
        proc_stdin.read_to_string(&mut s).expect("read to EOF");
        assert!(s.is_empty());
    }
}
