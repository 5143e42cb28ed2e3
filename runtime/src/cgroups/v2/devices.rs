//! `linux.resources.devices` on cgroup v2: the devices controller there is an eBPF program
//! of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup, which the kernel
//! runs on every open and mknod of a device node and which returns allow (1) or deny (0).
//! husk builds and installs it the way runc does (libcontainer/cgroups/devices):
//! - `emulator.rs`: the spec's rules, then runc's default allow list, replayed as the v1
//!   controller would take them, give a default verdict and exceptions to it;
//! - `program.rs`: runc's program for that, instruction for instruction;
//! - `bpf.rs`: bpf(2) itself;
//! - here: load it (license "Apache", as runc), list the filters already on the cgroup
//!   (BPF_PROG_QUERY), attach the new one with BPF_F_ALLOW_MULTI, then detach the old ones,
//!   so that there is no moment without a filter when the rules are replaced.
//!
//! Written by hand rather than with a crate, because none fits: libcgroups' own filter (its
//! `cgroupsv2_devices` feature) and libbpf-rs build libbpf, a C library, through
//! libbpf-sys; aya is pure Rust but loads programs compiled ahead of time from ELF objects
//! (it has no way to load instructions generated at run time) and attaches them with
//! bpf_link on new kernels, which detaches the filter when husk exits unless pinned in a
//! bpffs. The whole job is eight kinds of instruction and five bpf(2) commands.
//!
//! Like runc: an unprivileged husk (rootless, or root in a user namespace) cannot use
//! bpf(2), and then goes on without the filter instead of failing the container.

mod bpf;
mod emulator;
mod program;

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceCgroup;

use emulator::RuleError;

/// The program's license, as runc declares it (kernel MODULE_LICENSE format).
const LICENSE: &CStr = c"Apache";
/// The program's name in `bpftool prog` (at most 15 bytes).
const PROG_NAME: &str = "husk_devices";

/// Why the device filter could not be put in place.
#[derive(Debug, thiserror::Error)]
pub(super) enum DeviceFilterError {
    /// A rule cannot be expressed.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// The cgroup directory could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// The container's cgroup directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The kernel refused the program.
    #[error("loading the device filter ({insns} eBPF instructions) with BPF_PROG_LOAD: {source}{}",
        if log.is_empty() { String::new() } else { format!("; verifier: {log}") })]
    Load {
        /// Program length.
        insns: usize,
        /// What bpf(2) returned.
        source: io::Error,
        /// The verifier's log.
        log: String,
    },
    /// Listing, attaching or detaching failed.
    #[error("{op} (BPF_CGROUP_DEVICE) on {path}: {source}")]
    Bpf {
        /// The bpf(2) command and what it was for.
        op: &'static str,
        /// The container's cgroup directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl DeviceFilterError {
    fn is_permission_denied(&self) -> bool {
        let source = match self {
            DeviceFilterError::Load { source, .. } | DeviceFilterError::Bpf { source, .. } => {
                source
            }
            _ => return false,
        };
        matches!(
            source.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EACCES)
        )
    }
}

/// Replaces the device filter of the cgroup at `dir` with one enforcing `rules` (the spec's;
/// runc's default allow list is added after them).
pub(super) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceFilterError> {
    match install(dir, rules) {
        Err(e) if e.is_permission_denied() && unprivileged() => {
            // Debug, not warning, as runc: callers such as podman take stderr lines as errors.
            crate::logging::debug(&format!(
                "device rules not enforced: an unprivileged runtime cannot load eBPF device \
                 filters ({e})"
            ));
            Ok(())
        }
        other => other,
    }
}

fn install(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceFilterError> {
    let program = program::generate(&emulator::effective(rules)?);
    let cgroup = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|source| DeviceFilterError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    let bpf_err = |op| {
        move |source| DeviceFilterError::Bpf {
            op,
            path: dir.to_path_buf(),
            source,
        }
    };
    let old = bpf::query(cgroup.as_fd()).map_err(bpf_err("listing filters with BPF_PROG_QUERY"))?;
    let mut old_fds = Vec::with_capacity(old.len());
    for id in old {
        match bpf::prog_fd(id) {
            Ok(fd) => old_fds.push(fd),
            // A program an LSM hides from us (runc skips those: another filter can only
            // restrict further) or one detached meanwhile.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOENT)
                ) => {}
            Err(e) => {
                return Err(bpf_err(
                    "opening an attached filter with BPF_PROG_GET_FD_BY_ID",
                )(e))
            }
        }
    }
    let prog =
        bpf::load(&program.encode(), LICENSE, PROG_NAME).map_err(|e| DeviceFilterError::Load {
            insns: program.len(),
            source: e.source,
            log: e.log,
        })?;
    bpf::attach(cgroup.as_fd(), prog.as_fd()).map_err(bpf_err(
        "attaching the filter with BPF_PROG_ATTACH (BPF_F_ALLOW_MULTI)",
    ))?;
    for fd in old_fds {
        match bpf::detach(cgroup.as_fd(), fd.as_fd()) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                return Err(bpf_err("detaching the old filter with BPF_PROG_DETACH")(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Not root in the initial user namespace: bpf(2) is out of reach (runc: rootless or
/// RunningInUserNS).
fn unprivileged() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    // The initial user namespace maps every id onto itself.
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}
