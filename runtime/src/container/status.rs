//! The runtime-spec status of a container, derived from the kernel each time it is asked.

use std::fmt;

/// A container's status as `state` and `list` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The state dir exists but `create` has not finished.
    Creating,
    /// The init is alive and waits on the exec FIFO for `start`.
    Created,
    /// The init has exec'd the user process.
    Running,
    /// The cgroup is frozen.
    Paused,
    /// The init has exited (or is a zombie no one reaped yet).
    Stopped,
}

impl Status {
    /// The lowercase name the runtime spec and runc use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the container's cgroup is frozen (v1 freezer.state, v2 cgroup.freeze).
///
/// Read straight from cgroupfs: `state` and `list` are hot paths and need no cgroup manager.
pub fn cgroup_frozen(cgroup_path: &std::path::Path) -> bool {
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    let v1 = std::path::Path::new("/sys/fs/cgroup/freezer")
        .join(rel)
        .join("freezer.state");
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return s.trim() == "FROZEN";
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup")
        .join(rel)
        .join("cgroup.freeze");
    std::fs::read_to_string(v2).is_ok_and(|s| s.trim() == "1")
}
