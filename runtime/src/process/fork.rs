//! The create process model: main -> intermediate (fork) -> container init (clone).
//!
//! husk is single-threaded here, so a plain fork is safe and no re-exec of itself is needed
//! (runc re-execs only because Go cannot fork). The intermediate joins the namespaces given by
//! path, makes the user and time namespaces, waits until main has put it in the cgroup and
//! then clones the init with CLONE_PARENT: the init is main's child, never the intermediate's,
//! and when main exits it is reparented to the nearest subreaper (the shim).

use std::convert::Infallible;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::init::{self, InitContext, InitKind};
use super::sync::{self, Channel, Msg, SyncError};
use crate::namespaces;

/// How long each set-up step may take before create gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the container's processes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The sync protocol failed, or a child reported an error.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// fork(2) failed.
    #[error("fork: {0}")]
    Fork(nix::Error),
    /// Writing the user namespace maps failed.
    #[error(transparent)]
    Maps(#[from] namespaces::NamespaceError),
    /// The cgroup could not be joined or configured.
    #[error("{0}")]
    Cgroup(String),
    /// A prestart or createRuntime hook failed.
    #[error("{0}")]
    Hook(String),
    /// A child died of a signal without saying why.
    #[error("{0}")]
    Died(String),
}

/// What the main process does at the points of the protocol that are its own.
pub trait MainSteps {
    /// Creates the cgroup before the fork and returns the files through which the set-up
    /// process joins it itself (`ContainerCgroup::self_join_files`), concurrently with
    /// `join_cgroup`; empty when `join_cgroup` alone moves it.
    fn prepare_cgroup(&mut self) -> Result<Vec<std::path::PathBuf>, String> {
        Ok(Vec::new())
    }
    /// Puts the intermediate (and so all it clones) into the container's cgroup, in the
    /// hierarchies it does not join itself, and applies limits.
    fn join_cgroup(&mut self, pid: Pid) -> Result<(), String>;
    /// The state JSON for an init of `pid`, which hooks inside the container receive.
    fn state_json(&mut self, _pid: Pid) -> String {
        String::new()
    }
    /// Whether there are prestart or createRuntime hooks, which run once the rootfs is ready.
    fn has_runtime_hooks(&self) -> bool {
        false
    }
    /// Runs the prestart and createRuntime hooks with `state_json`.
    fn runtime_hooks(&mut self, _state_json: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Starts the container's init and returns its host pid once it waits on the exec FIFO.
///
/// On error every process this call started is killed and reaped before it returns.
pub fn spawn(ctx: &InitContext, steps: &mut dyn MainSteps) -> Result<Pid, SpawnError> {
    let (main_end, child_end) = sync::pair()?;
    let self_join = steps.prepare_cgroup().map_err(SpawnError::Cgroup)?;
    // SAFETY: husk is single-threaded during create, so the child may run arbitrary code.
    let fork = unsafe { nix::unistd::fork() }.map_err(SpawnError::Fork)?;
    let intermediate = match fork {
        ForkResult::Child => {
            drop(main_end);
            if let Some(fd) = ctx.lock_fd {
                // SAFETY: closing our copy of the store lock; main keeps its own.
                unsafe { libc::close(fd) };
            }
            let Err(e) = intermediate(ctx, &child_end, &self_join);
            let _ = child_end.send(&Msg::Error(e));
            // SAFETY: _exit skips the parent's atexit handlers and buffered output, which
            // belong to the main process.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_end);
    let mut init_pid = None;
    let mut result = drive(ctx, steps, &main_end, intermediate, &mut init_pid)
        .map_err(|e| queued_reason(&main_end, e));
    if let Err(err) = &mut result {
        // Leave no process behind: the init (our child by CLONE_PARENT) and the intermediate.
        // One that already died is reaped (never signalled: its pid may be reused), and how it
        // died explains a channel that just closed.
        let children = init_pid
            .map(|p| (p, "init"))
            .into_iter()
            .chain([(intermediate, "set-up process")]);
        // A peer that closed the channel is exiting: give it a moment to become a zombie (its
        // files close before it does) so its own cause of death is what we see, not our kill.
        let grace = if peer_vanished(err) {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        for (pid, who) in children {
            match reap_within(pid, grace) {
                Ok(WaitStatus::StillAlive) => {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                }
                Ok(WaitStatus::Signaled(_, sig, _)) if peer_vanished(err) => {
                    *err = SpawnError::Died(death_message(ctx, who, sig));
                }
                _ => {}
            }
        }
    } else {
        let _ = waitpid(intermediate, None);
    }
    result
}

/// waitpid(WNOHANG) until `pid` has exited or `grace` is over.
fn reap_within(pid: Pid, grace: Duration) -> nix::Result<WaitStatus> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        let status = waitpid(pid, Some(WaitPidFlag::WNOHANG))?;
        if status != WaitStatus::StillAlive || std::time::Instant::now() >= deadline {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `err` only says that the other end of the channel went away.
fn peer_vanished(err: &SpawnError) -> bool {
    matches!(
        err,
        SpawnError::Sync(
            SyncError::Closed(_)
                | SyncError::Sys {
                    source: nix::Error::ECONNRESET | nix::Error::EPIPE,
                    ..
                }
        )
    )
}

/// "the container's init was killed by SIGKILL before set-up finished", with the likely cause
/// when the kernel's OOM killer is a suspect (a memory limit below what set-up needs: runc
/// fails earlier there, writing the limit, because its init is charged before the limit is set).
fn death_message(ctx: &InitContext, who: &str, sig: Signal) -> String {
    let limit = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    let hint = match limit {
        Some(n) if sig == Signal::SIGKILL && n > 0 => format!(
            " (linux.resources.memory.limit {n} is probably too low: the kernel kills a \
             process that goes over it)"
        ),
        _ => String::new(),
    };
    format!("the container's {who} was killed by {sig} before set-up finished{hint}")
}

/// A child that fails sends its reason and exits; main may notice only later, when its own
/// next step fails because the child is gone (a send hits EPIPE, the intermediate left the
/// cgroup it was to join). The reason is still queued on the channel: it names the real
/// problem, so it replaces the symptom.
fn queued_reason(chan: &Channel, err: SpawnError) -> SpawnError {
    if matches!(err, SpawnError::Sync(SyncError::Remote(_))) {
        return err;
    }
    // The child wrote its reason before it exited, so it is there already or never comes.
    match chan.recv("the failure reason", Duration::from_millis(10)) {
        Err(SyncError::Remote(reason)) => SpawnError::Sync(SyncError::Remote(reason)),
        _ => err,
    }
}

fn drive(
    ctx: &InitContext,
    steps: &mut dyn MainSteps,
    chan: &Channel,
    intermediate: Pid,
    init_pid: &mut Option<Pid>,
) -> Result<Pid, SpawnError> {
    if ctx.plan.new_user {
        chan.expect(&Msg::MapIds, "the user namespace", STEP_TIMEOUT)?;
        let linux = ctx.spec.linux().as_ref();
        let uid = linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default();
        let gid = linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default();
        namespaces::write_id_maps(intermediate.as_raw(), &uid, &gid)?;
        chan.send(&Msg::MapsWritten)?;
    }
    steps
        .join_cgroup(intermediate)
        .map_err(SpawnError::Cgroup)?;
    chan.send(&Msg::CgroupJoined)?;
    let pid = match chan.recv("the init's pid", STEP_TIMEOUT)? {
        Msg::InitPid(p) => Pid::from_raw(p),
        got => {
            return Err(SyncError::Unexpected {
                wanted: "the init's pid",
                got,
            }
            .into())
        }
    };
    *init_pid = Some(pid);
    // The init holds the same channel end as the intermediate: it sets itself up meanwhile but
    // waits for this before it speaks, so its messages never race the intermediate's. With no
    // hooks to run on the host, Go carries all the init needs from main: one round trip of
    // three processes fewer on the path of every `create`.
    let container = ctx.kind == InitKind::Container;
    let hooks = container && steps.has_runtime_hooks();
    let state_json = if container {
        steps.state_json(pid)
    } else {
        String::new()
    };
    if hooks {
        chan.send(&Msg::Go(None))?;
        chan.expect(&Msg::Prepared, "the rootfs", STEP_TIMEOUT)?;
        steps.runtime_hooks(&state_json).map_err(SpawnError::Hook)?;
        chan.send(&Msg::HooksDone(state_json))?;
    } else {
        chan.send(&Msg::Go(Some(state_json)))?;
    }
    chan.expect(&Msg::Ready, "the container's process", STEP_TIMEOUT)?;
    Ok(pid)
}

/// The intermediate: namespaces, then clone the init, report its pid and exit.
fn intermediate(
    ctx: &InitContext,
    chan: &Channel,
    self_join: &[std::path::PathBuf],
) -> Result<Infallible, String> {
    // If create dies, the half-made container must not live on.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("set pdeathsig: {e}"))?;
    // Still in the host's mount namespace and with the host's credentials, like main; main
    // applies the limits meanwhile, and the clone below waits for CgroupJoined.
    for tasks in self_join {
        std::fs::write(tasks, "0")
            .map_err(|e| format!("join cgroup through {}: {e}", tasks.display()))?;
    }
    // Non-dumpable before the clone, so the init or exec'd process is born that way (the flag
    // is inherited): nothing in the container can open /proc/<pid>/exe of husk even in the
    // moment between clone and its own set-up (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("set non-dumpable: {e}"))?;
    // Written before the user namespace exists: lowering it needs CAP_SYS_RESOURCE on the host.
    if let Some(adj) = ctx.process.oom_score_adj() {
        super::oom_score_adj::apply(adj).map_err(|e| e.to_string())?;
    }
    namespaces::join_all(ctx.plan).map_err(|e| e.to_string())?;
    if ctx.plan.new_user {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("unshare user namespace: {e}"))?;
        // /proc/PID/{setgroups,uid_map,gid_map} of a non-dumpable process belong to root, so
        // an unprivileged main process (rootless) could not write them: dumpable only for the
        // map exchange, as runc does. Nothing of the container runs in this window.
        nix::sys::prctl::set_dumpable(true).map_err(|e| format!("set dumpable: {e}"))?;
        chan.send(&Msg::MapIds).map_err(|e| e.to_string())?;
        chan.expect(&Msg::MapsWritten, "the id maps", STEP_TIMEOUT)
            .map_err(|e| e.to_string())?;
        nix::sys::prctl::set_dumpable(false).map_err(|e| format!("set non-dumpable: {e}"))?;
        // Become root of the new namespace so the init's files are owned by a mapped id.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(|e| format!("setresgid(0) in the user namespace: {e}"))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .map_err(|e| format!("setresuid(0) in the user namespace: {e}"))?;
    }
    if ctx.plan.new_time {
        nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
            libc::CLONE_NEWTIME,
        ))
        .map_err(|e| format!("unshare time namespace: {e}"))?;
        if let Some(offsets) = ctx
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref())
        {
            super::timens::write_offsets(offsets).map_err(|e| e.to_string())?;
        }
    }
    chan.expect(&Msg::CgroupJoined, "the cgroup", STEP_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let flags = ctx.plan.clone_flags.bits() | libc::CLONE_PARENT | libc::SIGCHLD;
    // SAFETY: a raw clone without CLONE_VM and without a new stack behaves like fork(2): the
    // child gets a copy of this single-threaded process.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(format!(
            "clone the container init: {}",
            std::io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        init::run(ctx, chan);
    }
    chan.send(&Msg::InitPid(pid as i32))
        .map_err(|e| e.to_string())?;
    // SAFETY: see spawn(): the intermediate's work is done; exit without the parent's handlers.
    unsafe { libc::_exit(0) }
}
