//! Driving the OCI runtime binary (husk by default; runc or crun through `BinaryName`) with the
//! command lines containerd-shim-runc-v2 uses (go-runc): global `--root ROOT/NS --log
//! BUNDLE/log.json --log-format json [--systemd-cgroup] [--criu PATH]`, then the command.
//!
//! Every command is spawned with its output going to anonymous temp files (never pipes: a
//! process the runtime leaves behind can hold a pipe open forever) and its exit is collected
//! through the shim's reaper (`monitor_subscribe` before spawning, so the exit cannot be missed),
//! never with `waitpid` here: the reaper thread owns every child of the shim.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim::monitor::{monitor_subscribe, wait_pid, Topic};
use serde_json::Value;

/// A failed runtime invocation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The binary could not be started at all.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The runtime binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The shim could not set the command up (temp files, subscriptions).
    #[error("running {cmd}: {msg}")]
    Setup {
        /// The command line.
        cmd: String,
        /// What failed.
        msg: String,
    },
    /// The command exited non-zero; `msg` is the runtime's own error (from `--log`, else
    /// stderr, else stdout).
    #[error("{msg}")]
    Failed {
        /// The command line, for logs.
        cmd: String,
        /// Exit status (128+N for signal N).
        status: i32,
        /// The runtime's message.
        msg: String,
    },
    /// The command succeeded but printed something unparsable.
    #[error("{cmd}: unexpected output: {msg}")]
    Output {
        /// The command line.
        cmd: String,
        /// What was wrong.
        msg: String,
    },
}

/// Where a command's stdio goes. `None` for stdout/stderr means "capture".
#[derive(Default)]
pub struct CmdIo {
    /// Standard input (default /dev/null).
    pub stdin: Option<OwnedFd>,
    /// Standard output (default: captured).
    pub stdout: Option<OwnedFd>,
    /// Standard error (default: captured).
    pub stderr: Option<OwnedFd>,
}

/// What a finished command printed.
#[derive(Debug, Default)]
pub struct CmdOutput {
    /// Captured stdout (empty when it went elsewhere).
    pub stdout: String,
    /// Captured stderr (empty when it went elsewhere).
    pub stderr: String,
}

/// `create` flags.
#[derive(Debug, Default, Clone)]
pub struct CreateOpts {
    /// `--pid-file`.
    pub pid_file: PathBuf,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
}

/// `exec` flags (always `--detach`, as the shim does).
#[derive(Debug, Clone)]
pub struct ExecOpts {
    /// `--process`: the runtime-spec process JSON.
    pub process: PathBuf,
    /// `--pid-file`.
    pub pid_file: PathBuf,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
}

/// `checkpoint` flags, as go-runc passes them.
#[derive(Debug, Default, Clone)]
pub struct CheckpointOpts {
    /// `--image-path`.
    pub image_path: PathBuf,
    /// `--work-path`.
    pub work_path: Option<PathBuf>,
    /// `--parent-path`.
    pub parent_path: Option<PathBuf>,
    /// `--leave-running` (unless the checkpoint should stop the container).
    pub leave_running: bool,
    /// `--tcp-established`.
    pub tcp_established: bool,
    /// `--ext-unix-sk`.
    pub ext_unix_sk: bool,
    /// `--shell-job`.
    pub shell_job: bool,
    /// `--file-locks`.
    pub file_locks: bool,
    /// `--empty-ns NS`, repeated.
    pub empty_ns: Vec<String>,
    /// `--manage-cgroups-mode MODE`.
    pub cgroups_mode: Option<String>,
}

/// `restore` flags.
#[derive(Debug, Clone)]
pub struct RestoreOpts {
    /// Checkpoint flags shared with restore.
    pub checkpoint: CheckpointOpts,
    /// `--pid-file`.
    pub pid_file: PathBuf,
    /// `--bundle`.
    pub bundle: PathBuf,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`.
    pub no_pivot: bool,
}

/// One runtime binary with its global flags.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The binary.
    pub binary: PathBuf,
    /// `--root`.
    pub root: PathBuf,
    /// `--log` (the bundle's log.json, which containerd-shim-runc-v2 also uses).
    pub log: PathBuf,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// `--criu`.
    pub criu: Option<PathBuf>,
}

impl Runtime {
    fn global_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--root".into(),
            self.root.clone().into(),
            "--log".into(),
            self.log.clone().into(),
            "--log-format".into(),
            "json".into(),
        ];
        if self.systemd_cgroup {
            a.push("--systemd-cgroup".into());
        }
        if let Some(criu) = &self.criu {
            a.push("--criu".into());
            a.push(criu.clone().into());
        }
        a
    }

    fn show(&self, args: &[OsString]) -> String {
        let mut s = self.binary.display().to_string();
        for a in self.global_args().iter().chain(args) {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs one command to completion. `input` is written to its stdin (for `update -`).
    pub fn run(
        &self,
        args: &[OsString],
        io: CmdIo,
        input: Option<&[u8]>,
    ) -> Result<CmdOutput, RuntimeError> {
        let cmdline = self.show(args);
        let setup = |msg: String| RuntimeError::Setup {
            cmd: cmdline.clone(),
            msg,
        };
        // A missing binary must fail here: std's fork path would waitpid() a child that failed
        // to exec, and the reaper may have taken it already.
        if !self.binary.is_file() {
            return Err(RuntimeError::Spawn {
                binary: self.binary.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (set BinaryName in the runtime options)",
                ),
            });
        }
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.global_args()).args(args);
        match (io.stdin, input) {
            (Some(fd), _) => {
                cmd.stdin(Stdio::from(fd));
            }
            (None, Some(data)) => {
                let mut f = tempfile::tempfile().map_err(|e| setup(e.to_string()))?;
                f.write_all(data).map_err(|e| setup(e.to_string()))?;
                f.seek(SeekFrom::Start(0))
                    .map_err(|e| setup(e.to_string()))?;
                cmd.stdin(Stdio::from(f));
            }
            (None, None) => {
                cmd.stdin(Stdio::null());
            }
        }
        let capture = |fd: Option<OwnedFd>,
                       cmd_set: &mut dyn FnMut(Stdio)|
         -> Result<Option<File>, RuntimeError> {
            match fd {
                Some(fd) => {
                    cmd_set(Stdio::from(fd));
                    Ok(None)
                }
                None => {
                    let f = tempfile::tempfile().map_err(|e| setup(e.to_string()))?;
                    let dup = f.try_clone().map_err(|e| setup(e.to_string()))?;
                    cmd_set(Stdio::from(dup));
                    Ok(Some(f))
                }
            }
        };
        let out_file = capture(io.stdout, &mut |s| {
            cmd.stdout(s);
        })?;
        let err_file = capture(io.stderr, &mut |s| {
            cmd.stderr(s);
        })?;

        let sub = monitor_subscribe(Topic::Pid).map_err(|e| setup(e.to_string()))?;
        let child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = i32::try_from(child.id()).map_err(|e| setup(e.to_string()))?;
        // Dropping `cmd` closes our copies of the descriptors we handed over, so the
        // container's pipes see EOF once the container (not the shim) lets go of them.
        drop(cmd);
        let status = wait_pid(pid, sub);
        let read = |f: Option<File>| -> String {
            let Some(mut f) = f else {
                return String::new();
            };
            let mut s = String::new();
            if f.seek(SeekFrom::Start(0)).is_ok() {
                let _ = f.read_to_string(&mut s);
            }
            s
        };
        let out = CmdOutput {
            stdout: read(out_file),
            stderr: read(err_file),
        };
        log::debug!("{cmdline}: exit {status}");
        if status != 0 {
            let msg = self
                .last_log_error()
                .or_else(|| non_empty(&out.stderr))
                .or_else(|| non_empty(&out.stdout))
                .unwrap_or_else(|| format!("{} exited with status {status}", cmdline));
            return Err(RuntimeError::Failed {
                cmd: cmdline,
                status,
                msg,
            });
        }
        Ok(out)
    }

    /// The last `"level":"error"` message in the `--log` file (logrus JSON lines), which is
    /// what runc-v2 shows containerd.
    fn last_log_error(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines().rev().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["level"] == "error")
                .then(|| v["msg"].as_str().map(str::to_string))
                .flatten()
        })
    }

    /// Truncates the `--log` file so an old error is never reported for a new failure.
    fn reset_log(&self) {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.log) {
            let _ = f.set_len(0);
        }
    }

    /// `create --bundle B --pid-file P [--console-socket S] [--no-pivot] [--no-new-keyring] ID`.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        opts: &CreateOpts,
        io: CmdIo,
    ) -> Result<(), RuntimeError> {
        self.reset_log();
        let mut a: Vec<OsString> = vec!["create".into(), "--bundle".into(), bundle.into()];
        a.push("--pid-file".into());
        a.push(opts.pid_file.clone().into());
        if let Some(s) = &opts.console_socket {
            a.push("--console-socket".into());
            a.push(s.into());
        }
        if opts.no_pivot {
            a.push("--no-pivot".into());
        }
        if opts.no_new_keyring {
            a.push("--no-new-keyring".into());
        }
        a.push(id.into());
        self.run(&a, io, None).map(drop)
    }

    /// `start ID`.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&["start".into(), id.into()], CmdIo::default(), None)
            .map(drop)
    }

    /// `exec --process F --detach --pid-file P [--console-socket S] ID`.
    pub fn exec(&self, id: &str, opts: &ExecOpts, io: CmdIo) -> Result<(), RuntimeError> {
        self.reset_log();
        let mut a: Vec<OsString> = vec![
            "exec".into(),
            "--process".into(),
            opts.process.clone().into(),
            "--detach".into(),
            "--pid-file".into(),
            opts.pid_file.clone().into(),
        ];
        if let Some(s) = &opts.console_socket {
            a.push("--console-socket".into());
            a.push(s.into());
        }
        a.push(id.into());
        self.run(&a, io, None).map(drop)
    }

    /// `kill [--all] ID SIGNAL`.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let mut a: Vec<OsString> = vec!["kill".into()];
        if all {
            a.push("--all".into());
        }
        a.push(id.into());
        a.push(signal.to_string().into());
        self.run(&a, CmdIo::default(), None).map(drop)
    }

    /// `delete [--force] ID`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut a: Vec<OsString> = vec!["delete".into()];
        if force {
            a.push("--force".into());
        }
        a.push(id.into());
        self.run(&a, CmdIo::default(), None).map(drop)
    }

    /// `pause ID`.
    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&["pause".into(), id.into()], CmdIo::default(), None)
            .map(drop)
    }

    /// `resume ID`.
    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&["resume".into(), id.into()], CmdIo::default(), None)
            .map(drop)
    }

    /// `ps --format json ID`: the container's host pids.
    pub fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        let a: Vec<OsString> = vec!["ps".into(), "--format".into(), "json".into(), id.into()];
        let out = self.run(&a, CmdIo::default(), None)?;
        let text = out.stdout.trim();
        if text.is_empty() || text == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| RuntimeError::Output {
            cmd: self.show(&a),
            msg: format!("{e}: {text}"),
        })
    }

    /// `update --resources - ID` with the runtime-spec LinuxResources JSON on stdin.
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError> {
        let a: Vec<OsString> = vec!["update".into(), "--resources".into(), "-".into(), id.into()];
        self.run(&a, CmdIo::default(), Some(resources)).map(drop)
    }

    fn checkpoint_args(o: &CheckpointOpts, a: &mut Vec<OsString>) {
        a.push("--image-path".into());
        a.push(o.image_path.clone().into());
        if let Some(w) = &o.work_path {
            a.push("--work-path".into());
            a.push(w.into());
        }
        if let Some(p) = &o.parent_path {
            a.push("--parent-path".into());
            a.push(p.into());
        }
        for (on, flag) in [
            (o.tcp_established, "--tcp-established"),
            (o.ext_unix_sk, "--ext-unix-sk"),
            (o.shell_job, "--shell-job"),
            (o.file_locks, "--file-locks"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if let Some(m) = &o.cgroups_mode {
            a.push("--manage-cgroups-mode".into());
            a.push(m.into());
        }
        for ns in &o.empty_ns {
            a.push("--empty-ns".into());
            a.push(ns.into());
        }
    }

    /// `checkpoint --image-path P [--work-path W] [--leave-running] [...] ID`.
    pub fn checkpoint(&self, id: &str, o: &CheckpointOpts) -> Result<(), RuntimeError> {
        self.reset_log();
        let mut a: Vec<OsString> = vec!["checkpoint".into()];
        Self::checkpoint_args(o, &mut a);
        if o.leave_running {
            a.push("--leave-running".into());
        }
        a.push(id.into());
        self.run(&a, CmdIo::default(), None).map(drop)
    }

    /// `restore --image-path P ... --detach --pid-file F --bundle B -no-subreaper ID`.
    pub fn restore(&self, id: &str, o: &RestoreOpts, io: CmdIo) -> Result<(), RuntimeError> {
        self.reset_log();
        let mut a: Vec<OsString> = vec!["restore".into()];
        Self::checkpoint_args(&o.checkpoint, &mut a);
        a.push("--detach".into());
        a.push("--pid-file".into());
        a.push(o.pid_file.clone().into());
        a.push("--bundle".into());
        a.push(o.bundle.clone().into());
        if let Some(s) = &o.console_socket {
            a.push("--console-socket".into());
            a.push(s.into());
        }
        if o.no_pivot {
            a.push("--no-pivot".into());
        }
        // go-runc spells it with one dash; the shim is the subreaper itself.
        a.push("-no-subreaper".into());
        a.push(id.into());
        self.run(&a, io, None).map(drop)
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Reads a pid file the runtime wrote.
pub fn read_pid_file(path: &Path) -> std::io::Result<i32> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse::<i32>().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}
