//! `process.capabilities`: the five capability sets of the container process, applied as runc's
//! `finalizeNamespace` does.
//!
//! The order is fixed by the kernel: the bounding set can only shrink while CAP_SETPCAP is still
//! effective, so [`drop_bounding`] runs before the uid change; [`apply`] runs after it (with
//! PR_SET_KEEPCAPS cleared) and sets inheritable, effective, permitted and then ambient.
//!
//! A missing `process.capabilities` applies the empty set everywhere, as runc 1.1 (Debian's, the
//! one husk is compared with) does: such a container runs with no capabilities at all. Capabilities
//! the running kernel does not know are left out with a warning, never an error, again as runc.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use caps::{CapSet, Capability as KernelCap, CapsHashSet};
use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Why a capability set could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// Neither /proc/sys/kernel/cap_last_cap nor PR_CAPBSET_READ told the highest capability.
    #[error("find the last capability the kernel supports: {0}")]
    LastCap(Errno),
    /// capget(2) on the current thread failed.
    #[error("read capabilities of the current process: {0}")]
    Read(String),
    /// PR_CAPBSET_DROP refused a capability.
    #[error("unable to apply bounding set: drop {cap}: {errno}")]
    BoundingDrop {
        /// The capability being dropped.
        cap: String,
        /// Why.
        errno: Errno,
    },
    /// capset(2) refused one of the effective, permitted or inheritable sets.
    #[error("can't apply capabilities: set {set} to [{caps}]: {reason}")]
    Set {
        /// Which set: "effective", "permitted" or "inheritable".
        set: &'static str,
        /// The capabilities asked for, space separated.
        caps: String,
        /// The kernel's answer, as the caps crate words it.
        reason: String,
    },
    /// PR_CAP_AMBIENT_CLEAR_ALL failed.
    #[error("can't apply capabilities: clear ambient set: {0}")]
    AmbientClear(String),
}

/// The capability sets of a config, as kernel capabilities the running kernel supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Capabilities kept in the bounding set.
    pub bounding: CapsHashSet,
    /// The effective set.
    pub effective: CapsHashSet,
    /// The inheritable set.
    pub inheritable: CapsHashSet,
    /// The permitted set.
    pub permitted: CapsHashSet,
    /// The ambient set.
    pub ambient: CapsHashSet,
}

/// Set once the unknown-capability warning has been printed, so it appears once per process.
static WARNED_UNKNOWN: AtomicBool = AtomicBool::new(false);

/// The highest capability number the running kernel knows (CAP_LAST_CAP).
pub fn last_cap() -> Result<u8, CapsError> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap") {
        if let Ok(n) = text.trim().parse::<u8>() {
            return Ok(n);
        }
    }
    // No procfs (or a masked one): PR_CAPBSET_READ answers EINVAL past the last capability.
    let mut last = None;
    for idx in 0..64u8 {
        match capbset_read(idx) {
            Ok(_) => last = Some(idx),
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(CapsError::LastCap(e)),
        }
    }
    last.ok_or(CapsError::LastCap(Errno::EINVAL))
}

/// The kernel capability for a runtime-spec capability, None when the caps crate lacks it.
pub fn to_kernel(cap: Capability) -> Option<KernelCap> {
    // oci-spec displays its variants as the kernel names without the CAP_ prefix.
    format!("CAP_{cap}").parse().ok()
}

/// Translates the five sets of a config, leaving out what a kernel with `last_cap` cannot hold.
///
/// Returns the sets and the sorted names of the capabilities left out. `None` yields five empty
/// sets, which is what runc 1.1 applies when `process.capabilities` is absent.
pub fn resolve(caps: Option<&LinuxCapabilities>, last_cap: u8) -> (CapSets, Vec<String>) {
    let mut unknown = Vec::new();
    let mut convert = |set: Option<&Capabilities>| -> CapsHashSet {
        let mut out = CapsHashSet::new();
        for cap in set.into_iter().flatten() {
            match to_kernel(*cap) {
                Some(k) if k.index() <= last_cap => {
                    out.insert(k);
                }
                _ => unknown.push(format!("CAP_{cap}")),
            }
        }
        out
    };
    let sets = match caps {
        None => CapSets::default(),
        Some(c) => CapSets {
            bounding: convert(c.bounding().as_ref()),
            effective: convert(c.effective().as_ref()),
            inheritable: convert(c.inheritable().as_ref()),
            permitted: convert(c.permitted().as_ref()),
            ambient: convert(c.ambient().as_ref()),
        },
    };
    unknown.sort();
    unknown.dedup();
    (sets, unknown)
}

/// Drops from the bounding set every capability not in `caps.bounding`.
///
/// Must run before the uid change, while CAP_SETPCAP is still effective. Without CAP_SETPCAP the
/// bounding set is left alone, as runc (gocapability's Apply) does.
pub fn drop_bounding(caps: Option<&LinuxCapabilities>) -> Result<(), CapsError> {
    let last = last_cap()?;
    let (sets, unknown) = resolve(caps, last);
    warn_unknown(&unknown);
    let has_setpcap = caps::has_cap(None, CapSet::Effective, KernelCap::CAP_SETPCAP)
        .map_err(|e| CapsError::Read(e.to_string()))?;
    if !has_setpcap {
        return Ok(());
    }
    let keep: HashSet<u8> = sets.bounding.iter().map(|c| c.index()).collect();
    // Walk every number up to the kernel's last capability, not only those the caps crate names,
    // so a kernel newer than the crate cannot leave a capability in the container's bounding set.
    for idx in 0..=last {
        if keep.contains(&idx) {
            continue;
        }
        match capbset_drop(idx) {
            // EINVAL: the kernel does not have this capability, so there is nothing to drop.
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(errno) => {
                return Err(CapsError::BoundingDrop {
                    cap: cap_name(idx),
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// Sets the inheritable, effective, permitted and ambient sets; run after the uid change.
///
/// An ambient capability the kernel refuses (not in both permitted and inheritable) is skipped,
/// not an error, as in runc.
pub fn apply(caps: Option<&LinuxCapabilities>) -> Result<(), CapsError> {
    let last = last_cap()?;
    let (sets, unknown) = resolve(caps, last);
    warn_unknown(&unknown);
    // runc makes one capset(2) call for the three sets. The caps crate sets one at a time; this
    // order makes each call pass or fail exactly as that single call would: inheritable first,
    // while the old effective set (and its CAP_SETPCAP) still decides how far it may grow, then
    // effective (within the old permitted set), then permitted (which must still hold effective).
    set_base(CapSet::Inheritable, "inheritable", &sets.inheritable)?;
    set_base(CapSet::Effective, "effective", &sets.effective)?;
    set_base(CapSet::Permitted, "permitted", &sets.permitted)?;
    apply_ambient(&sets.ambient)
}

/// Replaces one of the three capset(2) sets of the current thread.
fn set_base(set: CapSet, name: &'static str, value: &CapsHashSet) -> Result<(), CapsError> {
    caps::set(None, set, value).map_err(|e| CapsError::Set {
        set: name,
        caps: names(value),
        reason: e.to_string(),
    })
}

/// Clears the ambient set, then raises each wanted capability, logging each refusal.
fn apply_ambient(ambient: &CapsHashSet) -> Result<(), CapsError> {
    // Kernels before 4.3 have no ambient set; runc ignores the EINVAL they answer.
    if caps::runtime::ambient_set_supported().is_err() {
        return Ok(());
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| CapsError::AmbientClear(e.to_string()))?;
    for cap in sorted(ambient) {
        // runc 1.1 ignores these refusals silently and later runc only logs them. runc's own
        // default spec asks for ambient capabilities without inheritable ones, so every such
        // container gets them: a debug line, not a warning on the container's stderr.
        if let Err(errno) = ambient_raise(cap.index()) {
            crate::logging::debug(&format!(
                "can't raise ambient capability {cap}: {}",
                go_errno_text(errno)
            ));
        }
    }
    Ok(())
}

/// Prints runc's warning about capabilities the kernel does not know, once per process.
fn warn_unknown(unknown: &[String]) {
    if unknown.is_empty() || WARNED_UNKNOWN.swap(true, Ordering::Relaxed) {
        return;
    }
    crate::logging::warn(&format!(
        "ignoring unknown or unavailable capabilities: [{}]",
        unknown.join(" ")
    ));
}

/// The kernel name of capability number `idx`, or `CAP_<n>` for one the caps crate lacks.
fn cap_name(idx: u8) -> String {
    caps::all()
        .into_iter()
        .find(|c| c.index() == idx)
        .map_or_else(|| format!("CAP_{idx}"), |c| c.to_string())
}

/// The capabilities of a set in kernel order.
fn sorted(set: &CapsHashSet) -> Vec<KernelCap> {
    let mut v: Vec<KernelCap> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// The names of a set in kernel order, space separated.
fn names(set: &CapsHashSet) -> String {
    sorted(set)
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An errno as Go prints it ("operation not permitted"), the text runc's warnings carry.
fn go_errno_text(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whether capability `idx` is in the bounding set (PR_CAPBSET_READ).
fn capbset_read(idx: u8) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes a capability number by value and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(idx), 0, 0, 0) };
    Errno::result(r).map(|v| v == 1)
}

/// Removes capability `idx` from the bounding set (PR_CAPBSET_DROP).
fn capbset_drop(idx: u8) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number by value and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(idx), 0, 0, 0) };
    Errno::result(r).map(|_| ())
}

/// Raises capability `idx` in the ambient set, keeping the errno for runc's warning text.
fn ambient_raise(idx: u8) -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number by value and touches no memory of
    // ours.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            libc::c_ulong::from(idx),
            0,
            0,
        )
    };
    Errno::result(r).map(|_| ())
}

/// Runs a closure in a forked child so tests can change process attributes without touching
/// the test process itself.
#[cfg(test)]
pub(crate) mod forked {
    use std::io::{Read, Write};
    use std::panic::AssertUnwindSafe;

    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    /// Whether the tests run as root (the syscall tests need it and are skipped otherwise).
    pub(crate) fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Runs `f` in a forked child; its `Err` text (or a panic) comes back as the `Err` here.
    pub(crate) fn run(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: the child runs only `f` and leaves with _exit; glibc keeps malloc usable in
        // the child of a multi-threaded parent, and `f` takes no lock other test threads hold.
        match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => {
                drop(r);
                // SAFETY: alarm(2) only arms a timer: a child stuck on anything dies in 30s
                // instead of hanging the test run.
                unsafe { libc::alarm(30) };
                let (code, msg) = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(Ok(())) => (0, String::new()),
                    Ok(Err(m)) => (1, m),
                    Err(_) => (2, "child panicked".to_string()),
                };
                let mut pipe = std::fs::File::from(w);
                let _ = pipe.write_all(msg.as_bytes());
                drop(pipe);
                // SAFETY: _exit ends the child without running the test harness's exit code or
                // destructors that belong to the parent.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(w);
                let mut msg = String::new();
                let _ = std::fs::File::from(r).read_to_string(&mut msg);
                match waitpid(child, None).map_err(|e| format!("waitpid: {e}"))? {
                    WaitStatus::Exited(_, 0) => Ok(()),
                    WaitStatus::Exited(_, code) => Err(format!("child exited {code}: {msg}")),
                    other => Err(format!("child ended {other:?}: {msg}")),
                }
            }
        }
    }

    /// The value of a `Key:\tvalue` line of /proc/self/status.
    pub(crate) fn status_field(key: &str) -> Result<String, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| format!("no {key} in /proc/self/status"))
    }
}

#[cfg(test)]
mod tests {
    use super::forked::{is_root, run, status_field};
    use super::*;
    use oci_spec::runtime::LinuxCapabilitiesBuilder;

    fn set(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    fn small() -> LinuxCapabilities {
        LinuxCapabilitiesBuilder::default()
            .bounding(set(&[
                Capability::Chown,
                Capability::Kill,
                Capability::NetBindService,
            ]))
            .effective(set(&[Capability::Chown, Capability::Kill]))
            .permitted(set(&[
                Capability::Chown,
                Capability::Kill,
                Capability::NetBindService,
            ]))
            .inheritable(set(&[Capability::Kill, Capability::NetBindService]))
            .ambient(set(&[Capability::Kill]))
            .build()
            .expect("valid capabilities")
    }

    /// Checks the five Cap* lines of /proc/self/status against bit masks.
    fn expect_status(bnd: u64, eff: u64, prm: u64, inh: u64, amb: u64) -> Result<(), String> {
        for (key, want) in [
            ("CapBnd", bnd),
            ("CapEff", eff),
            ("CapPrm", prm),
            ("CapInh", inh),
            ("CapAmb", amb),
        ] {
            let got = status_field(key)?;
            let got = u64::from_str_radix(&got, 16).map_err(|e| format!("{key} {got}: {e}"))?;
            if got != want {
                return Err(format!("{key} is {got:#x}, want {want:#x}"));
            }
        }
        Ok(())
    }

    const CHOWN: u64 = 1 << 0;
    const KILL: u64 = 1 << 5;
    const NET_BIND_SERVICE: u64 = 1 << 10;

    #[test]
    fn every_spec_capability_maps_to_a_kernel_one() {
        for name in caps::all() {
            let spec: Capability =
                serde_json::from_value(serde_json::Value::String(name.to_string()))
                    .expect("oci-spec knows the name");
            assert_eq!(to_kernel(spec), Some(name), "{name}");
        }
    }

    #[test]
    fn resolve_leaves_out_what_the_kernel_lacks() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(set(&[Capability::Chown, Capability::CheckpointRestore]))
            .effective(set(&[Capability::Bpf]))
            .permitted(Capabilities::new())
            .build()
            .expect("valid");
        // CAP_BPF is 39 and CAP_CHECKPOINT_RESTORE 40: a kernel whose last cap is 38 has neither.
        let (sets, unknown) = resolve(Some(&caps), 38);
        assert_eq!(sets.bounding, [KernelCap::CAP_CHOWN].into_iter().collect());
        assert!(sets.effective.is_empty());
        assert!(sets.permitted.is_empty());
        assert_eq!(unknown, vec!["CAP_BPF", "CAP_CHECKPOINT_RESTORE"]);
        let (sets, unknown) = resolve(Some(&caps), 40);
        assert_eq!(sets.bounding.len(), 2);
        assert!(unknown.is_empty());
    }

    #[test]
    fn absent_capabilities_mean_empty_sets() {
        let (sets, unknown) = resolve(None, 40);
        assert_eq!(sets, CapSets::default());
        assert!(unknown.is_empty());
    }

    #[test]
    fn last_cap_matches_procfs() {
        let last = last_cap().expect("last cap");
        assert!(last >= 36, "kernel last cap {last}");
        let mut probed = 0;
        while capbset_read(probed + 1).is_ok() {
            probed += 1;
        }
        assert_eq!(last, probed);
    }

    #[test]
    fn errno_text_is_go_shaped() {
        assert_eq!(go_errno_text(Errno::EPERM), "operation not permitted");
        assert_eq!(cap_name(0), "CAP_CHOWN");
        assert_eq!(cap_name(63), "CAP_63");
    }

    #[test]
    fn small_set_as_root() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        run(|| {
            let caps = small();
            drop_bounding(Some(&caps)).map_err(|e| e.to_string())?;
            apply(Some(&caps)).map_err(|e| e.to_string())?;
            expect_status(
                CHOWN | KILL | NET_BIND_SERVICE,
                CHOWN | KILL,
                CHOWN | KILL | NET_BIND_SERVICE,
                KILL | NET_BIND_SERVICE,
                KILL,
            )
        })
        .expect("capabilities applied in the child");
    }

    #[test]
    fn small_set_across_a_uid_change() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        run(|| {
            let caps = small();
            drop_bounding(Some(&caps)).map_err(|e| e.to_string())?;
            // What user::apply does around the switch: keep the permitted set across setresuid.
            nix::sys::prctl::set_keepcaps(true).map_err(|e| e.to_string())?;
            let id = nix::unistd::Uid::from_raw(1000);
            let gid = nix::unistd::Gid::from_raw(1000);
            nix::unistd::setresgid(gid, gid, gid).map_err(|e| e.to_string())?;
            nix::unistd::setresuid(id, id, id).map_err(|e| e.to_string())?;
            nix::sys::prctl::set_keepcaps(false).map_err(|e| e.to_string())?;
            apply(Some(&caps)).map_err(|e| e.to_string())?;
            expect_status(
                CHOWN | KILL | NET_BIND_SERVICE,
                CHOWN | KILL,
                CHOWN | KILL | NET_BIND_SERVICE,
                KILL | NET_BIND_SERVICE,
                KILL,
            )
        })
        .expect("capabilities applied in the child");
    }

    #[test]
    fn runc_default_spec_as_root() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // `runc spec` (1.1) asks for ambient capabilities but no inheritable ones; the kernel
        // refuses the ambient raises. Debian's runc 1.1.5 shows exactly these lines.
        let caps: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]}"#,
        )
        .expect("runc's default capabilities parse");
        run(|| {
            drop_bounding(Some(&caps)).map_err(|e| e.to_string())?;
            apply(Some(&caps)).map_err(|e| e.to_string())?;
            expect_status(0x2000_0420, 0x2000_0420, 0x2000_0420, 0, 0)
        })
        .expect("runc's default set applied in the child");
    }

    #[test]
    fn absent_capabilities_drop_everything() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        run(|| {
            drop_bounding(None).map_err(|e| e.to_string())?;
            apply(None).map_err(|e| e.to_string())?;
            expect_status(0, 0, 0, 0, 0)
        })
        .expect("capabilities dropped in the child");
    }

    #[test]
    fn effective_outside_permitted_is_refused() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        run(|| {
            let caps = LinuxCapabilitiesBuilder::default()
                .bounding(set(&[Capability::Chown, Capability::Kill]))
                .effective(set(&[Capability::Chown, Capability::Kill]))
                .permitted(set(&[Capability::Chown]))
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()
                .map_err(|e| e.to_string())?;
            drop_bounding(Some(&caps)).map_err(|e| e.to_string())?;
            match apply(Some(&caps)) {
                Err(CapsError::Set {
                    set: "permitted", ..
                }) => Ok(()),
                other => Err(format!("expected a permitted-set error, got {other:?}")),
            }
        })
        .expect("refused in the child");
    }
}
