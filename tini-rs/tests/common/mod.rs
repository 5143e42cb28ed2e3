//! Shared helpers for the integration tests: run husk-init (or tini, as an oracle) directly or
//! as PID 1 of a fresh PID + mount namespace, wait on files it writes, and clean up by PID.
//!
//! Cleanup: a namespace's init is started through `unshare --kill-child`, so killing the
//! `unshare` process (done on drop) SIGKILLs the init and with it the whole namespace. A
//! directly started init has its children killed first, then itself.

#![allow(dead_code)]

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The husk-init binary under test.
pub const HUSK_INIT: &str = env!("CARGO_BIN_EXE_husk-init");

/// Debian's tini, used as an oracle when installed.
pub const TINI: &str = "/usr/bin/tini";

/// Whether tini is installed; prints why a differential check is skipped when not.
pub fn have_tini() -> bool {
    let ok = Path::new(TINI).exists();
    if !ok {
        eprintln!("skipping the tini comparison: {TINI} is not installed (apt-get install tini)");
    }
    ok
}

/// A scratch directory for one test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("husk-init-test.")
        .tempdir()
        .expect("create a scratch directory")
}

/// A started process tree, killed on drop if still running.
pub struct Running {
    child: Child,
    /// Whether `child` is `unshare` (the init is its child) rather than the init itself.
    namespaced: bool,
    status: Option<ExitStatus>,
    /// The init binary, canonical, to recognise it in /proc.
    init: PathBuf,
    /// Where stdout and stderr went.
    pub out: PathBuf,
    pub err: PathBuf,
}

/// How to start an init.
pub struct Start<'a> {
    /// The init binary: [`HUSK_INIT`] or [`TINI`].
    pub init: &'a str,
    /// Its arguments (options, `--`, program and arguments).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Run as PID 1 of a new PID + mount namespace (with /proc remounted).
    pub pid1: bool,
    /// A shell command run in the namespace before exec'ing the init (e.g. a bind mount),
    /// and a command prefix for the init itself (e.g. `setpriv ...`).
    pub setup: &'a str,
    pub wrapper: &'a str,
    /// Directory for the `out` / `err` capture files.
    pub dir: &'a Path,
}

impl<'a> Start<'a> {
    /// husk-init (or `init`) as PID 1 of a new namespace with `args`.
    pub fn pid1(init: &'a str, dir: &'a Path, args: &[&str]) -> Start<'a> {
        Start {
            init,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            pid1: true,
            setup: "",
            wrapper: "",
            dir,
        }
    }

    /// husk-init (or `init`) as a plain child of the test, with `args`.
    pub fn direct(init: &'a str, dir: &'a Path, args: &[&str]) -> Start<'a> {
        Start {
            pid1: false,
            ..Start::pid1(init, dir, args)
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Start<'a> {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts it.
    pub fn spawn(self) -> Running {
        let out = self.dir.join("out");
        let err = self.dir.join("err");
        let mut cmd = if self.pid1 {
            let mut cmd = Command::new("unshare");
            cmd.args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--",
                "sh",
                "-c",
            ]);
            // "$0" "$@" keeps every argument intact through the shell.
            let script = format!("{} \n exec {} \"$0\" \"$@\"", self.setup, self.wrapper);
            cmd.arg(script).arg(self.init).args(&self.args);
            cmd
        } else {
            let mut cmd = Command::new(self.init);
            cmd.args(&self.args);
            cmd
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("D", self.dir)
            .env("HUSK_INIT", HUSK_INIT)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("create out file"))
            .stderr(fs::File::create(&err).expect("create err file"));
        let child = cmd.spawn().expect("start the init");
        Running {
            child,
            namespaced: self.pid1,
            status: None,
            init: fs::canonicalize(self.init).expect("the init binary exists"),
            out,
            err,
        }
    }
}

impl Running {
    /// The host PID of the init (husk-init or tini itself), once it runs.
    pub fn init_pid(&self) -> i32 {
        let top = self.child.id() as i32;
        if !self.namespaced {
            return top;
        }
        // unshare forks the namespace's PID 1, which runs sh and then execs the init.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for pid in children(top) {
                if fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == self.init) {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "the init never started");
            sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to the init.
    pub fn signal(&self, sig: i32) {
        let pid = self.init_pid();
        // SAFETY: kill has no memory-safety preconditions.
        let ret = unsafe { libc::kill(pid, sig) };
        assert_eq!(ret, 0, "kill({pid}, {sig})");
    }

    /// Waits for the whole tree to end; panics (killing it on drop) after `secs` seconds.
    pub fn wait(&mut self, secs: u64) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "still running after {secs}s; stderr: {}",
                    fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Waits and returns the exit code (128+N for a death by signal N, as a shell reports).
    pub fn code(&mut self, secs: u64) -> i32 {
        let status = self.wait(secs);
        status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .expect("an exit code or a signal")
    }

    /// What the init wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// What the init wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let top = self.child.id() as i32;
        if !self.namespaced {
            // The init's children are in their own process groups; kill them first.
            for pid in children(top) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        // For a namespace, --kill-child turns this into SIGKILL for its PID 1, which takes
        // every process of the namespace with it.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(top, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The PIDs of `pid`'s children.
pub fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until the file at `path` exists and `done` accepts its content; returns the content.
pub fn wait_file(path: &Path, secs: u64, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if done(&text) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}: {:?}",
            path.display(),
            fs::read_to_string(path)
        );
        sleep(Duration::from_millis(10));
    }
}

/// The lines of a file, empty if it does not exist.
pub fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The child traps these and logs them; TERM ends it with 0.
pub const FORWARDED: [(&str, i32); 10] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
    ("ALRM", libc::SIGALRM),
    ("CONT", libc::SIGCONT),
    ("URG", libc::SIGURG),
    ("PIPE", libc::SIGPIPE),
];

/// Traps the signals of [`FORWARDED`] and logs each to `$D/got`; TERM logs and exits 0.
pub const TRAPPER: &str = r#"
for s in HUP INT QUIT USR1 USR2 WINCH ALRM CONT URG PIPE; do trap "echo $s >> $D/got" $s; done
trap 'echo TERM >> $D/got; exit 0' TERM
touch $D/ready
while :; do sleep 0.05; done
"#;

/// A main shell and a background subshell in its process group, both logging USR1.
pub const GROUP: &str = r#"
( trap 'echo bg >> $D/got' USR1; touch $D/bg-ready; while :; do sleep 0.05; done ) &
trap 'echo main >> $D/got' USR1
trap 'exit 0' TERM
while [ ! -e $D/bg-ready ]; do sleep 0.01; done
touch $D/ready
while :; do sleep 0.05; done
"#;
