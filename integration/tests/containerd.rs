//! containerd driving husk end to end: through husk's own shim (`io.containerd.husk.v2`) and
//! through containerd-shim-runc-v2 with `BinaryName` = husk. Each test has its own containerd
//! (see husk_integration::Containerd), which it removes with everything it started.

use std::path::Path;
use std::time::Duration;

use husk_integration::{pty, require_containerd, Containerd, Shim};

const LOOP: &str = "trap 'exit 42' TERM; while true; do sleep 0.1; done";
const T: Duration = Duration::from_secs(20);

fn start() -> Containerd {
    Containerd::start().unwrap_or_else(|e| panic!("starting containerd: {e:#}"))
}

/// `ctr run` attached: output, exit codes, and `--rm`.
fn run_attached(c: &Containerd, shim: Shim) {
    let out = c.run(
        shim,
        &["--rm"],
        "echo",
        &["sh", "-c", "echo hello from busybox; exit 3"],
    );
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("hello from busybox"), "{out}");
    let out = c.run(shim, &["--rm"], "true", &["true"]);
    assert_eq!(out.code, 0, "{out}");
    let out = c.run(
        shim,
        &["--rm"],
        "err",
        &["sh", "-c", "echo to-stderr >&2; exit 1"],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    assert!(c.task("echo").is_none(), "--rm left the task behind");
}

/// Detached task: exec, pause/resume, ps, metrics, kill, exit status on delete.
fn detached_lifecycle(c: &Containerd, shim: Shim) {
    let out = c.run(shim, &["-d"], "d1", &["sh", "-c", LOOP]);
    assert!(out.success(), "{out}");
    assert!(
        c.wait_status("d1", "RUNNING", T),
        "{}",
        c.ctr(&["task", "ls"])
    );

    let fifo = c.fifo_dir();
    let out = c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        "d1",
        "sh",
        "-c",
        "echo exec-out; exit 5",
    ]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stdout.contains("exec-out"), "{out}");

    assert!(c.ctr(&["task", "pause", "d1"]).success());
    assert!(c.wait_status("d1", "PAUSED", T));
    assert!(c.ctr(&["task", "resume", "d1"]).success());
    assert!(c.wait_status("d1", "RUNNING", T));

    let (_, pid) = c.task("d1").unwrap_or_default();
    let ps = c.ctr(&["task", "ps", "d1"]);
    assert!(ps.success() && ps.stdout.contains(&pid.to_string()), "{ps}");
    let m = c.ctr(&["task", "metrics", "d1"]);
    assert!(m.success() && m.stdout.contains("memory"), "{m}");

    let k = c.ctr(&["task", "kill", "d1"]);
    assert!(k.success(), "{k}");
    assert!(
        c.wait_status("d1", "STOPPED", T),
        "{}",
        c.ctr(&["task", "ls"])
    );
    // A kill after the exit is "not found", as containerd expects.
    let again = c.ctr(&["task", "kill", "d1"]);
    assert!(
        !again.success() && again.stderr.contains("not found"),
        "{again}"
    );
    let rm = c.ctr(&["task", "rm", "d1"]);
    assert!(rm.success(), "{rm}");
    assert!(rm.stderr.contains("exit code 42"), "{rm}");
    assert!(c.ctr(&["containers", "rm", "d1"]).success());
}

/// `ctr run -t` on a terminal: the container gets a pty with the client's window size.
fn terminal(c: &Containerd, shim: Shim) {
    let flags = c.runtime_flags(shim);
    let mut args: Vec<&str> = vec!["run", "-t", "--rm"];
    args.extend(flags.iter().map(String::as_str));
    args.extend([
        husk_integration::image::IMAGE,
        "tty1",
        "sh",
        "-c",
        // ctr sends ResizePty right after Start, which can land after the shell runs on a
        // loaded machine: wait for it (bounded; a resize that never comes fails below).
        "i=0; while [ \"$(stty size 2>/dev/null)\" != '33 101' ] && [ $i -lt 100 ]; do \
         sleep 0.1; i=$((i+1)); done; tty; stty size; exit 4",
    ]);
    let out = pty::run(c.ctr_command(&args), 33, 101, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("pty: {e:#}"));
    assert_eq!(out.code, 4, "code {}: {:?}", out.code, out.text);
    assert!(out.text.contains("/dev/pts/"), "{}", out.text);
    assert!(out.text.contains("33 101"), "{}", out.text);
}

/// containerd restarts; the task keeps running and is managed again; an exit while
/// containerd is down is reported when it is back.
fn survives_restart(c: &mut Containerd, shim: Shim) {
    let out = c.run(shim, &["-d"], "r1", &["sh", "-c", LOOP]);
    assert!(out.success(), "{out}");
    assert!(c.wait_status("r1", "RUNNING", T));
    let (_, pid) = c.task("r1").unwrap_or_default();
    assert!(pid > 0);

    c.restart().unwrap_or_else(|e| panic!("restart: {e:#}"));
    assert_eq!(c.task("r1"), Some(("RUNNING".into(), pid)), "after restart");
    let fifo = c.fifo_dir();
    let out = c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e2",
        "r1",
        "echo",
        "after-restart",
    ]);
    assert!(
        out.success() && out.stdout.contains("after-restart"),
        "{out}"
    );

    // Stop containerd, end the container behind its back, bring containerd back.
    c.stop();
    // SAFETY: plain syscall; `pid` is the container's init, which this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    let log_before = c.log().len();
    c.restart().unwrap_or_else(|e| panic!("restart: {e:#}"));
    assert!(
        c.wait_status("r1", "STOPPED", T),
        "{}",
        c.ctr(&["task", "ls"])
    );
    if shim != Shim::RuncV2 {
        // The TaskExit queued while containerd was away is delivered when it is back.
        let deadline = std::time::Instant::now() + T;
        loop {
            let log = c.log();
            let after = log.get(log_before..).unwrap_or("");
            if after.contains("topic=/tasks/exit") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no /tasks/exit forwarded after the restart:\n{after}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let rm = c.ctr(&["task", "rm", "r1"]);
    assert!(rm.success() && rm.stderr.contains("exit code 42"), "{rm}");
    assert!(c.ctr(&["containers", "rm", "r1"]).success());
}

#[test]
fn husk_shim_runs_execs_and_manages_tasks() {
    require_containerd!();
    let c = start();
    run_attached(&c, Shim::Husk);
    detached_lifecycle(&c, Shim::Husk);
    terminal(&c, Shim::Husk);
}

#[test]
fn husk_shim_survives_containerd_restart() {
    require_containerd!();
    let mut c = start();
    survives_restart(&mut c, Shim::Husk);
    // Every shim exits once its containers are deleted.
    let deadline = std::time::Instant::now() + T;
    while !c.shim_pids().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.shim_pids().is_empty(), "shims left: {:?}", c.shim_pids());
}

#[test]
fn husk_shim_killed_is_cleaned_up() {
    require_containerd!();
    let c = start();
    let out = c.run(Shim::Husk, &["-d"], "k1", &["sh", "-c", LOOP]);
    assert!(out.success(), "{out}");
    assert!(c.wait_status("k1", "RUNNING", T));
    let (_, pid) = c.task("k1").unwrap_or_default();
    for shim in c.shim_pids() {
        // SAFETY: plain syscall on the shim this test's containerd started.
        unsafe { libc::kill(shim, libc::SIGKILL) };
    }
    // containerd sees the shim go, runs `containerd-shim-husk-v2 delete`, which force-deletes
    // the container through husk.
    let deadline = std::time::Instant::now() + T;
    while husk_tests::host::alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !husk_tests::host::alive(pid),
        "container init {pid} survived its shim"
    );
    let ls = c.ctr(&["task", "ls"]);
    assert!(!ls.stdout.contains("RUNNING"), "{ls}");
    let _ = c.ctr(&["task", "rm", "k1"]);
    assert!(c.ctr(&["containers", "rm", "k1"]).success());
}

#[test]
fn husk_shim_with_binaryname_runc() {
    require_containerd!();
    if husk_tests::which("runc").is_none() {
        eprintln!("SKIPPED husk_shim_with_binaryname_runc: runc not installed");
        return;
    }
    let mut c = start();
    run_attached(&c, Shim::HuskWithRunc);
    detached_lifecycle(&c, Shim::HuskWithRunc);
    terminal(&c, Shim::HuskWithRunc);
    survives_restart(&mut c, Shim::HuskWithRunc);
}

/// Command lines containerd-shim-runc-v2 ran, with the test's paths replaced by
/// placeholders so they compare across runs.
fn normalized_argv(c: &Containerd) -> Vec<String> {
    let state = c
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.namespace);
    let mut lines: Vec<String> = c
        .runc_argv()
        .lines()
        .map(|l| {
            let l = l
                .replace(&state.to_string_lossy().into_owned(), "$STATE")
                .replace(&c.dir.to_string_lossy().into_owned(), "$TMP")
                .replace(&c.namespace, "$NS");
            l.split(' ')
                .map(|w| {
                    if w.starts_with("/tmp/runc-process") {
                        "$PROCESS_JSON".to_string()
                    } else if w.starts_with("/tmp/pty") && w.ends_with("pty.sock") {
                        "$CONSOLE_SOCKET".to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.dedup();
    lines
}

#[test]
fn runc_v2_shim_with_binaryname_husk() {
    require_containerd!();
    let mut c = start();
    run_attached(&c, Shim::RuncV2);
    detached_lifecycle(&c, Shim::RuncV2);
    terminal(&c, Shim::RuncV2);
    survives_restart(&mut c, Shim::RuncV2);

    let argv = normalized_argv(&c);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runc-v2-husk-argv.txt");
    if std::env::var_os("HUSK_UPDATE_FIXTURES").is_some() {
        let mut text = String::from(
            "# Command lines containerd 1.6's containerd-shim-runc-v2 ran with BinaryName = husk\n\
             # (recorded by integration/tests/containerd.rs, HUSK_UPDATE_FIXTURES=1).\n",
        );
        for l in &argv {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&fixture, text).unwrap_or_else(|e| panic!("writing fixture: {e}"));
    }
    // Every runtime command the shim issues must have been exercised, with go-runc's
    // global flags.
    for cmd in [
        "create", "start", "exec", "kill", "delete", "pause", "resume", "ps",
    ] {
        assert!(
            argv.iter()
                .any(|l| l.split(' ').any(|w| w == cmd) && l.contains("--log-format json")),
            "no `{cmd}` among the recorded command lines:\n{}",
            argv.join("\n")
        );
    }
}

/// A logging binary in the style containerd documents: fd 3 (stdout) and fd 4 (stderr) to
/// files in the directory its second argument names, its identity to `env`, and fd 5 closed
/// to say it is ready.
const LOGGER: &str = "#!/bin/sh\n\
    exec 5>&-\n\
    echo \"$1 $CONTAINER_NAMESPACE $CONTAINER_ID\" > \"$2/env\"\n\
    cat <&3 > \"$2/stdout\" &\n\
    cat <&4 > \"$2/stderr\"\n\
    wait\n";

#[test]
fn husk_shim_binary_log_uri() {
    require_containerd!();
    let c = start();
    let logs = c.dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let logger = c.dir.join("logger.sh");
    std::fs::write(&logger, LOGGER).unwrap_or_else(|e| panic!("writing logger: {e}"));
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let uri = format!("binary://{}?dir={}", logger.display(), logs.display());
    let out = c.run(
        Shim::Husk,
        &["-d", "--log-uri", &uri],
        "bl1",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 6"],
    );
    assert!(out.success(), "{out}");
    assert!(
        c.wait_status("bl1", "STOPPED", T),
        "{}",
        c.ctr(&["task", "ls"])
    );
    let read = |name: &str| -> String {
        let deadline = std::time::Instant::now() + T;
        loop {
            let s = std::fs::read_to_string(logs.join(name)).unwrap_or_default();
            if !s.is_empty() || std::time::Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(read("env").trim(), format!("dir {} bl1", c.namespace));
    assert_eq!(read("stdout"), "to-stdout\n");
    assert_eq!(read("stderr"), "to-stderr\n");
    let rm = c.ctr(&["task", "rm", "bl1"]);
    assert!(rm.success() && rm.stderr.contains("exit code 6"), "{rm}");
    assert!(c.ctr(&["containers", "rm", "bl1"]).success());
    // The logger is stopped with its process's IO; nothing of it is left.
    let left = husk_integration::pids_with_cmdline(&logger.to_string_lossy());
    assert!(left.is_empty(), "logger left running: {left:?}");
}

#[test]
fn husk_shim_groups_a_pods_containers() {
    require_containerd!();
    let c = start();
    let pod = ["--annotation", "io.kubernetes.cri.sandbox-id=pod1", "-d"];
    for id in ["p1", "p2"] {
        let out = c.run(Shim::Husk, &pod, id, &["sh", "-c", LOOP]);
        assert!(out.success(), "{out}");
        assert!(
            c.wait_status(id, "RUNNING", T),
            "{}",
            c.ctr(&["task", "ls"])
        );
    }
    // A container outside the pod gets a shim of its own.
    let out = c.run(Shim::Husk, &["-d"], "solo", &["sh", "-c", LOOP]);
    assert!(out.success(), "{out}");
    assert!(c.wait_status("solo", "RUNNING", T));
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 2, "shims: {shims:?}");
    let bundle = |id: &str| {
        c.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&c.namespace)
            .join(id)
            .join("address")
    };
    let addr = |id: &str| std::fs::read_to_string(bundle(id)).unwrap_or_default();
    assert!(!addr("p1").is_empty());
    assert_eq!(
        addr("p1"),
        addr("p2"),
        "the pod's containers share one shim"
    );
    assert_ne!(addr("p1"), addr("solo"));

    // Deleting one container of the pod leaves the other fully served.
    assert!(c.ctr(&["task", "kill", "p1"]).success());
    assert!(c.wait_status("p1", "STOPPED", T));
    let rm = c.ctr(&["task", "rm", "p1"]);
    assert!(rm.success() && rm.stderr.contains("exit code 42"), "{rm}");
    assert!(c.ctr(&["containers", "rm", "p1"]).success());
    assert_eq!(c.task("p2").map(|t| t.0), Some("RUNNING".to_string()));
    let fifo = c.fifo_dir();
    let out = c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "pe",
        "p2",
        "echo",
        "still-served",
    ]);
    assert!(
        out.success() && out.stdout.contains("still-served"),
        "{out}"
    );
    assert_eq!(c.shim_pids().len(), 2, "the pod's shim went with p1");

    for id in ["p2", "solo"] {
        assert!(c.ctr(&["task", "kill", id]).success());
        assert!(c.wait_status(id, "STOPPED", T));
        assert!(c.ctr(&["task", "rm", id]).success());
        assert!(c.ctr(&["containers", "rm", id]).success());
    }
    let deadline = std::time::Instant::now() + T;
    while !c.shim_pids().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.shim_pids().is_empty(), "shims left: {:?}", c.shim_pids());
}

#[test]
fn husk_shim_of_a_pod_killed_is_cleaned_up_and_replaced() {
    require_containerd!();
    let c = start();
    let pod = ["--annotation", "io.kubernetes.cri.sandbox-id=podk", "-d"];
    let bundle = |id: &str| {
        c.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&c.namespace)
            .join(id)
    };
    let mut inits = Vec::new();
    for id in ["k1", "k2"] {
        let out = c.run(Shim::Husk, &pod, id, &["sh", "-c", LOOP]);
        assert!(out.success(), "{out}");
        assert!(
            c.wait_status(id, "RUNNING", T),
            "{}",
            c.ctr(&["task", "ls"])
        );
        inits.push(c.task(id).unwrap_or_default().1);
    }
    let address = std::fs::read_to_string(bundle("k1").join("address")).unwrap_or_default();
    let socket = address.trim().trim_start_matches("unix://").to_string();
    assert!(Path::new(&socket).exists(), "shim socket {socket}");
    let state = |id: &str| c.dir.join("husk-root").join(&c.namespace).join(id);
    assert!(state("k1").is_dir(), "husk state {}", state("k1").display());
    let mounted = |id: &str| {
        let rootfs = bundle(id).join("rootfs");
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .contains(&format!(" {} ", rootfs.display()))
    };
    assert!(mounted("k1"), "the shim mounted k1's rootfs");
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    // SAFETY: plain syscall on the shim this test's containerd started.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };

    // containerd sees the connection of each task close and runs the `delete` action for
    // each: both containers are force-deleted, their rootfs unmounted, the socket removed.
    let deadline = std::time::Instant::now() + T;
    while inits.iter().any(|p| husk_tests::host::alive(*p)) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in &inits {
        assert!(!husk_tests::host::alive(*p), "init {p} survived its shim");
    }
    for id in ["k1", "k2"] {
        assert!(!mounted(id), "{id}'s rootfs still mounted");
        assert!(
            !state(id).exists(),
            "husk state {} left",
            state(id).display()
        );
        let ls = c.ctr(&["task", "ls"]);
        assert!(c.task(id).is_none_or(|(s, _)| s != "RUNNING"), "{ls}");
        let _ = c.ctr(&["task", "rm", id]);
        assert!(c.ctr(&["containers", "rm", id]).success());
    }
    assert!(
        !Path::new(&socket).exists(),
        "dead shim's socket {socket} left"
    );

    // The pod goes on: its next container gets a new shim at the same address.
    let out = c.run(Shim::Husk, &pod, "k3", &["sh", "-c", LOOP]);
    assert!(out.success(), "{out}");
    assert!(c.wait_status("k3", "RUNNING", T));
    assert_eq!(
        std::fs::read_to_string(bundle("k3").join("address")).unwrap_or_default(),
        address
    );
    let fifo = c.fifo_dir();
    let out = c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e3",
        "k3",
        "echo",
        "served",
    ]);
    assert!(out.success() && out.stdout.contains("served"), "{out}");
    assert!(c.ctr(&["task", "kill", "k3"]).success());
    assert!(c.wait_status("k3", "STOPPED", T));
    assert!(c.ctr(&["task", "rm", "k3"]).success());
    assert!(c.ctr(&["containers", "rm", "k3"]).success());
}
