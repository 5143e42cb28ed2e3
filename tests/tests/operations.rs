//! pause/resume, ps, update and events, from outside (the host's cgroup files, the state) and
//! inside the container, differential against runc where containerd reads the output; and the
//! command lines containerd-shim-runc-v2 (go-runc) uses, in its order.

mod ops_support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use husk_tests::{require_root, temp_dir, Bundle, Output, Runtime};
use ops_support::{cgroup_pids, exec_with_stdin, host_cgroup_file, is_v2, run_detached};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn sleeper() -> Bundle {
    Bundle::with_args(&["sleep", "1000"])
}

fn json_of(out: &Output) -> Value {
    out.ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// Every key path in a JSON document ("data.memory.usage.limit"); maps keyed by data
/// (memory.raw, hugetlb) contribute their own path only.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            let p = format!("{prefix}.{k}");
            out.insert(p.clone());
            if !(p.ends_with(".raw") || p.ends_with(".hugetlb")) {
                key_paths(x, &p, out);
            }
        }
    }
}

#[test]
fn pause_resume_and_state_differential() {
    require_root!();
    let mut states = Vec::new();
    for rt in [Runtime::oracle("pause"), Runtime::husk("pause")] {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!([
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.05; done"
            ]);
            c["root"]["readonly"] = json!(false);
        });
        let (id, pid) = run_detached(&rt, &b);
        rt.exec(&["pause", &id]).ok();
        let st = rt.state_json(&id);
        assert_eq!(st["status"], "paused", "{st}");
        assert_eq!(st["pid"], pid);
        // The host sees the freezer: every process frozen.
        let cg = b.cgroups_path().expect("cg");
        if is_v2() {
            assert_eq!(host_cgroup_file("", &cg, "cgroup.freeze"), "1");
        } else {
            assert_eq!(host_cgroup_file("freezer", &cg, "freezer.state"), "FROZEN");
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        assert!(stat.contains(") S ") || stat.contains(") D "), "{stat}");
        // Nothing runs while paused: the tick file stops changing.
        let tick = b.rootfs().join("tmp/tick");
        let t1 = fs::read_to_string(&tick).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            t1,
            fs::read_to_string(&tick).unwrap_or_default(),
            "{}",
            rt.bin.display()
        );
        // Pausing twice and resuming a running container are errors.
        rt.exec(&["pause", &id]).fails();
        let listed = rt.list(&["--format", "json"]);
        assert_eq!(json_of(&listed)[0]["status"], "paused");
        rt.exec(&["resume", &id]).ok();
        assert_eq!(rt.status(&id), "running");
        rt.exec(&["resume", &id]).fails();
        std::thread::sleep(Duration::from_millis(300));
        assert_ne!(
            t1,
            fs::read_to_string(&tick).unwrap_or_default(),
            "not thawed"
        );
        // A paused container can be killed and deleted.
        rt.exec(&["pause", &id]).ok();
        states.push(st);
        rt.delete_force(&id).ok();
        rt.exec(&["pause", &id])
            .fails()
            .stderr_has("does not exist");
        rt.assert_host_clean(&[&b]);
    }
    let keys = |v: &Value| {
        let mut s = BTreeSet::new();
        key_paths(v, "", &mut s);
        s
    };
    assert_eq!(keys(&states[0]), keys(&states[1]), "state keys differ");
    assert_eq!(states[0]["status"], states[1]["status"]);
}

#[test]
fn ps_json_differential_and_table() {
    require_root!();
    let mut lens = Vec::new();
    let mut tables = Vec::new();
    for rt in [Runtime::oracle("ps"), Runtime::husk("ps")] {
        let b = Bundle::sh("sleep 1000 & sleep 1001 & wait");
        let (id, init) = run_detached(&rt, &b);
        let cg = b.cgroups_path().expect("cg");
        let deadline = Instant::now() + WAIT;
        while cgroup_pids(&cg).len() < 3 {
            assert!(Instant::now() < deadline, "children did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // containerd's command line: ps --format json ID.
        let v = json_of(&rt.exec(&["ps", "--format", "json", &id]));
        let mut pids: Vec<i32> = v
            .as_array()
            .expect("a JSON array")
            .iter()
            .map(|p| p.as_i64().expect("a pid number") as i32)
            .collect();
        pids.sort_unstable();
        assert_eq!(pids, cgroup_pids(&cg), "{}", rt.bin.display());
        assert!(pids.contains(&init));
        lens.push(pids.len());
        // -f json is the short form.
        json_of(&rt.exec(&["ps", "-f", "json", &id]));
        // Table form: ps's header and only the container's processes.
        let t = rt.exec(&["ps", &id]);
        let t = &t.ok().stdout;
        assert!(t.lines().next().expect("header").contains("PID"), "{t}");
        assert_eq!(t.lines().count(), 4, "{t}");
        // ps options after the id (containerd's Top passes them there).
        let t = rt.exec(&["ps", "--format", "table", &id, "-o", "pid,comm"]);
        let mut lines: Vec<String> = t.ok().stdout.lines().map(str::to_string).collect();
        let header = lines.remove(0);
        let mut comms: Vec<String> = lines
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .collect();
        comms.sort();
        tables.push((header, comms));
        rt.delete_force(&id).ok();
        rt.assert_host_clean(&[&b]);
    }
    assert_eq!(lens[0], lens[1]);
    assert_eq!(
        tables[0], tables[1],
        "ps table differs between runc and husk"
    );
    // husk: containerd's Top with empty options means the default table.
    let rt = Runtime::husk("ps-empty");
    let b = sleeper();
    let (id, _) = run_detached(&rt, &b);
    let t = rt.exec(&["ps", "--format", "table", &id, ""]);
    assert!(t.ok().stdout.contains("sleep 1000"), "{t}");
    rt.exec(&["ps", "nope"])
        .fails()
        .stderr_has("does not exist");
    rt.delete_force(&id).ok();
}

#[test]
fn update_flags_resources_file_and_stdin() {
    require_root!();
    let rt = Runtime::husk("update");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "1000"]);
        c["linux"]["resources"] = json!({"memory": {"limit": 268435456}, "pids": {"limit": 100}});
    });
    let (id, _) = run_detached(&rt, &b);
    let cg = b.cgroups_path().expect("cg");
    let inside = |file: &str| {
        let path = if is_v2() {
            format!("/sys/fs/cgroup/{file}")
        } else {
            let ctl = file.split('.').next().expect("controller");
            let ctl = if ctl == "cpu" { "cpu,cpuacct" } else { ctl };
            format!("/sys/fs/cgroup/{ctl}/{file}")
        };
        let out = rt.exec(&["exec", &id, "cat", &path]);
        if !out.success() {
            // cpu and cpuacct may be separate hierarchies.
            let alt = path.replace("cpu,cpuacct", "cpu");
            return rt
                .exec(&["exec", &id, "cat", &alt])
                .ok()
                .stdout
                .trim()
                .to_string();
        }
        out.stdout.trim().to_string()
    };
    rt.exec(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--pids-limit",
        "50",
        "--cpu-shares",
        "512",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        &id,
    ])
    .ok();
    if is_v2() {
        assert_eq!(host_cgroup_file("", &cg, "memory.max"), "67108864");
        assert_eq!(host_cgroup_file("", &cg, "pids.max"), "50");
        assert_eq!(host_cgroup_file("", &cg, "cpu.max"), "20000 100000");
        assert_eq!(inside("pids.max"), "50");
    } else {
        assert_eq!(
            host_cgroup_file("memory", &cg, "memory.limit_in_bytes"),
            "67108864"
        );
        if std::path::Path::new(&format!(
            "/sys/fs/cgroup/memory{cg}/memory.memsw.limit_in_bytes"
        ))
        .exists()
        {
            assert_eq!(
                host_cgroup_file("memory", &cg, "memory.memsw.limit_in_bytes"),
                "134217728"
            );
        }
        assert_eq!(host_cgroup_file("pids", &cg, "pids.max"), "50");
        assert_eq!(host_cgroup_file("cpu", &cg, "cpu.shares"), "512");
        assert_eq!(host_cgroup_file("cpu", &cg, "cpu.cfs_quota_us"), "20000");
        assert_eq!(host_cgroup_file("cpu", &cg, "cpu.cfs_period_us"), "100000");
        assert_eq!(host_cgroup_file("cpuset", &cg, "cpuset.cpus"), "0");
        // The same limits seen from inside the container.
        assert_eq!(inside("memory.limit_in_bytes"), "67108864");
        assert_eq!(inside("pids.max"), "50");
        assert_eq!(inside("cpu.shares"), "512");
    }
    // The limit is live: the container cannot exceed the new pids limit.
    rt.exec(&["update", "--pids-limit", "3", &id]).ok();
    let out = rt.exec(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do sleep 5 & done 2>/dev/null; echo spawned",
    ]);
    assert!(
        !out.success() || out.stderr.contains("fork") || out.stdout.contains("spawned"),
        "{out}"
    );
    assert!(
        cgroup_pids(&cg).len() <= 3,
        "pids limit not enforced: {:?}",
        cgroup_pids(&cg)
    );
    // --resources FILE (a linux.resources document, as containerd's go-runc writes).
    let dir = temp_dir("resources");
    let f = dir.path().join("r.json");
    fs::write(
        &f,
        json!({"memory": {"limit": 33554432}, "pids": {"limit": 40}}).to_string(),
    )
    .expect("write");
    rt.exec(&["update", "--resources", f.to_str().expect("utf8"), &id])
        .ok();
    let (mem_file, ctl) = if is_v2() {
        ("memory.max", "")
    } else {
        ("memory.limit_in_bytes", "memory")
    };
    assert_eq!(host_cgroup_file(ctl, &cg, mem_file), "33554432");
    let pids_ctl = if is_v2() { "" } else { "pids" };
    assert_eq!(host_cgroup_file(pids_ctl, &cg, "pids.max"), "40");
    // --resources=- (stdin): exactly what containerd's go-runc runs.
    let out = exec_with_stdin(
        &rt,
        &["update", "--resources=-", &id],
        json!({"memory": {"limit": 50331648}})
            .to_string()
            .as_bytes(),
    );
    out.ok();
    assert_eq!(host_cgroup_file(ctl, &cg, mem_file), "50331648");
    // Other limits stay as they were.
    assert_eq!(host_cgroup_file(pids_ctl, &cg, "pids.max"), "40");
    // And `state` still works; the saved config has the new limits.
    assert_eq!(rt.status(&id), "running");
    // Bad input: a clear error, nothing changed.
    fs::write(&f, "{\"memory\": {\"limit\": \"lots\"}}").expect("write");
    rt.exec(&["update", "--resources", f.to_str().expect("utf8"), &id])
        .fails();
    rt.exec(&["update", "--memory", "lots", &id]).fails();
    assert_eq!(host_cgroup_file(ctl, &cg, mem_file), "50331648");
    rt.kill(&id, "KILL").ok();
    rt.wait_status(&id, "stopped", WAIT);
    rt.exec(&["update", "--pids-limit", "9", &id])
        .fails()
        .stderr_has("not running");
    rt.delete(&id).ok();
    rt.assert_host_clean(&[&b]);
}

/// Key paths both runtimes may leave out (Go's omitempty on zero values).
fn omitempty(path: &str) -> bool {
    const OPTIONAL: &[&str] = &[
        ".cpu.usage.total",
        ".cpu.usage.percpu",
        ".cpu.usage.percpu_kernel",
        ".cpu.usage.percpu_user",
        ".cpu.throttling.periods",
        ".cpu.throttling.throttledPeriods",
        ".cpu.throttling.throttledTime",
        ".cpuset.cpus",
        ".cpuset.mems",
        ".memory.cache",
        ".usage.usage",
        ".usage.max",
        ".swap.usage",
        ".swap.max",
        ".kernel.usage",
        ".kernel.max",
        ".kernelTCP.usage",
        ".kernelTCP.max",
        ".memory.raw",
        ".pids.current",
        ".pids.limit",
    ];
    path.starts_with(".data.blkio.") || OPTIONAL.iter().any(|o| path.ends_with(o))
}

#[test]
fn events_stats_fields_differential() {
    require_root!();
    let mut keys = Vec::new();
    let mut docs = Vec::new();
    for rt in [Runtime::oracle("events"), Runtime::husk("events")] {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["sleep", "1000"]);
            c["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 64}});
        });
        let (id, _) = run_detached(&rt, &b);
        // Some cpu time and memory to report.
        rt.exec(&[
            "exec",
            &id,
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
        ])
        .ok();
        let v = json_of(&rt.exec(&["events", "--stats", &id]));
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], id.as_str());
        let mut k = BTreeSet::new();
        key_paths(&v, "", &mut k);
        keys.push(k);
        docs.push(v);
        rt.delete_force(&id).ok();
        rt.exec(&["events", "--stats", &id])
            .fails()
            .stderr_has("does not exist");
        rt.assert_host_clean(&[&b]);
    }
    let (o, h) = (&keys[0], &keys[1]);
    let only_o: Vec<&String> = o.difference(h).filter(|p| !omitempty(p)).collect();
    let only_h: Vec<&String> = h.difference(o).filter(|p| !omitempty(p)).collect();
    assert!(
        only_o.is_empty() && only_h.is_empty(),
        "events --stats fields differ\nonly runc: {only_o:?}\nonly husk: {only_h:?}\nrunc: {}\nhusk: {}",
        docs[0],
        docs[1]
    );
    // Values that must agree: the limits both set, and the kinds of every field.
    for d in &docs {
        assert_eq!(d["data"]["memory"]["usage"]["limit"], 67108864, "{d}");
        assert_eq!(d["data"]["pids"]["limit"], 64, "{d}");
        assert!(
            d["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
            "{d}"
        );
        assert!(
            d["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
            "{d}"
        );
        assert!(d["data"]["hugetlb"].is_object());
        assert!(d["data"]["network_interfaces"].is_null());
    }
}

#[test]
fn events_stream_reports_stats_and_oom() {
    require_root!();
    let rt = Runtime::husk("events-oom");
    // dd's 64 MiB buffer cannot fit under a 16 MiB limit (and no swap): the OOM killer acts.
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?; sleep 0.5"
        ]);
        c["linux"]["resources"] = json!({"memory": {"limit": 16777216, "swap": 16777216}});
    });
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    let mut child = rt
        .command()
        .args(["events", "--interval", "300ms", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn events");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(Duration::from_millis(200));
    rt.start(&id).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("events did not end when the container stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "events failed: {status}");
    let lines = reader.join().expect("reader");
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let stats = events.iter().filter(|e| e["type"] == "stats").count();
    let ooms: Vec<&Value> = events.iter().filter(|e| e["type"] == "oom").collect();
    assert!(stats >= 2, "{lines:?}");
    assert!(!ooms.is_empty(), "no oom event: {lines:?}");
    assert_eq!(*ooms[0], json!({"type": "oom", "id": id}));
    for e in &events {
        assert_eq!(e["id"], id.as_str());
    }
    rt.exec(&["events", "--interval", "0s", &id])
        .fails()
        .stderr_has("interval");
    rt.delete(&id).ok();
    rt.assert_host_clean(&[&b]);
}

/// The runtime command lines containerd-shim-runc-v2 runs through go-runc, in its order, with
/// its global flags (--root, --log, --log-format json).
#[test]
fn containerd_shim_command_lines() {
    require_root!();
    let rt = Runtime::husk("shim-lines");
    let b = sleeper();
    let dir = temp_dir("shim");
    let log = dir.path().join("log.json");
    let log_s = log.to_str().expect("utf8").to_string();
    let g: [&str; 4] = ["--log", &log_s, "--log-format", "json"];
    let run = |args: &[&str]| rt.exec_with(&g, args, husk_tests::COMMAND_TIMEOUT);
    let id = rt.new_id();
    let bundle = b.path().to_str().expect("utf8").to_string();
    let init_pid_file = dir.path().join("init.pid");
    let ipf = init_pid_file.to_str().expect("utf8");
    run(&["create", "--bundle", &bundle, "--pid-file", ipf, &id]).ok();
    let init: i32 = fs::read_to_string(&init_pid_file)
        .expect("init.pid")
        .trim()
        .parse()
        .expect("pid");
    rt.track_pid(init);
    run(&["start", &id]).ok();
    let st = json_of(&run(&["state", &id]));
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], init);
    // exec --process FILE --detach --pid-file FILE ID
    let pf = dir.path().join("process.json");
    fs::write(
        &pf,
        json!({"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sleep", "500"],
               "env": ["PATH=/bin"], "cwd": "/"})
        .to_string(),
    )
    .expect("write");
    let epf = dir.path().join("exec.pid");
    run(&[
        "exec",
        "--process",
        pf.to_str().expect("utf8"),
        "--detach",
        "--pid-file",
        epf.to_str().expect("utf8"),
        &id,
    ])
    .ok();
    let exec_pid: i32 = fs::read_to_string(&epf)
        .expect("exec.pid")
        .trim()
        .parse()
        .expect("pid");
    rt.track_pid(exec_pid);
    let ps = json_of(&run(&["ps", "--format", "json", &id]));
    let pids: Vec<i64> = ps
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(
        pids.contains(&(init as i64)) && pids.contains(&(exec_pid as i64)),
        "{ps}"
    );
    let ev = json_of(&run(&["events", "--stats", &id]));
    assert_eq!(ev["type"], "stats");
    run(&["pause", &id]).ok();
    assert_eq!(json_of(&run(&["state", &id]))["status"], "paused");
    run(&["resume", &id]).ok();
    let out = exec_with_stdin(
        &rt,
        &[
            "--log",
            &log_s,
            "--log-format",
            "json",
            "update",
            "--resources=-",
            &id,
        ],
        json!({"memory": {"limit": 100663296}, "cpu": {"shares": 256}})
            .to_string()
            .as_bytes(),
    );
    out.ok();
    // kill ID SIGNUM (sleep as PID 1 ignores SIGTERM, so 9), then kill --all ID 9.
    run(&["kill", &id, "9"]).ok();
    rt.wait_status(&id, "stopped", WAIT);
    run(&["kill", "--all", &id, "9"]).ok();
    run(&["delete", &id]).ok();
    run(&["delete", "--force", &id]).ok();
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.contains("\"level\":\"error\""),
        "errors in the log: {logged}"
    );
    // A failing command logs one JSON line that containerd can read.
    run(&["state", &id]).fails();
    let logged = fs::read_to_string(&log).expect("log");
    let last: Value = serde_json::from_str(logged.lines().last().expect("a line")).expect("json");
    assert_eq!(last["level"], "error");
    rt.assert_host_clean(&[&b]);
}
