//! `mounts`: each entry mounted inside the rootfs, the way runc's mountToRootfs does it.

use std::path::{Path, PathBuf};

use libc::c_ulong;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Mount, Spec};

use super::options::{self, MountOptions};
use super::paths::{self, Resolved, Root};
use super::{cgroup_mount, copyup, sys};
use super::{ErrnoContext, RootfsError};

/// Flags runc gives the mounts it makes up itself (the cgroup v1 tmpfs and hierarchies).
pub(crate) const DEFAULT_MOUNT_FLAGS: c_ulong = libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;

/// Files under /proc that may still be mount targets: lxcfs emulates them (runc's list).
const VALID_PROC_MOUNTS: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// One entry of `mounts`, normalised as runc's specconv does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// The filesystem type; "bind" for every bind mount, whatever `type` said.
    pub device: String,
    /// The source; for bind mounts an absolute host path.
    pub source: String,
    /// The destination inside the container.
    pub destination: PathBuf,
    /// The parsed options.
    pub options: MountOptions,
}

impl MountEntry {
    /// Whether this mount's destination is /dev.
    pub fn is_dev(&self) -> bool {
        paths::clean(&self.destination) == Path::new("/dev")
    }
}

/// What every mount needs to know about the container.
pub(crate) struct MountContext<'a> {
    /// The rootfs everything is resolved in.
    pub root: &'a Root,
    /// The container has its own user namespace.
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace.
    pub in_cgroup_ns: bool,
}

/// Normalises every entry of `mounts`; relative bind sources are taken from `bundle`.
pub(crate) fn entries_from_spec(
    spec: &Spec,
    bundle: &Path,
) -> Result<Vec<MountEntry>, RootfsError> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| entry_from_spec(m, bundle))
        .collect()
}

fn entry_from_spec(m: &Mount, bundle: &Path) -> Result<MountEntry, RootfsError> {
    let destination = m.destination().clone();
    let mut options = options::parse(m.options().as_deref().unwrap_or(&[]));
    let mut device = m.typ().clone().unwrap_or_default();
    let mut source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // runc ignores `type` for bind mounts. A `type: bind` without a bind option fails in runc
    // (mount(2) knows no "bind" filesystem); husk takes it as the bind it obviously means.
    if options.flags & libc::MS_BIND != 0 || device == "bind" {
        device = "bind".to_string();
        options.flags |= libc::MS_BIND;
        if !Path::new(&source).is_absolute() {
            source = bundle.join(&source).to_string_lossy().into_owned();
        }
    }
    let op = "checking mount";
    if options.idmap || m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(RootfsError::unsupported(
            op,
            &destination,
            "id-mapped mounts (idmap, ridmap, uidMappings, gidMappings) are not supported",
        ));
    }
    if source.contains('\0')
        || device.contains('\0')
        || destination.to_string_lossy().contains('\0')
    {
        return Err(RootfsError::invalid(
            op,
            &destination,
            "mount field contains a NUL byte",
        ));
    }
    Ok(MountEntry {
        device,
        source,
        destination,
        options,
    })
}

/// Mounts one entry inside the rootfs.
pub(crate) fn mount_entry(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    match e.device.as_str() {
        "proc" | "sysfs" => mount_proc_or_sys(ctx, e)?,
        "mqueue" => {
            let dest = ctx.root.mkdir_all(&e.destination, 0o755)?;
            mount_propagate(ctx, e, &dest, &e.options.data)?;
        }
        "tmpfs" => mount_tmpfs(ctx, e)?,
        "bind" => mount_bind(ctx, e)?,
        // The cgroup code mounts its parts through mount_entry and applies attributes there.
        "cgroup" => return cgroup_mount::mount_cgroup(ctx, e),
        _ => {
            check_proc_mount(&paths::clean(&e.destination), &e.source)?;
            let dest = ctx.root.mkdir_all(&e.destination, 0o755)?;
            check_proc_mount(dest.inner(), &e.source)?;
            mount_propagate(ctx, e, &dest, &e.options.data)?;
        }
    }
    set_rec_attr(ctx, e)
}

/// proc and sysfs must land on a real directory, never through a symlink in the last component
/// (a classic way to redirect them); runc refuses anything else.
fn mount_proc_or_sys(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let (parent, name) = ctx.root.parent_and_name(&e.destination)?;
    match nix::sys::stat::fstatat(parent.fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {
            return Err(RootfsError::invalid(
                "checking mount",
                &e.destination,
                format!(
                    "filesystem {:?} must be mounted on ordinary directory",
                    e.device
                ),
            ));
        }
        Ok(_) => {}
        Err(Errno::ENOENT) => {
            match nix::sys::stat::mkdirat(
                parent.fd(),
                name.as_os_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(errno) => {
                    return Err(RootfsError::sys("mkdir in rootfs", &e.destination, errno))
                }
            }
        }
        Err(errno) => return Err(RootfsError::sys("stat in rootfs", &e.destination, errno)),
    }
    let dest = ctx.root.child_nofollow(&parent, &name, &e.destination)?;
    match mount_propagate(ctx, e, &dest, &e.options.data) {
        // sysfs belongs to the network namespace: in a user namespace without its own netns the
        // kernel refuses a new instance. Bind the host's /sys instead, as crun does (and as
        // runc PR #5016 proposes).
        Err(err) if e.device == "sysfs" && ctx.in_user_ns && err.errno() == Errno::EPERM => {
            let fallback = MountEntry {
                device: "bind".to_string(),
                source: "/sys".to_string(),
                destination: e.destination.clone(),
                options: MountOptions {
                    flags: e.options.flags | libc::MS_BIND | libc::MS_REC,
                    cleared: e.options.cleared,
                    propagation: e.options.propagation.clone(),
                    ..Default::default()
                },
            };
            mount_bind(ctx, &fallback)
        }
        other => other,
    }
}

/// A tmpfs over an existing directory keeps that directory's mode (runc passes mode= first so
/// an explicit mode= option still wins).
fn mount_tmpfs(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let dest = match ctx.root.resolve(&e.destination) {
        Ok(dest) => dest,
        Err(err) if err.errno() == Errno::ENOENT => ctx.root.mkdir_all(&e.destination, 0o755)?,
        Err(err) => return Err(err),
    };
    // A tmpfs takes the mode of the directory it covers (a fresh one would be 1777, world
    // writable); an explicit mode= in the options comes later and wins.
    let st = nix::sys::stat::fstat(dest.fd()).ctx("stat", &e.destination)?;
    let mut data = format!("mode={:04o}", st.st_mode & 0o7777);
    if !e.options.data.is_empty() {
        data.push(',');
        data.push_str(&e.options.data);
    }
    if e.options.copy_up {
        copyup::mount_with_copy_up(ctx, e, &dest, &data)
    } else {
        mount_propagate(ctx, e, &dest, &data)
    }
}

/// Bind mounts: the source must exist; the destination is created as a directory or an empty
/// file to match it. The bind itself ignores ro/nosuid/..., so a second MS_BIND|MS_REMOUNT
/// applies them.
pub(crate) fn mount_bind(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let source = Path::new(&e.source);
    let st = nix::sys::stat::stat(source).ctx("stat bind source", source)?;
    check_proc_mount(&paths::clean(&e.destination), &e.source)?;
    let dest = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        ctx.root.mkdir_all(&e.destination, 0o755)?
    } else {
        ctx.root.create_file(&e.destination, 0o755)?
    };
    check_proc_mount(dest.inner(), &e.source)?;
    mount_propagate(ctx, e, &dest, "")?;

    let requested = e.options.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if requested != 0 || e.options.cleared != 0 {
        bind_remount(ctx, e)?;
    }
    Ok(())
}

/// Applies a bind mount's flags. The first try sets exactly what was asked (mount --bind -o ...);
/// if the kernel refuses because the source mount has locked flags (inherited into a user
/// namespace), retry keeping those, unless the request explicitly cleared one of them or asked
/// for a different atime mode, which cannot be honoured.
fn bind_remount(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let dest = ctx.root.resolve(&e.destination)?;
    let target = dest.proc_path();
    let flags = e.options.flags | libc::MS_BIND | libc::MS_REMOUNT;
    let first = match sys::mount(None, &target, None, flags, None) {
        Ok(()) => return Ok(()),
        Err(errno) => errno,
    };
    let refused = || RootfsError::sys("remount bind mount", &e.destination, first);
    let current = sys::statfs_mount_flags(&target).ctx("statfs", &e.destination)?;
    if current & e.options.cleared & sys::MNT_LOCK_FLAGS != 0 {
        return Err(refused());
    }
    let asked_atime = e.options.flags & sys::MNT_ATIME_FLAGS;
    if asked_atime != 0 && asked_atime != current & sys::MNT_ATIME_FLAGS {
        return Err(refused());
    }
    let retry = flags | (current & sys::MNT_LOCK_FLAGS);
    sys::mount(None, &target, None, retry, None).ctx("remount bind mount", &e.destination)
}

/// mount(2) onto the checked destination, then each propagation option on the new mount.
/// tmpfs and /dev are mounted writable whatever they asked for: devices and modes are set up
/// in them first, and finalize makes them read-only (runc does the same).
pub(crate) fn mount_propagate(
    ctx: &MountContext,
    e: &MountEntry,
    dest: &Resolved,
    data: &str,
) -> Result<(), RootfsError> {
    let mut flags = e.options.flags;
    if e.device == "tmpfs" || e.is_dev() {
        flags &= !libc::MS_RDONLY;
    }
    sys::mount(
        Some(Path::new(&e.source)),
        &dest.proc_path(),
        Some(e.device.as_str()),
        flags,
        Some(data),
    )
    .ctx(&format!("mount {}", e.device), &e.destination)?;
    apply_propagation(ctx, e)
}

/// Applies the propagation options; the destination is resolved again because the mount just
/// made covers the inode the old fd pointed at.
pub(crate) fn apply_propagation(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    if e.options.propagation.is_empty() {
        return Ok(());
    }
    let dest = ctx.root.resolve(&e.destination)?;
    for flags in &e.options.propagation {
        sys::mount(None, &dest.proc_path(), None, *flags, None)
            .ctx("change mount propagation of", &e.destination)?;
    }
    Ok(())
}

/// The recursive `r*` options, through mount_setattr(AT_RECURSIVE).
fn set_rec_attr(ctx: &MountContext, e: &MountEntry) -> Result<(), RootfsError> {
    let Some(attr) = &e.options.rec_attr else {
        return Ok(());
    };
    let dest = ctx.root.resolve(&e.destination)?;
    sys::mount_setattr_recursive(&dest.proc_path(), attr).ctx("mount_setattr", &e.destination)
}

/// Refuses mounts over /proc or inside it (they could hide what maskedPaths hides), except a
/// real procfs on /proc and the files lxcfs emulates. `inner` is the destination inside the
/// rootfs, symlinks resolved.
pub(crate) fn check_proc_mount(inner: &Path, source: &str) -> Result<(), RootfsError> {
    let Ok(rest) = inner.strip_prefix("/proc") else {
        return Ok(());
    };
    let op = "checking mount";
    if rest.as_os_str().is_empty() {
        if source.is_empty() {
            return Ok(());
        }
        let st = nix::sys::statfs::statfs(Path::new(source)).ctx("statfs", source)?;
        if st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC {
            return Ok(());
        }
        return Err(RootfsError::invalid(
            op,
            inner,
            format!("{inner:?} cannot be mounted because it is not of type proc"),
        ));
    }
    if VALID_PROC_MOUNTS.iter().any(|v| Path::new(v) == inner) {
        return Ok(());
    }
    Err(RootfsError::invalid(
        op,
        inner,
        format!("{inner:?} cannot be mounted because it is inside /proc"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mounts: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2", "mounts": mounts}))
            .expect("valid spec literal")
    }

    #[test]
    fn bind_mounts_are_normalised() {
        let s = spec(serde_json::json!([
            {"destination": "/data", "type": "none", "source": "relative/dir", "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/abs/hosts"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        ]));
        let e = entries_from_spec(&s, Path::new("/bundle")).expect("entries");
        assert_eq!(e[0].device, "bind");
        assert_eq!(e[0].source, "/bundle/relative/dir");
        assert_eq!(
            e[0].options.flags,
            libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY
        );
        assert_eq!(e[1].device, "bind");
        assert_eq!(e[1].source, "/abs/hosts");
        assert_eq!(e[1].options.flags, libc::MS_BIND);
        assert_eq!(e[2].device, "tmpfs");
        assert_eq!(e[2].source, "tmpfs");
        assert_eq!(e[2].options.data, "mode=755");
        assert!(e[2].is_dev());
    }

    #[test]
    fn idmap_is_refused() {
        let s = spec(serde_json::json!([
            {"destination": "/data", "type": "bind", "source": "/x", "options": ["rbind", "idmap"]},
        ]));
        let err = entries_from_spec(&s, Path::new("/")).expect_err("idmap unsupported");
        assert_eq!(err.errno(), Errno::EOPNOTSUPP);
        assert!(err.to_string().contains("/data"), "{err}");
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn proc_destinations() {
        assert!(check_proc_mount(Path::new("/procfs"), "x").is_ok());
        assert!(check_proc_mount(Path::new("/mnt/proc"), "x").is_ok());
        assert!(
            check_proc_mount(Path::new("/proc/cpuinfo"), "/var/lib/lxcfs/proc/cpuinfo").is_ok()
        );
        assert!(check_proc_mount(Path::new("/proc"), "/proc").is_ok());
        let err = check_proc_mount(Path::new("/proc"), "/tmp").expect_err("tmp is not procfs");
        assert!(err.to_string().contains("not of type proc"), "{err}");
        let err = check_proc_mount(Path::new("/proc/sys/kernel"), "/x").expect_err("inside /proc");
        assert!(err.to_string().contains("inside /proc"), "{err}");
    }
}
