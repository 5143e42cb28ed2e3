//! The whole prepare -> pivot -> finalize sequence with real mounts.
//!
//! Each test forks a child that unshares its mount namespace and makes / rprivate before doing
//! anything, so no mount can reach the host; the parent checks the host's mount table did not
//! change. They need root and skip themselves otherwise.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::statvfs::FsFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;

use super::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn host_mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Runs `body` in a forked child with a private mount namespace; returns what it reported.
fn in_private_mount_ns(body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child runs only the test body and leaves through _exit; glibc keeps malloc
    // usable after fork, and the body takes no locks other test threads could hold.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            let result = nix::sched::unshare(CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))
                .and_then(|()| {
                    sys::mount(
                        None,
                        Path::new("/"),
                        None,
                        libc::MS_REC | libc::MS_PRIVATE,
                        None,
                    )
                    .map_err(|e| format!("make / rprivate: {e}"))
                })
                .and_then(|()| body());
            let (code, msg) = match result {
                Ok(()) => (0, String::new()),
                Err(msg) => (1, msg),
            };
            let _ = nix::unistd::write(&write_end, msg.as_bytes());
            // SAFETY: _exit ends the child without running the harness's atexit handlers or
            // destructors, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut msg = String::new();
            let _ = fs::File::from(read_end).read_to_string(&mut msg);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(status) => Err(format!("child {status:?}: {msg}")),
                Err(e) => Err(format!("waitpid: {e}")),
            }
        }
    }
}

/// The host's mount table must not show anything of the test, and / must be as it was.
fn assert_host_untouched(before: &str, tmp: &Path) {
    let after = host_mountinfo();
    let tmp = tmp.to_string_lossy();
    assert!(
        !after.lines().any(|l| l.contains(tmp.as_ref())),
        "a mount under {tmp} leaked to the host:\n{after}"
    );
    let root_line = |t: &str| {
        t.lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .map(str::to_string)
    };
    assert_eq!(root_line(before), root_line(&after), "the host's / changed");
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn mount_flags(path: &str) -> Result<FsFlags, String> {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.flags())
        .map_err(|e| format!("statvfs {path}: {e}"))
}

fn fs_type(path: &str) -> Result<nix::sys::statfs::FsType, String> {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type())
        .map_err(|e| format!("statfs {path}: {e}"))
}

/// A bundle: a rootfs with hostile symlinks, host data to bind, and a config using every kind.
struct Bundle {
    tmp: tempfile::TempDir,
    rootfs: PathBuf,
}

fn bundle() -> Bundle {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).expect("mkdir rootfs/etc");
    fs::write(rootfs.join("marker"), "rootfs").expect("marker");
    fs::create_dir_all(rootfs.join("opt/app")).expect("mkdir opt/app");
    fs::write(rootfs.join("opt/app/file"), "image data").expect("opt file");
    fs::set_permissions(
        rootfs.join("opt/app/file"),
        fs::Permissions::from_mode(0o750),
    )
    .expect("chmod opt file");
    symlink("file", rootfs.join("opt/app/link")).expect("opt link");
    symlink("/etc", rootfs.join("a")).expect("link a");
    symlink("../../../../..", rootfs.join("escape")).expect("link escape");
    fs::create_dir_all(tmp.path().join("hostdata/sub")).expect("hostdata");
    fs::write(tmp.path().join("hostdata/file"), "from host").expect("hostdata file");
    fs::write(tmp.path().join("hostfile"), "single file").expect("hostfile");
    Bundle { tmp, rootfs }
}

fn full_spec(host_file: &Path) -> Spec {
    let v = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/data", "type": "bind", "source": "hostdata",
             "options": ["rbind", "ro", "nosuid", "rprivate"]},
            {"destination": "/etc/hostfile", "type": "none", "source": host_file,
             "options": ["bind", "ro"]},
            {"destination": "/a/inner", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
            {"destination": "/escape/tmp2", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/ro-tmp", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "mode=700"]},
            {"destination": "/opt", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "size=1m"]},
        ],
        "linux": {
            "devices": [
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                 "fileMode": 0o600, "uid": 1, "gid": 2},
                {"path": "/dev/sub/fifo", "type": "p", "major": 0, "minor": 0}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/does-not-exist", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/bus", "/proc/missing"]
        }
    });
    serde_json::from_value(v).expect("valid spec literal")
}

#[test]
fn full_sequence_in_private_namespace() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let before = host_mountinfo();
    let b = bundle();
    let spec = full_spec(&b.tmp.path().join("hostfile"));
    let opts = RootfsOptions {
        spec: &spec,
        rootfs: &b.rootfs,
        bundle: b.tmp.path(),
        no_pivot: false,
        in_user_ns: false,
        in_cgroup_ns: false,
    };
    let rootfs = b.rootfs.clone();
    let result = in_private_mount_ns(|| {
        prepare(&opts).map_err(|e| format!("prepare: {e}"))?;

        // Before the switch: the hostile links led inside the rootfs, never to the host.
        let inner = rootfs.join("etc/inner");
        check(
            inner.is_dir(),
            "tmpfs via /a did not land in <rootfs>/etc/inner",
        )?;
        check(
            fs_type(&inner.to_string_lossy())? == nix::sys::statfs::TMPFS_MAGIC,
            "<rootfs>/etc/inner is not a tmpfs",
        )?;
        check(
            !Path::new("/etc/inner").exists(),
            "/etc/inner appeared on the host",
        )?;
        check(
            rootfs.join("tmp2").is_dir(),
            "tmpfs via /escape did not land at <rootfs>/tmp2",
        )?;

        pivot(&opts).map_err(|e| format!("pivot: {e}"))?;
        finalize(&spec).map_err(|e| format!("finalize: {e}"))?;

        check(
            fs::read_to_string("/marker").ok().as_deref() == Some("rootfs"),
            "/ is not the rootfs",
        )?;
        let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let host_tmp = rootfs
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let leftover = mounts.lines().any(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp.starts_with(&host_tmp))
        });
        check(!leftover, format!("old root still visible:\n{mounts}"))?;
        check(
            mount_flags("/")?.contains(FsFlags::ST_RDONLY),
            "/ is not read-only",
        )?;

        // Bind mounts: relative source from the bundle, flags applied by the remount.
        check(
            fs::read_to_string("/data/file").ok().as_deref() == Some("from host"),
            "/data does not show the host dir",
        )?;
        let data = mount_flags("/data")?;
        check(
            data.contains(FsFlags::ST_RDONLY | FsFlags::ST_NOSUID),
            "/data not ro,nosuid",
        )?;
        check(
            fs::read_to_string("/etc/hostfile").ok().as_deref() == Some("single file"),
            "file bind missing",
        )?;
        check(
            mount_flags("/etc/hostfile")?.contains(FsFlags::ST_RDONLY),
            "/etc/hostfile not ro",
        )?;

        // tmpfs: ro requested -> ro after finalize, mode from the options.
        check(
            mount_flags("/ro-tmp")?.contains(FsFlags::ST_RDONLY),
            "/ro-tmp not ro",
        )?;
        let mode = fs::metadata("/ro-tmp").map_err(|e| e.to_string())?.mode() & 0o7777;
        check(mode == 0o700, format!("/ro-tmp mode {mode:o}"))?;
        check(
            !mount_flags("/dev")?.contains(FsFlags::ST_RDONLY),
            "/dev became ro",
        )?;
        let shm = fs::metadata("/dev/shm").map_err(|e| e.to_string())?.mode() & 0o7777;
        check(shm == 0o1777, format!("/dev/shm mode {shm:o}"))?;

        // tmpcopyup: the tmpfs starts with what the image had there.
        check(
            fs_type("/opt")? == nix::sys::statfs::TMPFS_MAGIC,
            "/opt is not a tmpfs",
        )?;
        check(
            fs::read_to_string("/opt/app/file").ok().as_deref() == Some("image data"),
            "/opt/app/file not copied up",
        )?;
        let copied = fs::metadata("/opt/app/file")
            .map_err(|e| e.to_string())?
            .mode()
            & 0o7777;
        check(copied == 0o750, format!("/opt/app/file mode {copied:o}"))?;
        let link = fs::read_link("/opt/app/link").map_err(|e| e.to_string())?;
        check(
            link == Path::new("file"),
            "/opt/app/link not copied as a symlink",
        )?;

        // Devices: defaults and configured, exact modes and owners despite any umask.
        for (path, major, minor) in [("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/tty", 5, 0)] {
            let m = fs::symlink_metadata(path).map_err(|e| format!("{path}: {e}"))?;
            check(
                m.file_type().is_char_device(),
                format!("{path} is not a char device"),
            )?;
            let rdev = nix::sys::stat::makedev(major, minor);
            check(
                m.rdev() == rdev,
                format!("{path} has the wrong device number"),
            )?;
            check(
                m.permissions().mode() & 0o7777 == 0o666,
                format!("{path} mode"),
            )?;
        }
        let fuse = fs::symlink_metadata("/dev/fuse").map_err(|e| e.to_string())?;
        check(
            (fuse.mode() & 0o7777, fuse.uid(), fuse.gid()) == (0o600, 1, 2),
            "/dev/fuse mode/owner",
        )?;
        let fifo = fs::symlink_metadata("/dev/sub/fifo").map_err(|e| e.to_string())?;
        check(fifo.file_type().is_fifo(), "/dev/sub/fifo is not a fifo")?;
        let ptmx = fs::read_link("/dev/ptmx").map_err(|e| e.to_string())?;
        check(ptmx == Path::new("pts/ptmx"), "/dev/ptmx link")?;
        let fd = fs::read_link("/dev/fd").map_err(|e| e.to_string())?;
        check(fd == Path::new("/proc/self/fd"), "/dev/fd link")?;
        check(Path::new("/dev/pts/ptmx").exists(), "devpts not mounted")?;

        // sysfs ro, cgroup tree present and read-only.
        check(
            mount_flags("/sys")?.contains(FsFlags::ST_RDONLY),
            "/sys not ro",
        )?;
        let cg = fs_type("/sys/fs/cgroup")?;
        if cg == nix::sys::statfs::TMPFS_MAGIC {
            check(
                Path::new("/sys/fs/cgroup/memory").is_dir(),
                "no memory hierarchy",
            )?;
            check(
                mount_flags("/sys/fs/cgroup/memory")?.contains(FsFlags::ST_RDONLY),
                "cgroup hierarchy not ro",
            )?;
        }

        // readonlyPaths and maskedPaths; missing ones were skipped.
        check(
            mount_flags("/proc/sys")?.contains(FsFlags::ST_RDONLY),
            "/proc/sys not ro",
        )?;
        check(
            !mount_flags("/proc")?.contains(FsFlags::ST_RDONLY),
            "/proc became ro",
        )?;
        let timer = fs::metadata("/proc/timer_list").map_err(|e| e.to_string())?;
        check(
            timer.rdev() == nix::sys::stat::makedev(1, 3),
            "/proc/timer_list not masked by /dev/null",
        )?;
        if Path::new("/proc/acpi").exists() {
            check(
                fs_type("/proc/acpi")? == nix::sys::statfs::TMPFS_MAGIC,
                "/proc/acpi not masked",
            )?;
            check(
                mount_flags("/proc/acpi")?.contains(FsFlags::ST_RDONLY),
                "/proc/acpi mask rw",
            )?;
        }
        Ok(())
    });
    assert_host_untouched(&before, b.tmp.path());
    result.expect("container side");
}

#[test]
fn no_pivot_moves_the_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let before = host_mountinfo();
    let b = bundle();
    let spec: Spec = serde_json::from_value(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
        ],
        "linux": {"rootfsPropagation": "rslave"}
    }))
    .expect("valid spec literal");
    let opts = RootfsOptions {
        spec: &spec,
        rootfs: &b.rootfs,
        bundle: b.tmp.path(),
        no_pivot: true,
        in_user_ns: false,
        in_cgroup_ns: false,
    };
    let result = in_private_mount_ns(|| {
        prepare(&opts).map_err(|e| format!("prepare: {e}"))?;
        pivot(&opts).map_err(|e| format!("pivot: {e}"))?;
        finalize(&spec).map_err(|e| format!("finalize: {e}"))?;
        check(
            fs::read_to_string("/marker").ok().as_deref() == Some("rootfs"),
            "/ is not the rootfs",
        )?;
        check(Path::new("/dev/null").exists(), "no /dev/null")?;
        check(Path::new("/proc/self").exists(), "no /proc")?;
        Ok(())
    });
    assert_host_untouched(&before, b.tmp.path());
    result.expect("container side");

    // [r]private is refused without pivot_root, before anything is mounted.
    let private: Spec = serde_json::from_value(serde_json::json!({
        "ociVersion": "1.0.2", "linux": {"rootfsPropagation": "rprivate"}
    }))
    .expect("valid spec literal");
    let err = prepare(&RootfsOptions {
        spec: &private,
        ..opts
    })
    .expect_err("rprivate with no_pivot");
    assert!(
        err.to_string().contains("not safe without pivot_root"),
        "{err}"
    );
}

#[test]
fn bad_mounts_are_refused_with_their_path() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let before = host_mountinfo();
    let b = bundle();
    symlink("/etc", b.rootfs.join("proclink")).expect("proclink");
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            serde_json::json!({"destination": "/proclink", "type": "proc", "source": "proc"}),
            "/proclink",
            "must be mounted on ordinary directory",
        ),
        (
            serde_json::json!({"destination": "/x", "type": "bind", "source": "/does/not/exist",
                               "options": ["rbind"]}),
            "/does/not/exist",
            "ENOENT",
        ),
        (
            serde_json::json!({"destination": "/proc/sys/x", "type": "bind", "source": "/etc",
                               "options": ["bind"]}),
            "/proc/sys/x",
            "inside /proc",
        ),
    ];
    for (mount, path, reason) in cases {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, mount]
        }))
        .expect("valid spec literal");
        let opts = RootfsOptions {
            spec: &spec,
            rootfs: &b.rootfs,
            bundle: b.tmp.path(),
            no_pivot: false,
            in_user_ns: false,
            in_cgroup_ns: false,
        };
        let result = in_private_mount_ns(|| match prepare(&opts) {
            Ok(()) => Err("prepare accepted a bad mount".to_string()),
            Err(e) => {
                let text = e.to_string();
                check(
                    text.contains(path) && text.contains(reason),
                    format!("error {text:?} should name {path:?} and say {reason:?}"),
                )
            }
        });
        result.expect("container side");
    }
    assert_host_untouched(&before, b.tmp.path());
}
