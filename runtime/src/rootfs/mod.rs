//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! The init process calls [`prepare`], [`pivot`] and [`finalize`] in that order, inside its new
//! mount namespace. The behaviour follows runc's `libcontainer/rootfs_linux.go`; each file here
//! owns one runtime-spec field or one step of that sequence:
//!
//! | step / field                      | file              |
//! |-----------------------------------|-------------------|
//! | `linux.rootfsPropagation`         | `propagation.rs`  |
//! | `mounts` (option strings)         | `options.rs`      |
//! | `mounts` (each kind)              | `mount.rs`        |
//! | `mounts` of type `cgroup`         | `cgroup_mount.rs` |
//! | `tmpcopyup`                       | `copyup.rs`       |
//! | `linux.devices`, default devices  | `devices.rs`      |
//! | pivot_root / `--no-pivot`         | `pivot.rs`        |
//! | `linux.readonlyPaths`, `root.readonly` | `readonly.rs` |
//! | `linux.maskedPaths`               | `masked.rs`       |
//! | safe resolution inside the rootfs | `paths.rs`        |
//! | `io.husk.procview` annotation     | `procview.rs`     |

mod cgroup_mount;
mod copyup;
mod devices;
mod masked;
mod mount;
mod mountinfo;
mod options;
mod paths;
mod pivot;
pub mod procview;
mod propagation;
mod readonly;
mod sys;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::Spec;

/// What the rootfs set-up needs to know beyond the spec.
pub struct RootfsOptions<'a> {
    /// The container's configuration.
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs (root.path resolved against the bundle dir).
    pub rootfs: &'a Path,
    /// The bundle directory (relative bind-mount sources are resolved against it, as runc does).
    pub bundle: &'a Path,
    /// --no-pivot: MS_MOVE the rootfs onto / and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The container has its own user namespace: devices are bind-mounted from the host instead of mknod.
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace (affects how `cgroup` mounts are done).
    pub in_cgroup_ns: bool,
}

/// A failure while setting up the root filesystem; every variant names the operation, the path
/// and the errno.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A system call failed.
    #[error("{op} {}: {errno}", path.display())]
    Sys {
        /// What was being done, e.g. "mount" or "mknod".
        op: String,
        /// The path it was done to (inside the container where that is clearer).
        path: PathBuf,
        /// The error the kernel returned.
        errno: Errno,
    },
    /// A path inside the rootfs resolved to somewhere outside it.
    #[error("{op} {}: path resolves outside the container rootfs: {errno}", path.display())]
    Escape {
        /// What was being done when the escape was detected.
        op: String,
        /// The path as the configuration gave it.
        path: PathBuf,
        /// Always EXDEV, the errno openat2(RESOLVE_IN_ROOT) reports for this.
        errno: Errno,
    },
    /// The configuration asks for something invalid or unsupported.
    #[error("{op} {}: {reason}: {errno}", path.display())]
    Invalid {
        /// What was being done.
        op: String,
        /// The path (mount destination, device path, ...) the bad setting is for.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
        /// EINVAL for bad values, EOPNOTSUPP for unsupported features.
        errno: Errno,
    },
    /// Mounting one entry of `mounts` failed; wraps the failure with runc's wording.
    #[error("error mounting {mount_source:?} to rootfs at {destination:?}: {inner}")]
    Mount {
        /// The mount's `source`.
        mount_source: String,
        /// The mount's `destination`.
        destination: PathBuf,
        /// What went wrong.
        #[source]
        inner: Box<RootfsError>,
    },
}

impl RootfsError {
    /// The errno at the bottom of this error.
    pub fn errno(&self) -> Errno {
        match self {
            RootfsError::Sys { errno, .. }
            | RootfsError::Escape { errno, .. }
            | RootfsError::Invalid { errno, .. } => *errno,
            RootfsError::Mount { inner, .. } => inner.errno(),
        }
    }

    pub(crate) fn sys(op: impl Into<String>, path: impl Into<PathBuf>, errno: Errno) -> Self {
        RootfsError::Sys {
            op: op.into(),
            path: path.into(),
            errno,
        }
    }

    pub(crate) fn invalid(
        op: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        RootfsError::Invalid {
            op: op.into(),
            path: path.into(),
            reason: reason.into(),
            errno: Errno::EINVAL,
        }
    }

    pub(crate) fn unsupported(
        op: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        RootfsError::Invalid {
            op: op.into(),
            path: path.into(),
            reason: reason.into(),
            errno: Errno::EOPNOTSUPP,
        }
    }
}

/// Attaches an operation and a path to a bare errno.
pub(crate) trait ErrnoContext<T> {
    /// Turns `Err(errno)` into a [`RootfsError::Sys`] naming `op` and `path`.
    fn ctx(self, op: &str, path: impl AsRef<Path>) -> Result<T, RootfsError>;
}

impl<T> ErrnoContext<T> for Result<T, Errno> {
    fn ctx(self, op: &str, path: impl AsRef<Path>) -> Result<T, RootfsError> {
        self.map_err(|errno| RootfsError::sys(op, path.as_ref(), errno))
    }
}

/// Sets up everything inside the rootfs before the root is switched: the propagation of /, the
/// rootfs bind mount, every entry of `mounts` in order, then (unless /dev is a bind mount) the
/// default and configured devices, the /dev/ptmx symlink and the /dev/fd, std* and core links.
pub fn prepare(opts: &RootfsOptions) -> Result<(), RootfsError> {
    let spec = opts.spec;
    let root_propagation = propagation::from_spec(spec)?;
    if opts.no_pivot {
        propagation::check_no_pivot(root_propagation)?;
    }
    let entries = mount::entries_from_spec(spec, opts.bundle)?;

    propagation::prepare_root(opts.rootfs, root_propagation)?;

    // Opened only after the rootfs was bind-mounted onto itself: an fd taken earlier would name
    // the directory in the parent mount, and mounts made through it would hide under the bind.
    let root = paths::Root::open(opts.rootfs)?;
    let ctx = mount::MountContext {
        root: &root,
        in_user_ns: opts.in_user_ns,
        in_cgroup_ns: opts.in_cgroup_ns,
    };
    for entry in &entries {
        mount::mount_entry(&ctx, entry).map_err(|inner| RootfsError::Mount {
            mount_source: entry.source.clone(),
            destination: entry.destination.clone(),
            inner: Box::new(inner),
        })?;
    }

    if devices::needs_setup_dev(&entries) {
        devices::create_devices(&root, spec, opts.in_user_ns)?;
        devices::setup_ptmx(&root)?;
        devices::setup_dev_symlinks(&root)?;
    }
    procview::bind_views(spec, &root);
    Ok(())
}

/// Makes the rootfs the process's root: pivot_root (or MS_MOVE + chroot with `no_pivot`), then
/// chdir("/"); std{in,out,err} pointing at the host's /dev/null are re-pointed at the container's.
pub fn pivot(opts: &RootfsOptions) -> Result<(), RootfsError> {
    nix::unistd::chdir(opts.rootfs).ctx("chdir", opts.rootfs)?;
    if opts.no_pivot {
        pivot::ms_move_root(opts.rootfs)?;
    } else {
        pivot::pivot_root(opts.rootfs)?;
    }
    let entries = mount::entries_from_spec(opts.spec, opts.bundle)?;
    if devices::needs_setup_dev(&entries) {
        pivot::reopen_dev_null()?;
    }
    Ok(())
}

/// Runs after [`pivot`]: applies `rootfsPropagation` to the new /, makes read-only the tmpfs and
/// /dev mounts that asked for it, `root.readonly`, `linux.readonlyPaths`, then
/// `linux.maskedPaths`. Paths are plain paths now: the root is the rootfs.
///
/// runc writes `linux.sysctl` after the root is made read-only but before the read-only paths,
/// so the caller must write sysctls before calling this (/proc/sys is normally read-only after).
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    propagation::apply_after_pivot(propagation::from_spec(spec)?)?;

    let entries = mount::entries_from_spec(spec, Path::new("/"))?;
    readonly::remount_requested_readonly(&entries)?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        readonly::set_root_readonly()?;
    }
    if let Some(linux) = spec.linux() {
        for path in linux.readonly_paths().iter().flatten() {
            readonly::readonly_path(Path::new(path))?;
        }
        for path in linux.masked_paths().iter().flatten() {
            masked::mask_path(Path::new(path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
