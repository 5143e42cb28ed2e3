//! `linux.cgroupsPath` and `linux.resources`: the container's cgroup, glued over libcgroups.
//!
//! A container's cgroup is one path (e.g. `/husk-ctr`) that husk creates in every mounted
//! hierarchy: on cgroup v2 that is one directory under /sys/fs/cgroup; on v1 it is one per
//! controller hierarchy plus `name=systemd` and, on a hybrid host, the cgroup2 hierarchy at
//! /sys/fs/cgroup/unified (what runc joins). The path alone is stored in state.json and
//! [`ContainerCgroup::new`] rebuilds everything from it, so every operation re-reads the
//! host's mounts instead of trusting state from another process.
//!
//! libcgroups applies resources, freezes and reads statistics; husk creates, joins, lists and
//! removes the directories itself. Why, and what husk adds on v1 and hybrid hosts, is in
//! `v1.rs`; the v2 side (and its eBPF device filter) in `v2.rs`.

mod fs;
mod path;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

/// Cgroup statistics as libcgroups reports them (serializable, for `events --stats`).
pub type Stats = libcgroups::stats::Stats;

/// Where every cgroup hierarchy is mounted on the hosts husk supports.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// An error from libcgroups, kept whole so its message (which names the file and value) shows.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong with a container's cgroup; each names the cgroup or file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// linux.cgroupsPath cannot be used.
    #[error("invalid cgroupsPath {value:?}: {reason}")]
    InvalidPath {
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// /sys/fs/cgroup could not be examined.
    #[error("cannot detect the cgroup setup at {path}: {errno}")]
    Detect {
        /// The path examined.
        path: PathBuf,
        /// What statfs returned.
        errno: Errno,
    },
    /// libcgroups could not list the v1 hierarchies.
    #[error("finding the cgroup v1 hierarchies: {source}")]
    Discover {
        /// libcgroups' error.
        source: BoxError,
    },
    /// A file-system operation on a cgroup file or directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`creating cgroup`, `reading`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing a cgroup control file failed.
    #[error("writing {data:?} to {path}: {source}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// What was written.
        data: String,
        /// The error.
        source: std::io::Error,
    },
    /// Moving a process into a cgroup failed.
    #[error("adding pid {pid} to cgroup {dir}: {source}")]
    Attach {
        /// The process.
        pid: i32,
        /// The cgroup directory.
        dir: PathBuf,
        /// The error (ESRCH: the process is gone).
        source: std::io::Error,
    },
    /// A cgroup file held something unexpected.
    #[error("unexpected value {value:?} in {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending value.
        value: String,
    },
    /// The container's cgroup does not exist (any more).
    #[error("cgroup {cgroup} does not exist")]
    NotFound {
        /// The container's cgroup path.
        cgroup: PathBuf,
    },
    /// The request needs something this host's cgroups do not have.
    #[error("cgroup {cgroup}: {what}")]
    Unsupported {
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// What is missing.
        what: String,
    },
    /// A v1 memory limit below what the container already uses and the kernel cannot reclaim.
    #[error(
        "cannot set memory limit of {limit} bytes on cgroup {cgroup}: its processes already use \
         {usage} bytes, which the kernel could not reclaim below the limit; set a higher limit"
    )]
    MemoryBelowUsage {
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// The requested limit.
        limit: i64,
        /// Current usage.
        usage: u64,
    },
    /// A hugetlb limit could not be applied on this host.
    #[error("cannot apply the hugetlb limit for {page_size} pages to cgroup {cgroup}: {reason}")]
    Hugetlb {
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// The page size asked for.
        page_size: String,
        /// Why.
        reason: String,
    },
    /// libcgroups failed; its message names the file and value.
    #[error("{op} cgroup {cgroup}: {source}")]
    Manager {
        /// What was being done.
        op: &'static str,
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// libcgroups' error.
        source: BoxError,
    },
    /// The v2 device filter (an eBPF program built from linux.resources.devices) failed.
    #[error("cgroup {cgroup}: device rules: {source}")]
    DeviceFilter {
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// What failed, naming the rule or the bpf(2) command.
        source: BoxError,
    },
    /// The cgroup a new container would use already has processes (runc's wording).
    #[error("container's cgroup is not empty: {count} process(es) found")]
    NotEmpty {
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// How many processes are in it.
        count: usize,
    },
    /// The cgroup a new container would use is frozen (runc's wording).
    #[error("container's cgroup unexpectedly frozen")]
    Frozen {
        /// The container's cgroup path.
        cgroup: PathBuf,
    },
    /// freezer.state did not reach the asked state in time.
    #[error("cgroup {cgroup}: freezer did not become {want} within 5s")]
    FreezeTimeout {
        /// The container's cgroup path.
        cgroup: PathBuf,
        /// FROZEN or THAWED.
        want: &'static str,
    },
    /// A cgroup directory could not be removed.
    #[error("removing cgroup {path}: {errno} ({remaining} process(es) still in it)")]
    Remove {
        /// The directory that stayed.
        path: PathBuf,
        /// What rmdir returned last.
        errno: Errno,
        /// Processes left in it.
        remaining: usize,
    },
}

/// The cgroup a container lives in, reconstructible from what state.json stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    path: PathBuf,
}

/// The host's cgroup layout, detected afresh for each operation.
enum Host {
    V1(v1::V1),
    V2(v2::V2),
}

fn host() -> Result<Host, CgroupError> {
    let root = Path::new(CGROUP_ROOT);
    let stat = statfs(root).map_err(|errno| CgroupError::Detect {
        path: root.to_path_buf(),
        errno,
    })?;
    if stat.filesystem_type() == CGROUP2_SUPER_MAGIC {
        Ok(Host::V2(v2::V2::new(root)))
    } else {
        // tmpfs with v1 hierarchies (and maybe a hybrid cgroup2 at unified/) below it.
        Ok(Host::V1(v1::V1::discover()?))
    }
}

impl ContainerCgroup {
    /// Resolves linux.cgroupsPath: None -> `/<id>` (runc's cgroupfs default; with `systemd`,
    /// `system.slice:husk:<id>`); a relative path is taken under the hierarchy root; `..`
    /// cannot climb out of it; `slice:prefix:name` is expanded to the path systemd gives that
    /// unit (`/system.slice/prefix-name.scope`) when `systemd` is set and refused otherwise.
    /// husk is built without libcgroups' systemd (D-Bus) driver, so under `--systemd-cgroup`
    /// it manages that same directory through the file system.
    pub fn new(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<Self, CgroupError> {
        Ok(ContainerCgroup {
            path: path::resolve(cgroups_path, id, systemd)?,
        })
    }

    /// The resolved absolute cgroup path; what goes into state.json.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the host uses the unified cgroup v2 hierarchy (false on v1 and hybrid hosts).
    pub fn is_v2() -> bool {
        statfs(CGROUP_ROOT).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
    }

    /// Every directory this cgroup occupies (one per hierarchy on v1), existing or not.
    pub fn dirs(&self) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(match host()? {
            Host::V1(h) => h.dirs(&self.path),
            Host::V2(h) => vec![h.dir(&self.path)],
        })
    }

    /// The directory of the hierarchy holding `controller` ("memory", "freezer", ...; on v2
    /// every controller gives the one directory), e.g. to watch memory events for `events`.
    pub fn controller_dir(&self, controller: &str) -> Result<Option<PathBuf>, CgroupError> {
        Ok(match host()? {
            Host::V1(h) => h.controller_dir(controller, &self.path),
            Host::V2(h) => Some(h.dir(&self.path)),
        })
    }

    /// Creates the cgroup directories without adding a process (e.g. for CLONE_INTO_CGROUP).
    pub fn create(&self) -> Result<(), CgroupError> {
        match host()? {
            Host::V1(h) => h.create(&self.path),
            Host::V2(h) => h.create(&self.path),
        }
    }

    /// Fails like runc's create when the cgroup already holds processes or is frozen.
    pub fn ensure_unused(&self) -> Result<(), CgroupError> {
        let count = self.pids()?.len();
        if count > 0 {
            return Err(CgroupError::NotEmpty {
                cgroup: self.path.clone(),
                count,
            });
        }
        if self.is_frozen()? {
            return Err(CgroupError::Frozen {
                cgroup: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Moves `pid` into the cgroup in every hierarchy, creating the directories as needed.
    pub fn add_task(&self, pid: Pid) -> Result<(), CgroupError> {
        match host()? {
            Host::V1(h) => h.add_task(&self.path, pid),
            Host::V2(h) => h.add_task(&self.path, pid),
        }
    }

    /// The files through which a single-threaded process joins this cgroup itself, by writing
    /// "0" (itself) to each: v1's `tasks` files. Moving the calling thread is the one move for
    /// which the kernel skips its global threadgroup lock, whose RCU grace period (4-16 ms on
    /// this VM) is most of what writing a pid to `cgroup.procs` costs. None on v2, where
    /// `cgroup.threads` only moves threads within a threaded subtree.
    pub fn self_join_files(&self) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(match host()? {
            Host::V1(h) => h.self_join_files(&self.path),
            Host::V2(_) => Vec::new(),
        })
    }

    /// Moves `pid` into the hierarchies `self_join_files` does not cover (all of them on v2,
    /// the cgroup2 one of a hybrid host); `create` made the directories.
    pub fn add_task_rest(&self, pid: Pid) -> Result<(), CgroupError> {
        match host()? {
            Host::V1(h) => h.add_task_rest(&self.path, pid),
            Host::V2(h) => h.add_task(&self.path, pid),
        }
    }

    /// Applies linux.resources (memory, cpu, cpuset, pids, blkio, hugetlb, devices, network,
    /// unified); creates the cgroup if needed. Also what `update` calls on a live container.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let resources = prepare(resources);
        match host()? {
            Host::V1(h) => h.apply(&self.path, &resources),
            Host::V2(h) => h.apply(&self.path, &resources),
        }
    }

    /// Freezes every process in the cgroup (`pause`).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup (`resume`).
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        match host()? {
            Host::V1(h) => h.set_frozen(&self.path, frozen),
            Host::V2(h) => h.set_frozen(&self.path, frozen),
        }
    }

    /// Whether the cgroup is frozen (the `paused` status); false if it does not exist.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match host()? {
            Host::V1(h) => h.is_frozen(&self.path),
            Host::V2(h) => h.is_frozen(&self.path),
        }
    }

    /// Every process in the cgroup and its sub-cgroups; empty if it does not exist.
    pub fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        match host()? {
            Host::V1(h) => h.pids(&self.path),
            Host::V2(h) => h.pids(&self.path),
        }
    }

    /// libcgroups' statistics (cpu, memory, pids, blkio, hugetlb) for `events --stats`.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match host()? {
            Host::V1(h) => h.stats(&self.path),
            Host::V2(h) => h.stats(&self.path),
        }
    }

    /// Removes the cgroup and any sub-cgroups in every hierarchy, killing leftover processes
    /// (runc/libcgroups do too); Ok if already gone. Parent directories are left, as runc
    /// leaves them: they may be shared with other containers (`/kubepods/...`).
    pub fn remove(&self) -> Result<(), CgroupError> {
        match host()? {
            Host::V1(h) => h.remove(&self.path),
            Host::V2(h) => h.remove(&self.path),
        }
    }
}

impl CgroupError {
    /// Whether the caller lacks the right to the hierarchy (EACCES/EPERM): what an unprivileged
    /// (rootless) user gets from a cgroup tree it was not delegated.
    pub fn is_permission_denied(&self) -> bool {
        let io = match self {
            CgroupError::Io { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Attach { source, .. } => source,
            _ => return false,
        };
        matches!(io.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
    }
}

/// Spec adjustments made before libcgroups sees the resources, on v1 and v2 alike.
fn prepare(resources: &LinuxResources) -> LinuxResources {
    let mut r = resources.clone();
    if let Some(mut memory) = *r.memory() {
        // runc ignores the deprecated kernel memory limits, saying so; libcgroups would write
        // them (kernels since 5.16 refuse or ignore memory.kmem.*).
        if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
            crate::logging::warn("Kernel memory settings are ignored and will be removed");
        }
        memory.set_kernel(None);
        memory.set_kernel_tcp(None);
        r.set_memory(Some(memory));
    }
    if let Some(devices) = r.devices_mut() {
        for rule in devices.iter_mut() {
            // An absent access would be written as "a *:* " (nothing); the spec's deny-all
            // entry means every access, as runc reads it.
            if rule.access().as_deref().is_none_or(str::is_empty) {
                rule.set_access(Some("rwm".to_string()));
            }
        }
    }
    r
}
