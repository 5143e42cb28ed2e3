//! `husk exec ID [ARGS]`: runs another process in a running container.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Capability, Process, Spec, User};

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::Status;
use crate::namespaces;
use crate::process::fork::{self, MainSteps};
use crate::process::init::{InitContext, InitKind};

/// The flags of `exec`, in runc's spelling.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    /// --process: a runtime-spec process JSON (what containerd passes).
    pub process: Option<PathBuf>,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// -e/--env additions.
    pub env: Vec<String>,
    /// --cwd.
    pub cwd: Option<PathBuf>,
    /// -u/--user uid[:gid].
    pub user: Option<String>,
    /// --additional-gids.
    pub additional_gids: Vec<u32>,
    /// --cap additions.
    pub caps: Vec<String>,
    /// --no-new-privs.
    pub no_new_privs: bool,
    /// -t/--tty.
    pub tty: bool,
    /// --console-socket.
    pub console_socket: Option<PathBuf>,
    /// --pid-file.
    pub pid_file: Option<PathBuf>,
    /// -d/--detach.
    pub detach: bool,
    /// --preserve-fds.
    pub preserve_fds: i32,
    /// --apparmor.
    pub apparmor: Option<String>,
    /// --process-label.
    pub process_label: Option<String>,
    /// --pidfd-socket.
    pub pidfd_socket: Option<PathBuf>,
}

/// Runs the process; returns the exit code `husk exec` exits with.
pub fn exec(g: &Global, id: &str, opts: &ExecOpts) -> Result<i32> {
    if opts.apparmor.as_deref().is_some_and(|s| !s.is_empty()) {
        bail!("--apparmor: husk does not apply AppArmor profiles");
    }
    if opts.process_label.as_deref().is_some_and(|s| !s.is_empty()) {
        bail!("--process-label: husk does not apply SELinux labels");
    }
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    match dir.status(&state) {
        Status::Running | Status::Created => {}
        Status::Paused => bail!("cannot exec in a paused container"),
        _ => bail!("cannot exec in a stopped container"),
    }
    let data = std::fs::read(dir.config_path())
        .with_context(|| format!("read {}", dir.config_path().display()))?;
    let spec = crate::spec::parse(&data).map_err(|e| anyhow!("saved config of {id}: {e}"))?;
    // Other commands (state, kill) must work while this exec runs: do not hold the lock.
    drop(dir);
    let process = build_process(&spec, opts)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        bail!("exec with a terminal needs --console-socket (husk does not proxy the caller's tty yet)");
    }
    let console = match &opts.console_socket {
        Some(p) if terminal => Some(
            std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("connect to console socket {}", p.display()))?,
        ),
        _ => None,
    };
    let plan = namespaces::plan_join_process(state.pid)?;
    let cgroup = ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?;
    let ctx = InitContext {
        kind: InitKind::Exec,
        id,
        spec: &spec,
        process: &process,
        plan: &plan,
        rootfs: &state.rootfs,
        bundle: &state.bundle,
        no_pivot: false,
        no_new_keyring: true,
        preserve_fds: opts.preserve_fds,
        fifo_fd: -1,
        console_socket: console.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
        lock_fd: None,
    };
    let mut steps = JoinCgroup(&cgroup);
    let pid = fork::spawn(&ctx, &mut steps)?;
    drop(console);
    if let Some(p) = &opts.pid_file {
        std::fs::write(p, pid.to_string()).with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(p) = &opts.pidfd_socket {
        super::create::send_pidfd(p, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    super::run::wait_forwarding(pid)
}

/// Puts the exec'd process into the container's cgroup; limits are the container's already.
struct JoinCgroup<'a>(&'a ContainerCgroup);

impl MainSteps for JoinCgroup<'_> {
    fn join_cgroup(&mut self, pid: nix::unistd::Pid) -> Result<(), String> {
        self.0.add_task(pid).map_err(|e| e.to_string())
    }

    fn prepared(&mut self, _pid: nix::unistd::Pid) -> Result<String, String> {
        Ok(String::new())
    }
}

/// The process to run: --process as given, or the container's process with the flags applied.
fn build_process(spec: &Spec, opts: &ExecOpts) -> Result<Process> {
    if let Some(path) = &opts.process {
        let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let p: Process = serde_json::from_slice(&data)
            .with_context(|| format!("parse process JSON {}", path.display()))?;
        return Ok(p);
    }
    if opts.args.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(opts.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    p.set_terminal(Some(opts.tty));
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    let mut user: User = p.user().clone();
    if let Some(u) = &opts.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        user.set_uid(
            uid.parse()
                .with_context(|| format!("invalid --user {u:?}"))?,
        );
        user.set_gid(match gid {
            Some(g) => g.parse().with_context(|| format!("invalid --user {u:?}"))?,
            None => 0,
        });
    }
    if !opts.additional_gids.is_empty() {
        user.set_additional_gids(Some(opts.additional_gids.clone()));
    }
    p.set_user(user);
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let cap: Capability = name
                .parse()
                .map_err(|_| anyhow!("unknown capability {name:?}"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            // runc adds an --cap to every set but inheritable.
            let (b, e, p_, a) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
                add(caps.ambient()),
            );
            caps.set_bounding(b);
            caps.set_effective(e);
            caps.set_permitted(p_);
            caps.set_ambient(a);
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}
