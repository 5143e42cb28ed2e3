//! `linux.namespaces`, new and joined by `path`, seen from inside the container, under runc and
//! husk: pid 1 of a new pid namespace, a network namespace made with `ip netns add`, a pid, uts
//! and ipc namespace shared with another container, a user namespace with uid/gid mappings
//! (files it creates belong to the mapped host ids), the cgroup namespace's view of
//! /proc/self/cgroup, and time namespace offsets (husk only: runc 1.1 has no time namespace).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{host_uptime, ns_id, open_bundle_to_all, pair, NetNs, WAIT};
use husk_tests::{require_root, temp_dir, Bundle, Runtime};
use serde_json::json;

/// Namespace names as /proc/PID/ns spells them.
const NS: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "uts"];

/// The container prints `NAME ns:[INODE]` per namespace; each inode is replaced by "host" when
/// it is the test process's own and "own" when it is not.
fn ns_view(out: &str) -> String {
    out.lines()
        .map(|l| match l.split_once(' ') {
            Some((name, id)) if NS.contains(&name) => {
                let whose = if ns_id("self", name) == id {
                    "host"
                } else {
                    "own"
                };
                format!("{name} {whose}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ns_script() -> String {
    let mut s = String::from("echo pid=$$; ");
    for n in NS {
        s.push_str(&format!("echo {n} $(readlink /proc/self/ns/{n}); "));
    }
    s
}

#[test]
fn new_namespaces_and_pid_1() {
    require_root!();
    let p = pair("nsnew");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", ns_script()]);
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "cgroup"}));
    });
    let (o, h) = p.run_ok(&b);
    let (o, h) = (ns_view(&o), ns_view(&h));
    assert_eq!(
        o, "pid=1\ncgroup own\nipc own\nmnt own\nnet own\npid own\nuts own",
        "runc"
    );
    common::assert_same("new namespaces", &o, &h);
}

#[test]
fn host_namespaces_when_not_listed() {
    require_root!();
    let p = pair("nshost");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", format!("{}hostname", ns_script())]);
        c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
        // No UTS namespace: a hostname would be refused (see bad_input).
        c.as_object_mut().expect("config").remove("hostname");
    });
    let (o, h) = p.run_ok(&b);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let (o, h) = (ns_view(&o), ns_view(&h));
    assert_eq!(
        o,
        format!(
            "pid=1\ncgroup host\nipc host\nmnt own\nnet host\npid own\nuts host\n{}",
            host_name.trim()
        ),
        "runc"
    );
    common::assert_same("host namespaces", &o, &h);
}

#[test]
fn join_network_namespace_by_path() {
    require_root!();
    let p = pair("nsnetpath");
    let netns = NetNs::new();
    netns.exec(&["ip", "link", "set", "lo", "up"]);
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "readlink /proc/self/ns/net; cat /sys/class/net/lo/flags; \
             cat /proc/sys/net/ipv4/ip_forward"
        ]);
        for ns in c["linux"]["namespaces"].as_array_mut().expect("namespaces") {
            if ns["type"] == "network" {
                ns["path"] = json!(netns.path());
            }
        }
        // Written in the joined namespace.
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    let ino = std::fs::metadata(netns.path())
        .expect("stat the netns file")
        .ino();
    let out = p.run_same("a joined network namespace", &b);
    assert_eq!(out, format!("net:[{ino}]\n0x9\n1\n"));
    // The namespace outlives the containers and kept the sysctl they wrote.
    assert_eq!(netns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]), "1\n");
}

#[test]
fn join_pid_uts_ipc_of_another_container() {
    require_root!();
    let p = pair("nsshare");
    let first = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "100"]);
        c["hostname"] = json!("first-box");
    });
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&first, &id).ok();
        rt.start(&id).ok();
        let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
        let second = Bundle::new(|c| {
            c["process"]["args"] = json!([
                "sh",
                "-c",
                "[ $$ != 1 ] && echo not-pid-1; hostname; ps -o pid,args | grep 'sleep 100' | grep -v grep; \
                 readlink /proc/self/ns/ipc"
            ]);
            c.as_object_mut().expect("config").remove("hostname");
            for ns in c["linux"]["namespaces"].as_array_mut().expect("namespaces") {
                let name = match ns["type"].as_str() {
                    Some("pid") => "pid",
                    Some("uts") => "uts",
                    Some("ipc") => "ipc",
                    _ => continue,
                };
                ns["path"] = json!(format!("/proc/{pid}/ns/{name}"));
            }
        });
        let out = rt.run_new(&second);
        let text = out.ok().stdout.clone();
        let first_ipc = ns_id(&pid.to_string(), "ipc");
        assert_eq!(
            text,
            format!("not-pid-1\nfirst-box\n    1 sleep 100\n{first_ipc}\n"),
            "{}:\n{out}",
            rt.flavor.name()
        );
        rt.delete_force(&id).ok();
    }
}

#[test]
fn user_namespace_maps_ids() {
    require_root!();
    let p = pair("nsuser");
    let shared = temp_dir("userns-shared");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod shared dir");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "id; cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g' /bin/busybox; \
             rm -f /shared/*; touch /shared/by-root; touch /shared/by-1000; \
             chown 1000:1000 /shared/by-1000; stat -c '%n %u:%g' /shared/*; \
             grep -E '^Cap(Eff|Bnd)' /proc/self/status; \
             stat -c '%n %F %a %u:%g %t:%T' /dev/null /dev/zero /dev/tty /dev/fuse /dev/pts/ptmx"
        ]);
        // Devices cannot be made in a user namespace: the host's are bind-mounted, the
        // configured one with its mode.
        c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10,
                                        "minor": 229, "fileMode": 0o600, "uid": 0, "gid": 0}]);
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        let caps = json!(["CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"]);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/shared", "type": "bind", "source": shared.path(),
            "options": ["rbind", "rw"]
        }));
    });
    open_bundle_to_all(&b);
    // The rootfs belongs to host root, which is nobody in the namespace: the mount point must
    // exist already.
    std::fs::create_dir(b.rootfs().join("shared")).expect("mkdir rootfs/shared");
    let out = p.run_same("a user namespace", &b);
    assert!(
        out.starts_with(
            "uid=0(root) gid=0(root)\n         0     200000      65536\n         0     300000      \
             65536\n65534:65534\n/shared/by-1000 1000:1000\n/shared/by-root 0:0\n"
        ),
        "{out}"
    );
    // On the host the files belong to the mapped ids.
    let owner = |name: &str| {
        let md = std::fs::metadata(shared.path().join(name)).expect("stat a shared file");
        (md.uid(), md.gid())
    };
    assert_eq!(owner("by-root"), (200_000, 300_000));
    assert_eq!(owner("by-1000"), (201_000, 301_000));
    drop(b);
    husk_tests::remove_temp_dir(shared);
}

#[test]
fn cgroup_namespace_view() {
    require_root!();
    let p = pair("nscgroup");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /proc/self/cgroup; awk '$5 ~ /^\\/sys\\/fs\\/cgroup\\// {print $4, $5}' \
             /proc/self/mountinfo"
        ]);
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "cgroup"}));
    });
    let cg = b.cgroups_path().expect("test cgroup path");
    let out = p.run_same("/proc/self/cgroup in a cgroup namespace", &b);
    for line in out.lines().filter(|l| l.contains("::") || l.contains(":/")) {
        if let Some((_, path)) = line.rsplit_once(':') {
            if !line.contains(' ') {
                assert_eq!(path, "/", "{line} in\n{out}");
            }
        }
    }
    // The container's cgroup is the root of what it sees of each hierarchy.
    assert!(out.contains("/ /sys/fs/cgroup/memory\n"), "{out}");
    assert!(!out.contains(&cg), "{out}");

    // Without one, the full path shows.
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .retain(|n| n["type"] != "cgroup");
    });
    let out = p.run_same("/proc/self/cgroup without a cgroup namespace", &b);
    assert!(out.contains(&format!("memory:{cg}\n")), "{out}");
}

#[test]
fn time_namespace_offsets() {
    require_root!();
    // runc 1.1 refuses the time namespace ("namespace {time} does not exist"); runc 1.2 has it.
    let rt = Runtime::husk("nstime");
    let boot = 10 * 86400;
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "cat /proc/self/timens_offsets /proc/uptime"]);
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": boot, "nanosecs": 0},
            "monotonic": {"secs": 3600, "nanosecs": 500}
        });
    });
    let before = host_uptime();
    let out = rt.run_new(&b);
    let after = host_uptime();
    let text = &out.ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(lines[0]), ["monotonic", "3600", "500"], "{out}");
    assert_eq!(
        words(lines[1]),
        ["boottime", &boot.to_string(), "0"],
        "{out}"
    );
    let uptime: f64 = lines[2]
        .split_whitespace()
        .next()
        .and_then(|u| u.parse().ok())
        .expect("uptime");
    let boot = boot as f64;
    assert!(
        uptime >= before + boot - 1.0 && uptime <= after + boot + 1.0,
        "uptime {uptime} not shifted by {boot} from the host's {before}..{after}"
    );

    // A new time namespace without offsets runs on the host's clocks.
    b.edit(|c| {
        c["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("timeOffsets");
        c["process"]["args"] = json!(["cat", "/proc/uptime"]);
    });
    let out = rt.run_new(&b);
    let uptime: f64 = out
        .ok()
        .stdout
        .split_whitespace()
        .next()
        .and_then(|u| u.parse().ok())
        .expect("uptime");
    assert!(
        (uptime - host_uptime()).abs() < WAIT.as_secs_f64(),
        "{uptime}"
    );
    rt.assert_host_clean(&[&b]);
}
