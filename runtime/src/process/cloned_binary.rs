//! CVE-2019-5736: a container must never be able to write the husk binary on the host.
//!
//! Every process husk puts into a container is a fork of husk, so its /proc/PID/exe is the
//! husk binary until it execs. A container whose program is `/proc/self/exe` (or a
//! `#!/proc/self/exe` script, or anything the kernel resolves to it) would run husk's own
//! file inside the container and could then open /proc/PID/exe for writing. Checking the
//! target path cannot help (the kernel resolves interpreters itself), so before it forks into
//! a container husk makes sure it runs from a copy nobody can write:
//!
//! 1. a read-only bind mount of its binary that is detached from the start, so it has no path
//!    (`open_tree` + `mount_setattr`, Linux 5.12), made this process's executable in place by
//!    `exe_switch.rs` (needs CAP_SYS_RESOURCE): no exec, no scratch file, a few syscalls;
//! 2. failing that, the same detached bind (or, before Linux 5.12, a bind mount on a scratch
//!    file in --root, detached at once: what runc 1.1 and crun call bindfd), re-executed;
//! 3. where mounting is not allowed (rootless), a sealed memfd copy (runc 1.1's fallback),
//!    re-executed.
//!
//! A process already running from either is left alone, so the re-exec happens once. Every
//! child (the container's init, an exec'd process) inherits the protected executable.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why husk could not make itself safe to fork into a container.
#[derive(Debug, thiserror::Error)]
#[error("protect the husk binary (CVE-2019-5736): {op}: {source}")]
pub struct ClonedBinaryError {
    op: &'static str,
    source: io::Error,
}

fn err(op: &'static str) -> impl FnOnce(io::Error) -> ClonedBinaryError {
    move |source| ClonedBinaryError { op, source }
}

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Returns when this process runs from an unwritable copy of husk; otherwise re-executes
/// itself from one (and does not return). `scratch` is a directory husk owns (the --root).
pub fn ensure(scratch: &Path) -> Result<(), ClonedBinaryError> {
    let exe = File::open("/proc/self/exe").map_err(err("open /proc/self/exe"))?;
    if is_protected(&exe) {
        return Ok(());
    }
    if let Ok(ro) = detached_readonly(&exe) {
        if super::exe_switch::switch(&exe, &ro).is_ok() {
            return Ok(());
        }
        return reexec(ro.as_raw_fd());
    }
    let copy = match bind_readonly(&exe, scratch) {
        Ok(fd) => fd,
        Err(_) => sealed_memfd(&exe)?,
    };
    reexec(copy.as_raw_fd())
}

/// A read-only bind mount of the binary that never had a path (open_tree with
/// OPEN_TREE_CLONE makes it detached), opened for reading: what exec and mmap need.
fn detached_readonly(exe: &File) -> io::Result<File> {
    let flags = libc::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree on a descriptor we own with an empty path; returns a new descriptor.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            exe.as_raw_fd(),
            c"".as_ptr(),
            flags | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: tree is a fresh descriptor returned by the kernel.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on the detached mount we own, with a struct of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // The open_tree descriptor is O_PATH; reopening it through /proc gives a readable one on
    // the same (read-only, detached) mount.
    File::open(format!("/proc/self/fd/{}", tree.as_raw_fd()))
}

/// Whether the running binary lives on a read-only mount or is a sealed memfd.
fn is_protected(exe: &File) -> bool {
    // SAFETY: fstatvfs fills a struct we own from a descriptor we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(exe.as_raw_fd(), &mut st) } == 0 && st.f_flag & libc::ST_RDONLY != 0
    {
        return true;
    }
    // SAFETY: F_GET_SEALS only reads the descriptor's seals.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// A read-only bind mount of the binary, detached from every path, kept alive by an O_PATH fd.
fn bind_readonly(exe: &File, scratch: &Path) -> Result<OwnedFd, ClonedBinaryError> {
    std::fs::create_dir_all(scratch).map_err(err("create scratch dir"))?;
    let target = scratch.join(format!(".husk-exe-{}", std::process::id()));
    File::create(&target).map_err(err("create bind target"))?;
    let result = (|| {
        let src = format!("/proc/self/fd/{}", exe.as_raw_fd());
        let bind = nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(
            Some(src.as_str()),
            &target,
            None::<&str>,
            bind,
            None::<&str>,
        )
        .map_err(|e| err("bind-mount the binary")(e.into()))?;
        let ro = bind | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
        let remount = nix::mount::mount(None::<&str>, &target, None::<&str>, ro, None::<&str>);
        let opened = remount
            .map_err(|e| err("remount the binary read-only")(e.into()))
            .and_then(|()| {
                nix::fcntl::open(
                    &target,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| err("open the read-only binary")(e.into()))
            });
        // The fd keeps the mount alive; no path to it remains.
        let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        opened
    })();
    let _ = std::fs::remove_file(&target);
    result
}

/// A sealed, unwritable in-memory copy of the binary.
fn sealed_memfd(exe: &File) -> Result<OwnedFd, ClonedBinaryError> {
    let name = c"husk-cloned-binary";
    // SAFETY: memfd_create with a NUL-terminated name we own.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(err("memfd_create")(io::Error::last_os_error()));
    }
    // SAFETY: raw is a new descriptor we own.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut src = exe;
    let mut dst = File::from(memfd.try_clone().map_err(err("dup memfd"))?);
    io::copy(&mut src, &mut dst).map_err(err("copy the binary into a memfd"))?;
    // SAFETY: F_ADD_SEALS on our memfd.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(err("seal the memfd")(io::Error::last_os_error()));
    }
    Ok(memfd)
}

/// execveat(fd, "", argv, environ, AT_EMPTY_PATH) with this process's own arguments.
fn reexec(fd: RawFd) -> Result<(), ClonedBinaryError> {
    let to_c = |v: Vec<OsString>| -> Vec<CString> {
        v.into_iter()
            .filter_map(|s| CString::new(s.as_bytes()).ok())
            .collect()
    };
    let args = to_c(std::env::args_os().collect());
    let env = to_c(
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect(),
    );
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv/envp are NUL-terminated arrays of pointers into CStrings alive here.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(err("re-execute from the protected copy")(
        io::Error::last_os_error(),
    ))
}
