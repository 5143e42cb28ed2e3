//! `husk exec ID [ARGS]`: runs another process in a running container.
//!
//! The process is spawned like a container init (process/fork.rs, `InitKind::Exec`): the
//! intermediate joins every namespace of the container's init and is put into the container's
//! cgroup before it clones, so the process is born inside both; it gets the container's
//! capabilities, rlimits and no-new-privileges unless its process JSON says otherwise.
//! Nothing is written to the container's state: a failed exec leaves nothing behind.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec};

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::Status;
use crate::namespaces;
use crate::process::fork::{self, MainSteps};
use crate::process::init::{InitContext, InitKind};
use crate::process::tty;

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
    /// --ignore-paused: exec into a paused container (the process starts frozen).
    pub ignore_paused: bool,
}

/// How long husk waits for the pty master of a terminal it proxies itself.
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the process; returns the exit code `husk exec` exits with (the process's own code,
/// 128+N when signal N killed it, 0 with --detach).
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
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => bail!("cannot exec in a paused container (resume it first)"),
        Status::Stopped => bail!("cannot exec in a stopped container"),
        Status::Creating => bail!("cannot exec in a container that is still being created"),
    }
    let data = std::fs::read(dir.config_path())
        .with_context(|| format!("read {}", dir.config_path().display()))?;
    let spec = crate::spec::parse(&data).map_err(|e| anyhow!("saved config of {id}: {e}"))?;
    // Other commands (state, kill) must work while this exec runs: do not hold the lock.
    drop(dir);
    let process = build_process(&spec, opts)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.detach && opts.console_socket.is_none() {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    if !terminal && opts.console_socket.is_some() {
        bail!("cannot use console socket if runc will not detach or allocate tty");
    }
    // Where the pty master goes: the caller's --console-socket, or a socketpair whose other
    // end husk keeps to proxy the caller's own terminal.
    let console = match &opts.console_socket {
        Some(p) if terminal => Some(
            std::os::unix::net::UnixStream::connect(p)
                .with_context(|| format!("connect to console socket {}", p.display()))?
                .into(),
        ),
        _ => None,
    };
    let pair = if terminal && console.is_none() {
        Some(tty::console_pair()?)
    } else {
        None
    };
    let console_fd = console
        .as_ref()
        .map(|c: &std::os::fd::OwnedFd| c.as_raw_fd())
        .or(pair.as_ref().map(|(_, theirs)| theirs.as_raw_fd()));

    let plan = namespaces::plan_join_process(state.pid)
        .with_context(|| format!("namespaces of container {id}"))?;
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
        console_socket: console_fd,
        lock_fd: None,
    };
    let mut steps = JoinCgroup {
        cgroup: &cgroup,
        self_joined: false,
    };
    let pid = fork::spawn(&ctx, &mut steps)?;
    drop(console);
    let master = match pair {
        Some((ours, theirs)) => {
            drop(theirs);
            match tty::recv_master(ours.as_fd(), MASTER_TIMEOUT) {
                Ok(m) => Some(m),
                Err(e) => {
                    kill_and_reap(pid);
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    let announce = || -> Result<()> {
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid.as_raw())?;
        }
        if let Some(p) = &opts.pidfd_socket {
            super::create::send_pidfd(p, pid)?;
        }
        Ok(())
    };
    if let Err(e) = announce() {
        kill_and_reap(pid);
        return Err(e);
    }
    if opts.detach {
        return Ok(0);
    }
    match master {
        Some(m) => super::run::wait_with_terminal(pid, m),
        None => super::run::wait_forwarding(pid),
    }
}

/// Undoes a started process when exec fails after spawning it: nothing is left behind.
fn kill_and_reap(pid: nix::unistd::Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// Writes the pid file atomically (a reader never sees it empty), as runc does.
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write pid file {}", path.display()))
}

/// Puts the exec'd process into the container's cgroup; limits are the container's already.
struct JoinCgroup<'a> {
    cgroup: &'a ContainerCgroup,
    /// prepare_cgroup found the cgroup and the set-up process joins its v1 hierarchies itself.
    self_joined: bool,
}

impl JoinCgroup<'_> {
    /// A rootless container may run without a cgroup (create skipped it): then neither does
    /// its exec'd process, and joining must not try to create one.
    fn exists(&self) -> Result<bool, String> {
        let dirs = self.cgroup.dirs().map_err(|e| e.to_string())?;
        Ok(dirs.iter().any(|d| d.exists()))
    }
}

impl MainSteps for JoinCgroup<'_> {
    fn prepare_cgroup(&mut self) -> Result<Vec<PathBuf>, String> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        self.cgroup.create().map_err(|e| e.to_string())?;
        let files = self.cgroup.self_join_files().map_err(|e| e.to_string())?;
        self.self_joined = !files.is_empty();
        Ok(files)
    }

    fn join_cgroup(&mut self, pid: nix::unistd::Pid) -> Result<(), String> {
        if self.self_joined {
            return self.cgroup.add_task_rest(pid).map_err(|e| e.to_string());
        }
        if !self.exists()? {
            return Ok(());
        }
        self.cgroup.add_task(pid).map_err(|e| e.to_string())
    }
}

/// The process to run: --process as given, or the container's process with the flags applied.
/// What the process leaves unset (capabilities, rlimits) is the container's, as in runc.
pub fn build_process(spec: &Spec, opts: &ExecOpts) -> Result<Process> {
    let container = spec.process().clone().unwrap_or_default();
    let mut p = match &opts.process {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            serde_json::from_slice::<Process>(&data)
                .with_context(|| format!("parse process JSON {}", path.display()))?
        }
        None => {
            if opts.args.is_empty() {
                bail!("exec needs a command (or --process)");
            }
            let mut p = container.clone();
            p.set_args(Some(opts.args.clone()));
            // runc: the flag form never inherits the container's terminal setting.
            p.set_terminal(Some(opts.tty));
            p.set_console_size(None);
            p
        }
    };
    if opts.process.is_some() && opts.tty {
        p.set_terminal(Some(true));
    }
    if p.capabilities().is_none() {
        p.set_capabilities(container.capabilities().clone());
    }
    if p.rlimits().is_none() {
        p.set_rlimits(container.rlimits().clone());
    }
    if !opts.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(opts.env.iter().cloned());
        p.set_env(Some(env));
    }
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(u) = &opts.user {
        let (uid, gid) = parse_user(u)?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
        p.set_user(user);
    }
    if !opts.additional_gids.is_empty() {
        let mut user = p.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(opts.additional_gids.iter().copied());
        user.set_additional_gids(Some(gids));
        p.set_user(user);
    }
    if !opts.caps.is_empty() {
        let caps = p.capabilities().clone().unwrap_or_default();
        p.set_capabilities(Some(add_caps(caps, &opts.caps)?));
    }
    validate(&p)?;
    Ok(p)
}

/// `-u uid[:gid]`, numeric as in runc (names are not looked up in the container).
fn parse_user(u: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let num = |s: &str, what: &str| -> Result<u32> {
        s.parse().map_err(|_| {
            anyhow!("invalid --user {u:?}: {what} {s:?} is not a number (husk takes uid[:gid])")
        })
    };
    Ok((num(uid, "uid")?, gid.map(|g| num(g, "gid")).transpose()?))
}

/// runc's `--cap`: added to the bounding, effective and permitted sets, and to ambient only
/// when the process has inheritable capabilities (ambient needs them).
fn add_caps(mut caps: LinuxCapabilities, names: &[String]) -> Result<LinuxCapabilities> {
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        // The config's spelling (CAP_ prefix), parsed the way config.json is.
        let cap: Capability = serde_json::from_value(serde_json::Value::String(full))
            .map_err(|_| anyhow!("unknown capability {name:?}"))?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        let with_ambient = caps.inheritable().as_ref().is_some_and(|s| !s.is_empty());
        let (b, e, p) = (
            add(caps.bounding()),
            add(caps.effective()),
            add(caps.permitted()),
        );
        caps.set_bounding(b);
        caps.set_effective(e);
        caps.set_permitted(p);
        if with_ambient {
            let a = add(caps.ambient());
            caps.set_ambient(a);
        }
    }
    Ok(caps)
}

/// runc's checks of an exec process, plus what husk cannot apply.
fn validate(p: &Process) -> Result<()> {
    if p.args().as_ref().is_none_or(Vec::is_empty) {
        bail!("process: args must not be empty");
    }
    if p.cwd().as_os_str().is_empty() {
        bail!("process: cwd must not be empty");
    }
    if !p.cwd().is_absolute() {
        bail!("process: cwd {:?} must be an absolute path", p.cwd());
    }
    if p.apparmor_profile()
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        bail!("process: apparmorProfile is set, but husk does not apply AppArmor profiles");
    }
    if p.selinux_label().as_deref().is_some_and(|s| !s.is_empty()) {
        bail!("process: selinuxLabel is set, but husk does not apply SELinux labels");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        crate::spec::parse(crate::spec::default_json(false).as_bytes()).expect("default spec")
    }

    #[test]
    fn flags_apply_to_the_container_process() {
        let opts = ExecOpts {
            args: vec!["id".into()],
            env: vec!["A=1".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:1001".into()),
            additional_gids: vec![5],
            caps: vec!["net_admin".into()],
            no_new_privs: true,
            ..Default::default()
        };
        let p = build_process(&spec(), &opts).expect("process");
        assert_eq!(p.args().as_deref(), Some(&["id".to_string()][..]));
        assert!(p.env().as_ref().expect("env").contains(&"A=1".to_string()));
        assert!(p
            .env()
            .as_ref()
            .expect("env")
            .iter()
            .any(|e| e.starts_with("PATH=")));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5u32][..]));
        let caps = p.capabilities().as_ref().expect("caps");
        assert!(caps
            .bounding()
            .as_ref()
            .expect("bounding")
            .contains(&Capability::NetAdmin));
        assert!(caps
            .effective()
            .as_ref()
            .expect("effective")
            .contains(&Capability::NetAdmin));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.terminal(), Some(false));
        assert!(p.rlimits().is_some());
    }

    #[test]
    fn bad_input_is_refused() {
        let with = |f: fn(&mut ExecOpts)| {
            let mut o = ExecOpts {
                args: vec!["true".into()],
                ..Default::default()
            };
            f(&mut o);
            build_process(&spec(), &o)
        };
        assert!(with(|o| o.user = Some("nobody".into())).is_err());
        assert!(with(|o| o.user = Some("1:x".into())).is_err());
        assert!(with(|o| o.caps = vec!["CAP_NOPE".into()]).is_err());
        assert!(with(|o| o.cwd = Some("relative".into())).is_err());
        assert!(with(|o| o.args.clear()).is_err());
        // uid alone keeps the container's gid, as runc does.
        let p = with(|o| o.user = Some("7".into())).expect("uid only");
        assert_eq!((p.user().uid(), p.user().gid()), (7, 0));
    }

    #[test]
    fn process_json_inherits_caps_and_rlimits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
        )
        .expect("write");
        let opts = ExecOpts {
            process: Some(path.clone()),
            ..Default::default()
        };
        let p = build_process(&spec(), &opts).expect("process");
        assert!(p.capabilities().is_some());
        assert!(p.rlimits().is_some());
        std::fs::write(
            &path,
            r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"x"}"#,
        )
        .expect("write");
        assert!(build_process(&spec(), &opts).is_err());
        std::fs::write(&path, "{not json").expect("write");
        assert!(build_process(&spec(), &opts).is_err());
    }
}
