//! `linux.maskedPaths`: hide host information the namespaces do not cover (/proc/kcore, ...).

use std::path::Path;

use nix::errno::Errno;

use super::paths;
use super::sys;
use super::{ErrnoContext, RootfsError};

/// Covers a file with a bind of /dev/null and a directory with an empty read-only tmpfs; a
/// missing path is skipped (runc's maskPath). Runs after the root switch, so /dev/null is the
/// container's.
pub(crate) fn mask_path(path: &Path) -> Result<(), RootfsError> {
    let path = paths::clean(path);
    match sys::mount(
        Some(Path::new("/dev/null")),
        &path,
        None,
        libc::MS_BIND,
        None,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        // A file cannot be bound onto a directory.
        Err(Errno::ENOTDIR) => sys::mount(
            Some(Path::new("tmpfs")),
            &path,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
        .ctx("mask with tmpfs", &path),
        Err(errno) => Err(RootfsError::sys("mask with /dev/null", &path, errno)),
    }
}
