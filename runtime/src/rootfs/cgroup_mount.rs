//! `mounts` of type `cgroup`: what the container sees at /sys/fs/cgroup.
//!
//! On a cgroup v2 host this is a cgroup2 mount. On a v1 (or hybrid) host runc builds the tree:
//! a tmpfs, then one mount per v1 hierarchy: without a cgroup namespace a bind of the
//! container's own cgroup directory (so it sees only itself), with one a fresh mount of that
//! hierarchy (the namespace already scopes it). Co-mounted controllers ("cpu,cpuacct") get a
//! symlink per controller. The hybrid host's cgroup2 ("unified") is left out, as runc does.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::mount::{self, MountContext, MountEntry, DEFAULT_MOUNT_FLAGS};
use super::options::MountOptions;
use super::{mountinfo, sys};
use super::{ErrnoContext, RootfsError};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";

/// Mounts a `cgroup` entry for whichever cgroup version the host runs.
pub(crate) fn mount_cgroup(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let st = nix::sys::statfs::statfs(CGROUP_ROOT).ctx("statfs", CGROUP_ROOT)?;
    if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        mount_v2(ctx, e)
    } else {
        mount_v1(ctx, e)
    }
}

fn mount_v2(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let dest = ctx.root.mkdir_all(&e.destination, 0o755)?;
    let mounted = sys::mount(
        Some(Path::new(&e.source)),
        &dest.proc_path(),
        Some("cgroup2"),
        e.options.flags,
        Some(&e.options.data),
    );
    match mounted {
        Ok(()) => Ok(()),
        // In a user namespace without a cgroup namespace the kernel refuses cgroup2 (runc
        // #2158); bind the host's hierarchy instead, as runc does. runc binds the container's
        // own cgroup when it has a cgroup namespace; the init cannot name that path from inside
        // its namespace, so the whole hierarchy is bound, as runc does when it lacks the path.
        Err(Errno::EPERM | Errno::EBUSY) => {
            let bind = MountEntry {
                device: "bind".to_string(),
                source: CGROUP_ROOT.to_string(),
                destination: e.destination.clone(),
                options: MountOptions {
                    flags: libc::MS_BIND | e.options.flags,
                    propagation: e.options.propagation.clone(),
                    ..Default::default()
                },
            };
            mount::mount_entry(ctx, &bind)
        }
        Err(errno) => Err(RootfsError::sys("mount cgroup2", &e.destination, errno)),
    }
}

fn mount_v1(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let hierarchies = v1_hierarchies()?;
    let tmpfs = MountEntry {
        device: "tmpfs".to_string(),
        source: "tmpfs".to_string(),
        destination: e.destination.clone(),
        options: MountOptions {
            flags: DEFAULT_MOUNT_FLAGS,
            data: "mode=755".to_string(),
            propagation: e.options.propagation.clone(),
            ..Default::default()
        },
    };
    mount::mount_entry(ctx, &tmpfs)?;

    let mut merged = Vec::new();
    for h in &hierarchies {
        let Some(base) = h.mount_point.file_name() else {
            continue;
        };
        let destination = e.destination.join(base);
        if base.to_string_lossy().contains(',') {
            merged.push(base.to_os_string());
        }
        if ctx.in_cgroup_ns {
            mount_hierarchy(ctx, e, base, &destination)?;
        } else {
            let Some(source) = &h.own_dir else {
                return Err(RootfsError::sys(
                    "find own cgroup for",
                    &h.mount_point,
                    Errno::ENOENT,
                ));
            };
            let bind = MountEntry {
                device: "bind".to_string(),
                source: source.to_string_lossy().into_owned(),
                destination,
                options: MountOptions {
                    flags: libc::MS_BIND | libc::MS_REC | e.options.flags,
                    propagation: e.options.propagation.clone(),
                    ..Default::default()
                },
            };
            mount::mount_entry(ctx, &bind)?;
        }
    }

    if !merged.is_empty() {
        let dir = ctx.root.resolve(&e.destination)?;
        for combined in &merged {
            for single in combined.to_string_lossy().split(',') {
                match nix::unistd::symlinkat(combined.as_os_str(), dir.fd(), single) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(errno) => {
                        return Err(RootfsError::sys(
                            "symlink",
                            e.destination.join(single),
                            errno,
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// A fresh mount of one v1 hierarchy, for a container with its own cgroup namespace.
fn mount_hierarchy(
    ctx: &MountContext,
    e: &MountEntry,
    base: &OsStr,
    destination: &Path,
) -> Result<(), RootfsError> {
    let dest = ctx.root.mkdir_all(destination, 0o755)?;
    let mut flags = DEFAULT_MOUNT_FLAGS;
    if e.options.flags & libc::MS_RDONLY != 0 {
        flags |= libc::MS_RDONLY;
    }
    let base = base.to_string_lossy();
    let (source, data) = if base == "systemd" {
        ("systemd".to_string(), "name=systemd".to_string())
    } else {
        ("cgroup".to_string(), base.into_owned())
    };
    sys::mount(
        Some(Path::new(&source)),
        &dest.proc_path(),
        Some("cgroup"),
        flags,
        Some(&data),
    )
    .ctx("mount cgroup", destination)
}

/// A v1 hierarchy as the host mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// Where the host mounts it, e.g. /sys/fs/cgroup/cpu.
    mount_point: PathBuf,
    /// The container's own directory in it (mount point + its path relative to the mount's
    /// root), None when that path is not under the mount's root.
    own_dir: Option<PathBuf>,
}

fn v1_hierarchies() -> Result<Vec<Hierarchy>, RootfsError> {
    let mounts = mountinfo::read_self()?;
    let own = std::fs::read_to_string(PROC_SELF_CGROUP)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        .ctx("read", PROC_SELF_CGROUP)?;
    Ok(hierarchies_from(&mounts, &parse_proc_cgroup(&own)))
}

/// /proc/self/cgroup as controller -> path ("name=systemd" keeps its prefix).
fn parse_proc_cgroup(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        for c in controllers.split(',').filter(|c| !c.is_empty()) {
            out.insert(c.to_string(), path.to_string());
        }
    }
    out
}

/// runc's GetCgroupMounts(all=false): the first mount of each hierarchy the process is in.
fn hierarchies_from(
    mounts: &[mountinfo::MountInfo],
    own: &HashMap<String, String>,
) -> Vec<Hierarchy> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for m in mounts.iter().filter(|m| m.fs_type == "cgroup") {
        let subsystems: Vec<&str> = m
            .super_options
            .split(',')
            .filter(|o| own.contains_key(*o))
            .collect();
        if subsystems.is_empty() || subsystems.iter().any(|s| seen.contains(s)) {
            continue;
        }
        seen.extend(subsystems.iter().copied());
        let own_dir = own
            .get(subsystems[0])
            .and_then(|dir| Path::new(dir).strip_prefix(&m.root).ok())
            .map(|rel| m.mount_point.join(rel));
        out.push(Hierarchy {
            mount_point: m.mount_point.clone(),
            own_dir,
        });
        if seen.len() >= own.len() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 /nested /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:29 / /mnt/again rw,relatime - cgroup cgroup rw,cpu,cpuacct
";

    const PROC_CGROUP: &str = "\
5:name=systemd:/c1
4:memory:/nested/c1
3:cpuset:/c1
2:cpu,cpuacct:/c1
0::/c1
";

    #[test]
    fn proc_cgroup_parsing() {
        let own = parse_proc_cgroup(PROC_CGROUP);
        assert_eq!(own.get("cpu").map(String::as_str), Some("/c1"));
        assert_eq!(own.get("cpuacct").map(String::as_str), Some("/c1"));
        assert_eq!(own.get("name=systemd").map(String::as_str), Some("/c1"));
        assert_eq!(own.get("memory").map(String::as_str), Some("/nested/c1"));
    }

    #[test]
    fn one_bind_per_hierarchy() {
        let own = parse_proc_cgroup(PROC_CGROUP);
        let h = hierarchies_from(&mountinfo::parse(MOUNTINFO), &own);
        let got: Vec<(String, Option<String>)> = h
            .iter()
            .map(|h| {
                (
                    h.mount_point.to_string_lossy().into_owned(),
                    h.own_dir.as_ref().map(|d| d.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let want = [
            (
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpu,cpuacct/c1",
            ),
            ("/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpuset/c1"),
            ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/c1"),
            ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/c1"),
        ];
        let want: Vec<(String, Option<String>)> = want
            .iter()
            .map(|(m, d)| (m.to_string(), Some(d.to_string())))
            .collect();
        assert_eq!(got, want);
    }
}
