//! The host side's view of cgroup device filters, straight from bpf(2): which
//! BPF_CGROUP_DEVICE programs are attached to a cgroup (BPF_PROG_QUERY), and a deny-all
//! filter to plant on a cgroup before husk takes it over (BPF_PROG_LOAD + BPF_PROG_ATTACH).
//! Independent of husk's own code on purpose: the checks observe what the kernel holds.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// bpf(cmd, attr, size) for a #[repr(C)] attr.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live #[repr(C)] prefix of union bpf_attr for cmd, of the size given;
    // the pointers in it point at buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_dir(dir: &Path) -> Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("opening {}", dir.display()))
}

/// Ids of the device filters attached directly to the cgroup `dir`.
pub fn attached(dir: &Path) -> Result<Vec<u32>> {
    #[repr(C)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
    }
    let cgroup = open_dir(dir)?;
    let mut ids = vec![0u32; 64];
    let mut q = Query {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
    };
    bpf(BPF_PROG_QUERY, &mut q)
        .with_context(|| format!("BPF_PROG_QUERY (BPF_CGROUP_DEVICE) on {}", dir.display()))?;
    ids.truncate(q.prog_cnt as usize);
    Ok(ids)
}

/// Loads `r0 = 0; exit` (deny every device access) and attaches it to `dir` as a device
/// filter next to any others; returns the program's id. The program lives as long as it
/// is attached.
pub fn plant_deny_all(dir: &Path) -> Result<u32> {
    #[repr(C)]
    struct Load {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
    }
    #[repr(C)]
    struct Attach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
    }
    // mov32 r0, 0 ; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b4, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut load = Load {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
    };
    let fd = bpf(BPF_PROG_LOAD, &mut load).context("BPF_PROG_LOAD of a deny-all device filter")?;
    let fd = i32::try_from(fd).context("bpf(2) returned a huge descriptor")?;
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    let prog = unsafe { OwnedFd::from_raw_fd(fd) };
    let cgroup = open_dir(dir)?;
    let mut attach = Attach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attach)
        .with_context(|| format!("BPF_PROG_ATTACH of a deny-all filter to {}", dir.display()))?;
    prog_id(&prog)
}

/// The id of a loaded program (BPF_OBJ_GET_INFO_BY_FD; `id` follows `type` in bpf_prog_info).
fn prog_id(prog: &OwnedFd) -> Result<u32> {
    #[repr(C)]
    struct GetInfo {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = [0u32; 2];
    let mut attr = GetInfo {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
    if info[0] != BPF_PROG_TYPE_CGROUP_DEVICE {
        bail!(
            "the planted program has type {}, not CGROUP_DEVICE",
            info[0]
        );
    }
    Ok(info[1])
}
