//! OOM notifications for one container: cgroup v1's `memory.oom_control` eventfd, or cgroup
//! v2's `memory.events` (inotify; the `oom_kill` counter going up). Each calls `on_oom` from
//! a small thread that stops when the watcher is dropped or the cgroup goes away.

use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroup::{read_keyed, Cgroup};

/// Stops its thread when dropped.
pub struct OomWatcher {
    stop: Arc<AtomicBool>,
}

impl Drop for OomWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits for `fd` to become readable, checking `stop` every second. Returns false when
/// stopped.
fn wait_readable(fd: &impl AsFd, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) => continue,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Starts watching the memory cgroup of `pid`.
pub fn watch(pid: i32, on_oom: impl Fn() + Send + 'static) -> std::io::Result<Option<OomWatcher>> {
    let cg = Cgroup::of_pid(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    match &cg {
        Cgroup::V2(dir) => watch_v2(dir.clone(), stop.clone(), on_oom)?,
        Cgroup::V1(_) => {
            let Some(dir) = cg.dir("memory") else {
                return Ok(None);
            };
            watch_v1(dir.to_path_buf(), stop.clone(), on_oom)?
        }
    }
    Ok(Some(OomWatcher { stop }))
}

fn watch_v1(
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    on_oom: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let control = File::open(dir.join("memory.oom_control"))?;
    let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(std::io::Error::from)?;
    fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd()),
    )?;
    thread::Builder::new()
        .name("oom-v1".into())
        .spawn(move || {
            let _control = control;
            while wait_readable(&efd, &stop) {
                if efd.read().is_err() {
                    return;
                }
                // The eventfd also fires when the cgroup is removed.
                if !dir.join("memory.oom_control").exists() {
                    return;
                }
                on_oom();
            }
        })?;
    Ok(())
}

fn oom_kills(dir: &Path) -> u64 {
    read_keyed(dir, "memory.events")
        .get("oom_kill")
        .copied()
        .unwrap_or(0)
}

fn watch_v2(
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    on_oom: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(std::io::Error::from)?;
    ino.add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)
        .map_err(std::io::Error::from)?;
    let mut seen = oom_kills(&dir);
    thread::Builder::new()
        .name("oom-v2".into())
        .spawn(move || {
            while wait_readable(&ino, &stop) {
                let Ok(events) = ino.read_events() else {
                    return;
                };
                if events
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                {
                    return;
                }
                let now = oom_kills(&dir);
                if now > seen {
                    seen = now;
                    on_oom();
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn events(oom_kill: u64, high: u64) -> String {
        format!("low 0\nhigh {high}\nmax 0\noom {oom_kill}\noom_kill {oom_kill}\n")
    }

    /// cgroup v2's memory.events, played by a file: the kernel signals changes to it with
    /// IN_MODIFY, as a write does. (This host is cgroup v1; the path is tested here.)
    #[test]
    fn v2_oom_kill_counter_going_up_is_an_oom() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("memory.events");
        // An OOM from before the watch started is not reported again.
        fs::write(&file, events(1, 0)).expect("write");
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        watch_v2(dir.path().to_path_buf(), stop.clone(), move || {
            let _ = tx.send(());
        })
        .expect("watch");

        fs::write(&file, events(1, 5)).expect("write");
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "a change that is not an oom_kill is no OOM"
        );
        fs::write(&file, events(2, 5)).expect("write");
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "TaskOOM");
        fs::write(&file, events(3, 5)).expect("write");
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "second TaskOOM"
        );

        // The cgroup going away (the file removed: IN_IGNORED) ends the watch; the callback
        // (and its sender) is dropped with the thread.
        fs::remove_file(&file).expect("remove");
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn v2_watch_stops_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("memory.events"), events(0, 0)).expect("write");
        let (tx, rx) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        watch_v2(dir.path().to_path_buf(), stop.clone(), move || {
            let _ = tx.send(());
        })
        .expect("watch");
        drop(OomWatcher { stop });
        // The thread notices within its 1 s poll and drops the callback.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn v2_watch_needs_memory_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = Arc::new(AtomicBool::new(false));
        assert!(watch_v2(dir.path().to_path_buf(), stop, || {}).is_err());
    }
}
