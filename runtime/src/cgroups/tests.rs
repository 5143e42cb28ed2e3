//! Tests against the real host cgroups (root only; skipped otherwise). Each test uses its own
//! `/husk-test-*` cgroup and a guard that kills its child and removes the cgroup on every path.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A cgroup path no other test (or test run) uses.
fn unique_path(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "/husk-test-{}-{}-{}-{tag}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills the children by PID and removes the cgroup (and any extra dirs) when dropped.
struct Guard {
    cgroup: ContainerCgroup,
    children: Vec<Child>,
    /// Parent directories a test created on purpose (remove() leaves parents).
    extra_dirs: Vec<PathBuf>,
}

impl Guard {
    fn new(path: &str) -> Guard {
        let cgroup = match ContainerCgroup::new(Some(Path::new(path)), "unused", false) {
            Ok(c) => c,
            Err(e) => panic!("new({path}): {e}"),
        };
        Guard {
            cgroup,
            children: Vec::new(),
            extra_dirs: Vec::new(),
        }
    }

    fn spawn(&mut self, args: &[&str], stdin: bool) -> Pid {
        let mut cmd = Command::new(args[0]);
        cmd.args(&args[1..]).stdout(Stdio::piped());
        if stdin {
            cmd.stdin(Stdio::piped());
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("spawning {args:?}: {e}"),
        };
        let pid = Pid::from_raw(child.id() as i32);
        self.children.push(child);
        pid
    }

    fn dirs(&self) -> Vec<PathBuf> {
        match self.cgroup.dirs() {
            Ok(d) => d,
            Err(e) => panic!("dirs: {e}"),
        }
    }

    /// The container's directory in the hierarchy of `controller`.
    fn dir(&self, controller: &str) -> PathBuf {
        match self.cgroup.controller_dir(controller) {
            Ok(Some(d)) => d,
            Ok(None) => panic!("no {controller} hierarchy"),
            Err(e) => panic!("controller_dir({controller}): {e}"),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cgroup.thaw();
        if let Err(e) = self.cgroup.remove() {
            eprintln!("guard: removing {}: {e}", self.cgroup.path().display());
        }
        // Deepest first; they are empty once remove() has run.
        for dir in self.extra_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn ok<T>(what: &str, r: Result<T, CgroupError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().to_string(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

fn resources(json: &str) -> LinuxResources {
    match serde_json::from_str(json) {
        Ok(r) => r,
        Err(e) => panic!("resources JSON: {e}"),
    }
}

#[test]
fn lifecycle_limits_freeze_pids_remove() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let path = unique_path("life");
    let mut g = Guard::new(&path);
    assert_eq!(g.cgroup.path(), Path::new(&path));
    ok("ensure_unused before creation", g.cgroup.ensure_unused());

    let pid = g.spawn(&["sleep", "1000"], false);
    ok("add_task", g.cgroup.add_task(pid));
    ok(
        "apply",
        g.cgroup.apply(&resources(
            r#"{
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 67108864},
                "pids": {"limit": 32},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}
            }"#,
        )),
    );

    // The child is in the container's cgroup in every hierarchy it shows.
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    for line in own.lines() {
        assert!(line.ends_with(&path), "{pid} not in {path}: {line}");
    }

    if ContainerCgroup::is_v2() {
        let dir = g.dir("memory");
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        assert_eq!(read(&dir.join("pids.max")), "32");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("cpuset.cpus")), "0");
    } else {
        assert_eq!(
            read(&g.dir("memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(&g.dir("pids").join("pids.max")), "32");
        assert_eq!(read(&g.dir("cpu").join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&g.dir("cpu").join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&g.dir("cpu").join("cpu.shares")), "512");
        assert_eq!(read(&g.dir("cpuset").join("cpuset.cpus")), "0");
        // Deny-all plus runc's default allow list.
        let list = read(&g.dir("devices").join("devices.list"));
        for rule in [
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:9 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
        ] {
            assert!(list.lines().any(|l| l == rule), "{rule} missing: {list}");
        }
        assert!(!list.contains("a *:*"), "deny-all not applied: {list}");
    }

    let pids = ok("pids", g.cgroup.pids());
    assert!(pids.contains(&pid), "{pid} not in {pids:?}");
    match g.cgroup.ensure_unused() {
        Err(CgroupError::NotEmpty { count, .. }) => assert!(count >= 1),
        other => panic!("ensure_unused on a busy cgroup: {other:?}"),
    }

    ok("freeze", g.cgroup.freeze());
    assert!(ok("is_frozen", g.cgroup.is_frozen()));
    if !ContainerCgroup::is_v2() {
        assert_eq!(read(&g.dir("freezer").join("freezer.state")), "FROZEN");
    }
    ok("thaw", g.cgroup.thaw());
    assert!(!ok("is_frozen", g.cgroup.is_frozen()));
    if !ContainerCgroup::is_v2() {
        assert_eq!(read(&g.dir("freezer").join("freezer.state")), "THAWED");
    }

    let stats = ok("stats", g.cgroup.stats());
    assert_eq!(stats.memory.memory.limit, 67108864);
    assert!(stats.pids.current >= 1);
    let json = match serde_json::to_string(&stats) {
        Ok(j) => j,
        Err(e) => panic!("serializing stats: {e}"),
    };
    assert!(json.contains("\"memory\""));

    for child in &mut g.children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let dirs = g.dirs();
    assert!(dirs.iter().all(|d| d.exists()));
    ok("remove", g.cgroup.remove());
    for d in &dirs {
        assert!(!d.exists(), "{} still exists", d.display());
    }
    ok("remove again", g.cgroup.remove());
    assert!(ok("pids after remove", g.cgroup.pids()).is_empty());
    assert!(!ok("is_frozen after remove", g.cgroup.is_frozen()));
    assert!(matches!(
        g.cgroup.freeze(),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn deny_all_still_allows_default_devices() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut g = Guard::new(&unique_path("dev"));
    // The shell waits for a line, so it opens the devices only once it is in the cgroup.
    let script = "read go; \
        if echo x > /dev/null; then echo null-ok; else echo null-denied; fi; \
        if head -c1 /dev/urandom > /dev/null; then echo urandom-ok; else echo urandom-denied; fi; \
        if (: < /dev/mem) 2>/dev/null; then echo mem-ok; else echo mem-denied; fi";
    let pid = g.spawn(&["sh", "-c", script], true);
    ok("add_task", g.cgroup.add_task(pid));
    ok(
        "apply",
        g.cgroup.apply(&resources(
            r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
        )),
    );
    let child = &mut g.children[0];
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        panic!("child without pipes");
    };
    if let Err(e) = writeln!(stdin, "go") {
        panic!("writing to child: {e}");
    }
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    // The same on v1 (devices.allow/deny) and v2 (husk's eBPF filter).
    assert_eq!(lines, ["null-ok", "urandom-ok", "mem-denied"]);
}

#[test]
fn memory_limit_below_usage_is_explained() {
    if !is_root() || ContainerCgroup::is_v2() {
        // v2 reclaims or OOM-kills instead of refusing the limit.
        eprintln!("skipped: needs root on cgroup v1");
        return;
    }
    let swap = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swap.lines().count() > 1 {
        eprintln!("skipped: with swap the kernel can always reclaim");
        return;
    }
    let mut g = Guard::new(&unique_path("mem"));
    // ~8 MiB of anonymous memory the kernel cannot reclaim without swap.
    let pid = g.spawn(
        &[
            "sh",
            "-c",
            "x=$(head -c 8000000 /dev/zero | tr '\\0' a); echo ready; sleep 1000",
        ],
        false,
    );
    ok("add_task", g.cgroup.add_task(pid));
    let Some(stdout) = g.children[0].stdout.take() else {
        panic!("child without stdout");
    };
    // Wait until the memory is allocated (the shell holds x after the subshell finished).
    let mut line = String::new();
    if let Err(e) = BufReader::new(stdout).read_line(&mut line) {
        panic!("reading child: {e}");
    }
    match g
        .cgroup
        .apply(&resources(r#"{"memory": {"limit": 1048576}}"#))
    {
        Err(e @ CgroupError::MemoryBelowUsage { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("1048576") && msg.contains("higher limit"),
                "{msg}"
            );
        }
        other => panic!("expected MemoryBelowUsage, got {other:?}"),
    }
}

#[test]
fn hugetlb_on_a_host_without_v1_hugetlb() {
    if !is_root() || ContainerCgroup::is_v2() {
        eprintln!("skipped: needs root on cgroup v1");
        return;
    }
    let g = Guard::new(&unique_path("huge"));
    let res = resources(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#);
    let result = g.cgroup.apply(&res);
    if Path::new("/sys/fs/cgroup/hugetlb").exists() {
        ok("apply hugetlb", result);
        assert_eq!(
            read(&g.dir("hugetlb").join("hugetlb.2MB.limit_in_bytes")),
            "4194304"
        );
        return;
    }
    match result {
        Ok(()) => {
            // The host delegates hugetlb on its unified hierarchy.
            assert_eq!(read(&g.dir("unified").join("hugetlb.2MB.max")), "4194304");
        }
        Err(e @ CgroupError::Hugetlb { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("2MB") && msg.contains("hugetlb"), "{msg}");
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    let bad = resources(r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#);
    assert!(g.cgroup.apply(&bad).is_err());
}

#[test]
fn unified_resources_need_v2() {
    if !is_root() || ContainerCgroup::is_v2() {
        eprintln!("skipped: needs root on cgroup v1");
        return;
    }
    let g = Guard::new(&unique_path("unif"));
    match g
        .cgroup
        .apply(&resources(r#"{"unified": {"memory.high": "1000000"}}"#))
    {
        Err(CgroupError::Unsupported { what, .. }) => assert!(what.contains("v2"), "{what}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn remove_kills_leftovers_and_sub_cgroups_and_keeps_parents() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let parent = unique_path("nest");
    let leaf = format!("{parent}/ctr");
    let mut g = Guard::new(&leaf);
    let pid = g.spawn(&["sleep", "1000"], false);
    ok("add_task", g.cgroup.add_task(pid));
    let dirs = g.dirs();
    g.extra_dirs = dirs
        .iter()
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    // A sub-cgroup the container made for itself in every hierarchy, holding a process.
    let pid2 = g.spawn(&["sleep", "1000"], false);
    for dir in &dirs {
        let sub = dir.join("inner");
        if let Err(e) = std::fs::create_dir(&sub) {
            panic!("mkdir {}: {e}", sub.display());
        }
        if dir.starts_with("/sys/fs/cgroup/cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let _ = std::fs::write(sub.join(f), read(&dir.join(f)));
            }
        }
        if let Err(e) = std::fs::write(sub.join("cgroup.procs"), pid2.to_string()) {
            panic!("joining {}: {e}", sub.display());
        }
    }
    let pids = ok("pids", g.cgroup.pids());
    assert!(pids.contains(&pid) && pids.contains(&pid2), "{pids:?}");

    // Frozen too: remove must thaw before its SIGKILLs can work.
    ok("freeze", g.cgroup.freeze());
    ok("remove", g.cgroup.remove());
    for d in &dirs {
        assert!(!d.exists(), "{} still exists", d.display());
    }
    for child in &mut g.children {
        match child.wait() {
            Ok(status) => assert!(!status.success(), "child survived remove: {status}"),
            Err(e) => panic!("wait: {e}"),
        }
    }
    for d in &g.extra_dirs {
        assert!(d.exists(), "parent {} was removed", d.display());
    }
}

#[test]
fn relative_path_is_under_the_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rel = unique_path("rel");
    let rel = rel.trim_start_matches('/');
    let mut g = Guard::new(rel);
    assert_eq!(g.cgroup.path(), Path::new(&format!("/{rel}")));
    let pid = g.spawn(&["sleep", "1000"], false);
    ok("add_task", g.cgroup.add_task(pid));
    for d in g.dirs() {
        assert!(d.ends_with(rel), "{}", d.display());
        assert!(d.exists(), "{}", d.display());
    }
}
