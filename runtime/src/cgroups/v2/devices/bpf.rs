//! The five bpf(2) commands the device filter needs, as raw syscalls: BPF_PROG_LOAD,
//! BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_QUERY and BPF_PROG_GET_FD_BY_ID. The attribute
//! structs are the leading members of the kernel's `union bpf_attr` for each command; the
//! kernel accepts a shorter attr and treats the rest as zero.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::program::BpfInsn;

// enum bpf_cmd
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
/// enum bpf_prog_type
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// enum bpf_attach_type
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs on one cgroup, all of which must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 2;
/// How many ids a cgroup's program list is first asked for (runc's figure: the kernel's
/// limit per attach type is 64).
const QUERY_FIRST: usize = 64;
/// Size of the verifier log asked for when a load fails.
const LOG_SIZE: usize = 64 * 1024;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(cmd, attr, sizeof attr).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live #[repr(C)] prefix of union bpf_attr for `cmd`, its size is the
    // one passed; any pointers inside it were set by the caller to buffers that outlive
    // this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor bpf(2) returned.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other(format!("bpf(2) returned {fd}")))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A failed BPF_PROG_LOAD: the errno and what the verifier said.
#[derive(Debug)]
pub(super) struct LoadError {
    /// What bpf(2) returned.
    pub(super) source: io::Error,
    /// The verifier's log (empty when it had nothing to say).
    pub(super) log: String,
}

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program named `name`.
pub(super) fn load(insns: &[BpfInsn], license: &CStr, name: &str) -> Result<OwnedFd, LoadError> {
    let err = |source| LoadError {
        source,
        log: String::new(),
    };
    let insn_cnt = u32::try_from(insns.len())
        .map_err(|_| err(io::Error::other("the program has over 2^32 instructions")))?;
    let mut prog_name = [0u8; 16];
    for (dst, src) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src;
    }
    let attr = || ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        ..Default::default()
    };
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, whose default (64 KiB) is
    // easily used up; runc lifts it the same way. It is husk's own limit: the container's
    // init is already forked.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; failure only means the load may fail.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    match bpf(BPF_PROG_LOAD, &mut attr()) {
        Ok(fd) => owned(fd).map_err(err),
        Err(source) => {
            // Load again with the verifier's log on, only to say why.
            let mut log = vec![0u8; LOG_SIZE];
            let mut with_log = ProgLoadAttr {
                log_level: 1,
                log_size: LOG_SIZE as u32,
                log_buf: log.as_mut_ptr() as u64,
                ..attr()
            };
            let _ = bpf(BPF_PROG_LOAD, &mut with_log).map(owned);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(LoadError {
                source,
                log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
            })
        }
    }
}

/// Ids of the BPF_CGROUP_DEVICE programs attached directly to `cgroup`.
pub(super) fn query(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; QUERY_FIRST];
    // The list can grow between calls; the kernel says how long it is with ENOSPC.
    for _ in 0..10 {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "the cgroup's program list kept growing while it was read",
    ))
}

/// A descriptor for the loaded program with this id.
pub(super) fn prog_fd(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

/// Attaches `prog` to `cgroup` as a device filter, alongside any already there.
pub(super) fn attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detaches the device filter `prog` from `cgroup`.
pub(super) fn detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// bpf_attr carries descriptors as u32; a valid descriptor is never negative.
fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_have_the_kernels_layout() {
        // Offsets of union bpf_attr's members for each command (include/uapi/linux/bpf.h).
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 64);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 20);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::size_of::<GetFdByIdAttr>(), 12);
    }
}
