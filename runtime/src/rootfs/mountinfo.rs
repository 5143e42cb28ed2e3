//! A small /proc/self/mountinfo reader: what runc gets from moby/sys/mountinfo.

use std::path::{Component, Path, PathBuf};

use super::{ErrnoContext, RootfsError};

/// One line of mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// Path of the mount's root within its filesystem.
    pub root: PathBuf,
    /// Where it is mounted, relative to the process's root.
    pub mount_point: PathBuf,
    /// Optional fields ("shared:N", "master:N", ...), space separated.
    pub optional: String,
    /// Filesystem type.
    pub fs_type: String,
    /// Per-superblock options ("rw,cpu" for a cgroup v1 hierarchy).
    pub super_options: String,
}

impl MountInfo {
    /// The mount is in a shared peer group.
    pub fn is_shared(&self) -> bool {
        self.optional.split(' ').any(|f| f.starts_with("shared:"))
    }
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Reads and parses /proc/self/mountinfo.
pub(crate) fn read_self() -> Result<Vec<MountInfo>, RootfsError> {
    let text = std::fs::read_to_string(MOUNTINFO)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        .ctx("read", MOUNTINFO)?;
    Ok(parse(&text))
}

/// Parses mountinfo text; malformed lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let _dev = fields.next()?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let _opts = fields.next()?;
    let optional = fields.collect::<Vec<_>>().join(" ");
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_string();
    let _source = after.next()?;
    let super_options = after.next().unwrap_or("").to_string();
    Some(MountInfo {
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        optional,
        fs_type,
        super_options,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount whose mount point is the longest path-prefix of `path` (runc's getParentMount).
pub(crate) fn closest_parent<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .filter(|m| is_path_prefix(&m.mount_point, path))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// `prefix` is `path` or one of its ancestors, compared component by component.
pub(crate) fn is_path_prefix(prefix: &Path, path: &Path) -> bool {
    let mut p = path.components().filter(|c| *c != Component::CurDir);
    for c in prefix.components().filter(|c| *c != Component::CurDir) {
        if p.next() != Some(c) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime master:7 - cgroup cgroup rw,name=systemd
50 22 0:50 /a\\040b /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 5);
        assert!(m[0].is_shared());
        assert!(!m[1].is_shared());
        assert_eq!(m[2].fs_type, "cgroup");
        assert_eq!(m[2].super_options, "rw,cpu");
        assert_eq!(m[3].optional, "master:7");
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[4].root, PathBuf::from("/a b"));
    }

    #[test]
    fn parent_is_longest_component_prefix() {
        let m = parse(SAMPLE);
        let p = closest_parent(&m, Path::new("/sys/fs/cgroup/cpuset")).map(|m| &m.mount_point);
        assert_eq!(p, Some(&PathBuf::from("/sys/fs/cgroup")));
        let p = closest_parent(&m, Path::new("/sys/fs/cgroup/cpu/x")).map(|m| &m.mount_point);
        assert_eq!(p, Some(&PathBuf::from("/sys/fs/cgroup/cpu")));
        let p = closest_parent(&m, Path::new("/tmp/x")).map(|m| &m.mount_point);
        assert_eq!(p, Some(&PathBuf::from("/")));
    }
}
