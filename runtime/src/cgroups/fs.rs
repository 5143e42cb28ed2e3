//! File-level helpers shared by the v1 and v2 code: creating, joining, listing and removing
//! cgroup directories, and reading /proc/self/mountinfo for the hierarchies libcgroups does
//! not manage.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::CgroupError;

/// Removal retries this many times while the kernel still reports a cgroup busy.
const REMOVE_ATTEMPTS: u32 = 12;
/// Longest pause between removal attempts.
const REMOVE_MAX_DELAY: Duration = Duration::from_millis(100);

/// Builds an [`CgroupError::Io`] for `op` on `path`.
pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { op, path, source }
}

/// Writes `data` to an existing cgroup control file (no create, no truncate: cgroupfs).
pub(super) fn write_file(path: &Path, data: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, data.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_path_buf(),
            data: data.to_string(),
            source,
        })
}

/// Reads a cgroup control file, trimmed.
pub(super) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(io_err("reading", path))
}

/// `mount`/`rel`, component by component (rel is absolute and already cleaned).
pub(super) fn join(mount: &Path, rel: &Path) -> PathBuf {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    if rel.as_os_str().is_empty() {
        // Path::join("") would add a trailing slash to every message naming the root.
        return mount.to_path_buf();
    }
    mount.join(rel)
}

/// Creates `mount`/`rel` one level at a time, calling `before_child(parent)` before each level
/// is created and `after_create(parent, child)` after a level exists (whether we created it or
/// it was there). Used for v1 cpuset seeding and v2 subtree_control delegation.
pub(super) fn create_chain(
    mount: &Path,
    rel: &Path,
    mut before_child: impl FnMut(&Path),
    mut after_create: impl FnMut(&Path, &Path) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let mut current = mount.to_path_buf();
    for component in rel
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
    {
        let parent = current.clone();
        current.push(component);
        before_child(&parent);
        match fs::create_dir(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("creating cgroup", &current)(e)),
        }
        after_create(&parent, &current)?;
    }
    Ok(())
}

/// Moves `pid` into the cgroup at `dir`.
pub(super) fn attach(dir: &Path, pid: Pid) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| std::io::Write::write_all(&mut f, pid.as_raw().to_string().as_bytes()))
        .map_err(|source| CgroupError::Attach {
            pid: pid.as_raw(),
            dir: dir.to_path_buf(),
            source,
        })
}

/// Every pid in `dir` and its descendants; empty when `dir` does not exist.
pub(super) fn all_pids(dir: &Path) -> Result<Vec<Pid>, CgroupError> {
    let mut pids = Vec::new();
    collect_pids(dir, &mut pids)?;
    Ok(pids)
}

fn collect_pids(dir: &Path, pids: &mut Vec<Pid>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let content = match fs::read_to_string(&procs) {
        Ok(c) => c,
        // The cgroup vanished (never created, or removed while we walked): no processes.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => return Ok(()),
        Err(e) => return Err(io_err("reading", &procs)(e)),
    };
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid = line.parse::<i32>().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            value: line.to_string(),
        })?;
        pids.push(Pid::from_raw(pid));
    }
    for child in child_dirs(dir)? {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

/// Sub-cgroups of `dir`; empty when `dir` is gone.
fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Removes the cgroup `dir` with every sub-cgroup the container made in it; Ok if it is
/// already gone. A cgroup that still holds processes cannot be removed, so those are killed
/// (cgroup.kill where the kernel has it) and removal is retried with a short backoff, as runc
/// and libcgroups do. Callers thaw a frozen cgroup first: frozen v1 tasks cannot die.
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match rmdir_tree(dir) {
            Ok(()) => return Ok(()),
            Err((_, Errno::EBUSY)) if attempt < REMOVE_ATTEMPTS => {
                kill_all(dir);
                std::thread::sleep(delay);
                delay = (delay * 2).min(REMOVE_MAX_DELAY);
            }
            Err((path, errno)) => {
                let remaining = all_pids(dir).map(|p| p.len()).unwrap_or(0);
                return Err(CgroupError::Remove {
                    path,
                    errno,
                    remaining,
                });
            }
        }
    }
}

/// rmdir of `dir`'s sub-cgroups, deepest first, then `dir`; ENOENT counts as done.
fn rmdir_tree(dir: &Path) -> Result<(), (PathBuf, Errno)> {
    let children = child_dirs(dir).map_err(|_| (dir.to_path_buf(), Errno::EIO))?;
    for child in children {
        rmdir_tree(&child)?;
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err((
            dir.to_path_buf(),
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )),
    }
}

/// SIGKILLs everything in `dir` and below: cgroup.kill (v2, Linux 5.14+) does it atomically,
/// without racing forks; otherwise each listed pid is killed.
fn kill_all(dir: &Path) {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() && write_file(&kill_file, "1").is_ok() {
        return;
    }
    if let Ok(pids) = all_pids(dir) {
        for pid in pids {
            // ESRCH: it exited meanwhile, which is what we want.
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// One cgroup mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fs_type: String,
    /// Super-block options: controllers and `name=...` for v1.
    pub super_options: Vec<String>,
}

/// All cgroup and cgroup2 mounts of this mount namespace, in mountinfo order.
pub(super) fn cgroup_mounts() -> Result<Vec<CgroupMount>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let content = fs::read_to_string(path).map_err(io_err("reading", path))?;
    Ok(parse_mountinfo(&content))
}

fn parse_mountinfo(content: &str) -> Vec<CgroupMount> {
    content
        .lines()
        .filter_map(|line| {
            // id parent maj:min root mount-point options [optional...] - fstype source super
            let (pre, post) = line.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fs_type = post.next()?;
            if fs_type != "cgroup" && fs_type != "cgroup2" {
                return None;
            }
            let super_options = post.nth(1).unwrap_or("");
            Some(CgroupMount {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type: fs_type.to_string(),
                super_options: super_options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing() {
        let info = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw
";
        let mounts = parse_mountinfo(info);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(mounts[0].super_options, vec!["rw", "cpu"]);
        assert!(mounts[1].super_options.iter().any(|o| o == "name=systemd"));
        assert_eq!(mounts[2].fs_type, "cgroup2");
        assert_eq!(mounts[2].mount_point, Path::new("/sys/fs/cgroup/uni fied"));
    }

    #[test]
    fn join_strips_root() {
        assert_eq!(
            join(Path::new("/sys/fs/cgroup/memory"), Path::new("/a/b")),
            Path::new("/sys/fs/cgroup/memory/a/b")
        );
    }
}
