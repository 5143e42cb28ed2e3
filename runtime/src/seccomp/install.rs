//! Loading a compiled filter into the calling process with seccomp(2).
//!
//! Not seccompiler's `apply_filter`: it always sets no_new_privs first and knows no flag but
//! TSYNC, while a runtime-spec process may keep no_new_privs off (then the kernel requires
//! CAP_SYS_ADMIN, which the init still has at that point) and the profile may ask for LOG,
//! SPEC_ALLOW or a notification listener.

use std::os::fd::{FromRawFd, OwnedFd};

use super::translate::FLAG_NEW_LISTENER;
use super::{Filter, SeccompError};

/// SECCOMP_SET_MODE_FILTER (linux/seccomp.h).
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Installs `filter` on the calling thread; returns the listener when the filter notifies.
pub fn load(filter: &Filter) -> Result<Option<OwnedFd>, SeccompError> {
    let len = u16::try_from(filter.program.len())
        .map_err(|_| SeccompError::TooLarge(filter.program.len()))?;
    let prog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter is #[repr(C)] with the kernel's layout (u16, u8, u8, u32),
        // the same as libc's.
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter.program`, alive for the call; the kernel copies the
    // program and keeps no pointer to it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            filter.flags as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        let source = std::io::Error::last_os_error();
        let hint = match source.raw_os_error() {
            Some(libc::EACCES) => {
                " (without process.noNewPrivileges the filter needs CAP_SYS_ADMIN in the \
                 container's user namespace)"
            }
            Some(libc::EINVAL) if filter.flags != 0 => {
                " (this kernel does not support one of linux.seccomp.flags, or the program)"
            }
            _ => "",
        };
        return Err(SeccompError::Install {
            flags: filter.flags,
            source,
            hint,
        });
    }
    if filter.flags & FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(r).map_err(|_| SeccompError::Install {
            flags: filter.flags,
            source: std::io::Error::from_raw_os_error(libc::EBADF),
            hint: " (the kernel returned no listener descriptor)",
        })?;
        // SAFETY: with NEW_LISTENER, seccomp(2) returns a new descriptor that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok(None)
}

/// Whether this kernel knows every flag in `flags`: seccomp(2) checks the flags before it reads
/// the program, so a NULL program gives EFAULT for known flags and EINVAL otherwise (the probe
/// libseccomp uses; nothing is installed either way).
pub fn kernel_knows_flags(flags: u64) -> bool {
    // SAFETY: a NULL program makes the kernel fail with EFAULT or EINVAL before installing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}
