//! `linux.readonlyPaths`, `root.readonly`, and the read-only remount of tmpfs and /dev mounts.
//! All of it runs after the root switch, so paths are plain paths in the container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libc::c_ulong;
use nix::errno::Errno;

use super::mount::MountEntry;
use super::paths;
use super::sys;
use super::{ErrnoContext, RootfsError};

/// How often a remount that reports EBUSY is tried, and how long to wait in between (runc).
const REMOUNT_TRIES: usize = 5;
const REMOUNT_PAUSE: Duration = Duration::from_millis(100);

/// tmpfs mounts and /dev were mounted writable so they could be filled; those whose options
/// said "ro" become read-only now.
pub(crate) fn remount_requested_readonly(entries: &[MountEntry]) -> Result<(), RootfsError> {
    for e in entries {
        if e.options.flags & libc::MS_RDONLY == 0 {
            continue;
        }
        if e.device == "tmpfs" || e.is_dev() {
            remount_readonly(&paths::clean(&e.destination), e.options.flags)?;
        }
    }
    Ok(())
}

/// MS_REMOUNT|MS_BIND only changes per-mount flags, which a user namespace may do as long as it
/// keeps the locked ones; `flags` are the mount's own, so those are kept.
fn remount_readonly(dest: &Path, flags: c_ulong) -> Result<(), RootfsError> {
    let flags = flags | libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    for _ in 0..REMOUNT_TRIES {
        match sys::mount(None, dest, None, flags, None) {
            Ok(()) => return Ok(()),
            Err(Errno::EBUSY) => std::thread::sleep(REMOUNT_PAUSE),
            Err(errno) => return Err(RootfsError::sys("remount read-only", dest, errno)),
        }
    }
    Err(RootfsError::sys("remount read-only", dest, Errno::EBUSY))
}

/// `root.readonly`: remount / read-only, keeping the flags the kernel locks if the plain
/// request is refused (the rootfs came from a more privileged namespace).
pub(crate) fn set_root_readonly() -> Result<(), RootfsError> {
    let root = Path::new("/");
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    let first = match sys::mount(None, root, None, flags, None) {
        Ok(()) => return Ok(()),
        Err(errno) => errno,
    };
    let current = sys::statfs_mount_flags(root).ctx("statfs", root)?;
    let retry = flags | (current & sys::MNT_LOCK_FLAGS);
    if retry == flags {
        return Err(RootfsError::sys("remount read-only", root, first));
    }
    sys::mount(None, root, None, retry, None).ctx("remount read-only", root)
}

/// Makes `path` a read-only bind of itself; a missing path is skipped. nosuid, nodev and noexec
/// of the mount it sits on are kept (dropping them would fail in a user namespace).
pub(crate) fn readonly_path(path: &Path) -> Result<(), RootfsError> {
    let path: PathBuf = paths::clean(path);
    match sys::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(RootfsError::sys("bind mount read-only path", &path, errno)),
    }
    let keep = sys::statfs_mount_flags(&path).ctx("statfs", &path)?
        & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    sys::mount(
        Some(&path),
        &path,
        None,
        keep | libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )
    .ctx("remount read-only", &path)
}
