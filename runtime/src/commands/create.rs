//! `husk create ID`: sets the container up completely and leaves its init waiting for `start`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::{State, Status};
use crate::hooks::{self, HookKind};
use crate::namespaces;
use crate::process::fork::{self, MainSteps};
use crate::process::init::{InitContext, InitKind};

/// The flags of `create` (and of `run`, which shares them).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set.
    pub console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the init (runc 1.2's --pidfd-socket).
    pub pidfd_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Pass fds 3..3+N to the container.
    pub preserve_fds: i32,
    /// A console socket already connected, instead of --console-socket: `run -t` keeps the
    /// other end to receive the pty master and proxy the caller's terminal.
    pub console_fd: Option<std::os::fd::RawFd>,
}

/// What `create` made, for `run` to continue with.
pub struct Created {
    /// The init's host pid.
    pub pid: Pid,
}

/// Creates container `id`: on any failure nothing is left behind (state dir, cgroup, process).
pub fn create(g: &Global, id: &str, opts: &CreateOpts) -> Result<Created> {
    let bundle = crate::spec::load_bundle(&opts.bundle)?;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("process must be set"))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && opts.console_fd.is_none() {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    if !terminal && opts.console_socket.is_some() {
        bail!("cannot use console socket if runc will not detach or allocate tty");
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow!("linux must be set"))?;
    let plan = namespaces::plan(linux.namespaces().as_deref().unwrap_or_default())?;
    if !plan.has(oci_spec::runtime::LinuxNamespaceType::Mount) {
        bail!("a mount namespace is required (linux.namespaces has no \"mount\")");
    }
    // Personality flags are ignored, as runc ignores them; say so, as runc does.
    if let Some(warning) = linux
        .personality()
        .as_ref()
        .and_then(crate::process::personality::ignored_flags_warning)
    {
        crate::logging::warn(&warning);
    }

    crate::rootfs::procview::ensure_server(spec);
    let mut dir = g.store().create(id)?;
    std::fs::write(dir.config_path(), serde_json::to_vec(spec)?)
        .with_context(|| format!("save config in {}", dir.path().display()))?;
    let fifo_path = dir.fifo_path();
    make_fifo(&fifo_path)?;
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", fifo_path.display()))?;
    let console = match &opts.console_socket {
        Some(p) => Some(
            UnixStream::connect(p)
                .with_context(|| format!("connect to console socket {}", p.display()))?,
        ),
        None => None,
    };

    let cgroup = ContainerCgroup::new(linux.cgroups_path().as_deref(), id, g.systemd_cgroup)
        .with_context(|| format!("cgroup of container {id}"))?;
    let mut guard = CgroupGuard(Some(&cgroup));

    let mut state = State {
        oci_version: spec.version().clone(),
        id: id.to_string(),
        pid: 0,
        init_start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::util::rfc3339_nano(SystemTime::now()),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup_path: cgroup.path().to_path_buf(),
        systemd_cgroup: g.systemd_cgroup,
        rootless: plan.new_user,
    };
    let ctx = InitContext {
        kind: InitKind::Container,
        id,
        spec,
        process,
        plan: &plan,
        rootfs: &bundle.rootfs,
        bundle: &bundle.dir,
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        preserve_fds: opts.preserve_fds,
        fifo_fd: fifo.as_raw_fd(),
        console_socket: console.as_ref().map(|c| c.as_raw_fd()).or(opts.console_fd),
        lock_fd: Some(dir.lock_fd()),
    };
    let mut steps = Steps {
        cgroup: &cgroup,
        spec,
        state: &mut state,
        rootless: g.is_rootless()?,
        self_joined: false,
    };
    let pid = fork::spawn(&ctx, &mut steps)?;
    drop(console);

    // From here the init lives: a failure must kill it too.
    let mut finish = || -> Result<()> {
        state.pid = pid.as_raw();
        state.init_start_time = crate::util::process_start_time(pid.as_raw())
            .ok_or_else(|| anyhow!("container init {pid} exited during create"))?;
        dir.save(&state)?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid)?;
        }
        if let Some(p) = &opts.pidfd_socket {
            send_pidfd(p, pid)?;
        }
        Ok(())
    };
    if let Err(e) = finish() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(e);
    }
    guard.0 = None;
    dir.keep();
    Ok(Created { pid })
}

/// Removes the cgroup unless create got through.
struct CgroupGuard<'a>(Option<&'a ContainerCgroup>);

impl Drop for CgroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(cg) = self.0 {
            let _ = cg.remove();
        }
    }
}

/// The main process's parts of the create protocol.
struct Steps<'a> {
    cgroup: &'a ContainerCgroup,
    spec: &'a oci_spec::runtime::Spec,
    state: &'a mut State,
    /// --rootless (or auto-detected): a cgroup we may not create is skipped, not fatal.
    rootless: bool,
    /// prepare_cgroup made the cgroup and the set-up process joins its v1 hierarchies itself.
    self_joined: bool,
}

impl MainSteps for Steps<'_> {
    fn prepare_cgroup(&mut self) -> Result<Vec<PathBuf>, String> {
        // Rootless keeps the one-step path: it copes with a cgroup it may not create.
        if self.rootless {
            return Ok(Vec::new());
        }
        self.cgroup.create().map_err(|e| e.to_string())?;
        let files = self.cgroup.self_join_files().map_err(|e| e.to_string())?;
        self.self_joined = !files.is_empty();
        Ok(files)
    }

    fn join_cgroup(&mut self, pid: Pid) -> Result<(), String> {
        let resources = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        let joined = if self.self_joined {
            self.cgroup.add_task_rest(pid)
        } else {
            self.cgroup.add_task(pid)
        };
        if let Err(e) = joined {
            if !(self.rootless && e.is_permission_denied()) {
                return Err(e.to_string());
            }
            // An unprivileged user usually has no right to the cgroup tree; runc goes on
            // without a cgroup then, unless limits were asked for, which would silently not
            // hold.
            if resources.is_some_and(has_limits) {
                return Err(format!(
                    "rootless container asks for cgroup limits (linux.resources) but cannot \
                     create its cgroup: {e}; remove the limits or delegate a cgroup to this user"
                ));
            }
            // Debug, not warning, as runc: callers such as podman take stderr lines as errors.
            crate::logging::debug(&format!(
                "rootless: running without a cgroup (no right to create it: {e})"
            ));
            return Ok(());
        }
        if let Some(res) = resources {
            self.cgroup.apply(res).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn state_json(&mut self, pid: Pid) -> String {
        self.state.pid = pid.as_raw();
        self.state.hook_json(Status::Creating)
    }

    fn has_runtime_hooks(&self) -> bool {
        self.spec.hooks().as_ref().is_some_and(|h| {
            [h.prestart(), h.create_runtime()]
                .iter()
                .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        })
    }

    fn runtime_hooks(&mut self, state_json: &str) -> Result<(), String> {
        if let Some(h) = self.spec.hooks() {
            // prestart is deprecated but still run, before createRuntime, as runc does.
            for (kind, list) in [
                (HookKind::Prestart, h.prestart()),
                (HookKind::CreateRuntime, h.create_runtime()),
            ] {
                if let Some(list) = list {
                    // In the bundle directory, as runc runs them.
                    hooks::run_in(kind, list, state_json, Some(&self.state.bundle))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `r` asks for any limit. Device rules alone do not count: a rootless container
/// cannot reach host devices it has no right to anyway (runc's rootless spec drops them too).
fn has_limits(r: &oci_spec::runtime::LinuxResources) -> bool {
    let mut rest = r.clone();
    rest.set_devices(None);
    rest != oci_spec::runtime::LinuxResources::default()
}

/// Makes exec.fifo writable by any container user (0622, as runc does).
fn make_fifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o622))
        .with_context(|| format!("mkfifo {}", path.display()))?;
    // mkfifo honours the umask; the init may run as any uid and must open it for writing.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Writes the pid file atomically, as runc does (a reader never sees an empty file).
fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    let path = std::path::absolute(path)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write pid file {}", path.display()))
}

/// Sends a pidfd of the init over a unix socket with SCM_RIGHTS (runc 1.2 --pidfd-socket).
pub fn send_pidfd(socket: &Path, pid: Pid) -> Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor we own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context(format!("pidfd_open {pid}"));
    }
    // SAFETY: raw is a fresh descriptor returned by the kernel.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connect to pidfd socket {}", socket.display()))?;
    let fds = [pidfd.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(b"pidfd")],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("send pidfd over {}", socket.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::has_limits;
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

    #[test]
    fn only_device_rules_are_not_limits() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .expect("device rule");
        let devices = LinuxResourcesBuilder::default()
            .devices(vec![deny_all])
            .build()
            .expect("resources");
        assert!(!has_limits(&devices));
        let memory = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .expect("memory"),
            )
            .build()
            .expect("resources");
        assert!(has_limits(&memory));
    }
}
