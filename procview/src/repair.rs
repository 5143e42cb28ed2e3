//! `husk-procview repair`: after a server crash and restart, re-binds the new server's files over
//! the procview mounts of running containers that still point at the dead server.
//!
//! A container's procview files are bind mounts of the server's FUSE files; when the server dies
//! its connection is aborted and every read of those binds fails with ENOTCONN (an I/O error,
//! never a hang). A new server mounts a new connection, which the running containers cannot see.
//! Repair finds them without any registry: it walks every mount namespace of the host (one
//! process per namespace, from /proc), keeps the mounts whose source is this server's fsname and
//! whose files answer ENOTCONN (seen through /proc/PID/root), and for each one clones the new
//! server's file at the same path inside the filesystem (mountinfo's root field, e.g.
//! `/c/1234/proc/meminfo`) with open_tree(2) in the host namespace, enters the container's mount
//! namespace, detaches the dead bind and attaches the clone with move_mount(2) (a detached mount
//! may be attached in any namespace; the old mount(2) API refuses a source from another one).
//!
//! setns(2) into a mount namespace needs a single-threaded caller, so this runs in its own process
//! (the server starts `husk-procview repair` after it mounted), never in the server's threads.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::CloneFlags;

/// One procview bind mount in a namespace's mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMount {
    /// Where it is mounted, as the namespace's processes see it.
    pub mountpoint: String,
    /// The path of the bound file inside the procview filesystem.
    pub root: String,
}

/// What a repair did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Mount namespaces that had dead procview mounts.
    pub namespaces: usize,
    /// Mounts re-bound to the live server.
    pub repaired: usize,
    /// One line per mount that could not be repaired.
    pub failures: Vec<String>,
}

/// The procview mounts from server `fsname` among the lines of a mountinfo file.
pub fn view_mounts(mountinfo: &str, fsname: &str) -> Vec<ViewMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let source = unescape(fields.get(dash + 2)?);
            if !fstype.starts_with("fuse") || source != fsname {
                return None;
            }
            Some(ViewMount {
                mountpoint: unescape(fields.get(4)?),
                root: unescape(fields.get(3)?),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Re-binds `dir`'s files over every dead procview mount of server `fsname` in the host's other
/// mount namespaces. Must be called from a single-threaded process, with the server serving.
pub fn run(dir: &Path, fsname: &str) -> Summary {
    let mut summary = Summary::default();
    let own_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut seen = HashSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        summary.failures.push("read /proc".into());
        return summary;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if Some(&ns) == own_ns.as_ref() || !seen.insert(ns) {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        let dead: Vec<ViewMount> = view_mounts(&info, fsname)
            .into_iter()
            .filter(|m| is_dead(pid, &m.mountpoint))
            .collect();
        if dead.is_empty() {
            continue;
        }
        summary.namespaces += 1;
        match repair_namespace(pid, dir, &dead) {
            Ok(results) => {
                for (m, r) in dead.iter().zip(results) {
                    match r {
                        Ok(()) => summary.repaired += 1,
                        Err(e) => summary
                            .failures
                            .push(format!("pid {pid}: {}: {e}", m.mountpoint)),
                    }
                }
            }
            Err(e) => summary.failures.push(format!("pid {pid}: {e}")),
        }
    }
    summary
}

/// Whether the mount at `mountpoint` in `pid`'s namespace belongs to a dead FUSE connection.
fn is_dead(pid: u32, mountpoint: &str) -> bool {
    let path = format!("/proc/{pid}/root{mountpoint}");
    matches!(
        nix::sys::statfs::statfs(path.as_str()),
        Err(Errno::ENOTCONN)
    )
}

/// Clones the live files in the host namespace, then swaps them in inside `pid`'s namespace and
/// comes back. The outer error is about the namespace, the inner ones per mount.
fn repair_namespace(
    pid: u32,
    dir: &Path,
    dead: &[ViewMount],
) -> Result<Vec<Result<(), String>>, String> {
    let own = File::open("/proc/self/ns/mnt").map_err(|e| format!("open own mount ns: {e}"))?;
    let target_ns = File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| format!("open /proc/{pid}/ns/mnt: {e}"))?;
    // Cloned before entering: the new server's mount is only reachable from the host namespace.
    let trees: Vec<Result<OwnedFd, String>> = dead
        .iter()
        .map(|m| {
            let source = dir.join(m.root.trim_start_matches('/'));
            open_tree(&source).map_err(|e| format!("open_tree {}: {e}", source.display()))
        })
        .collect();
    nix::sched::setns(target_ns.as_fd(), CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("setns into /proc/{pid}/ns/mnt: {e}"))?;
    let results = dead
        .iter()
        .zip(trees)
        .map(|(m, tree)| {
            let tree = tree?;
            // The dead bind is detached first so the new one does not stack on it; if that is
            // refused, stacking on top still gives the container working files.
            let _ = nix::mount::umount2(m.mountpoint.as_str(), nix::mount::MntFlags::MNT_DETACH);
            move_mount(&tree, Path::new(&m.mountpoint))
                .map_err(|e| format!("move_mount onto {}: {e}", m.mountpoint))
        })
        .collect();
    // Without the way back the process would stay in the container's namespace: fatal to it,
    // but it is about to exit anyway, and the error says so.
    nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("setns back to the host mount ns: {e}"))?;
    Ok(results)
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached bind mount of `path`.
fn open_tree(path: &Path) -> Result<OwnedFd, Errno> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_tree with a valid NUL-terminated path; the returned fd is ours alone.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// move_mount(2) of the detached mount `tree` onto `target` (resolved in the current namespace).
fn move_mount(tree: &OwnedFd, target: &Path) -> Result<(), Errno> {
    let empty = CString::default();
    let c = CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid fds and NUL-terminated paths for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The fsname a server mounted at `dir` uses: it names the directory, so a repair only takes
/// over the mounts of the same server (tests run several servers at once).
pub fn fsname(dir: &Path) -> String {
    let dir: PathBuf = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("husk-procview:{}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_binds_of_one_server() {
        let info = "\
100 90 0:5 / /proc rw - proc proc rw
101 100 0:77 /c/42/proc/meminfo /proc/meminfo ro - fuse.procview husk-procview:/run/husk/procview ro
102 100 0:77 /proc/uptime /proc/up\\040time ro - fuse.procview husk-procview:/run/husk/procview ro
103 100 0:78 /c/42/proc/stat /proc/stat ro - fuse.procview husk-procview:/tmp/other ro
";
        let found = view_mounts(info, "husk-procview:/run/husk/procview");
        assert_eq!(
            found,
            vec![
                ViewMount {
                    mountpoint: "/proc/meminfo".into(),
                    root: "/c/42/proc/meminfo".into()
                },
                ViewMount {
                    mountpoint: "/proc/up time".into(),
                    root: "/proc/uptime".into()
                },
            ]
        );
        assert_eq!(
            fsname(Path::new("/run/husk/procview")),
            "husk-procview:/run/husk/procview"
        );
    }
}
