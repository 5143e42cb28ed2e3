//! The container init: the in-container set-up sequence, in runc's order, ending in exec.
//!
//! Runs in the process cloned by the intermediate: PID 1 of the new pid namespace, already in
//! every namespace and the cgroup. Each step is one call into the module that owns the field.

use std::cell::Cell;
use std::convert::Infallible;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::sync::{Channel, Msg};
use crate::container::state::container_hook_json;
use crate::container::Status;
use crate::hooks::{self, HookKind};
use crate::namespaces::Plan;
use crate::rootfs::{self, RootfsOptions};

/// Whether the cloned process becomes a new container's init or joins a running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// `create`: set up the rootfs and wait on the exec FIFO.
    Container,
    /// `exec`: the namespaces and rootfs exist; apply the process and exec at once.
    Exec,
}

/// Everything the intermediate and the init need, prepared by `create` before it forks.
pub struct InitContext<'a> {
    /// Container init or exec'd process.
    pub kind: InitKind,
    /// The container id.
    pub id: &'a str,
    /// The whole config.
    pub spec: &'a Spec,
    /// The process to run (the config's, for create).
    pub process: &'a Process,
    /// Namespaces to make and join.
    pub plan: &'a Plan,
    /// Absolute host path of the rootfs.
    pub rootfs: &'a Path,
    /// Absolute bundle dir.
    pub bundle: &'a Path,
    /// --no-pivot.
    pub no_pivot: bool,
    /// --no-new-keyring.
    pub no_new_keyring: bool,
    /// --preserve-fds: fds 3..3+N stay open in the container.
    pub preserve_fds: i32,
    /// An O_PATH descriptor of exec.fifo, reopened for writing to wait for `start`.
    pub fifo_fd: RawFd,
    /// A connected --console-socket, when process.terminal is set.
    pub console_socket: Option<RawFd>,
    /// The container dir's lock, which the children must drop at once.
    pub lock_fd: Option<RawFd>,
}

const HOOKS_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Runs the init sequence; never returns. A failure before the user process execs is sent
/// back to `create` over the channel.
pub fn run(ctx: &InitContext, chan: &Channel) -> ! {
    let went = Cell::new(false);
    let err = match setup(ctx, chan, &went) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // Even a failure is told only after the go-ahead (see go_ahead).
    if !went.get() {
        let _ = go_ahead(chan, &went);
    }
    let _ = chan.send(&Msg::Error(err));
    // SAFETY: leave without running the parent's exit handlers; this is a forked copy.
    unsafe { libc::_exit(1) }
}

/// Waits for main's go-ahead (see `fork::drive`): the init may set itself up before it, but
/// sends nothing, not even an error, until main knows its pid. Notes in `went` that it came.
fn go_ahead(chan: &Channel, went: &Cell<bool>) -> Result<Option<String>, String> {
    went.set(true);
    match chan
        .recv("the go-ahead", HOOKS_TIMEOUT)
        .map_err(|e| e.to_string())?
    {
        Msg::Go(state_json) => Ok(state_json),
        other => Err(format!("unexpected sync message {other:?}")),
    }
}

fn setup(ctx: &InitContext, chan: &Channel, went: &Cell<bool>) -> Result<Infallible, String> {
    if ctx.kind == InitKind::Exec {
        return setup_exec(ctx, chan, went);
    }
    // Nothing in the container may open /proc/1/exe or /proc/1/mem of the runtime before exec
    // (CVE-2019-5736); exec resets dumpability.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("set non-dumpable: {e}"))?;
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let opts = RootfsOptions {
        spec: ctx.spec,
        rootfs: ctx.rootfs,
        bundle: ctx.bundle,
        no_pivot: ctx.no_pivot,
        in_user_ns: ctx.plan.has(LinuxNamespaceType::User),
        in_cgroup_ns: ctx.plan.has(LinuxNamespaceType::Cgroup),
    };
    rootfs::prepare(&opts).map_err(|e| e.to_string())?;

    let state_json = match go_ahead(chan, went)? {
        Some(state_json) => state_json,
        None => {
            chan.send(&Msg::Prepared).map_err(|e| e.to_string())?;
            match chan
                .recv("the createRuntime hooks", HOOKS_TIMEOUT)
                .map_err(|e| e.to_string())?
            {
                Msg::HooksDone(s) => s,
                other => return Err(format!("unexpected sync message {other:?}")),
            }
        }
    };
    let hooks = ctx.spec.hooks().as_ref();
    if let Some(list) = hooks.and_then(|h| h.create_container().as_ref()) {
        let json = container_hook_json(&state_json, Status::Creating);
        // In the rootfs, as runc runs them.
        hooks::run_in(HookKind::CreateContainer, list, &json, Some(ctx.rootfs))
            .map_err(|e| e.to_string())?;
    }
    // Compiled now, and a SCMP_ACT_NOTIFY agent connected while its host path is visible.
    let mut seccomp = crate::seccomp::prepare(
        ctx.spec,
        ctx.process,
        crate::seccomp::Target::Init {
            state_json: &state_json,
        },
    )
    .map_err(|e| e.to_string())?;

    rootfs::pivot(&opts).map_err(|e| e.to_string())?;
    if let Some(socket) = ctx.console_socket {
        super::console::setup(socket, ctx.process, true).map_err(|e| e.to_string())?;
    }
    let linux = ctx.spec.linux().as_ref();
    super::hostname::apply(
        ctx.spec.hostname().as_deref(),
        ctx.spec.domainname().as_deref(),
    )
    .map_err(|e| e.to_string())?;
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        crate::sysctl::apply(sysctl).map_err(|e| e.to_string())?;
    }
    rootfs::finalize(ctx.spec).map_err(|e| e.to_string())?;
    if !ctx.no_new_keyring {
        super::keyring::join_session(ctx.id).map_err(|e| e.to_string())?;
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        super::personality::apply(p).map_err(|e| e.to_string())?;
    }
    apply_process(ctx.process, ctx.preserve_fds, &mut seccomp)?;

    let env = super::exec::environment(ctx.process);
    let args = ctx.process.args().clone().unwrap_or_default();
    let program = super::exec::find(&args, &env).map_err(|e| e.to_string())?;
    // With no_new_privs, as late as runc: after the program is found, before the sync channel
    // closes, so a refused filter still fails `create`.
    if let Some(filter) = seccomp.take() {
        filter.install().map_err(|e| e.to_string())?;
    }

    chan.send(&Msg::Ready).map_err(|e| e.to_string())?;
    // From here on nobody listens: errors go to the container's stderr, as runc's do.
    // SAFETY: closing our own copy of the sync socket; nothing else uses it in this process.
    unsafe { libc::close(chan.raw_fd()) };
    // `start` waits for the startContainer hooks: their failure is its error (runtime-spec:
    // "generate an error, stop the container").
    let start_hooks = hooks.and_then(|h| h.start_container().as_ref());
    let run_start_hooks = || match start_hooks {
        Some(list) => {
            let json = container_hook_json(&state_json, Status::Created);
            hooks::run(HookKind::StartContainer, list, &json).map_err(|e| e.to_string())
        }
        None => Ok(()),
    };
    if let Err(e) = wait_for_start(ctx.fifo_fd, run_start_hooks) {
        fail(&e);
    }
    let e = super::exec::exec(&program, &args, &env);
    fail(&e.to_string())
}

/// An exec'd process: already in the container's namespaces (and so its root) and cgroup.
fn setup_exec(ctx: &InitContext, chan: &Channel, went: &Cell<bool>) -> Result<Infallible, String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("set non-dumpable: {e}"))?;
    let mut seccomp = crate::seccomp::prepare(ctx.spec, ctx.process, crate::seccomp::Target::Exec)
        .map_err(|e| e.to_string())?;
    // Its own session, as runc's exec'd processes have: a signal from the caller's terminal
    // reaches it once, forwarded by `husk exec`, not also through a shared process group.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    if let Some(socket) = ctx.console_socket {
        super::console::setup(socket, ctx.process, false).map_err(|e| e.to_string())?;
    }
    if let Some(p) = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        super::personality::apply(p).map_err(|e| e.to_string())?;
    }
    apply_process(ctx.process, ctx.preserve_fds, &mut seccomp)?;
    let env = super::exec::environment(ctx.process);
    let args = ctx.process.args().clone().unwrap_or_default();
    let program = super::exec::find(&args, &env).map_err(|e| e.to_string())?;
    if let Some(filter) = seccomp.take() {
        filter.install().map_err(|e| e.to_string())?;
    }
    go_ahead(chan, went)?;
    chan.send(&Msg::Ready).map_err(|e| e.to_string())?;
    // SAFETY: closing our own copy of the sync socket; nothing else uses it in this process.
    unsafe { libc::close(chan.raw_fd()) };
    let e = super::exec::exec(&program, &args, &env);
    fail(&e.to_string())
}

/// The process attributes, in runc's order: those that need root first, then the user switch
/// with capabilities kept, then the final capability sets. A seccomp filter that needs
/// CAP_SYS_ADMIN (no no_new_privs) is installed on the way and taken out of `seccomp`.
pub fn apply_process(
    process: &Process,
    preserve_fds: i32,
    seccomp: &mut Option<crate::seccomp::Pending>,
) -> Result<(), String> {
    if let Some(rlimits) = process.rlimits() {
        super::rlimits::apply(rlimits).map_err(|e| e.to_string())?;
    }
    if let Some(s) = process.scheduler() {
        super::scheduler::apply(s).map_err(|e| e.to_string())?;
    }
    if let Some(p) = process.io_priority() {
        super::ioprio::apply(p).map_err(|e| e.to_string())?;
    }
    // Without no_new_privs the kernel wants CAP_SYS_ADMIN for a filter: install it before the
    // user switch drops it, where runc does (just before finalizeNamespace).
    if let Some(filter) = seccomp.take_if(|f| f.needs_privilege()) {
        filter.install().map_err(|e| e.to_string())?;
    }
    close_fds_from(3 + preserve_fds)?;
    let caps = process.capabilities().as_ref();
    super::capabilities::drop_bounding(caps).map_err(|e| e.to_string())?;
    super::user::apply(process.user()).map_err(|e| e.to_string())?;
    super::capabilities::apply(caps).map_err(|e| e.to_string())?;
    if process.no_new_privileges() == Some(true) {
        super::no_new_privs::apply().map_err(|e| e.to_string())?;
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| format!("chdir to cwd ({}): {e}", cwd.display()))?;
    Ok(())
}

/// Marks every descriptor from `first` on close-on-exec, so only stdio and the preserved fds
/// reach the container's process.
fn close_fds_from(first: i32) -> Result<(), String> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(format!(
            "mark fds from {first} close-on-exec: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Blocks until `start` opens the exec FIFO for reading, runs `before_go` (the startContainer
/// hooks), then answers `start` with "0" to go on, or "1" and the error, which `start` reports.
fn wait_for_start(
    fifo_fd: RawFd,
    before_go: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let path = format!("/proc/self/fd/{fifo_fd}");
    // Opening for write blocks until a reader (`husk start`) opens the other end.
    let fd = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open exec fifo: {e}"))?;
    let verdict = before_go();
    let reply = match &verdict {
        Ok(()) => "0".to_string(),
        // One write of at most PIPE_BUF bytes is atomic: `start` reads it whole.
        Err(e) => format!("1{}", truncate_on_char(e, libc::PIPE_BUF - 1)),
    };
    nix::unistd::write(&fd, reply.as_bytes()).map_err(|e| format!("write exec fifo: {e}"))?;
    drop(fd);
    // SAFETY: the O_PATH fd is ours and no longer needed.
    unsafe { libc::close(fifo_fd) };
    verdict
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_on_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reports a failure after `create` has gone: on the container's stderr, then exit 1.
fn fail(msg: &str) -> ! {
    eprintln!("husk init: {msg}");
    // SAFETY: see run().
    unsafe { libc::_exit(1) }
}
