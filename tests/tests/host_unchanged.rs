//! The host after containers come and go is as it was: no mounts under the tests' dirs, no
//! cgroup dirs, no processes, nothing in `--root`, and /dev/null still root:root 0666.
//!
//! Only the tests' own temp dirs and cgroup paths are compared, so unrelated churn on the host
//! (and the other tests running in parallel) does not matter.

use std::time::{Duration, Instant};

use husk_tests::{host, require_root, Bundle, Runtime};
use serde_json::json;

fn wait_all_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for &pid in pids {
        while host::alive(pid) {
            assert!(
                Instant::now() < deadline,
                "container init {pid} outlived delete"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn create_delete_cycles_leave_host_clean() {
    require_root!();
    let rt = Runtime::husk("cycles");
    let b = Bundle::with_args(&["sleep", "100"]);
    let cg = b.cgroups_path().expect("test cgroup path");
    let dirs = [rt.root().to_path_buf(), b.path().to_path_buf()];
    let before: Vec<_> = dirs.iter().flat_map(|d| host::mounts_under(d)).collect();
    assert!(before.is_empty(), "{before:?}");

    let mut pids = Vec::new();
    for i in 0..12 {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        pids.push(rt.state_json(&id)["pid"].as_i64().expect("pid") as i32);
        match i % 3 {
            // created -> deleted
            0 => rt.delete(&id).ok(),
            // running -> delete --force
            1 => {
                rt.start(&id).ok();
                rt.delete_force(&id).ok()
            }
            // running -> killed -> stopped -> deleted
            _ => {
                rt.start(&id).ok();
                rt.kill(&id, "KILL").ok();
                rt.wait_status(&id, "stopped", Duration::from_secs(15));
                rt.delete(&id).ok()
            }
        };
        assert!(
            host::cgroup_dirs(&cg).is_empty(),
            "cycle {i}: cgroup left after delete: {:?}",
            host::cgroup_dirs(&cg)
        );
    }
    wait_all_gone(&pids);
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    assert_eq!(rt.list(&["-q"]).ok().stdout.trim(), "");
    rt.assert_host_clean(&[&b]);
}

#[test]
fn failed_creates_leave_host_clean() {
    require_root!();
    let rt = Runtime::husk("failclean");
    let missing = husk_tests::temp_dir("gone").path().join("no-such-dir");
    // Fails inside the container set-up, after namespaces and the cgroup exist.
    let bad_mount = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/mnt/x", "type": "bind", "source": missing, "options": ["rbind"]
        }));
    });
    // Fails at exec: the args name no binary.
    let bad_exec = Bundle::with_args(&["/no/such/binary"]);
    // Fails with a cgroup limit the kernel refuses.
    let bad_cgroup = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 1});
    });
    for b in [&bad_mount, &bad_exec, &bad_cgroup] {
        let id = rt.new_id();
        let out = rt.run(b, &id);
        out.fails();
        rt.state(&id).fails().stderr_has("does not exist");
        assert!(
            rt.root_entries().is_empty(),
            "{out}\nleft {:?}",
            rt.root_entries()
        );
    }
    rt.assert_host_clean(&[&bad_mount, &bad_exec, &bad_cgroup]);
}

#[test]
fn container_cannot_change_host_dev_null() {
    require_root!();
    host::check_dev_null().expect("/dev/null is root:root 0666 before the test");
    let rt = Runtime::husk("devnull");
    let b = Bundle::new(|c| {
        let script =
            "chmod 600 /dev/null && chown 1000:1000 /dev/null && stat -c '%a %u:%g' /dev/null";
        c["process"]["args"] = json!(["sh", "-c", script]);
        let caps = json!(["CAP_CHOWN", "CAP_FOWNER"]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
    });
    let out = rt.run_new(&b);
    // The container may change its own /dev/null (a device node in its own /dev tmpfs)...
    assert_eq!(out.ok().stdout, "600 1000:1000\n", "{out}");
    // ...never the host's.
    rt.assert_host_clean(&[&b]);
}

#[test]
fn symlink_in_rootfs_cannot_lead_a_mount_out() {
    require_root!();
    let rt = Runtime::husk("symlinkout");
    let outside = husk_tests::temp_dir("outside");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "touch /escape/marker && echo inside"]);
        c["root"]["readonly"] = json!(false);
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/escape", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
        }));
    });
    // An absolute symlink in the rootfs naming a host directory: resolved inside the rootfs it
    // is just a path there; followed on the host it would mount over `outside`.
    std::os::unix::fs::symlink(outside.path(), b.rootfs().join("escape")).expect("symlink");
    let out = rt.run_new(&b);
    assert_eq!(out.ok().stdout, "inside\n", "{out}");
    assert!(
        host::mounts_under(outside.path()).is_empty(),
        "a mount escaped the rootfs onto {}",
        outside.path().display()
    );
    let entries: Vec<_> = std::fs::read_dir(outside.path())
        .expect("read outside dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "the container wrote outside its rootfs: {entries:?}"
    );
    rt.assert_host_clean(&[&b]);
}
