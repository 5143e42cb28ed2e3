//! Switching the root: pivot_root, or MS_MOVE + chroot with --no-pivot.

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MntFlags;
use nix::sys::stat::Mode;

use super::mountinfo;
use super::sys;
use super::{ErrnoContext, RootfsError};

/// pivot_root(".", ".") from inside the new root: the old root ends up stacked on "/" and is
/// reachable only as the cwd we get back through its fd, so it can be detached without any
/// directory in the rootfs to park it in (the LXC trick runc uses).
pub(crate) fn pivot_root(rootfs: &Path) -> Result<(), RootfsError> {
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root = nix::fcntl::open("/", dir_flags, Mode::empty()).ctx("open", "/")?;
    let new_root = nix::fcntl::open(rootfs, dir_flags, Mode::empty()).ctx("open", rootfs)?;
    nix::unistd::fchdir(new_root.as_fd()).ctx("fchdir", rootfs)?;
    nix::unistd::pivot_root(".", ".").ctx("pivot_root", rootfs)?;
    // The kernel leaves the cwd on the old root today, but does not promise it.
    nix::unistd::fchdir(old_root.as_fd()).ctx("fchdir", "old root")?;
    // rslave, not rprivate: the unmount must not reach the host, yet a private copy would keep
    // host mounts busy behind the host's back (runc found devicemapper tripping over that).
    sys::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .ctx("make old root rslave", "old root")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).ctx("unmount", "old root")?;
    nix::unistd::chdir("/").ctx("chdir", "/")
}

/// --no-pivot: move the rootfs mount onto / and chroot into it. The host's mounts stay in the
/// namespace, so first hide every full procfs and sysfs mount outside the rootfs: while one is
/// reachable the kernel lets the container mount a fresh, unmasked proc or sys.
pub(crate) fn ms_move_root(rootfs: &Path) -> Result<(), RootfsError> {
    let mounts = mountinfo::read_self()?;
    for m in mounts.iter().filter(|m| {
        m.root == Path::new("/")
            && (m.fs_type == "proc" || m.fs_type == "sysfs")
            && !mountinfo::is_path_prefix(rootfs, &m.mount_point)
    }) {
        let p = &m.mount_point;
        // Keep the unmount from propagating to the host.
        match sys::mount(None, p, None, libc::MS_SLAVE | libc::MS_REC, None) {
            Ok(()) => {}
            // A parent was already detached.
            Err(Errno::ENOENT) => continue,
            Err(errno) => return Err(RootfsError::sys("make rslave", p, errno)),
        }
        match nix::mount::umount2(p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Not allowed to unmount (locked in a user namespace): cover it instead.
            Err(Errno::EINVAL | Errno::EPERM) => {
                sys::mount(Some(Path::new("tmpfs")), p, Some("tmpfs"), 0, None)
                    .ctx("cover with tmpfs", p)?;
            }
            Err(errno) => return Err(RootfsError::sys("unmount", p, errno)),
        }
    }
    sys::mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None)
        .ctx("move rootfs onto /", rootfs)?;
    nix::unistd::chroot(".").ctx("chroot", rootfs)?;
    nix::unistd::chdir("/").ctx("chdir", "/")
}

/// Standard streams pointing at the host's /dev/null (same device numbers as the container's)
/// are re-pointed at the container's /dev/null, so nothing of the host's tree stays open.
pub(crate) fn reopen_dev_null() -> Result<(), RootfsError> {
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", "/dev/null")?;
    let null_rdev = nix::sys::stat::fstat(null.as_fd())
        .ctx("fstat", "/dev/null")?
        .st_rdev;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams: [(&str, std::os::fd::BorrowedFd<'_>); 3] = [
        ("stdin", stdin.as_fd()),
        ("stdout", stdout.as_fd()),
        ("stderr", stderr.as_fd()),
    ];
    for (i, (name, fd)) in streams.into_iter().enumerate() {
        let st = match nix::sys::stat::fstat(fd) {
            Ok(st) => st,
            // A closed stream has nothing to re-point.
            Err(Errno::EBADF) => continue,
            Err(errno) => return Err(RootfsError::sys("fstat", name, errno)),
        };
        if st.st_rdev != null_rdev {
            continue;
        }
        let dup = match i {
            0 => nix::unistd::dup2_stdin(null.as_fd()),
            1 => nix::unistd::dup2_stdout(null.as_fd()),
            _ => nix::unistd::dup2_stderr(null.as_fd()),
        };
        dup.ctx("dup2 /dev/null onto", name)?;
    }
    Ok(())
}
