//! `linux.cgroupsPath` and `linux.resources`: memory, cpu, cpuset, pids, blkio and devices,
//! read inside the container and in the host's hierarchies while it runs, under runc and husk,
//! and gone after delete. hugetlb and blkio weights this host cannot apply fail with husk's
//! clear one-line error and leave nothing behind.
//!
//! The host is cgroup v1 (hybrid, cgroup2 at /sys/fs/cgroup/unified); on a pure v2 host the
//! v1-only files are skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{leftovers_after_failure, pair, WAIT};
use husk_tests::{host, require_root, temp_dir, Bundle, Output, Runtime};
use serde_json::json;

/// Whether the host has the v1 hierarchies these tests read.
fn v1() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// (controller, file, expected value) for the resources below.
const FILES: &[(&str, &str, &str)] = &[
    ("memory", "memory.limit_in_bytes", "67108864"),
    ("memory", "memory.soft_limit_in_bytes", "33554432"),
    ("memory", "memory.memsw.limit_in_bytes", "134217728"),
    ("memory", "memory.swappiness", "10"),
    ("cpu", "cpu.shares", "512"),
    ("cpu", "cpu.cfs_quota_us", "50000"),
    ("cpu", "cpu.cfs_period_us", "100000"),
    ("cpu", "cpu.rt_runtime_us", "10000"),
    ("cpuset", "cpuset.cpus", "0"),
    ("cpuset", "cpuset.mems", "0"),
    ("pids", "pids.max", "50"),
    (
        "blkio",
        "blkio.throttle.read_bps_device",
        "BLOCKDEV 1048576",
    ),
    ("blkio", "blkio.throttle.write_iops_device", "BLOCKDEV 100"),
];

/// major:minor of the block device holding / (blkio throttles need a real one).
fn root_blockdev() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").expect("stat /").dev();
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

/// The whole-disk device of / as major:minor: a partition's throttle is refused, so use the
/// device the kernel reports for the root filesystem only when it is a whole disk.
fn throttle_device() -> Option<(u64, u64)> {
    let (maj, min) = root_blockdev();
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    // A partition has a "partition" file; a whole disk does not.
    (sys.exists() && !sys.join("partition").exists()).then_some((maj, min))
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// Polls a created-and-started container's stdout until it has `lines` lines.
fn wait_output(out: &Output, lines: usize) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = out.stdout_now();
        if s.lines().count() >= lines || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn resources_inside_and_on_the_host() {
    require_root!();
    if !v1() {
        eprintln!("SKIPPED resources_inside_and_on_the_host: needs cgroup v1 hierarchies");
        return;
    }
    let p = pair("cgres");
    let dev = throttle_device();
    let files: Vec<(&str, &str, String)> = FILES
        .iter()
        .filter(|(ctl, f, _)| Path::new(&format!("/sys/fs/cgroup/{ctl}/{f}")).exists())
        .filter(|(ctl, _, _)| *ctl != "blkio" || dev.is_some())
        .map(|(c, f, v)| {
            let v = match dev {
                Some((maj, min)) => v.replace("BLOCKDEV", &format!("{maj}:{min}")),
                None => v.to_string(),
            };
            (*c, *f, v)
        })
        .collect();
    let script = format!(
        "for f in {}; do echo $f $(cat /sys/fs/cgroup/$f); done; exec sleep 100",
        files
            .iter()
            .map(|(c, f, _)| format!("{c}/{f}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", script]);
        let r = &mut c["linux"]["resources"];
        r["memory"] = json!({"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                             "swappiness": 10});
        r["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0",
                          "mems": "0", "realtimeRuntime": 10000, "realtimePeriod": 1000000});
        r["pids"] = json!({"limit": 50});
        if let Some((maj, min)) = dev {
            r["blockIO"] = json!({
                "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]
            });
        }
    });
    let cg = b.cgroups_path().expect("test cgroup path");
    let mut inside = Vec::new();
    for rt in p.both() {
        let id = rt.new_id();
        let created = rt.create(&b, &id);
        created.ok();
        rt.start(&id).ok();
        let out = wait_output(&created, files.len());
        // The same values in the host's hierarchies, under cgroupsPath.
        for (ctl, f, want) in &files {
            let on_host = read_trim(&Path::new("/sys/fs/cgroup").join(ctl).join(&cg[1..]).join(f));
            assert_eq!(&on_host, want, "{} {ctl}/{f} on the host", rt.flavor.name());
            assert!(
                out.contains(&format!("{ctl}/{f} {want}\n")),
                "{} {ctl}/{f} inside:\n{out}",
                rt.flavor.name()
            );
        }
        let pid = rt.state_json(&id)["pid"].as_i64().expect("pid") as i32;
        let procs = read_trim(
            &Path::new("/sys/fs/cgroup/pids")
                .join(&cg[1..])
                .join("cgroup.procs"),
        );
        assert_eq!(procs, pid.to_string(), "{}", rt.flavor.name());
        rt.delete_force(&id).ok();
        assert!(
            host::cgroup_dirs(&cg).is_empty(),
            "{} left {:?}",
            rt.flavor.name(),
            host::cgroup_dirs(&cg)
        );
        inside.push(out);
    }
    common::assert_same("cgroup files inside", &inside[0], &inside[1]);
}

/// Device rules: the spec's, then runc's default allow list (which no longer includes the
/// host console, 5:1). Nodes made with linux.devices but not allowed cannot be opened.
#[test]
fn devices_cgroup() {
    require_root!();
    let p = pair("cgdevices");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "echo x > /dev/null && echo null-ok; (head -c 1 /dev/kmsg-x) 2>&1 | sed 's/^head: //'; \
             (echo x > /dev/console-x) 2>&1 | sed 's/^sh: //'; head -c 1 /dev/mem-r-x | wc -c; \
             sort /sys/fs/cgroup/devices/devices.list"
        ]);
        c["linux"]["devices"] = json!([
            {"path": "/dev/kmsg-x", "type": "c", "major": 1, "minor": 11},
            {"path": "/dev/console-x", "type": "c", "major": 5, "minor": 1},
            {"path": "/dev/mem-r-x", "type": "c", "major": 1, "minor": 5}
        ]);
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "r"}
        ]);
    });
    let out = p.run_same("the devices cgroup", &b);
    assert!(
        out.starts_with(
            "null-ok\n/dev/kmsg-x: Operation not permitted\n\
             can't create /dev/console-x: Operation not permitted\n1\n"
        ),
        "{out}"
    );
    assert!(!out.contains("c 5:1 "), "{out}");

    // A rule of the spec that grants the console is honoured.
    b.edit(|c| {
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .expect("devices")
            .push(json!({"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rw"}));
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "grep '^c 5:1 ' /sys/fs/cgroup/devices/devices.list"
        ]);
    });
    assert_eq!(p.run_same("a granted console", &b), "c 5:1 rw\n");
}

/// A limit this host cannot apply: husk fails with one line naming it and leaves nothing.
fn assert_unsupported(rt: &Runtime, b: &Bundle, needle: &str) {
    let marker = format!("HUSK_TEST_MARKER={}", husk_tests::unique("cgunsupported"));
    let scratch = temp_dir("cgout");
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    let (k, v) = marker.split_once('=').expect("marker");
    let out = common::exec_env(
        rt,
        &[(k, v)],
        &[],
        &["run", "--bundle", &bundle, &id],
        scratch.path(),
    );
    out.fails();
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    out.stderr_has(needle);
    let left = leftovers_after_failure(rt, b, &marker);
    assert!(left.is_empty(), "{out}\nleft: {left:?}");
    husk_tests::remove_temp_dir(scratch);
}

#[test]
fn hugetlb_and_blkio_weight_where_unsupported() {
    require_root!();
    let rt = Runtime::husk("cgunsup");
    if !Path::new("/sys/fs/cgroup/hugetlb").exists() && v1() {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            c["linux"]["resources"]["hugepageLimits"] =
                json!([{"pageSize": "2MB", "limit": 2097152}]);
        });
        // runc fails too ("cannot set hugetlb limit: container could not join or create
        // cgroup"); husk says which hierarchy is missing.
        assert_unsupported(&rt, &b, "hugetlb");
    } else {
        eprintln!("hugetlb is available here: not checking the unsupported path");
    }
    let blkio = Path::new("/sys/fs/cgroup/blkio");
    if blkio.exists()
        && !blkio.join("blkio.weight").exists()
        && !blkio.join("blkio.bfq.weight").exists()
    {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            c["linux"]["resources"]["blockIO"] = json!({"weight": 500});
        });
        // runc 1.1 ignores a weight it cannot write; husk refuses it.
        assert_unsupported(&rt, &b, "blockIO weight");
    }
}

/// A limit the kernel refuses (here: below the memory set-up needs) fails create with a reason
/// and leaves no cgroup.
#[test]
fn memory_limit_too_low() {
    require_root!();
    let p = pair("cglowmem");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["linux"]["resources"]["memory"] = json!({"limit": 4096});
    });
    let (o, h) = p.run(&b);
    o.fails();
    h.fails();
    assert_eq!(h.stderr_lines().len(), 1, "{h}");
    h.stderr_has("memory");
    let cg = b.cgroups_path().expect("cgroup path");
    assert!(
        host::cgroup_dirs(&cg).is_empty(),
        "{:?}",
        host::cgroup_dirs(&cg)
    );
    p.husk.assert_host_clean(&[&b]);
}

/// Processes the container forked (a daemonised child) are killed and the cgroup removed on
/// delete --force.
#[test]
fn delete_removes_cgroup_with_children() {
    require_root!();
    let p = pair("cgchildren");
    let b = Bundle::sh("sleep 300 & sleep 300 & exec sleep 300");
    let cg = b.cgroups_path().expect("cgroup path");
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        rt.start(&id).ok();
        let pids_dir = Path::new("/sys/fs/cgroup/pids").join(&cg[1..]);
        let deadline = Instant::now() + WAIT;
        while host::cgroup_pids(&pids_dir).len() < 3 {
            assert!(Instant::now() < deadline, "the children never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pids = host::cgroup_pids(&pids_dir);
        rt.delete_force(&id).ok();
        for pid in pids {
            assert!(
                !host::alive(pid),
                "{}: {pid} outlived delete",
                rt.flavor.name()
            );
        }
        assert!(
            host::cgroup_dirs(&cg).is_empty(),
            "{:?}",
            host::cgroup_dirs(&cg)
        );
    }
}

/// The deprecated kernel memory limits are ignored with runc's warning (kernels since 5.16 no
/// longer honour them).
#[test]
fn kernel_memory_is_ignored() {
    require_root!();
    if !v1() {
        eprintln!("SKIPPED kernel_memory_is_ignored: needs cgroup v1");
        return;
    }
    let p = pair("cgkmem");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes \
             /sys/fs/cgroup/memory/memory.kmem.limit_in_bytes"
        ]);
        c["linux"]["resources"]["memory"] = json!({"kernel": 2097152, "kernelTCP": 1048576});
    });
    let (o, h) = p.run(&b);
    common::assert_same("kernel memory files", &o.ok().stdout, &h.ok().stdout);
    h.stderr_has("Kernel memory settings are ignored");
}

/// Resources this v1 host has no hierarchy for, or that need v2: refused naming what is
/// missing (runc refuses them too).
#[test]
fn resources_without_a_hierarchy() {
    require_root!();
    if !v1() {
        eprintln!("SKIPPED resources_without_a_hierarchy: needs cgroup v1");
        return;
    }
    let rt = Runtime::husk("cgnohier");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["linux"]["resources"]["unified"] = json!({"memory.max": "1000000"});
    });
    assert_unsupported(&rt, &b, "unified");
    if !Path::new("/sys/fs/cgroup/net_cls").exists() {
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["true"]);
            c["linux"]["resources"]["network"] = json!({"classID": 1048577});
        });
        assert_unsupported(&rt, &b, "net_cls");
    }
}
