//! `tmpcopyup`: a tmpfs that starts with a copy of what the directory under it held.
//!
//! runc mounts the tmpfs on a scratch directory in the host's /tmp, copies, then moves the
//! mount into place. husk keeps an fd on the directory before covering it instead: the covered
//! contents stay readable through that fd, so no scratch mount point on the host is needed.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use super::mount::{mount_propagate, MountContext, MountEntry};
use super::paths::Resolved;
use super::{ErrnoContext, RootfsError};

/// Mounts the tmpfs over `dest` and copies the covered directory's contents into it.
pub(crate) fn mount_with_copy_up(
    ctx: &MountContext,
    e: &MountEntry,
    dest: &Resolved,
    data: &str,
) -> Result<(), RootfsError> {
    let covered = nix::fcntl::open(
        &dest.proc_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx("tmpcopyup: open", &e.destination)?;
    mount_propagate(ctx, e, dest, data)?;
    let fresh = ctx.root.resolve(&e.destination)?;
    let from = PathBuf::from(format!("/proc/self/fd/{}", covered.as_raw_fd()));
    copy_tree(&from, &fresh.proc_path()).map_err(|(path, err)| {
        let errno = Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO));
        let inner = path
            .strip_prefix(&from)
            .map(|rest| e.destination.join(rest))
            .unwrap_or(path);
        RootfsError::sys("tmpcopyup: copy", inner, errno)
    })
}

type CopyResult = Result<(), (PathBuf, io::Error)>;

/// Copies a directory's entries (files, dirs, symlinks, device nodes, fifos) with their modes
/// and owners. Symlinks are copied, never followed.
fn copy_tree(from: &Path, to: &Path) -> CopyResult {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| (p, e)
    };
    for entry in fs::read_dir(from).map_err(at(from))? {
        let entry = entry.map_err(at(from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src).map_err(at(&src))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err((src, e)),
            }
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(at(&src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(at(&src))?;
        } else if ft.is_file() {
            fs::copy(&src, &dst).map_err(at(&src))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            let perm = Mode::from_bits_truncate(meta.mode() & 0o7777);
            nix::sys::stat::mknod(&dst, kind, perm, meta.rdev())
                .map_err(|errno| (src.clone(), io::Error::from(errno)))?;
        } else {
            // Sockets are bound by their creator; a copy would be a dead name.
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid())).map_err(at(&src))?;
        // After the chown, which clears set-id bits.
        if !ft.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(at(&src))?;
        }
    }
    Ok(())
}
