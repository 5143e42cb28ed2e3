//! Thin wrappers over the mount-related system calls nix does not cover the way runc uses them.

use std::path::Path;

use libc::c_ulong;
use nix::errno::Errno;
use nix::mount::MsFlags;

/// `MS_NOSYMFOLLOW` (Linux 5.10); not every libc version exports it.
pub(crate) const MS_NOSYMFOLLOW: c_ulong = 256;

/// Flags in the atime "enum": the kernel keeps exactly one of them.
pub(crate) const MNT_ATIME_ENUM_FLAGS: c_ulong =
    libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
/// Every atime-related flag.
pub(crate) const MNT_ATIME_FLAGS: c_ulong = MNT_ATIME_ENUM_FLAGS | libc::MS_NODIRATIME;
/// Flags the kernel locks (MNT_LOCK_*) on mounts inherited into a less privileged user namespace:
/// a bind remount there must repeat them or it fails with EPERM.
pub(crate) const MNT_LOCK_FLAGS: c_ulong =
    libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOSUID | MNT_ATIME_FLAGS;

/// mount(2) with raw flags; `data` of None passes NULL.
pub(crate) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: c_ulong,
    data: Option<&str>,
) -> Result<(), Errno> {
    nix::mount::mount(
        source,
        target,
        fstype,
        MsFlags::from_bits_retain(flags),
        data.filter(|d| !d.is_empty()),
    )
}

/// The MS_* flags of the mount `path` is on, as statfs(2) reports them.
pub(crate) fn statfs_mount_flags(path: &Path) -> Result<c_ulong, Errno> {
    let st = nix::sys::statfs::statfs(path)?;
    let st_flags = st.flags().bits();
    let mut flags = 0;
    // calculate_f_flags() in fs/statfs.c defines the ST_* to MNT_* correspondence.
    for (st_bit, ms_bit) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_MANDLOCK, libc::MS_MANDLOCK),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st_flags & st_bit == st_bit {
            flags |= ms_bit;
        }
    }
    // MS_STRICTATIME is not stored in mnt_flags, so statfs never shows it: a mount with none of
    // the other atime modes is a strictatime mount.
    if flags & MNT_ATIME_ENUM_FLAGS == 0 {
        flags |= libc::MS_STRICTATIME;
    }
    Ok(flags)
}

/// The `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MountAttr {
    /// MOUNT_ATTR_* to set.
    pub attr_set: u64,
    /// MOUNT_ATTR_* to clear.
    pub attr_clr: u64,
    /// Propagation type; unused here.
    pub propagation: u64,
    /// User namespace fd for MOUNT_ATTR_IDMAP; unused here.
    pub userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub(crate) const MOUNT_ATTR_ATIME: u64 = 0x0000_0070;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub(crate) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// mount_setattr(2) with AT_RECURSIVE on `path` (Linux 5.12), for the `r*` mount options.
pub(crate) fn mount_setattr_recursive(path: &Path, attr: &MountAttr) -> Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: cpath is a valid NUL-terminated string and attr points to a live, correctly laid
    // out mount_attr whose size is passed alongside; the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}
