//! `linux.devices` and runc's default devices: the nodes in /dev, /dev/ptmx and the /dev links.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::mount::MountEntry;
use super::paths::{self, Root};
use super::sys;
use super::{ErrnoContext, RootfsError};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    /// Path inside the container.
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: SFlag,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The nodes every runc container gets (specconv's AllowedDevices that have a path), in runc's
/// order; a `linux.devices` entry with the same path replaces one.
fn default_devices() -> Vec<Device> {
    [
        ("/dev/null", 1, 3),
        ("/dev/random", 1, 8),
        ("/dev/full", 1, 7),
        ("/dev/tty", 5, 0),
        ("/dev/zero", 1, 5),
        ("/dev/urandom", 1, 9),
    ]
    .into_iter()
    .map(|(path, major, minor)| Device {
        path: PathBuf::from(path),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Whether runc would set up /dev: not when /dev is a bind mount (the host's /dev, as is).
pub(crate) fn needs_setup_dev(entries: &[MountEntry]) -> bool {
    !entries.iter().any(|e| e.device == "bind" && e.is_dev())
}

/// The default devices (minus those the spec overrides) followed by the spec's own.
pub(crate) fn devices_from_spec(spec: &Spec) -> Result<Vec<Device>, RootfsError> {
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut out: Vec<Device> = default_devices()
        .into_iter()
        .filter(|d| !configured.iter().any(|c| c.path() == &d.path))
        .collect();
    for d in configured {
        let op = "checking linux.devices";
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RootfsError::invalid(
                    op,
                    d.path(),
                    "invalid device type \"a\"",
                ))
            }
        };
        let number = |n: i64, what: &str| {
            u64::try_from(n).map_err(|_| {
                RootfsError::invalid(op, d.path(), format!("invalid {what} number {n}"))
            })
        };
        out.push(Device {
            path: d.path().clone(),
            kind,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            mode: d.file_mode().unwrap_or(0o666) & !libc::S_IFMT,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    Ok(out)
}

/// Sets the umask and puts the old one back when dropped, whatever path the caller leaves by.
struct UmaskGuard(Mode);

impl UmaskGuard {
    fn set(mode: Mode) -> UmaskGuard {
        UmaskGuard(nix::sys::stat::umask(mode))
    }
}

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.0);
    }
}

/// Creates every device node. In a user namespace mknod is not allowed, so each node is a bind
/// mount of the host's node onto an empty file, as runc does; mknod failing with EPERM falls back
/// the same way. An existing node is left as it is, as runc does.
pub(crate) fn create_devices(
    root: &Root,
    spec: &Spec,
    in_user_ns: bool,
) -> Result<(), RootfsError> {
    let devices = devices_from_spec(spec)?;
    // Modes are exact: nothing from the caller's umask may strip bits from a node or its dirs.
    let _umask = UmaskGuard::set(Mode::empty());
    for dev in &devices {
        if dev.path.as_os_str().is_empty() {
            continue;
        }
        // /dev/ptmx is the devpts instance's, set up by setup_ptmx.
        if paths::clean(&dev.path) == Path::new("/dev/ptmx") {
            continue;
        }
        create_device_node(root, dev, in_user_ns)?;
    }
    Ok(())
}

fn create_device_node(root: &Root, dev: &Device, bind: bool) -> Result<(), RootfsError> {
    let (parent, name) = root.parent_and_name(&dev.path)?;
    if bind {
        return bind_device(root, dev);
    }
    let rdev = nix::sys::stat::makedev(dev.major, dev.minor);
    let perm = Mode::from_bits_truncate(dev.mode);
    match nix::sys::stat::mknodat(parent.fd(), name.as_os_str(), dev.kind, perm, rdev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()),
        Err(Errno::EPERM) => return bind_device(root, dev),
        Err(errno) => return Err(RootfsError::sys("mknod", &dev.path, errno)),
    }
    // chmod/chown through the node's own O_PATH fd, so a name swapped in between cannot
    // redirect them.
    let node = root.child_nofollow(&parent, &name, &dev.path)?;
    let target = node.proc_path();
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &target,
        perm,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .ctx("chmod", &dev.path)?;
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &target,
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
        nix::fcntl::AtFlags::empty(),
    )
    .ctx("chown", &dev.path)
}

/// Bind-mounts the host's node at the same path onto an empty file in the container.
fn bind_device(root: &Root, dev: &Device) -> Result<(), RootfsError> {
    let dest = root.create_file(&dev.path, 0o666)?;
    sys::mount(
        Some(&dev.path),
        &dest.proc_path(),
        Some("bind"),
        libc::MS_BIND,
        None,
    )
    .ctx("bind mount device", &dev.path)
}

/// /dev/ptmx becomes a symlink to the container's devpts instance (pts/ptmx), replacing
/// whatever was there.
pub(crate) fn setup_ptmx(root: &Root) -> Result<(), RootfsError> {
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    match nix::unistd::unlinkat(dev.fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(Errno::EISDIR) => {
            nix::unistd::unlinkat(dev.fd(), "ptmx", nix::unistd::UnlinkatFlags::RemoveDir)
                .ctx("remove", "/dev/ptmx")?;
        }
        Err(errno) => return Err(RootfsError::sys("remove", "/dev/ptmx", errno)),
    }
    nix::unistd::symlinkat("pts/ptmx", dev.fd(), "ptmx").ctx("symlink", "/dev/ptmx")
}

/// /dev/fd, /dev/std{in,out,err} and, when the kernel has /proc/kcore, /dev/core; existing
/// entries are kept.
pub(crate) fn setup_dev_symlinks(root: &Root) -> Result<(), RootfsError> {
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    // CONFIG_PROC_KCORE decides whether the file exists; runc checks the host's /proc.
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    for (target, name) in links {
        match nix::unistd::symlinkat(target, dev.fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(RootfsError::sys(
                    "symlink",
                    Path::new("/dev").join(name),
                    errno,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(devices: serde_json::Value) -> Spec {
        serde_json::from_value(
            serde_json::json!({"ociVersion": "1.0.2", "linux": {"devices": devices}}),
        )
        .expect("valid spec literal")
    }

    #[test]
    fn defaults_then_configured_with_overrides() {
        let s = spec(serde_json::json!([
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            {"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0, "fileMode": 0o20660},
            {"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0},
            {"path": "/dev/ttyU", "type": "u", "major": 4, "minor": 64},
        ]));
        let d = devices_from_spec(&s).expect("devices");
        let paths: Vec<&str> = d.iter().map(|d| d.path.to_str().unwrap_or("")).collect();
        assert_eq!(
            paths,
            [
                "/dev/random",
                "/dev/full",
                "/dev/tty",
                "/dev/zero",
                "/dev/urandom",
                "/dev/null",
                "/dev/fuse",
                "/dev/loop0",
                "/dev/myfifo",
                "/dev/ttyU"
            ]
        );
        let null = &d[5];
        assert_eq!((null.mode, null.uid, null.gid), (0o600, 5, 6));
        assert_eq!(d[6].mode, 0o666);
        assert_eq!((d[7].kind, d[7].mode), (SFlag::S_IFBLK, 0o660));
        assert_eq!(d[8].kind, SFlag::S_IFIFO);
        assert_eq!(d[9].kind, SFlag::S_IFCHR);
    }

    #[test]
    fn type_a_is_not_a_node() {
        let s = spec(serde_json::json!([{"path": "/dev/x", "type": "a"}]));
        let err = devices_from_spec(&s).expect_err("a is for cgroup rules");
        assert!(err.to_string().contains("/dev/x"), "{err}");
    }
}
