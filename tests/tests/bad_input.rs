//! Bad input: unknown and duplicate ids, malformed or invalid config.json, a missing rootfs, bad
//! signals, mounts onto paths the rootfs must not give (inside /proc, a missing source), and
//! settings the kernel refuses. Each gets a one-line error naming what was wrong, a non-zero
//! exit, and leaves nothing behind: no --root entry, cgroup, mount or process (every process a
//! runtime invocation starts carries a marker in its environment, so a straggler is found even
//! after it left the cgroup). runc must refuse the same input (it is the oracle for "bad").

mod common;

use std::fs;

use common::{exec_env, leftovers_after_failure, pair, Pair};
use husk_tests::{require_root, temp_dir, unique, Bundle, Flavor, Runtime};
use serde_json::{json, Value};

/// Runs `create` (or `run`) of `b` under `rt` with a marker; checks the failure and the host.
fn fails_cleanly(rt: &Runtime, b: &Bundle, cmd: &str, needle: &str, what: &str) {
    let value = unique("badinput");
    let scratch = temp_dir("badout");
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    let out = exec_env(
        rt,
        &[("HUSK_TEST_MARKER", &value)],
        &[],
        &[cmd, "--bundle", &bundle, &id],
        scratch.path(),
    );
    assert!(out.code > 0, "{what}: {cmd} should fail:\n{out}");
    if rt.flavor == Flavor::Husk {
        assert_eq!(out.stderr_lines().len(), 1, "{what}: not one line:\n{out}");
        out.stderr_has(needle);
    }
    rt.state(&id).fails().stderr_has("does not exist");
    let left = leftovers_after_failure(rt, b, &format!("HUSK_TEST_MARKER={value}"));
    assert!(
        left.is_empty(),
        "{what} ({}): {out}\nleft: {left:?}",
        rt.flavor.name()
    );
    husk_tests::remove_temp_dir(scratch);
}

/// Both runtimes refuse `edit`'s config on create and run; husk names `needle`.
fn both_refuse(p: &Pair, what: &str, needle: &str, edit: impl FnOnce(&mut Value)) {
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        edit(c)
    });
    for rt in p.both() {
        for cmd in ["create", "run"] {
            fails_cleanly(rt, &b, cmd, needle, what);
        }
    }
}

#[test]
fn unknown_id() {
    require_root!();
    let p = pair("unknownid");
    for rt in p.both() {
        for args in [
            &["state", "nope"][..],
            &["start", "nope"],
            &["kill", "nope", "KILL"],
            &["delete", "nope"],
            &["state", "../etc"],
        ] {
            let out = rt.exec(args);
            out.fails();
            if rt.flavor == Flavor::Husk {
                assert_eq!(out.stderr_lines().len(), 1, "{out}");
                out.stderr_has("does not exist");
            }
        }
        // runc: delete --force of an unknown id succeeds (cleanup scripts repeat it).
        rt.exec(&["delete", "--force", "nope"]).ok();
        assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    }
}

#[test]
fn duplicate_id_leaves_the_first_container_alone() {
    require_root!();
    let p = pair("dupid");
    let b = Bundle::with_args(&["sleep", "100"]);
    let other = Bundle::with_args(&["true"]);
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        let st = rt.state_json(&id);
        let again = rt.create(&other, &id);
        again.fails();
        if rt.flavor == Flavor::Husk {
            assert_eq!(again.stderr_lines().len(), 1, "{again}");
            again.stderr_has("already exists");
        }
        assert_eq!(rt.state_json(&id), st, "{}", rt.flavor.name());
        // The second bundle's cgroup was never made.
        let cg = other.cgroups_path().expect("cgroup path");
        assert!(husk_tests::host::cgroup_dirs(&cg).is_empty());
        rt.delete_force(&id).ok();
    }
    p.husk.assert_host_clean(&[&b, &other]);
}

#[test]
fn invalid_ids() {
    require_root!();
    let p = pair("badid");
    let b = Bundle::with_args(&["true"]);
    let bundle = b.path().to_string_lossy().into_owned();
    for rt in p.both() {
        for id in ["../escape", "a/b", "", ".."] {
            let out = rt.exec(&["create", "--bundle", &bundle, id]);
            out.fails();
            if rt.flavor == Flavor::Husk {
                assert_eq!(out.stderr_lines().len(), 1, "{out}");
            }
        }
        assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    }
    assert!(!b.path().parent().expect("parent").join("escape").exists());
}

#[test]
fn malformed_and_missing_config() {
    require_root!();
    let p = pair("badconfig");
    let cases: &[(&str, &str, &str)] = &[
        ("not JSON", "{ not json", "config.json"),
        ("empty file", "", "config.json"),
        (
            "wrong type",
            r#"{"ociVersion": "1.0.2", "process": {"args": "sh"}}"#,
            "config.json",
        ),
        (
            "no process",
            r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "linux": {}}"#,
            "process",
        ),
    ];
    for (what, text, needle) in cases {
        let b = Bundle::with_args(&["true"]);
        fs::write(b.config_path(), text).expect("write config.json");
        for rt in p.both() {
            fails_cleanly(rt, &b, "create", needle, what);
        }
    }
    let b = Bundle::with_args(&["true"]);
    fs::remove_file(b.config_path()).expect("rm config.json");
    for rt in p.both() {
        fails_cleanly(rt, &b, "run", "config.json", "no config.json");
    }
}

#[test]
fn missing_rootfs() {
    require_root!();
    let p = pair("norootfs");
    let b = Bundle::with_args(&["true"]);
    fs::remove_dir_all(b.rootfs()).expect("rm rootfs");
    for rt in p.both() {
        fails_cleanly(rt, &b, "create", "rootfs", "missing rootfs");
    }
    // A rootfs that is a file.
    fs::write(b.rootfs(), "not a dir").expect("write");
    for rt in p.both() {
        fails_cleanly(rt, &b, "create", "rootfs", "rootfs is a file");
    }
}

#[test]
fn invalid_config_fields() {
    require_root!();
    let p = pair("badfields");
    both_refuse(&p, "relative cwd", "cwd", |c| {
        c["process"]["cwd"] = json!("relative")
    });
    both_refuse(&p, "empty args", "args", |c| {
        c["process"]["args"] = json!([])
    });
    both_refuse(&p, "unknown namespace", "foo", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .push(json!({"type": "foo"}))
    });
    both_refuse(&p, "duplicate namespace", "duplicate namespace", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .push(json!({"type": "pid"}))
    });
    both_refuse(&p, "namespace path missing", "/no/such/ns", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .push(json!({"type": "cgroup", "path": "/no/such/ns"}))
    });
    both_refuse(&p, "unknown rlimit", "RLIMIT_FOO", |c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_FOO", "hard": 1, "soft": 1}])
    });
    both_refuse(&p, "hostname without uts", "UTS namespace", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .retain(|n| n["type"] != "uts")
    });
    both_refuse(&p, "user namespace without maps", "no uid mappings", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .push(json!({"type": "user"}))
    });
    both_refuse(&p, "net sysctl without netns", "net.ipv4.ip_forward", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .retain(|n| n["type"] != "network");
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    both_refuse(&p, "host-wide sysctl", "kernel.foo_bar", |c| {
        c["linux"]["sysctl"] = json!({"kernel.foo_bar": "1"})
    });
    both_refuse(&p, "bad rootfsPropagation", "rootfsPropagation", |c| {
        c["linux"]["rootfsPropagation"] = json!("bogus")
    });
    both_refuse(&p, "unknown device type", "z", |c| {
        c["linux"]["devices"] = json!([{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}])
    });
    both_refuse(&p, "env without =", "NOEQUALS", |c| {
        c["process"]["env"] = json!(["PATH=/bin", "NOEQUALS"])
    });
    both_refuse(&p, "oomScoreAdj out of range", "oom_score_adj", |c| {
        c["process"]["oomScoreAdj"] = json!(5000)
    });
    both_refuse(&p, "no such program", "/no/such/program", |c| {
        c["process"]["args"] = json!(["/no/such/program"])
    });
    both_refuse(&p, "cwd is a file", "/etc/hostname", |c| {
        c["process"]["cwd"] = json!("/etc/hostname")
    });
    both_refuse(&p, "hostname too long", "sethostname", |c| {
        c["hostname"] = json!("x".repeat(100))
    });
    // Security settings neither can apply here (no AppArmor, SELinux, RDT or rdma controller
    // on this host; husk supports none of them anywhere): refused, never silently dropped.
    both_refuse(&p, "AppArmor profile", "apparmorProfile", |c| {
        c["process"]["apparmorProfile"] = json!("docker-default")
    });
    both_refuse(&p, "SELinux label", "selinuxLabel", |c| {
        c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2")
    });
    both_refuse(&p, "SELinux mount label", "mountLabel", |c| {
        c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0")
    });
    both_refuse(&p, "Intel RDT", "intelRdt", |c| {
        c["linux"]["intelRdt"] = json!({"closID": "x", "l3CacheSchema": "L3:0=ff"})
    });
    both_refuse(&p, "rdma limits", "rdma", |c| {
        c["linux"]["resources"]["rdma"] = json!({"mlx5_0": {"hcaHandles": 3}})
    });
}

/// husk refuses some input runc 1.1 accepts with a warning or ignores: an unknown capability
/// (runc drops it), time offsets without a time namespace (runc 1.1 has no time namespaces),
/// a relative mount destination (runc warns; the spec says absolute).
#[test]
fn input_husk_is_stricter_about() {
    require_root!();
    let rt = Runtime::husk("stricter");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "unknown capability",
            "CAP_FOO",
            Box::new(|c| {
                c["process"]["capabilities"]["bounding"]
                    .as_array_mut()
                    .expect("caps")
                    .push(json!("CAP_FOO"))
            }),
        ),
        (
            "time offsets without a time namespace",
            "time namespace",
            Box::new(|c| c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 5}})),
        ),
        (
            "relative mount destination",
            "not absolute",
            Box::new(|c| {
                c["mounts"]
                    .as_array_mut()
                    .expect("mounts")
                    .push(json!({"destination": "rel/x", "type": "tmpfs", "source": "tmpfs"}))
            }),
        ),
    ];
    for (what, needle, edit) in cases {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            edit(c)
        });
        fails_cleanly(&rt, &b, "run", needle, what);
    }
}

#[test]
fn mounts_the_rootfs_must_not_give() {
    require_root!();
    let p = pair("badmounts");
    let missing = temp_dir("gone").path().join("no-such-source");
    let missing_s = missing.to_string_lossy().into_owned();
    both_refuse(&p, "bind source missing", &missing_s, |c| {
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/data", "type": "bind", "source": missing, "options": ["rbind"]
        }))
    });
    // Over something inside /proc that is not on runc's list of lxcfs files.
    both_refuse(&p, "bind inside /proc", "/proc/sysrq-trigger", |c| {
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/proc/sysrq-trigger", "type": "bind", "source": "/dev/null",
            "options": ["bind"]
        }))
    });
    // A non-procfs over /proc.
    both_refuse(&p, "tmpfs over /proc", "/proc", |c| {
        let mounts = c["mounts"].as_array_mut().expect("mounts");
        mounts.retain(|m| m["destination"] != "/proc");
        mounts.push(
            json!({"destination": "/proc", "type": "bind", "source": "/tmp",
                           "options": ["rbind"]}),
        );
    });
    // proc onto a symlink in the rootfs (which could send it anywhere).
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/myproc", "type": "proc", "source": "proc"
        }));
    });
    std::os::unix::fs::symlink("/tmp", b.rootfs().join("myproc")).expect("symlink");
    for rt in p.both() {
        fails_cleanly(rt, &b, "run", "/myproc", "proc onto a symlink");
    }
    // An unknown filesystem type.
    both_refuse(&p, "unknown fs type", "nosuchfs", |c| {
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/x", "type": "nosuchfs", "source": "none"
        }))
    });
}

#[test]
fn bad_signals() {
    require_root!();
    let p = pair("badsignal");
    let b = Bundle::with_args(&["sleep", "100"]);
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        rt.start(&id).ok();
        for sig in ["NOPE", "SIGNOPE", "-9", "99999", "65", "9x", "RTMIN+1"] {
            let out = rt.kill(&id, sig);
            assert!(out.code > 0, "{}: kill {sig:?}:\n{out}", rt.flavor.name());
            if rt.flavor == Flavor::Husk {
                assert_eq!(out.stderr_lines().len(), 1, "{out}");
                out.stderr_has(sig);
            }
        }
        // As in runc: 0 only checks the container exists, "" is SIGTERM (which a sleeping
        // PID 1 without a handler ignores).
        for sig in ["0", ""] {
            rt.kill(&id, sig).ok();
        }
        // Nothing happened to the container.
        assert_eq!(rt.status(&id), "running");
        rt.delete_force(&id).ok();
        // Signalling a stopped container is an error too.
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        rt.kill(&id, "KILL").ok();
        rt.wait_status(&id, "stopped", common::WAIT);
        let out = rt.kill(&id, "TERM");
        out.fails();
        if rt.flavor == Flavor::Husk {
            out.stderr_has("container not running");
        }
        rt.delete(&id).ok();
    }
    p.husk.assert_host_clean(&[&b]);
}

/// Flags naming things that are not there: a pid file in a missing directory (found only after
/// the init exists), a console or pidfd socket nobody listens on.
#[test]
fn bad_create_flags() {
    require_root!();
    let p = pair("badflags");
    let b = Bundle::with_args(&["sleep", "100"]);
    let gone = temp_dir("gone").path().join("missing-dir");
    let pid_file = gone.join("pid").to_string_lossy().into_owned();
    let sock = gone.join("sock").to_string_lossy().into_owned();
    let tty = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["process"]["terminal"] = json!(true);
    });
    let cases: Vec<(&str, &Bundle, Vec<&str>, &str)> = vec![
        (
            "pid file in a missing dir",
            &b,
            vec!["--pid-file", &pid_file],
            "missing-dir",
        ),
        (
            "console socket missing",
            &tty,
            vec!["--console-socket", &sock],
            "sock",
        ),
        (
            "pidfd socket missing",
            &b,
            vec!["--pidfd-socket", &sock],
            "sock",
        ),
    ];
    for (what, bundle, flags, needle) in cases {
        for rt in p.both() {
            // runc 1.1 has no --pidfd-socket.
            if rt.flavor == Flavor::Runc && flags[0] == "--pidfd-socket" {
                continue;
            }
            let value = unique("badflags");
            let scratch = temp_dir("badflags-out");
            let id = rt.new_id();
            let path = bundle.path().to_string_lossy().into_owned();
            let mut args = vec!["create", "--bundle", &path];
            args.extend(flags.iter().copied());
            args.push(&id);
            let out = exec_env(
                rt,
                &[("HUSK_TEST_MARKER", &value)],
                &[],
                &args,
                scratch.path(),
            );
            assert!(out.code > 0, "{what}: {out}");
            if rt.flavor == Flavor::Husk {
                assert_eq!(out.stderr_lines().len(), 1, "{what}: {out}");
                out.stderr_has(needle);
            }
            rt.state(&id).fails();
            let left = leftovers_after_failure(rt, bundle, &format!("HUSK_TEST_MARKER={value}"));
            assert!(
                left.is_empty(),
                "{what} ({}): {out}\nleft: {left:?}",
                rt.flavor.name()
            );
            husk_tests::remove_temp_dir(scratch);
        }
    }
}
