//! The OOM message: the child is killed by the kernel OOM killer in a memory-limited cgroup,
//! and husk-init says so, with the limit, instead of a silent exit 137.

mod common;

use common::{scratch, Start, HUSK_INIT};
use std::fs;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::Duration;

/// A memory cgroup made for one test, emptied and removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    /// Creates a child of this process's memory cgroup (v1) or of the v2 root, limited to
    /// `bytes`; None when neither is available here.
    fn create(name: &str, bytes: u64) -> Option<Cgroup> {
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let v1 = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        let (dir, limit_file) = match v1 {
            Some(path) => (
                PathBuf::from(format!("/sys/fs/cgroup/memory{path}")).join(name),
                "memory.limit_in_bytes",
            ),
            None => {
                let subtree = fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control").ok()?;
                if !subtree.split_whitespace().any(|c| c == "memory") {
                    return None;
                }
                (PathBuf::from("/sys/fs/cgroup").join(name), "memory.max")
            }
        };
        fs::create_dir(&dir).ok()?;
        let cg = Cgroup(dir);
        fs::write(cg.0.join(limit_file), bytes.to_string()).ok()?;
        // Without swap limits a v2 child could swap instead of being killed.
        let _ = fs::write(cg.0.join("memory.swap.max"), "0");
        let _ = fs::write(cg.0.join("memory.swappiness"), "0");
        Some(cg)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            let procs = fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn an_oom_kill_is_explained_with_the_limit() {
    let name = format!("husk-init-oom-test-{}", std::process::id());
    let Some(cg) = Cgroup::create(&name, 32 << 20) else {
        eprintln!("skipping: no writable memory cgroup here");
        return;
    };
    let dir = scratch();
    // tail keeps the last line of its input in memory; /dev/zero has no newline.
    let mut start = Start::pid1(HUSK_INIT, dir.path(), &["--", "tail", "/dev/zero"]);
    let setup = format!("echo 0 > {}/cgroup.procs", cg.0.display());
    start.setup = &setup;
    let mut init = start.spawn();
    assert_eq!(init.code(60), 137);
    let stderr = init.stderr();
    assert!(
        stderr.contains("tail (pid 2) was killed by the kernel OOM killer (exit 137)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("memory limit 33554432 bytes (32 MiB) reached in cgroup"),
        "{stderr}"
    );
    assert!(stderr.contains(&name), "{stderr}");
}

#[test]
fn a_plain_sigkill_is_not_called_an_oom_kill() {
    let dir = scratch();
    let mut init = Start::pid1(HUSK_INIT, dir.path(), &["--", "sh", "-c", "kill -KILL $$"]).spawn();
    assert_eq!(init.code(10), 137);
    assert!(!init.stderr().contains("OOM"), "{}", init.stderr());
}
