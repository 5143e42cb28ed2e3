//! The shim daemon's set-up (the part containerd-shim's `run` would do, done here so the Task
//! service answers under both names containerd uses: `containerd.task.v2.Task` (containerd
//! 1.6 and 1.7) and `containerd.task.v3.Task` (2.x); containerd-shim-protos 0.12 generates
//! only v3): subreaper, reaper, log FIFO, ttrpc server on the socket `start` chose.

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use anyhow::{bail, Context, Result};
use containerd_shim::monitor::monitor_notify_by_pid;
use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc::{MethodHandler, Server};
use containerd_shim::{Flags, Task};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::shim::HuskShim;

const V3: &str = "/containerd.task.v3.Task/";
const V2: &str = "/containerd.task.v2.Task/";

/// The Task methods under both service names.
fn methods(
    task: Arc<dyn Task + Send + Sync>,
) -> HashMap<String, Box<dyn MethodHandler + Send + Sync>> {
    let mut all = create_task(task.clone());
    let v2: Vec<_> = create_task(task)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(V3).map(|m| (format!("{V2}{m}"), v)))
        .collect();
    all.extend(v2);
    all
}

/// Reaps every child (the shim is a subreaper: container inits and anything orphaned in
/// them land here) and tells the monitor, whose subscribers are the exit loop and the
/// runtime command runner. Never returns.
fn reap_forever(mut signals: Signals) {
    for sig in signals.forever() {
        if sig != SIGCHLD {
            // containerd stops shims with Shutdown, never with a signal; a stray SIGTERM
            // (e.g. a process-group kill aimed at containerd) must not take containers down.
            log::info!("ignoring signal {sig}");
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    let _ = monitor_notify_by_pid(pid.as_raw(), code);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    let _ = monitor_notify_by_pid(pid.as_raw(), 128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Binds the shim socket; `None` when a live shim already owns it (a race with another
/// `start` for the same group: that one serves).
fn listen(address: &str) -> Result<Option<UnixListener>> {
    let path = Path::new(socket_path(address));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale {}", path.display()))?;
            Ok(Some(
                UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?,
            ))
        }
        Err(e) => Err(e).with_context(|| format!("binding {}", path.display())),
    }
}

/// Tells `start` the server is up: its pipe on our stdout closes.
fn signal_ready() {
    // SAFETY: dup2 on two descriptors this process owns; stdout is replaced by stderr
    // (/dev/null), which closes the pipe `start` reads.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}

/// One malloc arena for the whole daemon. glibc gives threads their own arenas (up to 8 per
/// core); in a shim whose threads mostly sleep, each is a few pages of pure overhead, and
/// together they were ~0.5 MB of a 5.3 MB shim (docs/shim-design.md, "Memory").
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } != 1 {
        log::warn!("mallopt(M_ARENA_MAX, 1) failed");
    }
}

/// Runs the daemon until Shutdown.
pub fn run(runtime_id: &str, flags: &Flags) -> Result<()> {
    if flags.socket.is_empty() {
        bail!("-socket is required");
    }
    limit_malloc_arenas();
    // Before anything can fork: SIGCHLD must not be missed.
    let signals = Signals::new([SIGCHLD, SIGTERM, SIGINT]).context("installing signal handlers")?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!("becoming a subreaper: {}", std::io::Error::last_os_error());
    }
    containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
        .context("opening the shim log")?;
    let Some(listener) = listen(&flags.socket)? else {
        log::info!("{} already served by a live shim", flags.socket);
        signal_ready();
        return Ok(());
    };
    thread::Builder::new()
        .name("reaper".into())
        .spawn(move || reap_forever(signals))
        .context("starting the reaper")?;

    let mut shim = HuskShim::new(runtime_id, flags, &mut containerd_shim::Config::default());
    let service: Arc<dyn Task + Send + Sync> = Arc::new(shim.service());
    // ttrpc keeps 3 idle workers per connection by default (plus a reader, a writer and a
    // handler thread); 1 to 2 idle ones are enough: a worker blocked in Wait does not count
    // as idle, so another is started whenever fewer than one is left.
    let mut server = Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3)
        .add_listener(listener.into_raw_fd())
        .context("adding the listener")?
        .register_service(methods(service));
    server.start().context("starting the ttrpc server")?;
    signal_ready();
    log::info!("shim serving {}", flags.socket);
    use containerd_shim::Shim;
    shim.wait();
    log::info!("shutting down");
    server.shutdown();
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Task for Nop {}

    #[test]
    fn both_service_names_are_served() {
        let m = methods(Arc::new(Nop));
        for name in ["Create", "Wait", "Shutdown", "Connect"] {
            assert!(m.contains_key(&format!("{V2}{name}")), "{name} v2");
            assert!(m.contains_key(&format!("{V3}{name}")), "{name} v3");
        }
    }
}
