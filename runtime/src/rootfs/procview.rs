//! procview: bind-mounts the per-container /proc views of the `husk-procview` FUSE server over
//! the container's /proc and /sys files, when the config asks for it (annotation
//! `io.husk.procview` = "true", or `procview.enable` in husk's config file unless the annotation
//! is "false"). See docs/procview.md.
//!
//! Runs in the init at the end of [`super::prepare`]: /proc and /sys are mounted by then, the
//! masked and read-only paths are not applied yet, and the root is not switched, so the server's
//! mount on the host path is still reachable. procview is an optimisation of what the container
//! sees, never a reason to fail its start: every problem here is one warning line and the
//! container keeps the host's files.

use std::path::{Path, PathBuf};

use nix::sys::statfs::FUSE_SUPER_MAGIC;
use oci_spec::runtime::Spec;

use super::paths::Root;
use super::sys;

/// The annotation that turns procview on for one container.
pub const ANNOTATION: &str = "io.husk.procview";

/// Where the server is mounted unless `HUSK_PROCVIEW_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/run/husk/procview";

/// (file under the server's mount, destination in the container). The same table as the
/// server's `files.rs`; a file the server does not serve is skipped with a warning.
const VIEWS: &[(&str, &str)] = &[
    ("proc/meminfo", "/proc/meminfo"),
    ("proc/cpuinfo", "/proc/cpuinfo"),
    ("proc/stat", "/proc/stat"),
    ("proc/uptime", "/proc/uptime"),
    ("proc/loadavg", "/proc/loadavg"),
    ("proc/swaps", "/proc/swaps"),
    ("proc/diskstats", "/proc/diskstats"),
    (
        "sys/devices/system/cpu/online",
        "/sys/devices/system/cpu/online",
    ),
];

/// Whether the container gets procview: its annotation, else husk's config file.
pub fn wanted(spec: &Spec) -> bool {
    match annotation(spec) {
        Some(on) => on,
        None => crate::config::get().procview.enable,
    }
}

/// The annotation's say: Some(true) for "true", Some(false) for "false", None otherwise (absent
/// or another value, which leaves it to the config file).
fn annotation(spec: &Spec) -> Option<bool> {
    match spec.annotations().as_ref()?.get(ANNOTATION)?.as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The server's mount directory: `HUSK_PROCVIEW_DIR` (inherited from `husk create`) or
/// [`DEFAULT_DIR`].
pub fn server_dir() -> PathBuf {
    std::env::var_os("HUSK_PROCVIEW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// Bind-mounts every view over its file inside `root` when the spec asks for procview and a
/// server is mounted; otherwise does nothing (with one warning line when it was asked for).
pub(super) fn bind_views(spec: &Spec, root: &Root) {
    if !wanted(spec) {
        return;
    }
    let dir = server_dir();
    if !is_fuse_mount(&dir) {
        crate::logging::warn(&format!(
            "procview: no husk-procview server mounted at {}; the container sees the host's /proc",
            dir.display()
        ));
        return;
    }
    let base = own_copy(&dir);
    for (source, destination) in VIEWS {
        if let Err(e) = bind_one(root, &base.join(source), Path::new(destination)) {
            crate::logging::warn(&format!("procview: {destination}: {e}"));
        }
    }
}

/// The container's own copy of the server's tree, `DIR/c/<init's host pid>`: inodes no other
/// container reads, so the kernel's page cache of one container's sendfile readers never serves
/// another's (docs/procview.md). Falls back to the shared tree when the pid is unknown or the
/// server has no `c/` (an older server).
fn own_copy(dir: &Path) -> PathBuf {
    // /proc here is still the host's (the root is not switched): "self" is the host pid.
    let own = std::fs::read_link("/proc/self")
        .ok()
        .map(|pid| dir.join("c").join(pid))
        .filter(|p| p.is_dir());
    own.unwrap_or_else(|| dir.to_path_buf())
}

/// Starts a `husk-procview` server when the config asks for procview and none is mounted yet.
///
/// Called by `create` before it forks: a server started from the init would live in the
/// container's cgroup and namespaces and die with it. The server runs detached in its own
/// session; a failure to start it is a warning, as everything procview is.
pub fn ensure_server(spec: &Spec) {
    if !wanted(spec) {
        return;
    }
    let dir = server_dir();
    if is_fuse_mount(&dir) {
        return;
    }
    let Some(bin) = server_binary() else {
        crate::logging::warn(
            "procview: husk-procview not found (set HUSK_PROCVIEW_BIN or put it on PATH)",
        );
        return;
    };
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("--dir")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid in the child before exec only detaches it from our session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    if let Err(e) = cmd.spawn() {
        crate::logging::warn(&format!("procview: start {}: {e}", bin.display()));
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !is_fuse_mount(&dir) {
        if std::time::Instant::now() > deadline {
            crate::logging::warn(&format!(
                "procview: {} did not mount {} within 3s",
                bin.display(),
                dir.display()
            ));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The server binary: `HUSK_PROCVIEW_BIN`, else beside the husk that was invoked (argv[0]:
/// /proc/self/exe is the protected copy, see process/cloned_binary.rs), else on PATH.
fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HUSK_PROCVIEW_BIN") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .filter(|a| a.components().count() > 1)
        .and_then(|a| a.parent().map(|d| d.join("husk-procview")))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("husk-procview"))
                .find(|p| p.is_file())
        })
    })
}

/// Whether `dir` is the root of a live FUSE mount (a dead server's mount fails statfs with
/// ENOTCONN, which also counts as "not mounted").
fn is_fuse_mount(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|st| st.filesystem_type() == FUSE_SUPER_MAGIC)
}

/// One read-only bind of a server file over an existing file in the rootfs. The destination is
/// resolved inside the rootfs (no symlink may lead out of it); a destination that does not
/// exist (no /sys mount, say) is skipped rather than created.
fn bind_one(root: &Root, source: &Path, destination: &Path) -> Result<(), String> {
    // Reading the source's metadata goes through the server: it proves the file is served.
    std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let target = root.resolve(destination).map_err(|e| e.to_string())?;
    sys::mount(Some(source), &target.proc_path(), None, libc::MS_BIND, None)
        .map_err(|e| format!("bind {}: {e}", source.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        spec
    }

    #[test]
    fn the_annotation_says_true_or_false_or_leaves_it_to_the_config() {
        assert_eq!(annotation(&spec_with(&[(ANNOTATION, "true")])), Some(true));
        assert_eq!(
            annotation(&spec_with(&[(ANNOTATION, "false")])),
            Some(false)
        );
        assert_eq!(annotation(&spec_with(&[(ANNOTATION, "yes")])), None);
        assert_eq!(annotation(&spec_with(&[])), None);
        assert_eq!(annotation(&Spec::default()), None);
        assert!(wanted(&spec_with(&[(ANNOTATION, "true")])));
        assert!(!wanted(&spec_with(&[(ANNOTATION, "false")])));
    }
}
