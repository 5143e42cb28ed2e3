//! Where the host's files and cgroup hierarchies are, and which cgroup a reader is in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    /// The v1 controllers (and `name=` options) of the hierarchy; empty for v2.
    pub controllers: Vec<String>,
    /// The unified (v2) hierarchy.
    pub unified: bool,
    /// Where it is mounted.
    pub path: PathBuf,
    /// The cgroup the mount's root is (field 4 of mountinfo), usually "/".
    pub root: PathBuf,
}

/// The host's /proc and its cgroup mounts; tests point these at fixtures.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The host's procfs, normally /proc.
    pub proc_root: PathBuf,
    /// The host's sysfs, normally /sys.
    pub sys_root: PathBuf,
    /// Every mounted cgroup hierarchy.
    pub mounts: Vec<CgroupMount>,
}

impl Sources {
    /// The real host: /proc, /sys and the cgroup mounts of /proc/self/mountinfo.
    pub fn host() -> std::io::Result<Sources> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(Sources {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            mounts: parse_mountinfo(&mountinfo),
        })
    }

    /// A file of the host's procfs, e.g. `read_proc("meminfo")`; empty when unreadable (the
    /// renderers then produce what they can rather than fail the read).
    pub fn read_proc(&self, rel: &str) -> String {
        std::fs::read_to_string(self.proc_root.join(rel)).unwrap_or_default()
    }

    /// The cgroup of `pid`, from /proc/PID/cgroup; None when the process is gone.
    pub fn cgroup_of(&self, pid: u32) -> Option<Cgroup> {
        let text = std::fs::read_to_string(self.proc_root.join(format!("{pid}/cgroup"))).ok()?;
        Some(self.resolve(&text))
    }

    /// Maps the lines of a /proc/PID/cgroup file to directories under the mounts.
    pub fn resolve(&self, proc_cgroup: &str) -> Cgroup {
        let mut cg = Cgroup::default();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                if let Some(m) = self.mounts.iter().find(|m| m.unified) {
                    cg.unified = Some(join_under(m, path));
                }
                continue;
            }
            for controller in controllers.split(',') {
                let found = self
                    .mounts
                    .iter()
                    .find(|m| !m.unified && m.controllers.iter().any(|c| c == controller));
                if let Some(m) = found {
                    cg.v1.insert(controller.to_string(), join_under(m, path));
                }
            }
        }
        cg
    }
}

/// The directory of cgroup `path` under mount `m`, whose root may itself be a sub-cgroup.
fn join_under(m: &CgroupMount, path: &str) -> PathBuf {
    let path = Path::new(path);
    let rel = path.strip_prefix(&m.root).unwrap_or(path);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    m.path.join(rel)
}

/// The cgroup mounts among the lines of a mountinfo file.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(mountpoint)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let fstype = fields.get(dash + 1).copied().unwrap_or_default();
        let superopts = fields.get(dash + 3).copied().unwrap_or_default();
        let (unified, controllers) = match fstype {
            "cgroup2" => (true, Vec::new()),
            "cgroup" => (
                false,
                superopts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro"))
                    .map(str::to_string)
                    .collect(),
            ),
            _ => continue,
        };
        out.push(CgroupMount {
            controllers,
            unified,
            path: PathBuf::from(mountpoint.replace("\\040", " ")),
            root: PathBuf::from(root),
        });
    }
    out
}

/// A reader's cgroup: one directory per v1 controller, and the v2 directory when there is one.
#[derive(Debug, Clone, Default)]
pub struct Cgroup {
    /// v1 controller name -> the cgroup's directory in that hierarchy.
    pub v1: HashMap<String, PathBuf>,
    /// The cgroup's directory in the unified hierarchy.
    pub unified: Option<PathBuf>,
}

impl Cgroup {
    /// The v1 directory of `controller`, if that controller is mounted as v1.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// A v1 controller's file, trimmed.
    pub fn v1_read(&self, controller: &str, file: &str) -> Option<String> {
        read_trimmed(&self.v1_dir(controller)?.join(file))
    }

    /// A file of the unified cgroup, trimmed.
    pub fn v2_read(&self, file: &str) -> Option<String> {
        read_trimmed(&self.unified.as_ref()?.join(file))
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// A number from a cgroup file; "max" (v2's "no limit") and garbage are None.
pub fn parse_u64(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat) as a map; other lines are skipped.
pub fn parse_kv(s: &str) -> HashMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 30 0:31 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw shared:17 - cgroup cgroup rw,cpu,cpuacct
37 30 0:33 / /sys/fs/cgroup/cpuset rw shared:18 - cgroup cgroup rw,cpuset
";

    #[test]
    fn v1_hybrid_cgroup_resolves_per_controller() {
        let src = Sources {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            mounts: parse_mountinfo(MOUNTINFO),
        };
        assert_eq!(src.mounts.len(), 4);
        let cg =
            src.resolve("4:memory:/husk-test-1\n3:cpu,cpuacct:/husk-test-1\n2:cpuset:/c\n0::/u\n");
        assert_eq!(
            cg.v1_dir("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/husk-test-1"))
        );
        assert_eq!(
            cg.v1_dir("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/husk-test-1"))
        );
        assert_eq!(
            cg.v1_dir("cpuset"),
            Some(Path::new("/sys/fs/cgroup/cpuset/c"))
        );
        assert_eq!(
            cg.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/u"))
        );
    }

    #[test]
    fn numbers_and_maps() {
        assert_eq!(parse_u64("max"), None);
        assert_eq!(parse_u64("42\n"), Some(42));
        let kv = parse_kv("cache 10\nrss 20\nbad x\n");
        assert_eq!(kv.get("rss"), Some(&20));
        assert_eq!(kv.len(), 2);
    }
}
