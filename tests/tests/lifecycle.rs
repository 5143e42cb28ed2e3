//! The container lifecycle with runc's semantics (runtime-spec "Runtime and Lifecycle"), driven
//! through the husk binary (HUSK_BIN). Every check here also passes against runc itself
//! (HUSK_BIN=/usr/sbin/runc), which is how these tests were validated.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use husk_tests::{host, require_root, temp_dir, Bundle, Flavor, Output, Runtime};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn canon(p: &Path) -> String {
    p.canonicalize()
        .expect("canonicalize")
        .to_string_lossy()
        .into_owned()
}

fn canon_str(s: &str) -> String {
    canon(Path::new(s))
}

/// Polls until `pid` is gone (or a zombie), panicking after WAIT.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while host::alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn assert_does_not_exist(out: &Output) {
    out.fails().stderr_has("does not exist");
}

/// A failing command's error is one line on stderr.
#[track_caller]
fn assert_one_line_error(out: &Output) {
    out.fails();
    assert_eq!(
        out.stderr_lines().len(),
        1,
        "expected a one-line error:\n{out}"
    );
}

#[test]
fn create_start_stop_delete() {
    require_root!();
    let rt = Runtime::husk("lifecycle");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "echo started; sleep 2"]);
        c["annotations"] = json!({"org.husk.test": "lifecycle", "com.example/k": "v"});
    });
    let id = rt.new_id();

    let created = rt.create(&b, &id);
    created.ok();
    let st = rt.state_json(&id);
    assert_eq!(st["id"], id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().expect("pid is a number") as i32;
    assert!(pid > 0, "{st}");
    assert!(
        host::alive(pid),
        "init {pid} of a created container is not alive"
    );
    assert_eq!(
        canon_str(st["bundle"].as_str().expect("bundle")),
        canon(b.path())
    );
    assert_eq!(
        st["annotations"],
        json!({"org.husk.test": "lifecycle", "com.example/k": "v"})
    );
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );
    // The user process has not run yet.
    assert!(!created.stdout_now().contains("started"));

    rt.start(&id).ok();
    assert_eq!(rt.status(&id), "running");
    rt.wait_status(&id, "stopped", WAIT);
    // Without a terminal the container writes straight to create's stdout.
    assert_eq!(created.stdout_now(), "started\n");

    rt.delete(&id).ok();
    assert_does_not_exist(&rt.state(&id));
    wait_gone(pid);
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    rt.assert_host_clean(&[&b]);
}

#[test]
fn kill_created_container() {
    require_root!();
    let rt = Runtime::husk("killcreated");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid") as i32;
    rt.kill(&id, "KILL").ok();
    rt.wait_status(&id, "stopped", WAIT);
    wait_gone(pid);
    rt.delete(&id).ok();
    assert_does_not_exist(&rt.state(&id));
    rt.assert_host_clean(&[&b]);
}

#[test]
fn delete_created_container_without_force() {
    // runc deletes a created (never started) container without --force, killing its init.
    require_root!();
    let rt = Runtime::husk("delcreated");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid") as i32;
    rt.delete(&id).ok();
    assert_does_not_exist(&rt.state(&id));
    wait_gone(pid);
    rt.assert_host_clean(&[&b]);
}

#[test]
fn delete_running_needs_force() {
    require_root!();
    let rt = Runtime::husk("delrunning");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    rt.start(&id).ok();
    let st = rt.state_json(&id);
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().expect("pid") as i32;

    assert_one_line_error(&rt.delete(&id));
    assert_eq!(rt.status(&id), "running");
    assert!(host::alive(pid));

    rt.delete_force(&id).ok();
    assert_does_not_exist(&rt.state(&id));
    wait_gone(pid);
    rt.assert_host_clean(&[&b]);
}

#[test]
fn duplicate_id_fails() {
    require_root!();
    let rt = Runtime::husk("dup");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    let pid = rt.state_json(&id)["pid"].clone();
    let again = rt.create(&b, &id);
    assert_one_line_error(&again);
    again.stderr_has("already exists");
    // The first container is untouched.
    let st = rt.state_json(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    rt.delete_force(&id).ok();
}

#[test]
fn run_returns_exit_code_and_passes_stdio() {
    require_root!();
    let rt = Runtime::husk("runexit");
    let b = Bundle::sh("echo to-stdout; echo to-stderr >&2; exit 3");
    let id = rt.new_id();
    let out = rt.run(&b, &id);
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    // run deletes the container when it exits.
    assert_does_not_exist(&rt.state(&id));
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());

    b.set_sh("exit 0");
    assert_eq!(rt.run_new(&b).ok().code, 0);
    rt.assert_host_clean(&[&b]);
}

#[test]
fn run_returns_128_plus_signal_when_killed() {
    require_root!();
    let rt = Runtime::husk("runsig");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    let out = std::thread::scope(|s| {
        let runner = s.spawn(|| rt.run(&b, &id));
        let deadline = Instant::now() + WAIT;
        while rt.state(&id).json().map(|s| s["status"].clone()) != Some(json!("running")) {
            assert!(Instant::now() < deadline, "{id} never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        rt.kill(&id, "KILL").ok();
        runner.join().expect("run thread")
    });
    assert_eq!(out.code, 137, "{out}");
    rt.assert_host_clean(&[&b]);
}

#[test]
fn run_detach() {
    require_root!();
    let rt = Runtime::husk("rundetach");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    rt.run_detached(&b, &id).ok();
    assert_eq!(rt.status(&id), "running");
    rt.kill(&id, "KILL").ok();
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn create_writes_pid_file() {
    require_root!();
    let rt = Runtime::husk("pidfile");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    let dir = temp_dir("pidfile");
    let pid_file = dir.path().join("init.pid");
    let bundle = b.path().to_string_lossy().into_owned();
    rt.track_id(&id);
    rt.exec(&[
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        &pid_file.to_string_lossy(),
        &id,
    ])
    .ok();
    let st = rt.state_json(&id);
    let written = fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(written.trim(), st["pid"].to_string(), "pid file vs {st}");
    rt.delete_force(&id).ok();
}

#[test]
fn kill_signal_forms_and_errors() {
    require_root!();
    let rt = Runtime::husk("killforms");
    let b = Bundle::with_args(&["sleep", "100"]);
    for sig in ["KILL", "SIGKILL", "9"] {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        rt.start(&id).ok();
        rt.kill(&id, sig).ok();
        rt.wait_status(&id, "stopped", WAIT);
        // A stopped container cannot be signalled (containerd matches this wording).
        rt.kill(&id, "KILL")
            .fails()
            .stderr_has("container not running");
        rt.delete(&id).ok();
    }
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    let bad = rt.kill(&id, "NOTASIGNAL");
    assert_one_line_error(&bad);
    bad.stderr_has("NOTASIGNAL");
    assert_eq!(rt.status(&id), "created");
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn start_twice_fails() {
    require_root!();
    let rt = Runtime::husk("starttwice");
    let b = Bundle::with_args(&["sleep", "100"]);
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    rt.start(&id).ok();
    assert_one_line_error(&rt.start(&id));
    rt.kill(&id, "KILL").ok();
    rt.wait_status(&id, "stopped", WAIT);
    assert_one_line_error(&rt.start(&id));
    rt.delete(&id).ok();
}

#[test]
fn unknown_id_errors() {
    require_root!();
    let rt = Runtime::husk("unknown");
    let id = husk_tests::unique("never-created");
    for args in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
    ] {
        let out = rt.exec(&args);
        assert_one_line_error(&out);
        assert_does_not_exist(&out);
    }
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
}

#[test]
fn list_formats() {
    require_root!();
    let rt = Runtime::husk("list");
    let b = Bundle::with_args(&["sleep", "100"]);
    let mut ids = vec![rt.new_id(), rt.new_id()];
    for id in &ids {
        rt.create(&b, id).ok();
    }
    ids.sort();

    let table = rt.list(&[]).ok().stdout.clone();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    let mut rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    rows.sort();
    assert_eq!(rows.len(), 2, "{table}");
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(row[0], id.as_str(), "{table}");
        assert!(row[1].parse::<i32>().is_ok_and(|p| p > 0), "{table}");
        assert_eq!(row[2], "created", "{table}");
        assert_eq!(canon_str(row[3]), canon(b.path()), "{table}");
        assert_eq!(row[5], "root", "{table}");
    }

    let json_out = rt.list(&["--format", "json"]);
    let list: Value = json_out.json().unwrap_or_else(|| panic!("{json_out}"));
    let mut got: Vec<(String, String)> = list
        .as_array()
        .expect("list --format json is an array")
        .iter()
        .map(|c| {
            assert!(c["pid"].as_i64().is_some_and(|p| p > 0), "{c}");
            assert!(c["bundle"].is_string() && c["created"].is_string(), "{c}");
            (
                c["id"].as_str().expect("id").to_string(),
                c["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String)> = ids.iter().map(|i| (i.clone(), "created".into())).collect();
    assert_eq!(got, want);

    let quiet = rt.list(&["-q"]).ok().stdout.clone();
    let mut q: Vec<&str> = quiet.lines().collect();
    q.sort();
    assert_eq!(q, ids);

    for id in &ids {
        rt.delete_force(id).ok();
    }
    assert_eq!(rt.list(&["-q"]).ok().stdout.trim(), "");
}

/// Each broken bundle fails create and run with a one-line error and leaves nothing behind.
fn assert_bad_bundle_fails(name: &str, b: &Bundle, needle: &str) {
    let rt = Runtime::husk(name);
    for cmd in ["create", "run"] {
        let id = rt.new_id();
        let bundle = b.path().to_string_lossy().into_owned();
        let out = rt.exec(&[cmd, "--bundle", &bundle, &id]);
        assert_one_line_error(&out);
        out.stderr_has(needle);
        assert_does_not_exist(&rt.state(&id));
        assert!(
            rt.root_entries().is_empty(),
            "{cmd} left {:?} in --root",
            rt.root_entries()
        );
    }
    rt.assert_host_clean(&[b]);
}

#[test]
fn missing_config_json_fails_cleanly() {
    require_root!();
    let b = Bundle::with_args(&["true"]);
    let cg = b.cgroups_path();
    fs::remove_file(b.config_path()).expect("rm config.json");
    assert_bad_bundle_fails("noconfig", &b, "config.json");
    let left = cg.map(|c| host::cgroup_dirs(&c)).unwrap_or_default();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

#[test]
fn malformed_config_json_fails_cleanly() {
    require_root!();
    let b = Bundle::with_args(&["true"]);
    fs::write(b.config_path(), "{ not json").expect("write config.json");
    assert_bad_bundle_fails("badjson", &b, "");
}

#[test]
fn missing_rootfs_fails_cleanly() {
    require_root!();
    let b = Bundle::with_args(&["true"]);
    fs::remove_dir_all(b.rootfs()).expect("rm rootfs");
    assert_bad_bundle_fails("norootfs", &b, "rootfs");
}

#[test]
fn log_json_reports_failures() {
    require_root!();
    let rt = Runtime::husk("logjson");
    let b = Bundle::with_args(&["true"]);
    fs::remove_file(b.config_path()).expect("rm config.json");
    let dir = temp_dir("log");
    let log = dir.path().join("log.json");
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    let out = rt.exec_with(
        &["--log", &log.to_string_lossy(), "--log-format", "json"],
        &["create", "--bundle", &bundle, &id],
        husk_tests::COMMAND_TIMEOUT,
    );
    out.fails();
    let text = fs::read_to_string(&log).expect("the --log file was written");
    // containerd reads the last {"level":"error"} line.
    let last_error = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["level"] == "error")
        .unwrap_or_else(|| panic!("no JSON error line in the log:\n{text}\n{out}"));
    let msg = last_error["msg"].as_str().expect("msg is a string");
    assert!(msg.contains("config.json"), "{last_error}");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    }
}

#[test]
fn version_layout() {
    let rt = Runtime::husk("version");
    let dir = temp_dir("version");
    let out = rt.exec_plain(&["--version"], dir.path());
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let want = format!("{} version ", rt.flavor.name());
    assert!(lines.first().is_some_and(|l| l.starts_with(&want)), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("commit: ")), "{out}");
    let spec = lines
        .iter()
        .find_map(|l| l.strip_prefix("spec: "))
        .unwrap_or_else(|| panic!("no spec: line\n{out}"));
    assert!(spec.starts_with("1."), "{out}");
    if rt.flavor == Flavor::Husk {
        assert!(lines[0].contains(env!("CARGO_PKG_VERSION")), "{out}");
    }
}

#[test]
fn spec_writes_a_config_that_parses() {
    let rt = Runtime::husk("spec");
    let dir = temp_dir("spec");
    rt.exec_plain(&["spec"], dir.path()).ok();
    let text = fs::read_to_string(dir.path().join("config.json")).expect("config.json written");
    let cfg: Value = serde_json::from_str(&text).expect("spec output parses");
    assert!(cfg["ociVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert!(cfg["linux"]["namespaces"].is_array());
    // It refuses to overwrite.
    assert_one_line_error(&rt.exec_plain(&["spec"], dir.path()));
    assert_eq!(
        fs::read_to_string(dir.path().join("config.json")).expect("still there"),
        text
    );

    let rootless = temp_dir("spec-rootless");
    rt.exec_plain(&["spec", "--rootless"], rootless.path()).ok();
    let text = fs::read_to_string(rootless.path().join("config.json")).expect("written");
    let cfg: Value = serde_json::from_str(&text).expect("rootless spec parses");
    let ns: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(ns.contains(&"user"), "{ns:?}");
    assert!(cfg["linux"]["uidMappings"].is_array());
}
