//! Finding a process's cgroup directories (v1 per controller, or the v2 unified one) and
//! reading cgroup files, for stats and OOM events.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// True when /sys/fs/cgroup is a cgroup2 mount (unified mode).
pub fn is_unified() -> bool {
    nix::sys::statfs::statfs(CGROUP_ROOT)
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// A process's cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// Unified hierarchy: one directory.
    V2(PathBuf),
    /// Legacy hierarchies: a directory per controller name ("memory", "cpuacct", ...).
    V1(HashMap<String, PathBuf>),
}

/// Parses /proc/PID/cgroup text into (controllers, path) pairs.
fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            let ctrls = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((ctrls, path.to_string()))
        })
        .collect()
}

/// v1 mount points by controller, from mountinfo (`cgroup` mounts; the super options list
/// the controllers).
fn v1_mounts(mountinfo: &str) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        let Some(mnt) = pre.split_whitespace().nth(4) else {
            continue;
        };
        for o in opts.split(',') {
            let name = o.strip_prefix("name=").unwrap_or(o);
            out.entry(name.to_string())
                .or_insert_with(|| PathBuf::from(mnt));
        }
    }
    out
}

impl Cgroup {
    /// The cgroups of `pid`.
    pub fn of_pid(pid: i32) -> std::io::Result<Cgroup> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        if is_unified() {
            return Cgroup::v2_of(&text, Path::new(CGROUP_ROOT));
        }
        let mounts = v1_mounts(&fs::read_to_string("/proc/self/mountinfo")?);
        Ok(Cgroup::v1_of(&text, &mounts))
    }

    /// The unified cgroup named by /proc/PID/cgroup text (its `0::PATH` line), under `root`.
    fn v2_of(proc_cgroup: &str, root: &Path) -> std::io::Result<Cgroup> {
        let path = parse_proc_cgroup(proc_cgroup)
            .into_iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no cgroup v2 entry (0::PATH) in {proc_cgroup:?}"),
                )
            })?;
        Ok(Cgroup::V2(root.join(path.trim_start_matches('/'))))
    }

    /// The v1 cgroups named by /proc/PID/cgroup text, each under its controller's mount.
    fn v1_of(proc_cgroup: &str, mounts: &HashMap<String, PathBuf>) -> Cgroup {
        let mut dirs = HashMap::new();
        for (ctrls, path) in parse_proc_cgroup(proc_cgroup) {
            for c in ctrls {
                let name = c.strip_prefix("name=").unwrap_or(&c).to_string();
                if let Some(m) = mounts.get(&name) {
                    dirs.insert(name, m.join(path.trim_start_matches('/')));
                }
            }
        }
        Cgroup::V1(dirs)
    }

    /// The directory of a v1 controller (or the v2 directory for any name).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V2(p) => Some(p),
            Cgroup::V1(m) => m.get(controller).map(PathBuf::as_path),
        }
    }
}

/// Reads a file holding one number; "max" reads as u64::MAX; missing or bad reads as 0.
pub fn read_u64(dir: &Path, file: &str) -> u64 {
    let Ok(text) = fs::read_to_string(dir.join(file)) else {
        return 0;
    };
    let t = text.trim();
    if t == "max" {
        return u64::MAX;
    }
    t.parse().unwrap_or(0)
}

/// Reads a flat-keyed file ("key value" lines).
pub fn read_keyed(dir: &Path, file: &str) -> HashMap<String, u64> {
    fs::read_to_string(dir.join(file))
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let k = it.next()?;
                    let v = it.next()?.parse().ok()?;
                    Some((k.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_cgroup() {
        let e = parse_proc_cgroup("4:memory:/ns/c1\n9:name=systemd:/\n0::/ns/c1\n");
        assert_eq!(e[0], (vec!["memory".to_string()], "/ns/c1".to_string()));
        assert_eq!(e[2], (vec![], "/ns/c1".to_string()));
    }

    #[test]
    fn finds_v1_mounts() {
        let mi =
            "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
                  31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let m = v1_mounts(mi);
        assert_eq!(m["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(!m.contains_key("unified"));
    }

    #[test]
    fn v2_cgroup_is_the_unified_entry() {
        let root = Path::new("/sys/fs/cgroup");
        // Pure v2, and a hybrid host's text (v1 lines next to the unified one).
        for text in [
            "0::/ns/c1\n",
            "4:memory:/ns/c1\n1:name=systemd:/x\n0::/ns/c1\n",
        ] {
            assert_eq!(
                Cgroup::v2_of(text, root).expect("v2"),
                Cgroup::V2(PathBuf::from("/sys/fs/cgroup/ns/c1"))
            );
        }
        let err = Cgroup::v2_of("4:memory:/ns/c1\n", root).expect_err("no 0:: line");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            Cgroup::V2(PathBuf::from("/x")).dir("memory"),
            Some(Path::new("/x")),
            "every controller is the one directory"
        );
    }

    #[test]
    fn v1_cgroups_per_controller() {
        let mounts = v1_mounts(
            "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        let cg = Cgroup::v1_of("5:cpu,cpuacct:/ns/c1\n4:memory:/ns/c1\n0::/\n", &mounts);
        assert_eq!(
            cg.dir("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/ns/c1"))
        );
        assert_eq!(
            cg.dir("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/ns/c1"))
        );
        assert_eq!(cg.dir("pids"), None);
    }

    #[test]
    fn reads_numbers() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join("a"), "12\n").expect("w");
        fs::write(d.path().join("b"), "max\n").expect("w");
        fs::write(d.path().join("s"), "x 1\ny 2\n").expect("w");
        assert_eq!(read_u64(d.path(), "a"), 12);
        assert_eq!(read_u64(d.path(), "b"), u64::MAX);
        assert_eq!(read_u64(d.path(), "missing"), 0);
        assert_eq!(read_keyed(d.path(), "s")["y"], 2);
    }
}
