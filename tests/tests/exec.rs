//! `exec`: the process joins the container (namespaces, cgroup, capabilities, rlimits,
//! no-new-privileges), every flag does what runc's does, exit codes are runc's, failures
//! leave nothing behind, and no runtime descriptor or binary is reachable from the process.

mod ops_support;

use std::fs;
use std::time::Duration;

use husk_tests::{host, require_root, temp_dir, Bundle, Output, Runtime};
use ops_support::{cgroup_pids, exec_with_fds, run_detached};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

fn sleeper() -> Bundle {
    Bundle::with_args(&["sleep", "1000"])
}

fn exec(rt: &Runtime, id: &str, args: &[&str]) -> Output {
    let mut a = vec!["exec", id];
    a.extend_from_slice(args);
    rt.exec(&a)
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    require_root!();
    let rt = Runtime::husk("exec-ns");
    let b = sleeper();
    let (id, init) = run_detached(&rt, &b);
    let script =
        "for n in ipc mnt net pid uts cgroup user; do echo $n $(readlink /proc/$P/ns/$n); done; \
                  cat /proc/$P/cgroup";
    let mine = exec(&rt, &id, &["sh", "-c", &script.replace("$P", "self")]);
    let init_view = exec(&rt, &id, &["sh", "-c", &script.replace("$P", "1")]);
    mine.ok();
    init_view.ok();
    assert_eq!(
        mine.stdout, init_view.stdout,
        "exec'd process differs from the init"
    );
    // And as the host sees it: the exec'd process is in the init's cgroup everywhere.
    let pidfile = temp_dir("pidfile");
    let pf = pidfile.path().join("p.pid");
    rt.exec(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().expect("utf8"),
        &id,
        "sleep",
        "100",
    ])
    .ok();
    let pid: i32 = fs::read_to_string(&pf)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    rt.track_pid(pid);
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("exec cgroup"),
        fs::read_to_string(format!("/proc/{init}/cgroup")).expect("init cgroup")
    );
    let cg = b.cgroups_path().expect("cgroup path");
    assert!(cgroup_pids(&cg).contains(&pid), "{pid} not in {cg}");
    for ns in ["ipc", "mnt", "net", "pid", "uts"] {
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("ns"),
            fs::read_link(format!("/proc/{init}/ns/{ns}")).expect("ns"),
            "{ns} namespace"
        );
    }
    rt.delete_force(&id).ok();
    assert!(!host::alive(pid), "exec'd process survived delete --force");
    rt.assert_host_clean(&[&b]);
}

#[test]
fn exec_gets_container_caps_rlimits_nnp() {
    require_root!();
    let rt = Runtime::husk("exec-caps");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "1000"]);
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 777, "soft": 555}]);
        c["process"]["noNewPrivileges"] = json!(true);
    });
    let (id, _) = run_detached(&rt, &b);
    let probe = "grep -E '^(Cap|NoNewPrivs)' /proc/$P/status; grep 'open files' /proc/$P/limits";
    let mine = exec(&rt, &id, &["sh", "-c", &probe.replace("$P", "self")]);
    let init = exec(&rt, &id, &["sh", "-c", &probe.replace("$P", "1")]);
    assert_eq!(mine.ok().stdout, init.ok().stdout);
    assert!(mine.stdout.contains("NoNewPrivs:\t1"), "{mine}");
    assert!(mine.stdout.contains("555"), "{mine}");
    // The default set: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    assert!(mine.stdout.contains("CapEff:\t0000000020000420"), "{mine}");
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn exec_flags() {
    require_root!();
    let rt = Runtime::husk("exec-flags");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "1000"]);
        c["process"]["noNewPrivileges"] = json!(false);
    });
    let (id, _) = run_detached(&rt, &b);
    // -e, --cwd
    let out = rt.exec(&[
        "exec",
        "-e",
        "FOO=bar",
        "--env",
        "X=y z",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $FOO/$X; pwd",
    ]);
    assert_eq!(out.ok().stdout, "bar/y z\n/tmp\n");
    // -u uid:gid and --additional-gids
    let out = rt.exec(&[
        "exec",
        "-u",
        "1000:1000",
        "--additional-gids",
        "5",
        "-g",
        "10",
        &id,
        "sh",
        "-c",
        "id -u; id -g; id -G",
    ]);
    assert_eq!(out.ok().stdout, "1000\n1000\n1000 5 10\n");
    // -u uid alone keeps the process's gid (0), as runc does.
    let out = exec(&rt, &id, &["id", "-u"]);
    assert_eq!(out.ok().stdout, "0\n");
    let out = rt.exec(&["exec", "-u", "42", &id, "sh", "-c", "id -u; id -g"]);
    assert_eq!(out.ok().stdout, "42\n0\n");
    // --cap: NET_ADMIN (bit 12) joins the effective set.
    let out = rt.exec(&[
        "exec",
        "--cap",
        "CAP_NET_ADMIN",
        &id,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(out.ok().stdout.contains("0000000020001420"), "{out}");
    // --no-new-privs on a container without it.
    let out = exec(&rt, &id, &["grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(out.ok().stdout.contains("NoNewPrivs:\t0"), "{out}");
    let out = rt.exec(&[
        "exec",
        "--no-new-privs",
        &id,
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(out.ok().stdout.contains("NoNewPrivs:\t1"), "{out}");
    // --apparmor / --process-label: accepted, refused with a clear error when set.
    let out = rt.exec(&["exec", "--apparmor", "docker-default", &id, "true"]);
    out.fails().stderr_has("AppArmor");
    let out = rt.exec(&[
        "exec",
        "--process-label",
        "system_u:system_r:x",
        &id,
        "true",
    ]);
    out.fails().stderr_has("SELinux");
    let out = rt.exec(&["exec", "--apparmor", "", "--process-label", "", &id, "true"]);
    out.ok();
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn exec_process_json_like_containerd() {
    require_root!();
    let rt = Runtime::husk("exec-json");
    let b = sleeper();
    let (id, _) = run_detached(&rt, &b);
    let dir = temp_dir("process");
    let p = dir.path().join("process.json");
    fs::write(
        &p,
        json!({
            "terminal": false,
            "user": {"uid": 1000, "gid": 100, "additionalGids": [7]},
            "args": ["sh", "-c", "echo $GREETING; pwd; id -u; id -G; grep 'open files' /proc/self/limits"],
            "env": ["PATH=/bin:/usr/bin", "GREETING=hello"],
            "cwd": "/etc",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 300, "soft": 200}],
            "noNewPrivileges": true
        })
        .to_string(),
    )
    .expect("write process.json");
    let out = rt.exec(&["exec", "--process", p.to_str().expect("utf8"), &id]);
    let o = &out.ok().stdout;
    assert!(o.starts_with("hello\n/etc\n1000\n100 7\n"), "{out}");
    assert!(o.contains(" 200 ") && o.contains(" 300 "), "{out}");
    // -p is the short form, and --detach with --pid-file is what the shim passes.
    let pf = dir.path().join("exec.pid");
    fs::write(
        &p,
        json!({"args": ["sleep", "50"], "cwd": "/", "user": {"uid": 0, "gid": 0}}).to_string(),
    )
    .expect("write");
    rt.exec(&[
        "exec",
        "-p",
        p.to_str().expect("utf8"),
        "--detach",
        "--pid-file",
        pf.to_str().expect("utf8"),
        &id,
    ])
    .ok();
    let pid: i32 = fs::read_to_string(&pf)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    rt.track_pid(pid);
    assert!(host::alive(pid));
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}

/// A failed exec: non-zero exit, a one-line reason, and no process or file left behind.
#[track_caller]
fn assert_clean_failure(out: &Output, needle: &str, rt: &Runtime, id: &str, cg: &str, init: i32) {
    out.fails().stderr_has(needle);
    assert_eq!(
        cgroup_pids(cg),
        vec![init],
        "a process was left in the cgroup"
    );
    let entries: Vec<String> = fs::read_dir(rt.root().join(id))
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries
            .iter()
            .all(|e| e == "state.json" || e == "config.json"),
        "state dir has {entries:?}"
    );
}

#[test]
fn exec_errors_are_clear_and_leave_nothing() {
    require_root!();
    let rt = Runtime::husk("exec-errors");
    let b = sleeper();
    let (id, init) = run_detached(&rt, &b);
    let cg = b.cgroups_path().expect("cg");
    let dir = temp_dir("badjson");
    let bad = dir.path().join("bad.json");
    fs::write(&bad, "{\"args\": [\"true\"], \"cwd\": ").expect("write");
    let out = rt.exec(&["exec", "--process", bad.to_str().expect("utf8"), &id]);
    assert_clean_failure(&out, "parse process JSON", &rt, &id, &cg, init);
    fs::write(
        &bad,
        json!({"args": ["true"], "cwd": "relative", "user": {"uid": 0, "gid": 0}}).to_string(),
    )
    .expect("write");
    let out = rt.exec(&["exec", "--process", bad.to_str().expect("utf8"), &id]);
    assert_clean_failure(&out, "absolute", &rt, &id, &cg, init);
    let out = rt.exec(&["exec", "-u", "nobody", &id, "true"]);
    assert_clean_failure(&out, "not a number", &rt, &id, &cg, init);
    let out = exec(&rt, &id, &["/no/such/binary"]);
    assert_clean_failure(&out, "no/such/binary", &rt, &id, &cg, init);
    let out = rt.exec(&["exec", "--cwd", "/no/such/dir", &id, "true"]);
    assert_clean_failure(&out, "/no/such/dir", &rt, &id, &cg, init);
    let out = rt.exec(&["exec", "--cap", "CAP_BOGUS", &id, "true"]);
    assert_clean_failure(&out, "CAP_BOGUS", &rt, &id, &cg, init);
    assert_eq!(out.code, 255, "runc exits 255 when exec fails");
    let out = rt.exec(&["exec", "does-not-exist", "true"]);
    out.fails().stderr_has("does not exist");
    // Paused: refused (the process could not even start its set-up).
    rt.exec(&["pause", &id]).ok();
    let out = exec(&rt, &id, &["true"]);
    assert_clean_failure(&out, "paused", &rt, &id, &cg, init);
    rt.exec(&["resume", &id]).ok();
    exec(&rt, &id, &["true"]).ok();
    // Stopped.
    rt.kill(&id, "KILL").ok();
    rt.wait_status(&id, "stopped", WAIT);
    let out = exec(&rt, &id, &["true"]);
    out.fails().stderr_has("stopped");
    assert_eq!(out.code, 255);
    rt.delete(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn exec_fds_do_not_leak_past_preserve_fds() {
    require_root!();
    let rt = Runtime::husk("exec-fds");
    let b = sleeper();
    let (id, _) = run_detached(&rt, &b);
    let dir = temp_dir("fds");
    let f3 = dir.path().join("three");
    let f4 = dir.path().join("four");
    fs::write(&f3, "from-fd-3\n").expect("write");
    fs::write(&f4, "from-fd-4\n").expect("write");
    let (a, c) = (
        fs::File::open(&f3).expect("open"),
        fs::File::open(&f4).expect("open"),
    );
    // `; exit` keeps sh alive (no exec of the last command), so $$ is the exec'd process;
    // no pipeline, whose pipes would be sh's descriptors too.
    let list = "ls /proc/$$/fd; exit 0";
    let fds = |out: &Output| {
        let mut v: Vec<i32> = out
            .stdout
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        v.sort_unstable();
        v
    };
    let out = exec_with_fds(&rt, &["exec", &id, "sh", "-c", list], &[&a, &c]);
    assert_eq!(fds(out.ok()), [0, 1, 2], "{out}");
    let out = exec_with_fds(
        &rt,
        &["exec", "--preserve-fds", "1", &id, "sh", "-c", list],
        &[&a, &c],
    );
    assert_eq!(fds(out.ok()), [0, 1, 2, 3], "{out}");
    let out = exec_with_fds(
        &rt,
        &[
            "exec",
            "--preserve-fds",
            "2",
            &id,
            "sh",
            "-c",
            "cat <&3; cat <&4",
        ],
        &[&a, &c],
    );
    assert_eq!(out.ok().stdout, "from-fd-3\nfrom-fd-4\n");
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn exec_cannot_reach_the_runtime_binary() {
    require_root!();
    let rt = Runtime::husk("exec-exe");
    // The container watches every process that appears and tries to open its executable
    // unless it is busybox: a husk process in the container (the set-up before exec) must
    // never be openable, from its first instant.
    let b = Bundle::sh(
        "while :; do for p in /proc/[0-9]*; do \
           e=$(readlink $p/exe 2>/dev/null); \
           case \"$e\" in ''|/bin/busybox) ;; \
             *) head -c 4 $p/exe >/dev/null 2>&1 && echo \"OPENED $p $e\" >> /leak;; esac; \
         done; done",
    );
    let (id, _) = run_detached(&rt, &b);
    for _ in 0..40 {
        exec(&rt, &id, &["true"]).ok();
    }
    let out = exec(&rt, &id, &["sh", "-c", "cat /leak 2>/dev/null; true"]);
    assert_eq!(
        out.ok().stdout,
        "",
        "the runtime's binary was opened from the container"
    );
    // While the exec'd process runs, /proc/<its pid>/exe is the container's program.
    let out = exec(&rt, &id, &["sh", "-c", "readlink /proc/$$/exe; exit 0"]);
    assert_eq!(out.ok().stdout, "/bin/busybox\n");
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}

/// Exit codes of `exec` under runc and husk: the process's own status, 128+N for signal N,
/// 255 when exec itself fails.
#[test]
fn exec_exit_codes_differential() {
    require_root!();
    let oracle = Runtime::oracle("exec-codes");
    let husk = Runtime::husk("exec-codes");
    let cases: &[&[&str]] = &[
        &["true"],
        &["sh", "-c", "exit 3"],
        &["sh", "-c", "exit 255"],
        &["sh", "-c", "kill -TERM $$"],
        &["sh", "-c", "kill -KILL $$"],
        &["sh", "-c", "kill -USR1 $$"],
        &["/nonexistent"],
    ];
    let mut codes = Vec::new();
    let bo = sleeper();
    let bh = sleeper();
    let (oid, _) = run_detached(&oracle, &bo);
    let (hid, _) = run_detached(&husk, &bh);
    for args in cases {
        let o = exec(&oracle, &oid, args).code;
        let h = exec(&husk, &hid, args).code;
        codes.push((args.join(" "), o, h));
    }
    for (rt, id) in [(&oracle, &oid), (&husk, &hid)] {
        rt.kill(id, "KILL").ok();
        rt.wait_status(id, "stopped", WAIT);
    }
    let o = exec(&oracle, &oid, &["true"]).code;
    let h = exec(&husk, &hid, &["true"]).code;
    codes.push(("(stopped container)".into(), o, h));
    let differ: Vec<_> = codes.iter().filter(|(_, o, h)| o != h).collect();
    assert!(
        differ.is_empty(),
        "exit codes differ (cmd, runc, husk): {differ:?}"
    );
    assert_eq!(codes[3].2, 143, "{codes:?}");
}
