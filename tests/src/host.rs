//! Looking at the host: its mount table, its cgroup hierarchies, its processes and /dev/null, so
//! tests can prove a runtime left nothing behind, and clean up when it did.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 4: the root of the mount within its filesystem.
    pub root: String,
    /// Field 5: where it is mounted, octal escapes decoded.
    pub mount_point: String,
    /// Field 6: per-mount options (rw, nosuid, relatime, ...).
    pub mount_opts: String,
    /// Optional fields (shared:N, master:N, ...).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options.
    pub super_opts: String,
}

/// Decodes the `\040`-style octal escapes mountinfo uses for space, tab, newline and backslash.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text, skipping lines it cannot read.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 4 {
                return None;
            }
            Some(MountEntry {
                root: unescape(fields[3]),
                mount_point: unescape(fields[4]),
                mount_opts: fields[5].to_string(),
                optional: fields[6..sep].iter().map(|s| s.to_string()).collect(),
                fstype: fields[sep + 1].to_string(),
                source: unescape(fields[sep + 2]),
                super_opts: fields[sep + 3].to_string(),
            })
        })
        .collect()
}

/// The host's (this process's) mount table.
pub fn host_mounts() -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Host mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    let dir = canonical(dir);
    host_mounts()
        .into_iter()
        .filter(|m| Path::new(&m.mount_point).starts_with(&dir))
        .collect()
}

/// Lazily unmounts every host mount at or below `dir`, deepest first, so that removing `dir`
/// afterwards can never descend into a bind mount of something else. Returns the mount points it
/// found (an empty list is what a correct runtime leaves).
pub fn detach_mounts_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..16 {
        let mut ms = mounts_under(dir);
        if ms.is_empty() {
            break;
        }
        ms.sort_by_key(|m| std::cmp::Reverse(m.mount_point.len()));
        for m in ms {
            let Ok(c) = std::ffi::CString::new(m.mount_point.clone()) else {
                continue;
            };
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            found.push(m.mount_point);
        }
    }
    found.sort();
    found.dedup();
    found
}

/// True when no host mount remains at or below `dir`, so it can be removed safely.
pub fn safe_to_remove(dir: &Path) -> bool {
    mounts_under(dir).is_empty()
}

/// Mount points of the host's cgroup hierarchies (v1 controllers and the v2/unified one).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = host_mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The directories that cgroup path `path` (like "/husk-test-1-2") has in the host's
/// hierarchies.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return Vec::new();
    }
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

fn subdirs_deepest_first(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                subdirs_deepest_first(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Pids listed in `cgroup.procs` of `dir` and its descendants.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut dirs = Vec::new();
    subdirs_deepest_first(dir, &mut dirs);
    dirs.iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Kills whatever is left in cgroup `path` and removes its directories from every hierarchy.
/// Only for the tests' own "/husk-test-..." paths. Returns the directories it had to remove.
pub fn remove_cgroup(path: &str) -> Vec<PathBuf> {
    if !path.trim_start_matches('/').starts_with("husk-test-") {
        return Vec::new();
    }
    let dirs = cgroup_dirs(path);
    for d in &dirs {
        for pid in cgroup_pids(d) {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for d in &dirs {
        let mut all = Vec::new();
        subdirs_deepest_first(d, &mut all);
        for sub in all {
            while fs::remove_dir(&sub).is_err() && sub.exists() && Instant::now() < deadline {
                sleep(Duration::from_millis(20));
            }
        }
    }
    dirs
}

/// Field 22 of /proc/PID/stat: the process's start time, used to tell a pid from its reuse.
pub fn proc_starttime(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The state letter of /proc/PID/stat (R, S, Z, ...), None when the pid is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(c) if c != 'Z' && c != 'X')
}

/// SIGKILLs `pid` if it is still the process that started at `starttime`.
pub fn kill_if_same(pid: i32, starttime: u64) {
    if pid > 0 && proc_starttime(pid) == Some(starttime) {
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Checks /dev/null is still a root:root 0666 character device 1:3.
pub fn check_dev_null() -> Result<(), String> {
    let md = fs::metadata("/dev/null").map_err(|e| format!("stat /dev/null: {e}"))?;
    let mode = md.permissions().mode() & 0o7777;
    let ok = md.file_type().is_char_device()
        && md.uid() == 0
        && md.gid() == 0
        && mode == 0o666
        && md.rdev() == libc::makedev(1, 3);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "/dev/null changed: char={} uid={} gid={} mode={mode:o} rdev={:#x}",
            md.file_type().is_char_device(),
            md.uid(),
            md.gid(),
            md.rdev()
        ))
    }
}

/// What a test's runtime left on the host: mounts under `dirs`, any of the cgroup `paths`, a
/// changed /dev/null. Empty when the host is as it was.
pub fn leftovers(dirs: &[&Path], cgroup_paths: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for d in dirs {
        for m in mounts_under(d) {
            v.push(format!(
                "mount left on the host: {} ({})",
                m.mount_point, m.fstype
            ));
        }
    }
    for p in cgroup_paths {
        for d in cgroup_dirs(p) {
            v.push(format!("cgroup left on the host: {}", d.display()));
        }
    }
    if let Err(e) = check_dev_null() {
        v.push(e);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    25 1 0:22 / /sys rw,nosuid shared:7 shared:8 - sysfs sysfs rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt two");
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].optional, vec!["master:1"]);
        assert_eq!(m[0].super_opts, "rw,errors=continue");
        assert_eq!(m[1].optional.len(), 2);
        assert_eq!(m[1].source, "sysfs");
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("tail\\04"), "tail\\04");
    }

    #[test]
    fn own_starttime() {
        let pid = std::process::id() as i32;
        assert!(proc_starttime(pid).is_some());
        assert!(alive(pid));
    }

    #[test]
    fn refuses_foreign_cgroups() {
        assert!(remove_cgroup("/system.slice").is_empty());
        assert!(cgroup_dirs("/../etc").is_empty());
    }
}
