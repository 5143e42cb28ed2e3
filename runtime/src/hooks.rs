//! Runtime-spec hooks: `prestart`, `createRuntime`, `createContainer`, `startContainer`,
//! `poststart` and `poststop` (config.json `hooks`).
//!
//! Each hook is run as runc runs it: `path` is executed directly (no shell, no `$PATH` search)
//! with `args` as the whole argv (so `args[0]` is argv0; no args means argv is just `[path]`),
//! `env` as the whole environment (none means an empty environment), and the state JSON on
//! stdin. Its stdout and stderr are captured so a failure can be reported with them, in runc's
//! words: `error running hook #0: exit status 1, stdout: ..., stderr: ...`. A `timeout` kills
//! the hook with SIGKILL and fails with runc's `hook ran past specified timeout of 1.0s`.
//!
//! The runner is a plain fork + execve + poll loop with no threads and no allocation between
//! fork and exec, so it is safe from the multi-threaded test harness and works unchanged inside
//! the container's init after pivot_root (where `startContainer` hooks run and `path` is
//! resolved in the container's root): it needs nothing from the filesystem but the hook itself.

use std::ffi::{c_char, CString};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use oci_spec::runtime::{Hook, Hooks};

/// How much of a hook's stdout and stderr is kept for the error message; the rest is drained
/// and dropped so a chatty hook can never block on a full pipe or grow husk without bound.
const CAPTURE_LIMIT: usize = 64 * 1024;

/// Without a pidfd (kernels before 5.3) the loop wakes this often to notice the hook's exit.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Which lifecycle point a hook list belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `hooks.prestart` (deprecated by the spec, still run by runc after createRuntime).
    Prestart,
    /// `hooks.createRuntime`: runtime namespace, after the container's namespaces exist.
    CreateRuntime,
    /// `hooks.createContainer`: container namespace, before pivot_root.
    CreateContainer,
    /// `hooks.startContainer`: inside the container, right before the user process is exec'd.
    StartContainer,
    /// `hooks.poststart`: runtime namespace, after the user process started.
    Poststart,
    /// `hooks.poststop`: runtime namespace, after the container is deleted.
    Poststop,
}

impl HookKind {
    /// The name of this hook list in config.json (`createRuntime`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in a spec's `hooks` object; empty when the list is absent.
    pub fn select(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)] // prestart is deprecated by the spec but runc still runs it
        let list = match self {
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hook that failed: which list, which entry, and why (runc's wording after the colon).
#[derive(Debug, thiserror::Error)]
#[error("error running {kind} hook #{index}: {failure}")]
pub struct HookError {
    /// The hook list being run.
    pub kind: HookKind,
    /// Position of the failing hook in its list (0-based, as runc counts).
    pub index: usize,
    /// The hook's `path`.
    pub path: PathBuf,
    /// What went wrong.
    pub failure: HookFailure,
}

/// Why a single hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookFailure {
    /// The hook entry cannot be run as written (NUL byte in a string, timeout <= 0).
    #[error("invalid hook {path}: {reason}")]
    Invalid {
        /// The hook's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Setting up the hook's process failed before it could run (pipes, fork, poll, wait).
    #[error("running hook {path}: {op}: {errno}")]
    Setup {
        /// The hook's path.
        path: PathBuf,
        /// The step that failed.
        op: &'static str,
        /// The error it returned.
        errno: Errno,
    },
    /// execve of the hook failed (Go's `fork/exec PATH: ...` wording, as runc reports it).
    #[error("fork/exec {path}: {}", errno.desc().to_lowercase())]
    Exec {
        /// The hook's path.
        path: PathBuf,
        /// The error execve returned in the child.
        errno: Errno,
    },
    /// The hook ran and exited non-zero or was killed by a signal.
    #[error("{status}, stdout: {stdout}, stderr: {stderr}")]
    Failed {
        /// `exit status N` or `signal: NAME`.
        status: String,
        /// What the hook wrote to stdout (trailing newlines trimmed, capped).
        stdout: String,
        /// What the hook wrote to stderr (trailing newlines trimmed, capped).
        stderr: String,
    },
    /// The hook outlived its `timeout` and was killed.
    #[error("hook ran past specified timeout of {secs:.1}s")]
    Timeout {
        /// The hook's timeout in seconds.
        secs: f64,
        /// What the hook wrote to stdout before it was killed.
        stdout: String,
        /// What the hook wrote to stderr before it was killed.
        stderr: String,
    },
}

/// Runs each hook in order with `state_json` on stdin, in the caller's working directory; the
/// first failure stops the list.
pub fn run(kind: HookKind, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    run_in(kind, hooks, state_json, None)
}

/// [`run`], each hook started in `cwd` when given. runc runs its create-time hooks in the
/// bundle directory (it chdirs there first) and createContainer hooks in the rootfs; hooks
/// written for runc may open `config.json` by its relative name.
pub fn run_in(
    kind: HookKind,
    hooks: &[Hook],
    state_json: &str,
    cwd: Option<&Path>,
) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_one(hook, state_json.as_bytes(), cwd).map_err(|failure| HookError {
            kind,
            index,
            path: hook.path().clone(),
            failure,
        })?;
    }
    Ok(())
}

/// Everything execve needs, built before fork: the child must not allocate (another thread of
/// the parent may hold the allocator's lock at the moment of fork).
struct ExecArgs {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    /// The directory to start the hook in; None keeps the caller's.
    cwd: Option<CString>,
}

impl ExecArgs {
    fn new(hook: &Hook, cwd: Option<&Path>) -> Result<Self, HookFailure> {
        let path = hook.path();
        let cstring = |what: &str, s: &[u8]| {
            CString::new(s).map_err(|_| HookFailure::Invalid {
                path: path.clone(),
                reason: format!("{what} contains a NUL byte"),
            })
        };
        let c_path = cstring("path", path.as_os_str().as_encoded_bytes())?;
        // Go's exec.Cmd (runc) uses {Path} as argv when Args is empty; do the same.
        let argv = match hook.args().as_deref() {
            Some(args) if !args.is_empty() => args
                .iter()
                .map(|a| cstring("args", a.as_bytes()))
                .collect::<Result<Vec<_>, _>>()?,
            _ => vec![c_path.clone()],
        };
        let envp = hook
            .env()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|e| cstring("env", e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp_ptrs = envp
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let cwd = cwd
            .map(|c| cstring("cwd", c.as_os_str().as_encoded_bytes()))
            .transpose()?;
        Ok(ExecArgs {
            path: c_path,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            cwd,
        })
    }
}

/// Output collected from one of the hook's pipes.
struct Capture {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
}

impl Capture {
    fn new(fd: OwnedFd) -> Self {
        Capture {
            fd: Some(fd),
            data: Vec::new(),
        }
    }

    /// Reads whatever the pipe holds now (it is non-blocking); closes it at EOF.
    fn drain(&mut self) -> Result<(), Errno> {
        let mut buf = [0u8; 8192];
        while let Some(fd) = &self.fd {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => self.fd = None,
                Ok(n) => {
                    let keep = n.min(CAPTURE_LIMIT.saturating_sub(self.data.len()));
                    self.data.extend_from_slice(&buf[..keep]);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    }
}

fn setup_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(Errno) -> HookFailure + 'a {
    move |errno| HookFailure::Setup {
        path: path.to_path_buf(),
        op,
        errno,
    }
}

fn run_one(hook: &Hook, state: &[u8], cwd: Option<&Path>) -> Result<(), HookFailure> {
    let path = hook.path();
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => {
            return Err(HookFailure::Invalid {
                path: path.clone(),
                reason: format!("timeout {t} must be greater than zero"),
            });
        }
        Some(t) => Some(Duration::from_secs(t.unsigned_abs())),
        None => None,
    };
    let exec = ExecArgs::new(hook, cwd)?;

    // stdin is a pipe filled with the whole state before the hook starts, then closed on our
    // side: no writer loop, no SIGPIPE if the hook never reads it, and the hook sees EOF.
    let stdin = prefilled_pipe(path, state)?;
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(setup_err(path, "pipe"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(setup_err(path, "pipe"))?;
    // execve's errno comes back through this CLOEXEC pipe; a successful exec closes it empty.
    let (exec_r, exec_w) = pipe2(OFlag::O_CLOEXEC).map_err(setup_err(path, "pipe"))?;
    for fd in [&out_r, &err_r] {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(setup_err(path, "fcntl"))?;
    }

    // SAFETY: the child branch only makes async-signal-safe libc calls on memory prepared
    // above (see `exec_child`) and never returns into Rust code of the parent.
    let child = match unsafe { fork() }.map_err(setup_err(path, "fork"))? {
        ForkResult::Child => exec_child(
            &exec,
            [stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            exec_w.as_raw_fd(),
        ),
        ForkResult::Parent { child } => child,
    };
    drop((stdin, out_w, err_w, exec_w));

    if let Some(errno) = read_exec_error(&exec_r) {
        // The child _exit()ed right after reporting; reap it so it does not linger.
        let _ = waitpid(child, None);
        return Err(HookFailure::Exec {
            path: path.clone(),
            errno,
        });
    }
    drop(exec_r);

    let mut out = Capture::new(out_r);
    let mut err = Capture::new(err_r);
    match wait_for(child, timeout, &mut out, &mut err).map_err(|(op, e)| setup_err(path, op)(e))? {
        Some(WaitStatus::Exited(_, 0)) => Ok(()),
        Some(status) => Err(HookFailure::Failed {
            status: describe(status),
            stdout: out.text(),
            stderr: err.text(),
        }),
        None => Err(HookFailure::Timeout {
            secs: timeout.map(|t| t.as_secs_f64()).unwrap_or_default(),
            stdout: out.text(),
            stderr: err.text(),
        }),
    }
}

/// A pipe whose read end already holds `data` and whose write end is closed.
fn prefilled_pipe(path: &Path, data: &[u8]) -> Result<OwnedFd, HookFailure> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(setup_err(path, "pipe"))?;
    let capacity = fcntl(&w, FcntlArg::F_GETPIPE_SZ).map_err(setup_err(path, "fcntl"))?;
    if usize::try_from(capacity).unwrap_or(0) < data.len() {
        // A state with huge annotations; root may grow a pipe past pipe-max-size.
        let want =
            i32::try_from(data.len()).map_err(|_| setup_err(path, "pipe size")(Errno::E2BIG))?;
        fcntl(&w, FcntlArg::F_SETPIPE_SZ(want)).map_err(setup_err(path, "fcntl F_SETPIPE_SZ"))?;
    }
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(&w, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(setup_err(path, "writing the state to the hook's stdin")(e)),
        }
    }
    Ok(r)
}

/// The forked child: stdio onto 0/1/2, everything else close-on-exec, execve, or report errno.
fn exec_child(exec: &ExecArgs, stdio: [RawFd; 3], report: RawFd) -> ! {
    // SAFETY: only async-signal-safe syscalls on fds and memory owned by this process; no
    // allocation, no locks. Every path ends in execve or _exit.
    unsafe {
        // Move the pipe ends above 2 first so that dup2 onto 0..2 cannot clobber one another
        // (a pipe end may itself be 0, 1 or 2 when husk was started with stdio closed).
        let mut high = [-1; 3];
        for (i, fd) in stdio.iter().enumerate() {
            high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
            if high[i] < 0 {
                child_fail(report);
            }
        }
        for (target, fd) in high.iter().enumerate() {
            // dup2 clears FD_CLOEXEC on the target, so the hook inherits exactly 0, 1 and 2.
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                child_fail(report);
            }
        }
        // Nothing else of husk's may leak into the hook (the exec fifo, sync sockets...):
        // mark every other fd close-on-exec. Kernels before 5.11 lack the flag; the fds husk
        // opens are CLOEXEC anyway, so this is a second line of defence only.
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // Rust ignores SIGPIPE and the mask may have signals blocked; give the hook the
        // defaults a freshly started program expects (as std::process::Command does).
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if let Some(dir) = &exec.cwd {
            if libc::chdir(dir.as_ptr()) < 0 {
                child_fail(report);
            }
        }

        libc::execve(
            exec.path.as_ptr(),
            exec.argv_ptrs.as_ptr(),
            exec.envp_ptrs.as_ptr(),
        );
        child_fail(report)
    }
}

/// Reports errno to the parent over the exec pipe and exits; child side only.
fn child_fail(report: RawFd) -> ! {
    // SAFETY: errno read, write(2) and _exit(2) are async-signal-safe; the buffer is on the stack.
    unsafe {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// The errno the child reported if execve failed, None once exec succeeded (EOF).
fn read_exec_error(fd: &OwnedFd) -> Option<Errno> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    (got == buf.len()).then(|| Errno::from_raw(i32::from_ne_bytes(buf)))
}

/// pidfd_open(2): a fd that polls readable when `pid` exits, if the kernel has it (5.3+).
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Collects output until the child exits (Some(status)) or the deadline passes (None: the
/// child was killed and reaped). Errors name the failing step.
fn wait_for(
    child: Pid,
    timeout: Option<Duration>,
    out: &mut Capture,
    err: &mut Capture,
) -> Result<Option<WaitStatus>, (&'static str, Errno)> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let pidfd = pidfd_open(child);
    loop {
        let status = waitpid(child, Some(WaitPidFlag::WNOHANG)).map_err(|e| ("waitpid", e))?;
        if !matches!(status, WaitStatus::StillAlive) {
            // Whatever the hook wrote before exiting is in the pipe buffers now. Stop at
            // EAGAIN rather than EOF: a daemon the hook left behind may hold the pipes open.
            out.drain().map_err(|e| ("reading hook output", e))?;
            err.drain().map_err(|e| ("reading hook output", e))?;
            return Ok(Some(status));
        }
        let remaining = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    let _ = kill(child, Signal::SIGKILL);
                    waitpid(child, None).map_err(|e| ("waitpid", e))?;
                    out.drain().map_err(|e| ("reading hook output", e))?;
                    err.drain().map_err(|e| ("reading hook output", e))?;
                    return Ok(None);
                }
                Some(d - now)
            }
            None => None,
        };
        let wake = match (&pidfd, remaining) {
            (Some(_), r) => r,
            (None, Some(r)) => Some(r.min(EXIT_POLL_INTERVAL)),
            (None, None) => Some(EXIT_POLL_INTERVAL),
        };
        let poll_timeout = match wake {
            // Round up so a 0.4 ms remainder does not turn into a busy loop of 0 ms polls.
            Some(d) => {
                PollTimeout::try_from(d.as_millis().saturating_add(1)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd<'_>> = [out.fd.as_ref(), err.fd.as_ref(), pidfd.as_ref()]
            .into_iter()
            .flatten()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, poll_timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(("poll", e)),
        }
        drop(fds);
        out.drain().map_err(|e| ("reading hook output", e))?;
        err.drain().map_err(|e| ("reading hook output", e))?;
    }
}

/// Go's wording for a failed process, which runc puts in its hook errors.
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("signal: {}", signal_name(sig)),
        other => format!("unexpected wait status {other:?}"),
    }
}

/// Go's strsignal-like names for the signals a hook typically dies of.
fn signal_name(sig: Signal) -> String {
    match sig {
        Signal::SIGKILL => "killed".into(),
        Signal::SIGTERM => "terminated".into(),
        Signal::SIGSEGV => "segmentation fault".into(),
        Signal::SIGABRT => "aborted".into(),
        Signal::SIGINT => "interrupt".into(),
        Signal::SIGHUP => "hangup".into(),
        Signal::SIGPIPE => "broken pipe".into(),
        other => other.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use oci_spec::runtime::HookBuilder;

    use super::*;

    fn hook(args: &[&str], env: Option<&[&str]>, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(env) = env {
            b = b.env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        match b.build() {
            Ok(h) => h,
            Err(e) => panic!("building hook: {e}"),
        }
    }

    fn tmpdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn read(p: &Path) -> Vec<u8> {
        match fs::read(p) {
            Ok(d) => d,
            Err(e) => panic!("reading {}: {e}", p.display()),
        }
    }

    #[test]
    fn hooks_get_state_on_stdin_in_order() {
        let dir = tmpdir();
        let f = dir.path().join("state");
        let script = format!("cat > {0}; echo second >> {0}", f.display());
        let hooks = [
            hook(&["sh", "-c", &script], None, Some(5)),
            // Second hook appends, proving order and that both ran.
            hook(
                &["sh", "-c", &format!("echo third >> {}", f.display())],
                None,
                None,
            ),
        ];
        let state = r#"{"ociVersion":"1.2.0","id":"x","status":"creating","pid":1,"bundle":"/b"}"#;
        if let Err(e) = run(HookKind::CreateRuntime, &hooks, state) {
            panic!("hooks failed: {e}");
        }
        assert_eq!(read(&f), format!("{state}second\nthird\n").into_bytes());
    }

    #[test]
    fn large_state_fits_on_stdin() {
        let dir = tmpdir();
        let f = dir.path().join("state");
        let state = format!(r#"{{"annotations":{{"a":"{}"}}}}"#, "x".repeat(200_000));
        let hooks = [hook(
            &["sh", "-c", &format!("cat > {}", f.display())],
            None,
            Some(10),
        )];
        if let Err(e) = run(HookKind::Prestart, &hooks, &state) {
            panic!("hook failed: {e}");
        }
        assert_eq!(read(&f).len(), state.len());
    }

    #[test]
    fn failing_hook_reports_status_and_output() {
        let hooks = [
            hook(&["sh", "-c", "exit 0"], None, None),
            hook(&["sh", "-c", "echo out; echo err >&2; exit 3"], None, None),
        ];
        let e = match run(HookKind::Poststart, &hooks, "{}") {
            Err(e) => e,
            Ok(()) => panic!("a failing hook succeeded"),
        };
        assert_eq!(e.index, 1);
        assert_eq!(e.kind, HookKind::Poststart);
        assert_eq!(
            e.to_string(),
            "error running poststart hook #1: exit status 3, stdout: out, stderr: err"
        );
    }

    #[test]
    fn hook_killed_by_signal() {
        let hooks = [hook(&["sh", "-c", "kill -9 $$"], None, None)];
        let e = match run(HookKind::Poststop, &hooks, "{}") {
            Err(e) => e,
            Ok(()) => panic!("a killed hook succeeded"),
        };
        assert!(e.to_string().contains("signal: killed"), "{e}");
    }

    #[test]
    fn missing_binary_is_an_exec_error() {
        let h = match HookBuilder::default().path("/nonexistent/hook").build() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        let e = match run(HookKind::CreateContainer, &[h], "{}") {
            Err(e) => e,
            Ok(()) => panic!("missing hook succeeded"),
        };
        assert_eq!(
            e.to_string(),
            "error running createContainer hook #0: fork/exec /nonexistent/hook: no such file or directory"
        );
    }

    #[test]
    fn timeout_kills_the_hook() {
        let hooks = [hook(
            &["sh", "-c", "echo started; exec sleep 10"],
            None,
            Some(1),
        )];
        let start = Instant::now();
        let e = match run(HookKind::StartContainer, &hooks, "{}") {
            Err(e) => e,
            Ok(()) => panic!("hook outlived its timeout"),
        };
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "returned after {took:?}"
        );
        assert!(took < Duration::from_secs(3), "returned after {took:?}");
        assert_eq!(
            e.to_string(),
            "error running startContainer hook #0: hook ran past specified timeout of 1.0s"
        );
        match e.failure {
            HookFailure::Timeout { stdout, .. } => assert_eq!(stdout, "started"),
            other => panic!("unexpected failure {other:?}"),
        }
    }

    #[test]
    fn hook_exiting_quickly_with_timeout_is_not_delayed() {
        let hooks = [hook(&["sh", "-c", "exit 0"], None, Some(30))];
        let start = Instant::now();
        if let Err(e) = run(HookKind::Prestart, &hooks, "{}") {
            panic!("{e}");
        }
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let hooks = [hook(&["sh", "-c", "exit 0"], None, Some(0))];
        let e = match run(HookKind::Prestart, &hooks, "{}") {
            Err(e) => e,
            Ok(()) => panic!("timeout 0 accepted"),
        };
        assert!(e.to_string().contains("must be greater than zero"), "{e}");
    }

    #[test]
    fn env_and_argv_are_passed_exactly() {
        let dir = tmpdir();
        let env_file = dir.path().join("env");
        let argv_file = dir.path().join("argv");
        // /proc/$$/environ and cmdline are what execve received, before the shell adds
        // anything of its own (PWD, SHLVL...).
        let script = format!(
            "cat /proc/$$/environ > {}; cat /proc/$$/cmdline > {}",
            env_file.display(),
            argv_file.display()
        );
        let env = ["A=1", "B=two words", "NOEQUALS", "C="];
        let hooks = [hook(&["my-argv0", "-c", &script], Some(&env), None)];
        if let Err(e) = run(HookKind::CreateRuntime, &hooks, "{}") {
            panic!("{e}");
        }
        assert_eq!(
            read(&env_file),
            b"A=1\0B=two words\0NOEQUALS\0C=\0".to_vec()
        );
        let argv = read(&argv_file);
        assert!(argv.starts_with(b"my-argv0\0-c\0"), "{argv:?}");
    }

    #[test]
    fn no_env_means_empty_environment() {
        let dir = tmpdir();
        let env_file = dir.path().join("env");
        let script = format!("cat /proc/$$/environ > {}", env_file.display());
        let hooks = [hook(&["sh", "-c", &script], None, None)];
        if let Err(e) = run(HookKind::CreateRuntime, &hooks, "{}") {
            panic!("{e}");
        }
        assert!(read(&env_file).is_empty());
    }

    #[test]
    fn husk_fds_do_not_leak_into_hooks() {
        let dir = tmpdir();
        let fds_file = dir.path().join("fds");
        // An fd without CLOEXEC at a number the hook would not pick itself, like a careless
        // caller could leave open (the exec fifo, a sync socket...).
        let null = match fs::File::open("/dev/null") {
            Ok(f) => f,
            Err(e) => panic!("open: {e}"),
        };
        let raw = match fcntl(&null, FcntlArg::F_DUPFD(200)) {
            Ok(fd) => fd,
            Err(e) => panic!("F_DUPFD: {e}"),
        };
        // SAFETY: F_DUPFD just returned this fd and nothing else owns it.
        let leaked = unsafe { OwnedFd::from_raw_fd(raw) };
        let script = format!("ls /proc/$$/fd > {}", fds_file.display());
        let hooks = [hook(&["sh", "-c", &script], None, None)];
        let res = run(HookKind::Prestart, &hooks, "{}");
        drop(leaked);
        if let Err(e) = res {
            panic!("{e}");
        }
        let listed = String::from_utf8_lossy(&read(&fds_file)).to_string();
        let fds: Vec<&str> = listed.split_whitespace().collect();
        assert!(fds.contains(&"0") && fds.contains(&"2"), "{fds:?}");
        assert!(
            !fds.contains(&raw.to_string().as_str()),
            "fd {raw} leaked: {fds:?}"
        );
    }

    #[test]
    fn select_picks_the_right_list() {
        let hooks: Hooks = match serde_json::from_str(
            r#"{"createRuntime":[{"path":"/a"}],"poststop":[{"path":"/b"},{"path":"/c"}]}"#,
        ) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(HookKind::CreateRuntime.select(&hooks).len(), 1);
        assert_eq!(HookKind::Poststop.select(&hooks).len(), 2);
        assert!(HookKind::Prestart.select(&hooks).is_empty());
    }
}
