//! One process the shim manages (a container's init or an exec): its status, pid, exit and
//! stdio, with a condvar for Wait.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::stdio::{ProcessIo, StdioPaths};

/// A process's status, in containerd's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created by the runtime, not started (init), or registered but not started (exec).
    Created,
    /// Running.
    Running,
    /// Frozen (init only).
    Paused,
    /// Exited.
    Stopped,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit code, or 128+N when killed by signal N.
    pub status: u32,
    /// When the shim saw it.
    pub at: SystemTime,
}

/// What a caller can read about a process in one go.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Status.
    pub status: Status,
    /// Host pid (0 before it was started).
    pub pid: i32,
    /// The exit, once stopped.
    pub exit: Option<Exit>,
}

struct Inner {
    status: Status,
    pid: i32,
    exit: Option<Exit>,
    io: Option<ProcessIo>,
}

/// A managed process.
pub struct Process {
    /// Exec id; empty for the container's init.
    pub exec_id: String,
    /// The stdio containerd asked for.
    pub stdio: StdioPaths,
    /// The runtime-spec process JSON (execs only).
    pub spec: Option<Vec<u8>>,
    inner: Mutex<Inner>,
    exited: Condvar,
}

impl Process {
    /// A process not started yet.
    pub fn new(exec_id: &str, stdio: StdioPaths, spec: Option<Vec<u8>>) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            inner: Mutex::new(Inner {
                status: Status::Created,
                pid: 0,
                exit: None,
                io: None,
            }),
            exited: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the data is plain
        // values, still usable, and the shim must keep serving its containers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Status, pid and exit.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        Snapshot {
            status: g.status,
            pid: g.pid,
            exit: g.exit,
        }
    }

    /// Host pid (0 if never started).
    pub fn pid(&self) -> i32 {
        self.lock().pid
    }

    /// Records the pid the runtime reported (after create/exec), status unchanged.
    pub fn set_pid(&self, pid: i32) {
        self.lock().pid = pid;
    }

    /// Attaches the stdio plumbing.
    pub fn set_io(&self, io: ProcessIo) {
        self.lock().io = Some(io);
    }

    /// Sets the status unless the process already exited; returns whether it was set.
    pub fn set_status(&self, status: Status) -> bool {
        let mut g = self.lock();
        if g.status == Status::Stopped {
            return false;
        }
        g.status = status;
        true
    }

    /// Records the exit (first one wins) and wakes waiters; returns whether this call
    /// recorded it.
    pub fn set_exited(&self, status: u32, at: SystemTime) -> bool {
        let mut g = self.lock();
        if g.exit.is_some() {
            return false;
        }
        g.exit = Some(Exit { status, at });
        g.status = Status::Stopped;
        self.exited.notify_all();
        true
    }

    /// Blocks until the process exited.
    pub fn wait(&self) -> Exit {
        let mut g = self.lock();
        loop {
            if let Some(e) = g.exit {
                return e;
            }
            g = self.exited.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `f` on the stdio plumbing, if any.
    pub fn with_io<T>(&self, f: impl FnOnce(&ProcessIo) -> T) -> Option<T> {
        self.lock().io.as_ref().map(f)
    }

    /// Waits (bounded) for output to be flushed, then drops the stdio plumbing.
    pub fn close_io(&self, flush: Duration) {
        let io = self.lock().io.take();
        if let Some(io) = io {
            io.wait_output(flush);
            drop(io);
        }
    }
}

/// Seconds and nanos since the epoch, for protobuf timestamps and the state file.
pub fn unix_parts(t: SystemTime) -> (i64, i32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ),
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_exit_wins_and_wakes_waiters() {
        let p = Arc::new(Process::new("", StdioPaths::default(), None));
        p.set_pid(42);
        assert!(p.set_status(Status::Running));
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait())
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.set_exited(3, SystemTime::now()));
        assert!(!p.set_exited(9, SystemTime::now()));
        let e = waiter.join().expect("waiter");
        assert_eq!(e.status, 3);
        assert_eq!(p.snapshot().status, Status::Stopped);
        assert!(
            !p.set_status(Status::Running),
            "a stopped process stays stopped"
        );
    }

    #[test]
    fn unix_parts_of_epoch() {
        assert_eq!(unix_parts(SystemTime::UNIX_EPOCH), (0, 0));
    }
}
