//! linux.seccomp under husk and under runc (the oracle): the same static probe
//! (tests/fixtures/seccomp-probe.c) runs named syscalls in both and the results must match.
//!
//! - containerd's default profile: allowed calls, EPERM-blocked ones, calls blocked by their
//!   arguments (clone namespace flags, personality values, socket families), newer syscalls
//!   getting ENOSYS (runc's stub), i386 `int 0x80` and x32 calls;
//! - errnoRet and defaultErrnoRet, every kill/trap/log/trace action, filter flags;
//! - where the filter goes in: after the runtime's own set-up with noNewPrivileges, before the
//!   user switch without it (the process keeps CAP_SYS_ADMIN);
//! - SCMP_ACT_NOTIFY with a small agent answering notifications;
//! - bad profiles failing `create` with the field named and nothing left behind.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{assert_same, install_probe, leftovers_after_failure, pair, recv_fd, Pair};
use husk_tests::{require_root, temp_dir, Bundle, Output, Runtime};
use serde_json::{json, Value};

const PROBE: &str = include_str!("../fixtures/seccomp-probe.c");
const CONTAINERD: &str = include_str!("../fixtures/containerd-default.json");

fn containerd_profile() -> Value {
    serde_json::from_str(CONTAINERD).expect("the containerd profile parses")
}

/// A bundle running the probe with `calls`, with `seccomp` as linux.seccomp.
fn probe_bundle(seccomp: Value, calls: &[&str], edit: impl FnOnce(&mut Value)) -> Bundle {
    let b = Bundle::new(|c| {
        c["linux"]["seccomp"] = seccomp;
        edit(c)
    });
    let probe = install_probe(&b, "seccomp-probe", PROBE);
    b.edit(|c| {
        let mut args = vec![json!(probe)];
        args.extend(calls.iter().map(|s| json!(s)));
        c["process"]["args"] = Value::Array(args);
    });
    b
}

/// Runs `b` under both runtimes, requires the same stdout and returns husk's.
#[track_caller]
fn same_under_both(p: &Pair, what: &str, b: &Bundle) -> String {
    p.run_same(what, b)
}

/// The probe's lines as a map NAME -> RESULT.
fn results(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[track_caller]
fn expect(res: &std::collections::BTreeMap<String, String>, call: &str, want: &str) {
    assert_eq!(
        res.get(call).map(String::as_str),
        Some(want),
        "{call}: all results {res:#?}"
    );
}

/// The calls of the containerd differential: allowed, blocked, blocked by argument, newer than
/// the profile, other ABIs.
const CONTAINERD_CALLS: &[&str] = &[
    "getpid",
    "getpgid",
    "uname",
    "clone",
    "clone_newuser",
    "clone_newns",
    "clone_newnet",
    "clone_newpid",
    "clone_newcgroup",
    "clone3",
    "unshare_user",
    "unshare_mnt",
    "unshare_net",
    "mount",
    "umount",
    "personality:0",
    "personality:8",
    "personality:0x20000",
    "personality:0x20008",
    "personality:0xffffffff",
    "personality:0x40000",
    "personality:0x400000",
    "socket:1",
    "socket:2",
    "socket:10",
    "socket:16",
    "socket:17",
    "socket:38",
    "socket:40",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "ptrace_traceme",
    "reboot",
    "setns",
    "chroot",
    "syslog",
    "iopl",
    "acct",
    "swapoff",
    "settimeofday",
    "userfaultfd",
    "io_uring_setup",
    "pivot_root",
    "init_module",
    "kexec_load",
    "open_by_handle_at",
    "name_to_handle_at",
    "mbind",
    "fanotify_init",
    "lookup_dcookie",
    "nr:449",
    "nr:450",
    "nr:451",
    "nr:999",
    "i386_getpid",
    "i386_unshare",
    "i386_personality",
    "i386_nr:999",
    "x32_getpid",
    "x32_unshare",
];

#[test]
fn containerd_profile_matches_runc() {
    require_root!();
    let p = pair("seccomp-containerd");
    let b = probe_bundle(containerd_profile(), CONTAINERD_CALLS, |_| {});
    let out = same_under_both(&p, "syscalls under containerd's profile", &b);
    let r = results(&out);
    assert_eq!(r.len(), CONTAINERD_CALLS.len(), "{out}");
    // Sanity: the filter really is in force (without it, user namespaces would be allowed).
    expect(&r, "getpid", "ok");
    expect(&r, "clone", "ok");
    expect(&r, "clone_newuser", "errno:1");
    expect(&r, "unshare_user", "errno:1");
    expect(&r, "clone3", "errno:38");
    expect(&r, "personality:8", "ok:0");
    expect(&r, "personality:0x40000", "errno:1");
    expect(&r, "keyctl", "errno:1");
    expect(&r, "nr:999", "errno:38");
    if cfg!(target_arch = "x86_64") {
        expect(&r, "i386_unshare", "errno:1");
        expect(&r, "x32_unshare", "errno:1");
    }
}

#[test]
fn the_probe_sees_no_filter_without_a_profile() {
    require_root!();
    // The control for the test above: the same calls with no linux.seccomp.
    let b = Bundle::new(|_| {});
    let probe = install_probe(&b, "seccomp-probe", PROBE);
    b.edit(|c| c["process"]["args"] = json!([probe, "clone_newuser", "unshare_user", "clone3"]));
    let p = pair("seccomp-none");
    let out = same_under_both(&p, "syscalls without seccomp", &b);
    let r = results(&out);
    expect(&r, "clone_newuser", "ok");
    expect(&r, "unshare_user", "ok");
}

#[test]
fn exec_gets_the_same_filter() {
    require_root!();
    let p = pair("seccomp-exec");
    let b = Bundle::new(|c| {
        c["linux"]["seccomp"] = containerd_profile();
        c["process"]["args"] = json!(["sleep", "30"]);
    });
    let probe = install_probe(&b, "seccomp-probe", PROBE);
    let calls = [
        "getpid",
        "clone_newuser",
        "unshare_mnt",
        "personality:0x40000",
        "nr:999",
    ];
    let mut outs = Vec::new();
    for rt in p.both() {
        let id = rt.new_id();
        rt.run_detached(&b, &id).ok();
        let mut args = vec!["exec", id.as_str(), probe.as_str()];
        args.extend(calls);
        let out = rt.exec(&args);
        out.ok();
        outs.push(out.stdout);
        rt.delete_force(&id).ok();
    }
    assert_same("syscalls in an exec'd process", &outs[0], &outs[1]);
    let r = results(&outs[1]);
    expect(&r, "clone_newuser", "errno:1");
    expect(&r, "nr:999", "errno:38");
}

#[test]
fn errno_ret_and_default_errno_ret() {
    require_root!();
    let p = pair("seccomp-errno");
    let mut prof = containerd_profile();
    prof["defaultErrnoRet"] = json!(99);
    prof["syscalls"]
        .as_array_mut()
        .expect("syscalls")
        .push(json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}));
    // getppid is in the profile's big allow list already: the first unconditional rule wins,
    // so add it to a name the profile does not allow to see errnoRet.
    prof["syscalls"]
        .as_array_mut()
        .expect("syscalls")
        .push(json!({"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}));
    let b = probe_bundle(
        prof,
        &["getppid", "reboot", "unshare_user", "nr:999"],
        |_| {},
    );
    let r = results(&same_under_both(&p, "errnoRet", &b));
    expect(&r, "getppid", "ok");
    expect(&r, "reboot", "errno:42");
    expect(&r, "unshare_user", "errno:99");
    expect(&r, "nr:999", "errno:38");

    // defaultErrnoRet ENOSYS: runc adds no stub, everything unlisted is ENOSYS.
    let mut prof = containerd_profile();
    prof["defaultErrnoRet"] = json!(38);
    let b = probe_bundle(prof, &["unshare_user", "nr:999"], |_| {});
    let r = results(&same_under_both(&p, "defaultErrnoRet ENOSYS", &b));
    expect(&r, "unshare_user", "errno:38");
}

#[test]
fn kill_trap_log_and_trace_actions() {
    require_root!();
    let p = pair("seccomp-actions");
    let rule = |name: &str, action: &str| json!({"names": [name], "action": action});
    let prof = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            rule("getppid", "SCMP_ACT_KILL"),
            rule("getpgid", "SCMP_ACT_KILL_PROCESS"),
            rule("uname", "SCMP_ACT_TRAP"),
            rule("acct", "SCMP_ACT_KILL_THREAD"),
            rule("syslog", "SCMP_ACT_LOG"),
            rule("reboot", "SCMP_ACT_TRACE"),
        ]
    });
    let calls = [
        "getppid", "getpgid", "uname", "acct", "syslog", "reboot", "getpid",
    ];
    let b = probe_bundle(prof, &calls, |_| {});
    let r = results(&same_under_both(&p, "kill/trap/log/trace", &b));
    for call in ["getppid", "getpgid", "uname", "acct"] {
        expect(&r, call, "signal:31");
    }
    // LOG lets the call run (the kernel then refuses it: no CAP_SYSLOG).
    expect(&r, "syslog", "errno:1");
    // TRACE without a tracer: the kernel fails the call with ENOSYS.
    expect(&r, "reboot", "errno:38");
    expect(&r, "getpid", "ok");
}

#[test]
fn default_action_kill_and_errno() {
    require_root!();
    let p = pair("seccomp-default");
    // The containerd allow list with a killing default: blocked calls kill, allowed ones run.
    let mut prof = containerd_profile();
    prof["defaultAction"] = json!("SCMP_ACT_KILL_PROCESS");
    let b = probe_bundle(prof, &["getpid", "unshare_user", "nr:999"], |_| {});
    let r = results(&same_under_both(&p, "defaultAction KILL_PROCESS", &b));
    expect(&r, "getpid", "ok");
    expect(&r, "unshare_user", "signal:31");
    expect(&r, "nr:999", "errno:38");
}

/// Filter flags: runc 1.1.5 refuses every flag ("seccomp flags are not yet supported"), so
/// this one is husk's alone, checked against what the kernel reports.
#[test]
fn flags_log_spec_allow_and_tsync() {
    require_root!();
    let h = Runtime::husk("seccomp-flags");
    let mut prof = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    });
    let script = "grep -E '^(Seccomp|Speculation_Store_Bypass|NoNewPrivs)' /proc/self/status";
    let b = Bundle::sh(script);
    b.edit(|c| c["linux"]["seccomp"] = prof.clone());
    let with = h.run_new(&b);
    with.ok();
    prof["flags"] = json!([]);
    b.edit(|c| c["linux"]["seccomp"] = prof.clone());
    let without = h.run_new(&b);
    without.ok();
    assert!(with.stdout.contains("Seccomp:\t2"), "{with}");
    // SPEC_ALLOW leaves speculative store bypass alone; a plain filter forces the mitigation
    // where the CPU has one.
    if without.stdout.contains("force mitigated") {
        assert!(!with.stdout.contains("force mitigated"), "{with}");
    }
}

/// A profile that refuses, with errno 42, syscalls the runtime itself makes while it sets the
/// container up (mount, pivot_root, sethostname, keyctl, setgroups, capset...).
fn setup_blocking_profile(names: &[&str]) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    })
}

#[test]
fn filter_goes_in_after_the_runtimes_own_setup() {
    require_root!();
    let p = pair("seccomp-late");
    // With noNewPrivileges (runc spec's default), the filter goes in after the user switch:
    // blocking everything set-up needs must not stop the container from starting.
    let names = [
        "mount",
        "umount2",
        "pivot_root",
        "sethostname",
        "setdomainname",
        "keyctl",
        "setgroups",
        "setresuid",
        "setresgid",
        "capset",
        "chdir",
        "mknodat",
        "symlinkat",
    ];
    let b = probe_bundle(setup_blocking_profile(&names), &["mount", "getpid"], |c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["hostname"] = json!("seccomp-test");
    });
    let r = results(&same_under_both(&p, "filter after set-up", &b));
    expect(&r, "mount", "errno:42");
    expect(&r, "getpid", "ok");
}

#[test]
fn without_no_new_privileges_the_filter_goes_in_before_the_user_switch() {
    require_root!();
    let p = pair("seccomp-early");
    // No no_new_privs: the kernel wants CAP_SYS_ADMIN for the filter, so both runtimes install
    // it before dropping to the process's user and capabilities. Set-up before that point
    // (mounts, pivot_root, hostname) is unfiltered...
    let before = ["mount", "umount2", "pivot_root", "sethostname", "keyctl"];
    let b = probe_bundle(setup_blocking_profile(&before), &["mount", "getpid"], |c| {
        c["process"]["noNewPrivileges"] = json!(false);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["hostname"] = json!("seccomp-test");
    });
    let r = results(&same_under_both(&p, "filter before the user switch", &b));
    expect(&r, "mount", "errno:42");
    // ...while the user switch itself is filtered: blocking it fails both runtimes.
    b.edit(|c| c["linux"]["seccomp"] = setup_blocking_profile(&["setresuid", "setuid"]));
    let (o, h) = p.run(&b);
    assert!(!o.success(), "runc started with setresuid blocked:\n{o}");
    assert!(!h.success(), "husk started with setresuid blocked:\n{h}");
}

#[test]
fn no_new_privileges_false_keeps_cap_sys_admin() {
    require_root!();
    let p = pair("seccomp-nnp");
    let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL", "CAP_AUDIT_WRITE"]);
    let prof = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    });
    let b = Bundle::new(|c| {
        c["linux"]["seccomp"] = prof;
        c["process"]["noNewPrivileges"] = json!(false);
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
    });
    let probe = install_probe(&b, "seccomp-probe", PROBE);
    b.set_sh(&format!(
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; {probe} reboot"
    ));
    let out = same_under_both(&p, "noNewPrivileges false with a filter", &b);
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("reboot=errno:42"), "{out}");
    let eff = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff line");
    assert!(eff & (1 << 21) != 0, "CAP_SYS_ADMIN missing: {out}");
}

/// What the agent saw: the state message and each notification it answered.
struct AgentReport {
    message: Value,
    notified: Vec<(u32, u32)>,
}

/// A seccomp agent on a unix socket: receives the listener and state, answers every
/// notification for `answer_nr` with `value` and lets any other syscall continue.
struct Agent {
    path: PathBuf,
    dir: Option<tempfile::TempDir>,
    thread: Option<std::thread::JoinHandle<Result<AgentReport, String>>>,
}

impl Agent {
    fn start(answer_nr: u32, value: i64) -> Agent {
        let dir = temp_dir("seccomp-agent");
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).expect("binding the agent socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let thread = std::thread::spawn(move || serve(listener, answer_nr, value));
        Agent {
            path,
            dir: Some(dir),
            thread: Some(thread),
        }
    }

    fn report(&mut self) -> Result<AgentReport, String> {
        self.thread
            .take()
            .ok_or("no agent")?
            .join()
            .map_err(|_| "agent panicked".to_string())?
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            husk_tests::remove_temp_dir(d);
        }
    }
}

fn serve(listener: UnixListener, answer_nr: u32, value: i64) -> Result<AgentReport, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("no connection: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let (fd, payload) = recv_fd(stream.as_raw_fd()).ok_or("no listener fd received")?;
    // SAFETY: recv_fd returned a descriptor the kernel just installed for us.
    let listener_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let message: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("state is not JSON ({e}): {payload:?}"))?;
    let mut notified = Vec::new();
    loop {
        let mut pfd = libc::pollfd {
            fd: listener_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("agent timed out".into());
        }
        // SAFETY: one pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r <= 0 {
            continue;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: every process using the filter is gone.
            break;
        }
        if let Some(n) = answer(listener_fd.as_raw_fd(), answer_nr, value) {
            notified.push(n);
        }
    }
    Ok(AgentReport { message, notified })
}

/// Receives one notification and answers it; returns (syscall nr, pid).
fn answer(fd: RawFd, answer_nr: u32, value: i64) -> Option<(u32, u32)> {
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed before NOTIF_RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl fills `req`, which lives for the call.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } < 0 {
        return None;
    }
    // SAFETY: as above, plain data.
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = req.id;
    if req.data.nr as u32 == answer_nr {
        resp.val = value;
    } else {
        resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    }
    // SAFETY: the ioctl reads `resp`.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    Some((req.data.nr as u32, req.pid))
}

#[test]
fn notify_hands_the_listener_to_the_agent() {
    require_root!();
    let p = pair("seccomp-notify");
    let getpgid: u32 = if cfg!(target_arch = "x86_64") {
        121
    } else {
        155
    };
    let mut messages = Vec::new();
    let mut outs = Vec::new();
    for rt in p.both() {
        let mut agent = Agent::start(getpgid, 4242);
        let prof = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": agent.path,
            "listenerMetadata": "husk-test-metadata",
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"}]
        });
        let b = probe_bundle(prof, &["getpgid", "getpid"], |_| {});
        let id = rt.new_id();
        let out = rt.run(&b, &id);
        out.ok();
        let report = agent
            .report()
            .unwrap_or_else(|e| panic!("{}: {e}\n{out}", rt.bin.display()));
        assert!(
            report.notified.iter().any(|(nr, _)| *nr == getpgid),
            "{}: no getpgid notification: {:?}",
            rt.bin.display(),
            report.notified
        );
        let mut m = report.message;
        assert_eq!(m["state"]["id"], json!(id), "{m}");
        assert!(m["pid"].as_i64().is_some_and(|p| p > 0), "{m}");
        assert_eq!(m["pid"], m["state"]["pid"], "{m}");
        // Ids and pids differ between the runs: compare the rest.
        m["pid"] = json!("...");
        for key in ["pid", "id", "bundle"] {
            m["state"][key] = json!("...");
        }
        messages.push(m);
        outs.push(out.stdout);
    }
    assert_same("probe output with a notifying agent", &outs[0], &outs[1]);
    assert!(outs[1].contains("getpgid=ok:4242"), "{}", outs[1]);
    assert_eq!(
        messages[0], messages[1],
        "the agent's message differs (runc, husk)"
    );
    assert_eq!(messages[1]["fds"], json!(["seccompFd"]));
    assert_eq!(messages[1]["metadata"], json!("husk-test-metadata"));
    assert_eq!(messages[1]["state"]["status"], json!("creating"));
}

#[test]
fn notify_agent_unreachable_fails_create() {
    require_root!();
    let h = Runtime::husk("seccomp-noagent");
    let prof = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/nonexistent/husk-agent.sock",
        "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let b = Bundle::new(|c| c["linux"]["seccomp"] = prof);
    let id = h.new_id();
    let out = h.create(&b, &id);
    out.fails().stderr_has("listenerPath");
    let left = leftovers_after_failure(&h, &b, &id);
    assert!(left.is_empty(), "{left:#?}");
}

/// Bad profiles: `create` fails before making anything, naming the field; runc refuses them
/// too.
#[test]
fn bad_profiles_fail_create_and_name_the_field() {
    require_root!();
    let p = pair("seccomp-bad");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"defaultAction": "SCMP_ACT_SOMETIMES"}),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["reboot"], "action": "SCMP_ACT_DENY"}]}),
            "linux.seccomp.syscalls[1].action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SIMILAR"}]}]}),
            "linux.seccomp.syscalls[0].args[0].op",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}),
            "linux.seccomp.architectures[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["reboot"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[1]",
        ),
    ];
    for (prof, field) in cases {
        let b = Bundle::new(|c| c["linux"]["seccomp"] = prof.clone());
        let id = p.husk.new_id();
        let h: Output = p.husk.create(&b, &id);
        h.fails().stderr_has(field);
        let left = leftovers_after_failure(&p.husk, &b, &id);
        assert!(left.is_empty(), "{prof}: {left:#?}");
        let oid = p.oracle.new_id();
        let o = p.oracle.create(&b, &oid);
        assert!(!o.success(), "runc accepted {prof}:\n{o}");
    }
}

#[test]
fn features_reports_seccomp() {
    let h = Runtime::husk("seccomp-features");
    let out = h.exec_plain(&["features"], std::path::Path::new("/"));
    out.ok();
    let f: Value = serde_json::from_str(&out.stdout).expect("features JSON");
    let s = &f["linux"]["seccomp"];
    assert_eq!(s["enabled"], json!(true), "{s}");
    for action in ["SCMP_ACT_NOTIFY", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG"] {
        assert!(
            s["actions"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(action))),
            "{s}"
        );
    }
    assert!(
        s["operators"].as_array().is_some_and(|a| a.len() == 7),
        "{s}"
    );
}
