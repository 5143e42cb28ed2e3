//! `linux.rootfsPropagation` and the propagation set-up around the rootfs bind mount.

use std::path::Path;

use libc::c_ulong;
use oci_spec::runtime::Spec;

use super::mountinfo;
use super::sys;
use super::{ErrnoContext, RootfsError};

/// Maps a propagation option name to its MS_* flags (runc's mountPropagationMapping).
pub(crate) fn parse(name: &str) -> Option<c_ulong> {
    let flags = match name {
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => return None,
    };
    Some(flags)
}

/// The flags `linux.rootfsPropagation` asks for; None when unset or empty.
pub(crate) fn from_spec(spec: &Spec) -> Result<Option<c_ulong>, RootfsError> {
    let name = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .unwrap_or("");
    if name.is_empty() {
        return Ok(None);
    }
    parse(name).map(Some).ok_or_else(|| {
        RootfsError::invalid(
            "checking linux.rootfsPropagation",
            "/",
            format!("rootfsPropagation={name} is not supported"),
        )
    })
}

/// Refuses [r]private with --no-pivot, as runc does: without pivot_root the host's mounts stay
/// reachable, and a private root would stop host unmounts from reaching the container.
pub(crate) fn check_no_pivot(flags: Option<c_ulong>) -> Result<(), RootfsError> {
    match flags {
        Some(f) if f & libc::MS_PRIVATE != 0 => Err(RootfsError::invalid(
            "checking linux.rootfsPropagation",
            "/",
            "rootfsPropagation of [r]private is not safe without pivot_root",
        )),
        _ => Ok(()),
    }
}

/// Sets the propagation of / (rootfsPropagation, default rslave so nothing the container mounts
/// reaches the host), makes the rootfs's parent mount private if it is shared, then bind-mounts
/// the rootfs onto itself so it is a mount point pivot_root accepts.
pub(crate) fn prepare_root(rootfs: &Path, flags: Option<c_ulong>) -> Result<(), RootfsError> {
    let flags = flags.unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    sys::mount(None, Path::new("/"), None, flags, None).ctx("set propagation of", "/")?;
    make_parent_mount_private(rootfs)?;
    sys::mount(
        Some(rootfs),
        rootfs,
        Some("bind"),
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx("bind mount rootfs onto itself", rootfs)
}

/// pivot_root fails when the new root's parent mount is shared, and a bind under a shared parent
/// would propagate to the host's namespace; runc makes that parent private first.
fn make_parent_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let mounts = mountinfo::read_self()?;
    let Some(parent) = mountinfo::closest_parent(&mounts, rootfs) else {
        return Err(RootfsError::sys(
            "find the parent mount of",
            rootfs,
            nix::errno::Errno::ENOENT,
        ));
    };
    if parent.is_shared() {
        sys::mount(None, &parent.mount_point, None, libc::MS_PRIVATE, None)
            .ctx("make private the parent mount", &parent.mount_point)?;
    }
    Ok(())
}

/// Applies rootfsPropagation to the new / after the root switch, as runc does: set earlier it
/// would have applied to the host's copy of the root. Private is skipped: the parent was already
/// made private and the bind copy is private.
pub(crate) fn apply_after_pivot(flags: Option<c_ulong>) -> Result<(), RootfsError> {
    match flags {
        Some(f) if f & libc::MS_PRIVATE == 0 => {
            sys::mount(None, Path::new("/"), None, f, None).ctx("apply rootfsPropagation to", "/")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_flags() {
        assert_eq!(parse("rprivate"), Some(libc::MS_PRIVATE | libc::MS_REC));
        assert_eq!(parse("private"), Some(libc::MS_PRIVATE));
        assert_eq!(parse("rslave"), Some(libc::MS_SLAVE | libc::MS_REC));
        assert_eq!(parse("slave"), Some(libc::MS_SLAVE));
        assert_eq!(parse("rshared"), Some(libc::MS_SHARED | libc::MS_REC));
        assert_eq!(parse("shared"), Some(libc::MS_SHARED));
        assert_eq!(
            parse("runbindable"),
            Some(libc::MS_UNBINDABLE | libc::MS_REC)
        );
        assert_eq!(parse("unbindable"), Some(libc::MS_UNBINDABLE));
        assert_eq!(parse(""), None);
        assert_eq!(parse("Shared"), None);
        assert_eq!(parse("ro"), None);
    }

    fn spec_with(prop: Option<&str>) -> Spec {
        let mut v = serde_json::json!({"ociVersion": "1.0.2", "linux": {}});
        if let Some(p) = prop {
            v["linux"]["rootfsPropagation"] = serde_json::json!(p);
        }
        serde_json::from_value(v).expect("valid spec literal")
    }

    #[test]
    fn spec_field() {
        assert_eq!(from_spec(&spec_with(None)).ok(), Some(None));
        assert_eq!(from_spec(&spec_with(Some(""))).ok(), Some(None));
        assert_eq!(
            from_spec(&spec_with(Some("rshared"))).ok(),
            Some(Some(libc::MS_SHARED | libc::MS_REC))
        );
        let err = from_spec(&spec_with(Some("bogus"))).expect_err("unknown value");
        assert!(err
            .to_string()
            .contains("rootfsPropagation=bogus is not supported"));
        assert_eq!(err.errno(), nix::errno::Errno::EINVAL);
    }

    #[test]
    fn private_refused_without_pivot() {
        assert!(check_no_pivot(Some(libc::MS_PRIVATE | libc::MS_REC)).is_err());
        assert!(check_no_pivot(Some(libc::MS_PRIVATE)).is_err());
        assert!(check_no_pivot(Some(libc::MS_SLAVE | libc::MS_REC)).is_ok());
        assert!(check_no_pivot(None).is_ok());
    }
}
