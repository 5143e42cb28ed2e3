//! Every process and container field of the runtime-spec that issue 2 lists, observed from
//! inside the container: hostname, domainname, sysctl, root.readonly, maskedPaths,
//! readonlyPaths, linux.devices, rlimits, user, umask, env, cwd, args, the capability sets,
//! noNewPrivileges, oomScoreAdj, personality, scheduler and ioPriority.
//!
//! Where Debian's runc (1.1.5) honours a field the test is differential: the same bundle runs
//! under runc and husk and the container's view must be identical. runc 1.1 ignores
//! `domainname`, `personality`, `scheduler` and `ioPriority` (all runtime-spec 1.1+ / runc 1.2):
//! for those husk is checked against the value the spec asks for.

mod common;

use common::{host_has_cap, own_hard_limit, pair, stat_field, CAP_SYS_RESOURCE};
use husk_tests::{require_root, Bundle, Runtime};
use serde_json::json;

#[test]
fn hostname_and_domainname() {
    require_root!();
    let p = pair("hostdomain");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "hostname; uname -n; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname"
        ]);
        c["hostname"] = json!("husk-host");
        c["domainname"] = json!("husk.example");
    });
    let (o, h) = p.run_ok(&b);
    // runc 1.1 sets the hostname only; it ignores domainname (runc 1.2 sets it).
    let o_host: Vec<&str> = o.lines().take(3).collect();
    let h_host: Vec<&str> = h.lines().take(3).collect();
    assert_eq!(o_host, ["husk-host"; 3], "{o}");
    assert_eq!(h_host, o_host, "hostname under husk:\n{h}");
    assert_eq!(h.lines().nth(3), Some("husk.example"), "domainname:\n{h}");
}

#[test]
fn sysctl() {
    require_root!();
    let p = pair("sysctl");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced \
             /proc/sys/net/ipv4/conf/all/forwarding /proc/sys/kernel/msgmax \
             /proc/sys/net/ipv4/ip_local_port_range /proc/sys/fs/mqueue/msg_max; \
             echo 0 > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo writable || echo read-only"
        ]);
        c["linux"]["sysctl"] = json!({
            "net.ipv4.ip_forward": "1",
            "kernel.shm_rmid_forced": "1",
            "kernel/msgmax": "9000",
            "net.ipv4.ip_local_port_range": "1024 65000",
            "fs.mqueue.msg_max": "20",
        });
    });
    let out = p.run_same("sysctl values", &b);
    assert_eq!(out, "1\n1\n1\n9000\n1024\t65000\n20\nread-only\n");
    // The host's values are untouched (the container had its own net and ipc namespaces).
    let host = std::fs::read_to_string("/proc/sys/kernel/msgmax").expect("host msgmax");
    assert_ne!(host.trim(), "9000");
}

#[test]
fn root_readonly() {
    require_root!();
    let p = pair("rootro");
    let script = "touch /x 2>&1; touch /tmp/x 2>&1; touch /dev/x && echo dev-writable; \
                  awk '$5 == \"/\" {print $6}' /proc/self/mountinfo";
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", script]);
        c["root"]["readonly"] = json!(true);
    });
    let out = p.run_same("root.readonly", &b);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.ends_with("dev-writable\nro,relatime\n"), "{out}");

    b.edit(|c| c["root"]["readonly"] = json!(false));
    let out = p.run_same("root read-write", &b);
    assert!(out.ends_with("dev-writable\nrw,relatime\n"), "{out}");
}

#[test]
fn masked_paths() {
    require_root!();
    let p = pair("masked");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "ls -A /opt/secret; cat /etc/secret; stat -c '%n %F %t:%T' /etc/secret; \
             touch /opt/secret/x 2>&1; cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l; \
             grep -E ' /(opt/secret|etc/secret|proc/keys) ' /proc/self/mountinfo | cut -d' ' -f5,6"
        ]);
        c["root"]["readonly"] = json!(false);
        let masked = c["linux"]["maskedPaths"]
            .as_array_mut()
            .expect("maskedPaths");
        masked.extend([
            json!("/opt/secret"),
            json!("/etc/secret"),
            json!("/no/such/path"),
        ]);
    });
    std::fs::create_dir_all(b.rootfs().join("opt/secret")).expect("mkdir");
    std::fs::write(b.rootfs().join("opt/secret/key"), "dir secret").expect("write");
    std::fs::write(b.rootfs().join("etc/secret"), "file secret").expect("write");
    let out = p.run_same("maskedPaths", &b);
    assert!(!out.contains("secret\n") && !out.contains("key\n"), "{out}");
    assert!(
        out.contains("/etc/secret character special file 1:3"),
        "{out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
}

#[test]
fn readonly_paths() {
    require_root!();
    let p = pair("ropaths");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /etc/hostname; (echo x > /etc/new) 2>&1; echo y > /tmp/new && echo tmp-writable; \
             (echo 1 > /proc/sysrq-trigger) 2>&1; \
             grep -E ' /(etc|proc/sys|proc/bus) ' /proc/self/mountinfo | cut -d' ' -f5,6"
        ]);
        c["root"]["readonly"] = json!(false);
        let ro = c["linux"]["readonlyPaths"]
            .as_array_mut()
            .expect("readonlyPaths");
        ro.extend([json!("/etc"), json!("/no/such/path")]);
    });
    let out = p.run_same("readonlyPaths", &b);
    assert!(
        out.starts_with("runc\nsh: can't create /etc/new: Read-only file system\ntmp-writable\n"),
        "{out}"
    );
    assert!(out.contains("/etc ro,"), "{out}");
}

#[test]
fn linux_devices() {
    require_root!();
    let p = pair("devices");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "stat -c '%n %F %a %u:%g %t:%T' /dev/fuse /dev/loop-x /dev/null-alias /dev/fifo-x \
             /dev/sub/dir/tty-x; head -c 4 /dev/null-alias | wc -c"
        ]);
        c["linux"]["devices"] = json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
             "fileMode": 0o660, "uid": 1000, "gid": 5},
            {"path": "/dev/loop-x", "type": "b", "major": 7, "minor": 200,
             "fileMode": 0o600, "uid": 0, "gid": 6},
            {"path": "/dev/null-alias", "type": "u", "major": 1, "minor": 3},
            {"path": "/dev/fifo-x", "type": "p", "fileMode": 0o640},
            {"path": "/dev/sub/dir/tty-x", "type": "c", "major": 5, "minor": 0, "fileMode": 0o620}
        ]);
        // The devices cgroup must let the container read the alias of /dev/null.
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .expect("resources.devices")
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    });
    let out = p.run_same("linux.devices", &b);
    for want in [
        "/dev/fuse character special file 660 1000:5 a:e5",
        "/dev/loop-x block special file 600 0:6 7:c8",
        "/dev/null-alias character special file 666 0:0 1:3",
        "/dev/fifo-x fifo 640 0:0 0:0",
        "/dev/sub/dir/tty-x character special file 620 0:0 5:0",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

#[test]
fn rlimits_all_kinds() {
    require_root!();
    let p = pair("rlimitsall");
    // Raising a hard limit needs CAP_SYS_RESOURCE, which this host may withhold from the
    // tests: ask for no more than the caller has (both runtimes refuse more alike, see below).
    let lim = |res, want: u64| own_hard_limit(res).min(want);
    let rlimits = json!([
        {"type": "RLIMIT_AS", "hard": lim(libc::RLIMIT_AS, 4 << 30), "soft": 2u64 << 30},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
        {"type": "RLIMIT_CPU", "hard": lim(libc::RLIMIT_CPU, 3600), "soft": 1800},
        {"type": "RLIMIT_DATA", "hard": lim(libc::RLIMIT_DATA, 2 << 30), "soft": 1u64 << 30},
        {"type": "RLIMIT_FSIZE", "hard": lim(libc::RLIMIT_FSIZE, 1 << 30), "soft": 1u64 << 29},
        {"type": "RLIMIT_LOCKS", "hard": lim(libc::RLIMIT_LOCKS, 100), "soft": 50},
        {"type": "RLIMIT_MEMLOCK", "hard": lim(libc::RLIMIT_MEMLOCK, 65536), "soft": 32768},
        {"type": "RLIMIT_MSGQUEUE", "hard": lim(libc::RLIMIT_MSGQUEUE, 819_200), "soft": 409_600},
        {"type": "RLIMIT_NICE", "hard": lim(libc::RLIMIT_NICE, 0), "soft": 0},
        {"type": "RLIMIT_NOFILE", "hard": lim(libc::RLIMIT_NOFILE, 2048), "soft": 512},
        {"type": "RLIMIT_NPROC", "hard": lim(libc::RLIMIT_NPROC, 1000), "soft": 500},
        {"type": "RLIMIT_RSS", "hard": lim(libc::RLIMIT_RSS, 1 << 30), "soft": 1u64 << 29},
        {"type": "RLIMIT_RTPRIO", "hard": lim(libc::RLIMIT_RTPRIO, 0), "soft": 0},
        {"type": "RLIMIT_RTTIME", "hard": lim(libc::RLIMIT_RTTIME, 2_000_000), "soft": 1_000_000},
        {"type": "RLIMIT_SIGPENDING", "hard": lim(libc::RLIMIT_SIGPENDING, 1000), "soft": 500},
        {"type": "RLIMIT_STACK", "hard": lim(libc::RLIMIT_STACK, 16 << 20), "soft": 8u64 << 20}
    ]);
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["cat", "/proc/self/limits"]);
        c["process"]["rlimits"] = rlimits;
    });
    let out = p.run_same("rlimits", &b);
    assert!(
        out.lines().any(|l| l.starts_with("Max realtime timeout")
            && l.contains("1000000")
            && l.contains("2000000")),
        "{out}"
    );

    // A hard limit above the caller's needs CAP_SYS_RESOURCE: without it both runtimes fail.
    if !host_has_cap(CAP_SYS_RESOURCE) {
        b.edit(|c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NICE", "hard": 40, "soft": 40}]);
        });
        let (o, h) = p.run(&b);
        o.fails();
        h.fails();
        assert_eq!(h.stderr_lines().len(), 1, "{h}");
        h.stderr_has("RLIMIT_NICE");
    }
}

#[test]
fn user_groups_umask_and_files() {
    require_root!();
    let p = pair("userfiles");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "id; umask; echo HOME=$HOME; touch /tmp/f; mkdir /tmp/d; \
             stat -c '%n %a %u:%g' /tmp/f /tmp/d; grep -E '^(Uid|Gid|Groups|Umask)' /proc/self/status"
        ]);
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 10, 4242, 10], "umask": 0o077});
        c["root"]["readonly"] = json!(false);
    });
    let out = p.run_same("user, groups and umask", &b);
    assert!(
        out.contains("/tmp/f 600 1000:1000\n/tmp/d 700 1000:1000"),
        "{out}"
    );
    assert!(out.contains("Groups:\t5 10 4242"), "{out}");

    // A uid with no passwd entry: HOME falls back to "/".
    b.edit(|c| c["process"]["user"] = json!({"uid": 4321, "gid": 4321}));
    let out = p.run_same("an unknown uid", &b);
    assert!(out.starts_with("uid=4321 gid=4321"), "{out}");
}

#[test]
fn env_args_and_path_lookup() {
    require_root!();
    let p = pair("envargs");
    let b = Bundle::new(|c| {
        // args[0] is found through the PATH of process.env, not the runtime's.
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "for a in \"$0\" \"$@\"; do echo \"[$a]\"; done; env | sort",
            "argv0",
            "a b",
            "",
            "*",
            "$HOME",
            "tab\there"
        ]);
        c["process"]["env"] = json!([
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "EMPTY=",
            "WITH_EQUALS=a=b=c",
            "SPACES=x y  z",
            "DUP=first",
            "DUP=second"
        ]);
    });
    let out = p.run_same("argv and env", &b);
    assert!(
        out.starts_with("[argv0]\n[a b]\n[]\n[*]\n[$HOME]\n[tab\there]\n"),
        "{out}"
    );
    assert!(out.contains("WITH_EQUALS=a=b=c\n"), "{out}");

    // A relative args[0] with a slash is taken relative to cwd.
    b.edit(|c| {
        c["process"]["cwd"] = json!("/bin");
        c["process"]["args"] = json!(["./echo", "relative ok"]);
    });
    assert_eq!(p.run_same("relative args[0]", &b), "relative ok\n");
}

#[test]
fn cwd_is_created_when_missing() {
    require_root!();
    let p = pair("cwdmissing");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "pwd; stat -c '%a %u:%g' ."]);
        c["process"]["cwd"] = json!("/does/not/exist yet");
    });
    let out = p.run_same("a missing cwd", &b);
    assert!(out.starts_with("/does/not/exist yet\n755 0:0"), "{out}");

    // As a non-root user too (runc creates it before switching user).
    b.edit(|c| {
        c["process"]["cwd"] = json!("/home/user/work");
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let out = p.run_same("a missing cwd as uid 1000", &b);
    assert!(out.starts_with("/home/user/work\n"), "{out}");

    // Through an absolute symlink: resolved in the rootfs, never on the host.
    b.edit(|c| {
        c["process"]["cwd"] = json!("/link/sub/new");
        c["process"]["user"] = json!({"uid": 0, "gid": 0});
    });
    std::fs::create_dir_all(b.rootfs().join("husk-real/sub")).expect("mkdir");
    std::os::unix::fs::symlink("/husk-real", b.rootfs().join("link")).expect("symlink");
    let out = p.run_same("a cwd through a symlink", &b);
    assert!(out.starts_with("/husk-real/sub/new\n"), "{out}");
    assert!(b.rootfs().join("husk-real/sub/new").is_dir());
    assert!(!std::path::Path::new("/husk-real").exists());
}

#[test]
fn capabilities_empty_and_ambient_for_a_user() {
    require_root!();
    let p = pair("capsuser");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "grep -E '^Cap' /proc/self/status"]);
        c["process"]["capabilities"] = json!({});
    });
    let out = p.run_same("no capabilities at all", &b);
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");

    // A non-root user keeps only its ambient set (and what it is inherited into).
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        let set = json!(["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_TIME"],
            "effective": set, "permitted": set, "inheritable": set,
            "ambient": ["CAP_NET_BIND_SERVICE"]
        });
    });
    let out = p.run_same("ambient capabilities of uid 1000", &b);
    assert!(out.contains("CapEff:\t0000000000000400"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000400"), "{out}");

    // Every capability this kernel knows.
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0});
        // Those this host lets the tests have (it may withhold CAP_SYS_RESOURCE).
        let all: Vec<String> = CAP_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| host_has_cap(*i as u32))
            .map(|(_, n)| format!("CAP_{n}"))
            .collect();
        c["process"]["capabilities"] = json!({
            "bounding": all, "effective": all, "permitted": all, "inheritable": all, "ambient": all
        });
    });
    let out = p.run_same("every capability", &b);
    assert!(!out.contains("CapEff:\t0000000000000000"), "{out}");
}

/// Capability names in number order (0 = CAP_CHOWN ... 40 = CAP_CHECKPOINT_RESTORE).
const CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

#[test]
fn no_new_privileges() {
    require_root!();
    let p = pair("nnp");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["grep", "NoNewPrivs", "/proc/self/status"]);
        c["process"]["noNewPrivileges"] = json!(true);
    });
    assert_eq!(p.run_same("noNewPrivileges true", &b), "NoNewPrivs:\t1\n");
    b.edit(|c| c["process"]["noNewPrivileges"] = json!(false));
    assert_eq!(p.run_same("noNewPrivileges false", &b), "NoNewPrivs:\t0\n");
    b.edit(|c| {
        c["process"]
            .as_object_mut()
            .expect("process")
            .remove("noNewPrivileges");
    });
    assert_eq!(p.run_same("noNewPrivileges unset", &b), "NoNewPrivs:\t0\n");
}

#[test]
fn oom_score_adj() {
    require_root!();
    let p = pair("oomscore");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["cat", "/proc/self/oom_score_adj"]);
        c["process"]["oomScoreAdj"] = json!(500);
    });
    assert_eq!(p.run_same("oomScoreAdj 500", &b), "500\n");
    // Unset: inherited from the caller.
    b.edit(|c| {
        c["process"]
            .as_object_mut()
            .expect("process")
            .remove("oomScoreAdj");
    });
    let mine = std::fs::read_to_string("/proc/self/oom_score_adj").expect("own oom_score_adj");
    assert_eq!(p.run_same("oomScoreAdj unset", &b), mine);
    // Lowering it needs CAP_SYS_RESOURCE: with it both set -999, without it both fail, husk
    // with a one-line error naming the file.
    b.edit(|c| c["process"]["oomScoreAdj"] = json!(-999));
    if host_has_cap(CAP_SYS_RESOURCE) {
        assert_eq!(p.run_same("oomScoreAdj -999", &b), "-999\n");
    } else {
        let (o, h) = p.run(&b);
        o.fails();
        h.fails();
        assert_eq!(h.stderr_lines().len(), 1, "{h}");
        h.stderr_has("oom_score_adj");
        p.husk.assert_host_clean(&[&b]);
    }
}

#[test]
fn personality_linux32() {
    require_root!();
    let rt = Runtime::husk("personality");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", "uname -m; arch"]);
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    // runc 1.1 ignores linux.personality (runc 1.2 applies it); husk applies it.
    assert_eq!(rt.run_new(&b).ok().stdout, "i686\ni686\n");
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX"}));
    assert_eq!(rt.run_new(&b).ok().stdout, "x86_64\nx86_64\n");
    // An unknown domain is refused before anything is created.
    b.edit(|c| c["linux"]["personality"] = json!({"domain": "LINUX16"}));
    let out = rt.run_new(&b);
    out.fails();
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    rt.assert_host_clean(&[&b]);
}

/// The scheduling policy (field 41), nice (19) and rt priority (40) of /proc/self/stat, as the
/// container's `cat` sees them.
fn sched_of(rt: &Runtime, b: &Bundle) -> (String, String, String) {
    let out = rt.run_new(b);
    let stat = out.ok().stdout.clone();
    let f = |n| stat_field(&stat, n).unwrap_or_else(|| panic!("no field {n} in {stat}"));
    (f(41), f(19), f(40))
}

#[test]
fn scheduler() {
    require_root!();
    // runc 1.1 ignores process.scheduler (runc 1.2 applies it).
    let rt = Runtime::husk("scheduler");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["cat", "/proc/self/stat"]);
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    });
    // SCHED_BATCH is 3.
    assert_eq!(sched_of(&rt, &b), ("3".into(), "7".into(), "0".into()));
    b.edit(|c| c["process"]["scheduler"] = json!({"policy": "SCHED_IDLE"}));
    assert_eq!(sched_of(&rt, &b).0, "5");
    b.edit(|c| c["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": -5}));
    assert_eq!(sched_of(&rt, &b), ("0".into(), "-5".into(), "0".into()));
    // A real-time policy needs real-time runtime in the container's cgroup on this kernel
    // (RT group scheduling gives a new v1 cpu cgroup none).
    b.edit(|c| {
        c["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
        if std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
            c["linux"]["resources"]["cpu"] =
                json!({"realtimeRuntime": 10000, "realtimePeriod": 1_000_000});
        }
    });
    assert_eq!(sched_of(&rt, &b), ("1".into(), "0".into(), "10".into()));
    // A policy the kernel does not know is refused with a one-line error.
    b.edit(|c| {
        c["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "priority": 10});
    });
    let out = rt.run_new(&b);
    out.fails();
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    rt.assert_host_clean(&[&b]);
}

#[test]
fn io_priority() {
    require_root!();
    // runc 1.1 ignores process.ioPriority (runc 1.2 applies it). busybox ionice reads it back.
    let rt = Runtime::husk("ioprio");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["ionice"]);
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 3});
    });
    assert_eq!(rt.run_new(&b).ok().stdout, "best-effort: prio 3\n");
    b.edit(|c| c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE"}));
    assert_eq!(rt.run_new(&b).ok().stdout, "idle\n");
    b.edit(|c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_RT", "priority": 2});
    });
    assert_eq!(rt.run_new(&b).ok().stdout, "realtime: prio 2\n");
    // Out of range (0-7).
    b.edit(|c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 8});
    });
    let out = rt.run_new(&b);
    out.fails();
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    rt.assert_host_clean(&[&b]);
}
