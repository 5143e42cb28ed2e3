//! `binary://` log URIs: containerd's logging-binary protocol, as containerd-shim-runc-v2
//! implements it (`pkg/process/io.go`, `NewBinaryIO` / `NewBinaryCmd`):
//!
//! - the binary is the URI's path; its arguments are the query's keys, each followed by its
//!   first value (`binary:///bin/logger?-f=/x` runs `/bin/logger -f /x`);
//! - its environment is exactly `CONTAINER_ID` and `CONTAINER_NAMESPACE`;
//! - fd 3 is the read end of the process's stdout, fd 4 of its stderr, fd 5 the write end of
//!   a "ready" pipe: the shim goes on (and the runtime creates the container) once the
//!   logger writes to or closes fd 5;
//! - when the process's IO is released (Delete), the logger gets SIGTERM so it can flush, and
//!   SIGKILL if it is still there 12 seconds later.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a logger has to exit after SIGTERM (containerd's `binaryIOProcTermTimeout`).
const TERM_TIMEOUT: Duration = Duration::from_secs(12);

/// How long a logger has to signal ready (write to or close fd 5). Create waits for it; a
/// logger that hangs must fail the Create, not block it (and the container) forever.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whose output a logger receives: `CONTAINER_ID` (the container id for an init, the exec id
/// for an exec, as runc-v2 passes) and `CONTAINER_NAMESPACE`.
#[derive(Debug, Clone, Default)]
pub struct LogIdentity {
    /// Container or exec id.
    pub id: String,
    /// containerd namespace.
    pub namespace: String,
}

/// A running logging binary.
#[derive(Debug)]
pub struct BinaryLogger {
    pid: Pid,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// Percent-decoding as Go's `url.QueryUnescape` (`plus` turns `+` into a space) and
/// `PathUnescape` do it.
fn unescape(s: &str, plus: bool) -> std::io::Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid(format!("bad escape in {s:?}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{s:?} is not UTF-8 once unescaped")))
}

/// The binary and arguments of a `binary://` URI.
pub fn command_line(uri: &str) -> std::io::Result<(String, Vec<String>)> {
    let rest = uri
        .strip_prefix("binary://")
        .ok_or_else(|| invalid(format!("{uri}: not a binary:// URI")))?;
    let rest = rest.split('#').next().unwrap_or("");
    let (hier, query) = rest.split_once('?').unwrap_or((rest, ""));
    // Like Go's url.Parse: what precedes the first '/' is the host, not part of the path.
    let path = match hier.find('/') {
        Some(i) => unescape(&hier[i..], false)?,
        None => String::new(),
    };
    if path.is_empty() {
        return Err(invalid(format!("{uri}: no logging binary path")));
    }
    let mut args: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split(['&', ';']).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = unescape(k, true)?;
        // Go's url.Values keeps every value; NewBinaryCmd passes only the first.
        if seen.contains(&k) {
            continue;
        }
        seen.push(k.clone());
        args.push(k);
        args.push(unescape(v, true)?);
    }
    Ok((path, args))
}

/// Duplicates `fd` to a descriptor >= 10 (close-on-exec), so that moving it onto 3, 4 or 5 in
/// the child can never overwrite another of the descriptors still to be moved.
fn high_dup(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    let dup = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(std::io::Error::from)?;
    // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Waits until the ready pipe has data or is at EOF (both mean ready, as in containerd).
fn wait_ready(ready: OwnedFd, timeout: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("did not signal ready (write to or close fd 5) within {timeout:?}"),
            ));
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
    let mut ready = File::from(ready);
    let mut b = [0u8; 1];
    loop {
        match ready.read(&mut b) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("reading the ready pipe: {e}"),
                ))
            }
        }
    }
}

impl BinaryLogger {
    /// Starts the logger for `uri` on the read ends of the process's stdout and stderr pipes
    /// and waits until it is ready, at most [`READY_TIMEOUT`].
    pub fn spawn(
        uri: &str,
        who: &LogIdentity,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> std::io::Result<BinaryLogger> {
        Self::spawn_within(uri, who, stdout, stderr, READY_TIMEOUT)
    }

    /// [`BinaryLogger::spawn`] with the readiness timeout given.
    fn spawn_within(
        uri: &str,
        who: &LogIdentity,
        stdout: OwnedFd,
        stderr: OwnedFd,
        ready_timeout: Duration,
    ) -> std::io::Result<BinaryLogger> {
        let (path, args) = command_line(uri)?;
        let (ready_r, ready_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let fds = [high_dup(&stdout)?, high_dup(&stderr)?, high_dup(&ready_w)?];
        let raw: [RawFd; 3] = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
        let mut cmd = Command::new(&path);
        cmd.args(&args)
            .env_clear()
            .env("CONTAINER_ID", &who.id)
            .env("CONTAINER_NAMESPACE", &who.namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: dup2 is async-signal-safe and only touches descriptors; the sources are all
        // >= 10, so no target (3, 4, 5) is a source still to be moved. dup2 clears
        // close-on-exec on the targets, so exactly these three reach the logger.
        unsafe {
            cmd.pre_exec(move || {
                for (target, src) in (3..).zip(raw) {
                    if libc::dup2(src, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting logger {path}: {e}")))?;
        let pid = Pid::from_raw(
            i32::try_from(child.id()).map_err(|e| invalid(format!("logger pid: {e}")))?,
        );
        // The child is reaped by the daemon's reaper, never through `child`.
        drop(child);
        // Our copies go, so the ready pipe sees EOF once the logger closes its end, and the
        // stream pipes' read ends live only in the logger.
        drop((fds, ready_w, stdout, stderr));
        let logger = BinaryLogger { pid };
        if let Err(e) = wait_ready(ready_r, ready_timeout) {
            // It never became ready: nothing to flush, so no SIGTERM grace either.
            let _ = kill(logger.pid, Signal::SIGKILL);
            return Err(std::io::Error::new(
                e.kind(),
                format!("logger {path} (pid {}): {e}", logger.pid),
            ));
        }
        Ok(logger)
    }

    /// Whether the logger is gone: reaped (ESRCH) or a zombie nobody reaped yet.
    fn gone(&self) -> bool {
        if kill(self.pid, None).is_err() {
            return true;
        }
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    /// SIGTERM, up to 12 seconds to flush and exit, then SIGKILL. The daemon's reaper reaps
    /// it; this only watches for it to disappear.
    pub fn stop(self) {
        if self.gone() {
            return;
        }
        let _ = kill(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + TERM_TIMEOUT;
        while Instant::now() < deadline {
            if self.gone() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        log::warn!("logger {} did not exit on SIGTERM, killing it", self.pid);
        let _ = kill(self.pid, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let (p, a) = command_line("binary:///usr/bin/log?-f=/var/log/x%20y&-q").expect("parse");
        assert_eq!(p, "/usr/bin/log");
        assert_eq!(a, ["-f", "/var/log/x y", "-q", ""]);
        let (p, a) = command_line("binary:///bin/x").expect("parse");
        assert_eq!((p.as_str(), a.len()), ("/bin/x", 0));
        assert!(command_line("binary://").is_err());
        assert!(command_line("file:///x").is_err());
    }

    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
    }

    /// Writes an executable script from a child process: a writable fd held by this (multi-
    /// threaded) test process leaks into children other tests fork at that moment, and exec of
    /// the script then fails with ETXTBSY until they exec.
    fn write_executable(path: &std::path::Path, text: &str) {
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "sh",
                text,
            ])
            .arg(path)
            .status()
            .expect("sh");
        assert!(status.success(), "writing {}", path.display());
    }

    fn script(dir: &std::path::Path, body: &str) -> String {
        let path = dir.join("logger.sh");
        write_executable(&path, &format!("#!/bin/sh\n{body}\n"));
        format!("binary://{}", path.display())
    }

    #[test]
    fn logger_that_never_signals_ready_fails_create_in_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Holds fd 5 open and never writes: not ready, ever.
        let uri = script(dir.path(), "echo $$ > \"$0.pid\"; exec sleep 1000");
        let ((out_r, _out_w), (err_r, _err_w)) = (pipe_pair(), pipe_pair());
        let t0 = Instant::now();
        let err = BinaryLogger::spawn_within(
            &uri,
            &LogIdentity::default(),
            out_r,
            err_r,
            Duration::from_millis(300),
        )
        .expect_err("a logger that is never ready must fail");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("did not signal ready"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        // The logger was killed (this test process reaps it: it is our child).
        let pid: i32 = std::fs::read_to_string(dir.path().join("logger.sh.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let status = nix::sys::wait::waitpid(Pid::from_raw(pid), None).expect("waitpid");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGKILL, false)
        );
    }

    #[test]
    fn logger_ready_by_closing_fd5() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = script(dir.path(), "exec 5>&-; exec sleep 1000");
        let ((out_r, _out_w), (err_r, _err_w)) = (pipe_pair(), pipe_pair());
        let logger = BinaryLogger::spawn_within(
            &uri,
            &LogIdentity::default(),
            out_r,
            err_r,
            Duration::from_secs(10),
        )
        .expect("ready");
        let pid = logger.pid;
        let _ = kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }

    #[test]
    fn logger_gets_both_streams_and_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = dir.path().join("logger.sh");
        write_executable(
            &script,
            "#!/bin/sh\nexec 5>&-\n{ echo \"$CONTAINER_NAMESPACE/$CONTAINER_ID $1\"; cat <&3; cat <&4; } > \"$2\"\n",
        );
        let uri = format!("binary://{}?tag={}", script.display(), out.display());
        let stdio = crate::stdio::StdioPaths {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let who = LogIdentity {
            id: "c1".into(),
            namespace: "ns".into(),
        };
        let (cmd, io) = crate::stdio::ProcessIo::pipes(&stdio, &who, 0, 0).expect("pipes");
        let mut o = File::from(cmd.stdout.expect("stdout"));
        let mut e = File::from(cmd.stderr.expect("stderr"));
        std::io::Write::write_all(&mut o, b"to-out\n").expect("write");
        std::io::Write::write_all(&mut e, b"to-err\n").expect("write");
        drop((o, e));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = String::new();
        while Instant::now() < deadline {
            got = std::fs::read_to_string(&out).unwrap_or_default();
            if got.contains("to-err") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(got, "ns/c1 tag\nto-out\nto-err\n");
        drop(io);
    }
}
