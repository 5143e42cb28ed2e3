//! Differential tests: the same bundle runs under the oracle (Debian's runc, HUSK_ORACLE) and
//! under husk (HUSK_BIN), and what the container sees must be the same: capabilities, ids,
//! hostname, the mount table, rlimits, cgroup limit files, devices, exit codes and `state`.
//!
//! Each test uses its own `--root` per runtime, unique ids and its bundle's own cgroup path
//! "/husk-test-...", so they run in parallel and never touch the host's cgroups.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use husk_tests::{host, require_root, temp_dir, Bundle, Output, Runtime};
use serde_json::{json, Value};

struct Pair {
    oracle: Runtime,
    husk: Runtime,
}

fn pair(test: &str) -> Pair {
    Pair {
        oracle: Runtime::oracle(test),
        husk: Runtime::husk(test),
    }
}

impl Pair {
    /// Runs `b` under the oracle, then under husk.
    fn run(&self, b: &Bundle) -> (Output, Output) {
        let o = self.oracle.run_new(b);
        let h = self.husk.run_new(b);
        (o, h)
    }

    /// Runs `b` under both, requires both to exit 0, and returns both stdouts.
    #[track_caller]
    fn run_ok(&self, b: &Bundle) -> (String, String) {
        let (o, h) = self.run(b);
        o.ok();
        h.ok();
        (o.stdout, h.stdout)
    }
}

/// Panics with a line diff unless the oracle's and husk's views are the same.
#[track_caller]
fn assert_same(what: &str, oracle: &str, husk: &str) {
    if oracle == husk {
        return;
    }
    let o: BTreeSet<&str> = oracle.lines().collect();
    let h: BTreeSet<&str> = husk.lines().collect();
    let only_o: Vec<&str> = o.difference(&h).copied().collect();
    let only_h: Vec<&str> = h.difference(&o).copied().collect();
    panic!(
        "{what} differs between runc and husk\n\
         --- only under runc ---\n{}\n--- only under husk ---\n{}\n\
         --- runc ---\n{oracle}\n--- husk ---\n{husk}",
        only_o.join("\n"),
        only_h.join("\n")
    );
}

/// /proc/self/mountinfo reduced to "mountpoint fstype mount-options super-options", sorted:
/// mount ids, peer groups and device numbers differ between any two runs.
fn mount_table(mountinfo: &str) -> String {
    let mut v: Vec<String> = host::parse_mountinfo(mountinfo)
        .into_iter()
        .map(|m| {
            format!(
                "{} {} {} {}",
                m.mount_point, m.fstype, m.mount_opts, m.super_opts
            )
        })
        .collect();
    v.sort();
    v.join("\n")
}

#[test]
fn capabilities_default() {
    require_root!();
    let p = pair("diffcaps");
    let b = Bundle::sh("grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status");
    let (o, h) = p.run_ok(&b);
    assert!(o.contains("CapBnd:"), "{o}");
    assert_same("/proc/self/status capabilities", &o, &h);
}

#[test]
fn capabilities_all_five_sets() {
    require_root!();
    let p = pair("diffcaps5");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status"]);
        c["process"]["noNewPrivileges"] = json!(false);
        let small = json!(["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SETUID"]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_KILL", "CAP_SYS_ADMIN"],
            "effective": small,
            "permitted": small,
            "inheritable": small,
            "ambient": ["CAP_CHOWN", "CAP_NET_ADMIN"],
        });
    });
    let (o, h) = p.run_ok(&b);
    assert!(o.contains("CapAmb:\t0000000000001001"), "{o}");
    assert_same("capabilities with all five sets", &o, &h);
}

#[test]
fn identity_root() {
    require_root!();
    let p = pair("diffidroot");
    let b = Bundle::sh("id; umask; echo HOME=$HOME");
    let (o, h) = p.run_ok(&b);
    assert!(o.starts_with("uid=0(root) gid=0(root)"), "{o}");
    assert_same("id as root", &o, &h);
}

#[test]
fn identity_user_groups_umask() {
    require_root!();
    let p = pair("diffiduser");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "id; id -G; umask; echo HOME=$HOME; grep -E '^(Uid|Gid|Groups)' /proc/self/status"
        ]);
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 10], "umask": 23});
    });
    let (o, h) = p.run_ok(&b);
    assert!(o.starts_with("uid=1000(user) gid=1000(user)"), "{o}");
    assert!(o.contains("0027"), "{o}");
    assert_same("id as uid 1000", &o, &h);
}

#[test]
fn hostname() {
    require_root!();
    let p = pair("diffhost");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "hostname; uname -n; cat /proc/sys/kernel/hostname"
        ]);
        c["hostname"] = json!("husk-diff");
    });
    let (o, h) = p.run_ok(&b);
    assert_eq!(o, "husk-diff\nhusk-diff\nhusk-diff\n");
    assert_same("hostname", &o, &h);
}

#[test]
fn env_and_cwd() {
    require_root!();
    let p = pair("diffenv");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "env | sort; pwd"]);
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!("HUSK_DIFF=a b=c"));
    });
    let (o, h) = p.run_ok(&b);
    assert!(
        o.contains("HUSK_DIFF=a b=c\n") && o.ends_with("/tmp\n"),
        "{o}"
    );
    assert_same("env and cwd", &o, &h);
}

#[test]
fn mount_table_default() {
    require_root!();
    let p = pair("diffmounts");
    let b = Bundle::with_args(&["cat", "/proc/self/mountinfo"]);
    let (o, h) = p.run_ok(&b);
    let (o, h) = (mount_table(&o), mount_table(&h));
    assert!(o.contains("/proc proc"), "{o}");
    assert_same("mount table", &o, &h);
}

#[test]
fn mount_table_with_bind_and_tmpfs_mounts() {
    require_root!();
    let p = pair("diffmounts2");
    let src = temp_dir("bindsrc");
    std::fs::write(src.path().join("file"), "from the host\n").expect("write bind source");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "cat /proc/self/mountinfo; cat /mnt/data/file"]);
        let mounts = c["mounts"].as_array_mut().expect("mounts");
        mounts.push(json!({
            "destination": "/mnt/data", "type": "bind",
            "source": src.path(), "options": ["rbind", "ro", "nosuid"]
        }));
        mounts.push(json!({
            "destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "mode=755", "size=1m"]
        }));
    });
    let (o, h) = p.run_ok(&b);
    assert!(o.ends_with("from the host\n"), "{o}");
    let (o, h) = (mount_table(&o), mount_table(&h));
    assert!(o.contains("/mnt/data "), "{o}");
    assert_same("mount table with extra mounts", &o, &h);
}

#[test]
fn default_devices() {
    require_root!();
    let p = pair("diffdev");
    let b = Bundle::sh("stat -c '%n %F %a %u:%g %t:%T %N' /dev/* /dev/pts/* | sort");
    let (o, h) = p.run_ok(&b);
    assert!(
        o.contains("/dev/null character special file 666 0:0 1:3"),
        "{o}"
    );
    assert_same("/dev", &o, &h);
}

#[test]
fn rlimits() {
    require_root!();
    let p = pair("diffrlimits");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "cat /proc/self/limits; ulimit -a"]);
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
            {"type": "RLIMIT_NPROC", "hard": 65535, "soft": 65535},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            {"type": "RLIMIT_STACK", "hard": 16777216, "soft": 8388608}
        ]);
    });
    let (o, h) = p.run_ok(&b);
    assert!(
        o.lines()
            .any(|l| l.starts_with("Max open files") && l.contains("1024") && l.contains("4096")),
        "{o}"
    );
    assert_same("rlimits", &o, &h);
}

#[test]
fn cgroup_limits() {
    require_root!();
    let p = pair("diffcgroup");
    let files = [
        "memory/memory.limit_in_bytes",
        "pids/pids.max",
        "cpu/cpu.shares",
        "cpu/cpu.cfs_quota_us",
        "cpu/cpu.cfs_period_us",
    ];
    let v2 = host::cgroup_mounts()
        .iter()
        .any(|m| m == std::path::Path::new("/sys/fs/cgroup"))
        && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (files, want): (Vec<String>, &str) = if v2 {
        (
            ["memory.max", "pids.max", "cpu.weight", "cpu.max"]
                .iter()
                .map(|f| format!("/sys/fs/cgroup/{f}"))
                .collect(),
            "67108864\n50\n",
        )
    } else {
        (
            files
                .iter()
                .map(|f| format!("/sys/fs/cgroup/{f}"))
                .collect(),
            "67108864\n50\n512\n50000\n100000\n",
        )
    };
    let script = format!("cat {}; cat /proc/self/cgroup", files.join(" "));
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", script]);
        let r = &mut c["linux"]["resources"];
        r["memory"] = json!({"limit": 67108864});
        r["pids"] = json!({"limit": 50});
        r["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000});
    });
    let cg = b.cgroups_path().expect("the bundle has a test cgroup path");
    let (o, h) = p.run_ok(&b);
    assert!(o.starts_with(want), "{o}");
    assert!(o.contains(&cg), "/proc/self/cgroup names {cg}:\n{o}");
    assert_same("cgroup limit files", &o, &h);
    assert!(
        host::cgroup_dirs(&cg).is_empty(),
        "cgroup {cg} left: {:?}",
        host::cgroup_dirs(&cg)
    );
}

#[test]
fn exit_codes() {
    require_root!();
    let p = pair("diffexit");
    let b = Bundle::sh("exit 0");
    for code in [0, 1, 3, 42, 127, 255] {
        b.set_sh(&format!("exit {code}"));
        let (o, h) = p.run(&b);
        assert_eq!(o.code, code, "{o}");
        assert_eq!(h.code, o.code, "husk's exit code differs from runc's:\n{h}");
    }
    b.edit(|c| c["process"]["args"] = json!(["/no/such/binary"]));
    let (o, h) = p.run(&b);
    assert!(o.code != 0, "{o}");
    assert_eq!(h.code, o.code, "exec failure exit code:\n{o}\n{h}");
}

/// Kills a `run` from outside with SIGKILL: run returns 128+9 under both.
#[test]
fn exit_code_when_killed() {
    require_root!();
    let p = pair("diffkilled");
    let b = Bundle::with_args(&["sleep", "100"]);
    for rt in [&p.oracle, &p.husk] {
        let id = rt.new_id();
        let out = std::thread::scope(|s| {
            let runner = s.spawn(|| rt.run(&b, &id));
            let deadline = Instant::now() + Duration::from_secs(15);
            while rt.state(&id).json().map(|s| s["status"].clone()) != Some(json!("running")) {
                assert!(Instant::now() < deadline, "{id} never ran");
                std::thread::sleep(Duration::from_millis(20));
            }
            rt.kill(&id, "KILL").ok();
            runner.join().expect("run thread")
        });
        assert_eq!(out.code, 137, "{out}");
    }
}

/// `state` with the parts that differ between any two containers (id, pid, creation time) and
/// the runtime's own spec version replaced by placeholders, after checking their shape.
fn normalized_state(st: &Value, id: &str) -> Value {
    let mut st = st.clone();
    assert_eq!(st["id"], id, "{st}");
    st["id"] = json!("ID");
    let pid = st["pid"].as_i64().expect("pid is a number");
    assert!(pid >= 0, "{st}");
    st["pid"] = json!(if pid > 0 { "PID" } else { "0" });
    let created = st["created"].as_str().expect("created is a string");
    assert!(
        created.len() >= 20 && created.as_bytes()[4] == b'-' && created.as_bytes()[10] == b'T',
        "created is not RFC 3339: {st}"
    );
    st["created"] = json!("TIME");
    // runc reports the runtime-spec version it was built against; husk its own. Both 1.x.
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );
    st["ociVersion"] = json!("1.x");
    st
}

#[test]
fn state_fields() {
    require_root!();
    let p = pair("diffstate");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "100"]);
        c["annotations"] = json!({"org.husk.diff": "yes"});
    });
    let ids = [p.oracle.new_id(), p.husk.new_id()];
    let rts = [&p.oracle, &p.husk];
    let states = |want: &str| -> Vec<Value> {
        rts.iter()
            .zip(&ids)
            .map(|(rt, id)| {
                normalized_state(&rt.wait_status(id, want, Duration::from_secs(15)), id)
            })
            .collect()
    };
    let same = |what: &str, v: Vec<Value>| {
        let o = serde_json::to_string_pretty(&v[0]).expect("json");
        let h = serde_json::to_string_pretty(&v[1]).expect("json");
        assert_same(what, &o, &h);
    };
    for (rt, id) in rts.iter().zip(&ids) {
        rt.create(&b, id).ok();
    }
    same("state of a created container", states("created"));
    let listed: Vec<Value> = rts
        .iter()
        .zip(&ids)
        .map(|(rt, id)| {
            let out = rt.list(&["--format", "json"]);
            let list = out.json().unwrap_or_else(|| panic!("{out}"));
            normalized_state(&list[0], id)
        })
        .collect();
    same("list --format json", listed);
    for (rt, id) in rts.iter().zip(&ids) {
        rt.start(id).ok();
    }
    same("state of a running container", states("running"));
    for (rt, id) in rts.iter().zip(&ids) {
        rt.kill(id, "KILL").ok();
    }
    same("state of a stopped container", states("stopped"));
    for (rt, id) in rts.iter().zip(&ids) {
        rt.delete(id).ok();
        let err = rt.state(id);
        err.fails().stderr_has("does not exist");
    }
}
