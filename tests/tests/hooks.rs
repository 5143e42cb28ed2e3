//! `hooks`: prestart, createRuntime, createContainer, startContainer, poststart and poststop,
//! each given the state JSON on stdin, with `args`, `env` and `timeout`, and failing the
//! operation as the runtime-spec says. Hooks are host programs (/bin/sh scripts writing to a
//! temp dir), except startContainer, which runs inside the container (its path is the
//! container's /bin/sh and it writes to a bind mount of the same dir).
//!
//! runc 1.1 (the oracle) runs poststart hooks at the end of `create`, before the container's
//! process runs, with status "created", and fails `create` when one fails (runc issue #1710;
//! runc moved them to `start` in 2026, PR #5186). husk runs them in `start` after the process
//! started, as the runtime-spec orders it, so poststart is compared with the spec, not runc.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{exec_env, leftovers_after_failure, pair, WAIT};
use husk_tests::{require_root, temp_dir, unique, Bundle, Runtime};
use serde_json::{json, Value};

const KINDS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook writing its stdin to LOG/KIND.json and appending KIND to LOG/order.
fn recorder(kind: &str, log: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
                 format!("cat > {log}/{kind}.json; pwd > {log}/{kind}.pwd; echo {kind} >> {log}/order")],
    })
}

/// A bundle with every hook recording into `log` (bind-mounted at /hooklog for
/// startContainer), running `args`.
fn recording_bundle(log: &Path, args: Value) -> Bundle {
    let host_log = log.to_string_lossy().into_owned();
    Bundle::new(|c| {
        c["process"]["args"] = args;
        c["annotations"] = json!({"org.husk.hooks": "yes"});
        for kind in KINDS {
            let dir = if *kind == "startContainer" {
                "/hooklog"
            } else {
                &host_log
            };
            c["hooks"][*kind] = json!([recorder(kind, dir)]);
        }
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/hooklog", "type": "bind", "source": host_log,
            "options": ["rbind", "rw"]
        }));
    })
}

fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let d = temp_dir(prefix);
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    d
}

fn read_json(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", p.display()))
}

/// The runtime-spec fields of a hook's state, with id, pid and bundle replaced by what they
/// are ("ID", "HOST-PID" for the init's host pid, a container pid as is, "BUNDLE").
fn normalized(v: &Value, id: &str, host_pid: i64, bundle: &Path) -> Value {
    let mut out = json!({});
    for key in ["ociVersion", "id", "status", "pid", "bundle", "annotations"] {
        if let Some(x) = v.get(key) {
            out[key] = x.clone();
        }
    }
    assert_eq!(out["id"], id, "{v}");
    out["id"] = json!("ID");
    if out["pid"].as_i64() == Some(host_pid) {
        out["pid"] = json!("HOST-PID");
    }
    let b = out["bundle"]
        .as_str()
        .map(Path::new)
        .map(|p| p.canonicalize());
    assert!(
        matches!(&b, Some(Ok(p)) if *p == bundle.canonicalize().expect("bundle")),
        "bundle in {v}"
    );
    out["bundle"] = json!("BUNDLE");
    out["ociVersion"] = json!("1.x");
    out
}

#[test]
fn every_hook_gets_the_state_in_order() {
    require_root!();
    let p = pair("hookstate");
    let mut seen = Vec::new();
    let mut all_cwds = Vec::new();
    for rt in p.both() {
        let log = shared_dir("hooklog");
        let b = recording_bundle(log.path(), json!(["sh", "-c", "cat /hooklog/order"]));
        let id = rt.new_id();
        let created = rt.create(&b, &id);
        created.ok();
        let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
        rt.start(&id).ok();
        rt.wait_status(&id, "stopped", WAIT);
        rt.delete(&id).ok();
        // What the container's process saw: the hooks run before it.
        let before_process = created.stdout_now();
        let order = fs::read_to_string(log.path().join("order")).expect("order");
        let mut states = serde_json::Map::new();
        let mut cwds = String::new();
        for kind in KINDS {
            let v = read_json(&log.path().join(format!("{kind}.json")));
            states.insert(kind.to_string(), normalized(&v, &id, pid, b.path()));
            let cwd = fs::read_to_string(log.path().join(format!("{kind}.pwd"))).expect("pwd");
            let cwd = cwd.replace(&*b.path().to_string_lossy(), "BUNDLE");
            cwds.push_str(&format!("{kind} {cwd}"));
        }
        all_cwds.push(cwds);
        seen.push((before_process, order, Value::Object(states)));
        drop(b);
        husk_tests::remove_temp_dir(log);
    }
    let (husk_before, husk_order, husk) = &seen[1];
    let (runc_before, _runc_order, runc) = &seen[0];
    // husk: the spec's order. startContainer and poststart race (both follow the start
    // handshake, one in the container, one in `start`), as under runc.
    assert_eq!(
        husk_before, "prestart\ncreateRuntime\ncreateContainer\nstartContainer\n",
        "hooks that ran before the container's process"
    );
    let mut order: Vec<&str> = husk_order.lines().collect();
    order[3..5].sort();
    assert_eq!(
        order,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "startContainer",
            "poststop"
        ]
    );
    // runc 1.1 ran poststart during create, before the process.
    assert!(runc_before.contains("poststart"), "{runc_before}");

    let annotations = json!({"org.husk.hooks": "yes"});
    let want = |status: &str, pid: Value| {
        let mut v = json!({"ociVersion": "1.x", "id": "ID", "status": status,
                           "bundle": "BUNDLE", "annotations": annotations});
        if !pid.is_null() {
            v["pid"] = pid;
        }
        v
    };
    // Runtime-namespace hooks see the init's host pid; container-namespace hooks its pid
    // there (1); poststop has none (the process is gone).
    assert_eq!(husk["prestart"], want("creating", json!("HOST-PID")));
    assert_eq!(husk["createRuntime"], want("creating", json!("HOST-PID")));
    assert_eq!(husk["createContainer"], want("creating", json!(1)));
    assert_eq!(husk["startContainer"], want("created", json!(1)));
    assert_eq!(husk["poststart"], want("running", json!("HOST-PID")));
    assert_eq!(husk["poststop"], want("stopped", Value::Null));
    for kind in KINDS.iter().filter(|k| **k != "poststart") {
        assert_eq!(husk[*kind], runc[*kind], "{kind}: husk versus runc");
    }
    assert_eq!(runc["poststart"], want("created", json!("HOST-PID")));
    // Where each hook runs: the bundle, the rootfs for createContainer, the container's / for
    // startContainer, the caller's cwd for poststop.
    common::assert_same("hook working directories", &all_cwds[0], &all_cwds[1]);
    assert!(
        all_cwds[1].starts_with(
            "prestart BUNDLE\ncreateRuntime BUNDLE\ncreateContainer BUNDLE/rootfs\n\
             startContainer /\npoststart BUNDLE\n"
        ),
        "{}",
        all_cwds[1]
    );
}

#[test]
fn hook_args_env_and_path() {
    require_root!();
    let p = pair("hookargs");
    let mut outs = Vec::new();
    for rt in p.both() {
        let log = shared_dir("hookargs");
        let out = log.path().join("out");
        // Without args, argv is just [path].
        let script = log.path().join("no-args-hook");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"argv0=$0 args=$# pwd=$(pwd)\" >> {}\n",
                out.display()
            ),
        )
        .expect("write hook script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            c["hooks"]["createRuntime"] = json!([
                {"path": "/bin/sh",
                 "args": ["my-argv0", "-c",
                          "echo \"$(tr '\\0' ' ' < /proc/$$/cmdline)|$1|$FOO|$PATH|$(env | sort | tr '\\n' ' ')\" >> \"$0\"",
                          out, "second arg"],
                 "env": ["FOO=bar baz"]},
                {"path": script}
            ]);
        });
        let r = rt.run_new(&b);
        r.ok();
        // The temp dirs differ between the two runs.
        let text = fs::read_to_string(&out).expect("hook output");
        outs.push(
            text.replace(&*b.path().to_string_lossy(), "BUNDLE")
                .replace(&*log.path().to_string_lossy(), "LOG"),
        );
        drop(b);
        husk_tests::remove_temp_dir(log);
    }
    common::assert_same("a hook's argv, environment and cwd", &outs[0], &outs[1]);
    assert!(outs[1].contains("pwd=BUNDLE"), "{}", outs[1]);
    assert!(outs[1].starts_with("my-argv0 -c "), "{}", outs[1]);
    assert!(outs[1].contains("|second arg|bar baz|"), "{}", outs[1]);
    // Only the hook's env (and what sh adds itself).
    assert!(
        outs[1].contains("|FOO=bar baz PWD=BUNDLE \n"),
        "{}",
        outs[1]
    );
    assert!(
        outs[1].contains("argv0=") && outs[1].contains("args=0"),
        "{}",
        outs[1]
    );
}

/// A hook that outlives its timeout is killed and fails create; nothing is left, the hook
/// process included.
#[test]
fn hook_timeout_fails_create() {
    require_root!();
    let p = pair("hooktimeout");
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            c["hooks"][kind] =
                json!([{"path": "/bin/sleep", "args": ["sleep", "60"], "timeout": 1}]);
        });
        for rt in p.both() {
            let started = Instant::now();
            let out = create_marked(rt, &b, |marker, out| {
                out.fails();
                let left = leftovers_after_failure(rt, &b, marker);
                assert!(left.is_empty(), "{kind}: {out}\nleft: {left:?}");
            });
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{kind}: create took {:?}",
                started.elapsed()
            );
            if rt.flavor == husk_tests::Flavor::Husk {
                assert_eq!(out.stderr_lines().len(), 1, "{out}");
                out.stderr_has("timeout").stderr_has(kind);
            }
        }
    }
}

/// Runs `create` with a unique marker in its environment, calls `check(marker, output)`, and
/// returns the output.
fn create_marked(
    rt: &Runtime,
    b: &Bundle,
    check: impl FnOnce(&str, &husk_tests::Output),
) -> husk_tests::Output {
    let value = unique("hookmarker");
    let marker = format!("HUSK_TEST_MARKER={value}");
    let scratch = temp_dir("hookout");
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    let out = exec_env(
        rt,
        &[("HUSK_TEST_MARKER", &value)],
        &[],
        &["create", "--bundle", &bundle, &id],
        scratch.path(),
    );
    check(&marker, &out);
    husk_tests::remove_temp_dir(scratch);
    out
}

/// prestart, createRuntime and createContainer failures fail create, naming the hook and
/// what it printed, and leave nothing behind.
#[test]
fn failing_create_hooks_fail_create() {
    require_root!();
    let p = pair("hookfail");
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            c["hooks"][kind] = json!([
                {"path": "/bin/true"},
                {"path": "/bin/sh", "args": ["sh", "-c", "echo oops >&2; exit 3"]}
            ]);
        });
        for rt in p.both() {
            let out = create_marked(rt, &b, |marker, out| {
                out.fails();
                let left = leftovers_after_failure(rt, &b, marker);
                assert!(left.is_empty(), "{kind}: {out}\nleft: {left:?}");
            });
            if rt.flavor == husk_tests::Flavor::Husk {
                assert_eq!(out.stderr_lines().len(), 1, "{out}");
                out.stderr_has(&format!("{kind} hook #1"))
                    .stderr_has("exit status 3")
                    .stderr_has("oops");
            }
        }
        // A hook that cannot be executed at all.
        b.edit(|c| c["hooks"][kind] = json!([{"path": "/no/such/hook"}]));
        let out = create_marked(&p.husk, &b, |marker, out| {
            out.fails();
            let left = leftovers_after_failure(&p.husk, &b, marker);
            assert!(left.is_empty(), "{kind}: {out}\nleft: {left:?}");
        });
        out.stderr_has("/no/such/hook");
    }
}

/// A failing startContainer hook: the container's process never runs and `start` fails (the
/// runtime-spec: "generate an error, stop the container"). runc 1.1 stops the container but
/// `start` still exits 0.
#[test]
fn failing_start_container_hook() {
    require_root!();
    let p = pair("hookstartfail");
    let log = shared_dir("startfail");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "touch /hooklog/process-ran"]);
        c["hooks"]["startContainer"] =
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo bad start >&2; exit 4"]}]);
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/hooklog", "type": "bind", "source": log.path(),
            "options": ["rbind", "rw"]
        }));
    });
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        let start = rt.start(&id);
        rt.wait_status(&id, "stopped", WAIT);
        assert!(
            !log.path().join("process-ran").exists(),
            "{}: the process ran",
            rt.flavor.name()
        );
        if rt.flavor == husk_tests::Flavor::Husk {
            start.fails();
            assert_eq!(start.stderr_lines().len(), 1, "{start}");
            start
                .stderr_has("startContainer hook #0")
                .stderr_has("bad start");
        }
        rt.delete(&id).ok();
        rt.state(&id).fails();
    }
    p.husk.assert_host_clean(&[&b]);
    drop(b);
    husk_tests::remove_temp_dir(log);
}

/// A failing poststart hook fails `start` and stops the container (runtime-spec, and runc,
/// which kills it too); the remaining lifecycle (delete, poststop) goes on.
#[test]
fn failing_poststart_hook_stops_the_container() {
    require_root!();
    let rt = Runtime::husk("hookpoststart");
    let log = shared_dir("poststart");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "100"]);
        c["hooks"]["poststart"] = json!([
            {"path": "/bin/sh", "args": ["sh", "-c", "echo post failed >&2; exit 5"]}
        ]);
        c["hooks"]["poststop"] = json!([recorder("poststop", &log.path().to_string_lossy())]);
    });
    let id = rt.new_id();
    rt.create(&b, &id).ok();
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid") as i32;
    let start = rt.start(&id);
    start.fails();
    assert_eq!(start.stderr_lines().len(), 1, "{start}");
    start
        .stderr_has("poststart hook #0")
        .stderr_has("post failed");
    rt.wait_status(&id, "stopped", WAIT);
    assert!(!husk_tests::host::alive(pid));
    rt.delete(&id).ok();
    assert!(
        log.path().join("poststop.json").exists(),
        "poststop did not run"
    );
    rt.assert_host_clean(&[&b]);
    drop(b);
    husk_tests::remove_temp_dir(log);
}

/// A failing poststop hook is a warning: delete succeeds and removes everything (both).
#[test]
fn failing_poststop_hook_is_a_warning() {
    require_root!();
    let p = pair("hookpoststop");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["hooks"]["poststop"] = json!([{"path": "/bin/false"}]);
    });
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        rt.start(&id).ok();
        rt.wait_status(&id, "stopped", WAIT);
        let del = rt.delete(&id);
        del.ok();
        // runc says "error running hook #0: ..." without the list's name.
        del.stderr_has("hook #0");
        rt.state(&id).fails().stderr_has("does not exist");
        assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    }
    p.husk.assert_host_clean(&[&b]);
}
