//! Docker driving husk end to end: Debian's dockerd (20.10, with its own managed containerd and
//! containerd-shim-runc-v2) runs containers with `--runtime husk`, husk registered on the
//! command line (`--add-runtime`) or in daemon.json (the snippet in docs/docker.md), and
//! husk-init as Docker's `--init`. Each test has its own dockerd (see
//! husk_integration::docker::Dockerd), which it removes with everything it started.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use husk_integration::archive::IMAGE;
use husk_integration::docker::{Dockerd, Registration};
use husk_integration::{require_docker, snippets, tmux};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// A loop that reports SIGHUP and exits 42 on SIGTERM, so the test sees both signals arrive.
const TRAPS: &str = "trap 'echo got-hup' HUP; trap 'echo got-term; exit 42' TERM; \
                     echo started; while true; do sleep 0.1; done";

fn start(reg: Registration) -> Dockerd {
    Dockerd::start(reg).unwrap_or_else(|e| panic!("starting dockerd: {e:#}"))
}

/// Prints, once per daemon, the security options Docker applies on this host. Docker sends an
/// AppArmor profile only where the kernel has AppArmor; the harness then adds
/// `--security-opt apparmor=unconfined` (husk refuses `process.apparmorProfile`).
fn note_security_options(d: &Dockerd) {
    let info = d.docker(&["info", "--format", "{{json .SecurityOptions}}"]);
    eprintln!("docker security options here: {}", info.stdout.trim());
}

/// `docker run` attached: output, stderr, exit codes, and how a bad command is reported.
fn attached_runs(d: &Dockerd) {
    let out = d.run(&["--rm"], &["sh", "-c", "echo hello from husk; exit 3"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("hello from husk"), "{out}");
    let out = d.run(&["--rm"], &["true"]);
    assert_eq!(out.code, 0, "{out}");
    let out = d.run(&["--rm"], &["sh", "-c", "echo to-stderr >&2; exit 1"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    let out = d.run(&["--rm"], &["sh", "-c", "exit 255"]);
    assert_eq!(out.code, 255, "{out}");
    // A 128+N status reaches Docker unchanged. (A real signal death of the init is the OOM
    // kill in docker_security_and_resource_options; PID 1 of a PID namespace cannot signal
    // itself, so the shell kills a child here and exits with its status.)
    let out = d.run(
        &["--rm"],
        &["sh", "-c", "sleep 30 & kill -KILL $!; wait $!"],
    );
    assert_eq!(out.code, 137, "{out}");
    // Docker turns the runtime's create error into 127 / 126 by matching runc's wording
    // ("executable file not found", "permission denied").
    let out = d.run(&["--rm"], &["no-such-command"]);
    assert_eq!(out.code, 127, "{out}");
    assert!(out.stderr.contains("executable file not found"), "{out}");
    let out = d.run(&["--rm"], &["/etc/passwd"]);
    assert_eq!(out.code, 126, "{out}");
    assert!(out.stderr.contains("permission denied"), "{out}");
}

/// `docker run -it` on a terminal (tmux): a pty with the terminal's size, typed input, exit code.
fn interactive_tty(d: &Dockerd) {
    if tmux::tmux_bin().is_none() {
        eprintln!("SKIPPED the -it part: tmux is not installed (`cargo xtask test` installs it)");
        return;
    }
    let apparmor = if d.apparmor {
        "--security-opt apparmor=unconfined"
    } else {
        ""
    };
    let script = format!(
        "{} run -it --rm --runtime husk --network none --pull never {apparmor} {IMAGE} sh; \
         echo docker-exit=$?",
        d.bins.docker.display()
    );
    let env = d.client_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut t = tmux::Tmux::start(&d.dir.join("tmux.sock"), &env, &script, 100, 30)
        .unwrap_or_else(|e| panic!("tmux: {e:#}"));
    // capture-pane drops trailing blanks: the prompt "/ # " reads "/ #".
    t.wait_for("/ #", T)
        .unwrap_or_else(|e| panic!("no shell prompt: {e:#}"));
    // Docker 20.10 puts no consoleSize in the spec: the CLI resizes the pty through
    // containerd's ResizePty after start, which can land after the first prompt on a loaded
    // machine. Wait (bounded) for that resize rather than race it; a resize that never comes
    // still fails below on "30 100".
    t.type_line(
        "i=0; while [ \"$(stty size 2>/dev/null)\" != '30 100' ] && [ $i -lt 100 ]; do \
         sleep 0.1; i=$((i+1)); done; tty; stty size; echo typed-$((6*7))",
    )
    .unwrap_or_else(|e| panic!("typing: {e:#}"));
    let screen = t
        .wait_for("typed-42", T)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(screen.contains("/dev/pts/0"), "{screen}");
    assert!(screen.contains("30 100"), "{screen}");
    t.type_line("exit 7")
        .unwrap_or_else(|e| panic!("typing: {e:#}"));
    t.wait_for("docker-exit=7", T)
        .unwrap_or_else(|e| panic!("{e:#}"));
    t.kill();
}

/// A detached container: exec, signals, pause/unpause, update, stats, top, stop.
fn detached_lifecycle(d: &Dockerd) {
    let out = d.run(&["-d", "--name", "d1"], &["sh", "-c", TRAPS]);
    assert!(out.success(), "{out}");
    let id = out.stdout.trim().to_string();
    assert!(d.wait_status("d1", "running", T), "{}", d.log_tail());
    assert_eq!(d.inspect("d1", "{{.HostConfig.Runtime}}"), "husk");
    // containerd-shim-runc-v2 drives husk: the bundle's options name husk as the binary, and
    // husk keeps the container's state under the root Docker gave it (runtime-runc).
    let bundle = d
        .dir
        .join("exec/containerd/daemon/io.containerd.runtime.v2.task/moby")
        .join(&id);
    let options: Value =
        serde_json::from_str(&fs::read_to_string(bundle.join("options.json")).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(
        options["binary_name"],
        d.husk.display().to_string(),
        "{options}"
    );
    let state = Path::new(options["root"].as_str().unwrap_or_default())
        .join("moby")
        .join(&id)
        .join("state.json");
    assert!(state.is_file(), "no husk state at {}", state.display());
    d.wait_logs("d1", "started", T)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let out = d.docker(&["exec", "d1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stdout.contains("in-exec"), "{out}");
    let out = d.docker(&[
        "exec",
        "-u",
        "1000",
        "-w",
        "/tmp",
        "-e",
        "X=y",
        "d1",
        "sh",
        "-c",
        "id -u; pwd; echo $X",
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["1000", "/tmp", "y"],
        "{out}"
    );

    // An exec with a terminal: husk hands the shim a pty through the console socket.
    let out = d.docker(&["exec", "-t", "d1", "sh", "-c", "tty; exit 4"]);
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    let out = d.docker(&["kill", "-s", "HUP", "d1"]);
    assert!(out.success(), "{out}");
    d.wait_logs("d1", "got-hup", T)
        .unwrap_or_else(|e| panic!("SIGHUP did not reach the app: {e:#}"));

    let out = d.docker(&["pause", "d1"]);
    assert!(out.success(), "{out}");
    assert_eq!(d.inspect("d1", "{{.State.Status}}"), "paused");
    if let Some(freezer) = d.cgroup_dir("d1", "freezer") {
        let st = fs::read_to_string(freezer.join("freezer.state")).unwrap_or_default();
        assert_eq!(st.trim(), "FROZEN", "{}", freezer.display());
    }
    let out = d.docker(&["unpause", "d1"]);
    assert!(out.success(), "{out}");
    assert_eq!(d.inspect("d1", "{{.State.Status}}"), "running");

    let out = d.docker(&["update", "--memory", "64m", "--memory-swap", "128m", "d1"]);
    assert!(out.success(), "{out}");
    assert_eq!(d.inspect("d1", "{{.HostConfig.Memory}}"), "67108864");
    if let Some(mem) = d.cgroup_dir("d1", "memory") {
        let limit = fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap_or_default();
        assert_eq!(limit.trim(), "67108864", "{}", mem.display());
    }
    let out = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} pids={{.PIDs}}",
        "d1",
    ]);
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("d1 ") && out.stdout.contains("/ 64MiB"),
        "{out}"
    );
    assert!(!out.stdout.contains("pids=0"), "{out}");
    let out = d.docker(&["top", "d1"]);
    assert!(
        out.success() && out.stdout.contains("echo started"),
        "{out}"
    );

    // SIGTERM reaches the app, which exits 42 at once (not 137 after the 10 s grace).
    let t0 = Instant::now();
    let out = d.docker(&["stop", "d1"]);
    assert!(out.success(), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(d.inspect("d1", "{{.State.ExitCode}}"), "42");
    d.wait_logs("d1", "got-term", T)
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Started again: the same container, a new husk container underneath.
    let out = d.docker(&["start", "d1"]);
    assert!(out.success(), "{out}");
    assert!(d.wait_status("d1", "running", T));
    let out = d.docker(&["rm", "-f", "d1"]);
    assert!(out.success(), "{out}");
    assert!(
        !state.exists(),
        "husk state left after rm: {}",
        state.display()
    );
}

#[test]
fn docker_add_runtime_runs_husk_containers() {
    require_docker!();
    let d = start(Registration::Flags);
    note_security_options(&d);
    let info = d.docker(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(info.stdout.contains("\"husk\""), "{info}");
    attached_runs(&d);
    interactive_tty(&d);
    detached_lifecycle(&d);
}

/// One line of /proc/self/status from inside a container run with `flags`.
fn status_line(d: &Dockerd, flags: &[&str], field: &str) -> String {
    let mut f = vec!["--rm"];
    f.extend_from_slice(flags);
    let out = d.run(&f, &["grep", &format!("^{field}:"), "/proc/self/status"]);
    assert!(out.success(), "{out}");
    out.stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn docker_security_and_resource_options() {
    require_docker!();
    let d = start(Registration::Flags);

    // Docker's default seccomp profile is applied by husk (mode 2 = filter).
    assert_eq!(status_line(&d, &[], "Seccomp"), "2");
    assert_eq!(
        status_line(&d, &["--cap-drop", "ALL"], "CapEff"),
        "0000000000000000"
    );
    assert_eq!(
        status_line(&d, &["--cap-drop", "ALL"], "CapBnd"),
        "0000000000000000"
    );
    assert_ne!(status_line(&d, &[], "CapEff"), "0000000000000000");
    assert_eq!(
        status_line(&d, &["--security-opt", "no-new-privileges"], "NoNewPrivs"),
        "1"
    );
    assert_eq!(status_line(&d, &[], "NoNewPrivs"), "0");

    let out = d.run(
        &["--rm", "--read-only"],
        &[
            "sh",
            "-c",
            "touch /x 2>&1; echo rc=$?; touch /tmp/y 2>&1; echo tmp=$?",
        ],
    );
    assert!(
        out.stdout.contains("Read-only file system") && out.stdout.contains("rc=1"),
        "{out}"
    );

    let out = d.run(&["--rm", "--user", "1000:1000"], &["id"]);
    assert!(
        out.stdout.contains("uid=1000(user) gid=1000(user)"),
        "{out}"
    );
    let out = d.run(&["--rm", "--user", "nobody"], &["id", "-u"]);
    assert_eq!(out.stdout.trim(), "65534", "{out}");

    let out = d.run(
        &["--rm", "--tmpfs", "/scratch:size=1m"],
        &[
            "sh",
            "-c",
            "grep ' /scratch ' /proc/mounts; echo x > /scratch/f && cat /scratch/f",
        ],
    );
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("tmpfs /scratch tmpfs") && out.stdout.contains("size=1024k"),
        "{out}"
    );

    // Bind mounts: read-write (the host sees the write) and read-only.
    let host = d.dir.join("bind");
    fs::create_dir_all(&host).expect("creating the bind dir");
    fs::write(host.join("from-host"), "host data\n").expect("writing a host file");
    let vol = format!("{}:/data", host.display());
    let out = d.run(
        &["--rm", "-v", &vol],
        &[
            "sh",
            "-c",
            "cat /data/from-host; echo written > /data/from-container",
        ],
    );
    assert!(out.success() && out.stdout.contains("host data"), "{out}");
    assert_eq!(
        fs::read_to_string(host.join("from-container")).unwrap_or_default(),
        "written\n"
    );
    let vol_ro = format!("{}:/data:ro", host.display());
    let out = d.run(
        &["--rm", "-v", &vol_ro],
        &["sh", "-c", "echo x > /data/nope"],
    );
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");

    let out = d.run(
        &[
            "--rm",
            "--add-host",
            "db.example:10.1.2.3",
            "--hostname",
            "husky",
        ],
        &["sh", "-c", "cat /etc/hosts; hostname"],
    );
    assert!(out.stdout.contains("10.1.2.3\tdb.example"), "{out}");
    assert!(out.stdout.contains("husky"), "{out}");

    // --pids-limit: the cgroup's limit, and forks fail past it (ash gives up with status 2).
    let out = d.run(
        &["--rm", "--pids-limit", "10"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                       for i in $(seq 20); do sleep 5 & done; echo forked-all",
        ],
    );
    assert!(out.stdout.starts_with("10\n"), "{out}");
    assert!(!out.stdout.contains("forked-all"), "{out}");
    assert!(out.stderr.contains("can't fork"), "{out}");

    // --memory: the limit is set, and exceeding it is an OOM kill Docker reports.
    let out = d.run(
        &["--rm", "--memory", "32m"],
        &["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"],
    );
    assert_eq!(out.stdout.trim(), "33554432", "{out}");
    let out = d.run(
        &["--name", "oom", "--memory", "32m", "--memory-swap", "32m"],
        &["sh", "-c", "x=a; while true; do x=$x$x; done"],
    );
    assert_eq!(out.code, 137, "{out}");
    assert_eq!(
        d.inspect("oom", "{{.State.OOMKilled}} {{.State.ExitCode}}"),
        "true 137"
    );
    let out = d.docker(&["rm", "oom"]);
    assert!(out.success(), "{out}");
}

/// Checks husk-init is PID 1 (as `expect_argv0`), reaps orphans, forwards SIGHUP and SIGTERM
/// and applies hosts overrides, in containers started from `image` with `flags`.
fn husk_init_behaviour(d: &Dockerd, image: &str, flags: &[&str], expect_argv0: &str) {
    let mut f = vec!["--rm"];
    f.extend_from_slice(flags);
    let out = d.run_image(
        image,
        &f,
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/1/exe; cat /proc/1/comm",
        ],
    );
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.starts_with(expect_argv0),
        "PID 1 is not {expect_argv0}:\n{out}"
    );
    assert!(
        out.stdout.contains("husk-init") || out.stdout.contains("docker-init"),
        "{out}"
    );

    // Zombies: an orphan re-parented to PID 1 is reaped there. The main program execs `sleep`,
    // which never reaps, so a zombie would stay if PID 1 were not an init.
    let mut f = vec!["-d", "--name", "reap"];
    f.extend_from_slice(flags);
    let out = d.run_image(image, &f, &["sh", "-c", "(sleep 0.2 &); exec sleep 60"]);
    assert!(out.success(), "{out}");
    std::thread::sleep(Duration::from_millis(1500));
    let ps = d.docker(&["exec", "reap", "ps", "-o", "pid,ppid,stat,comm"]);
    assert!(ps.success(), "{ps}");
    assert!(
        !ps.stdout.lines().any(|l| l
            .split_whitespace()
            .nth(2)
            .is_some_and(|s| s.starts_with('Z'))),
        "a zombie was not reaped:\n{ps}"
    );
    let out = d.docker(&["rm", "-f", "reap"]);
    assert!(out.success(), "{out}");

    // Signals: SIGHUP and docker stop's SIGTERM reach the program behind the init.
    let mut f = vec!["-d", "--name", "sig"];
    f.extend_from_slice(flags);
    let out = d.run_image(image, &f, &["sh", "-c", TRAPS]);
    assert!(out.success(), "{out}");
    d.wait_logs("sig", "started", T)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let out = d.docker(&["kill", "-s", "HUP", "sig"]);
    assert!(out.success(), "{out}");
    d.wait_logs("sig", "got-hup", T)
        .unwrap_or_else(|e| panic!("SIGHUP was not forwarded: {e:#}"));
    let t0 = Instant::now();
    let out = d.docker(&["stop", "sig"]);
    assert!(out.success(), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(d.inspect("sig", "{{.State.ExitCode}}"), "42");
    let out = d.docker(&["rm", "sig"]);
    assert!(out.success(), "{out}");

    // /etc/hosts overrides from husk-init's environment, on top of Docker's --add-host.
    let mut f = vec![
        "--rm",
        "-e",
        "HUSK_INIT_HOSTS=db.internal=10.0.0.5,cache.internal=10.0.0.6",
        "--add-host",
        "docker.added:10.9.9.9",
    ];
    f.extend_from_slice(flags);
    let out = d.run_image(image, &f, &["cat", "/etc/hosts"]);
    assert!(out.success(), "{out}");
    for line in [
        "10.0.0.5\tdb.internal",
        "10.0.0.6\tcache.internal",
        "10.9.9.9\tdocker.added",
    ] {
        assert!(
            out.stdout.contains(line),
            "no {line:?} in /etc/hosts:\n{out}"
        );
    }
}

#[test]
fn docker_init_is_husk_init() {
    require_docker!();
    let d = start(Registration::Flags);
    let info = d.docker(&["info", "--format", "{{.InitBinary}}"]);
    assert_eq!(
        info.stdout.trim(),
        d.husk_init.display().to_string(),
        "{info}"
    );
    // Docker bind-mounts the init at /sbin/docker-init and runs `docker-init -- CMD`.
    let out = d.run(&["--rm", "--init"], &["/sbin/docker-init", "--version"]);
    assert!(out.stdout.contains("husk-init version"), "{out}");
    husk_init_behaviour(&d, IMAGE, &["--init"], "/sbin/docker-init -- ");

    // The control: without an init the same orphan stays a zombie, so the check above can
    // see one.
    let out = d.run(
        &["-d", "--name", "noinit"],
        &["sh", "-c", "(sleep 0.2 &); exec sleep 60"],
    );
    assert!(out.success(), "{out}");
    std::thread::sleep(Duration::from_millis(1500));
    let ps = d.docker(&["exec", "noinit", "ps", "-o", "pid,ppid,stat,comm"]);
    assert!(
        ps.stdout.lines().any(|l| l
            .split_whitespace()
            .nth(2)
            .is_some_and(|s| s.starts_with('Z'))),
        "expected a zombie without an init:\n{ps}"
    );
}

/// docs/docker.md's daemon.json with this machine's husk and husk-init.
fn daemon_json_from_docs(d_husk: &str, d_init: &str) -> Value {
    let text = snippets::snippet("docker.md", "daemon.json").unwrap_or_else(|e| panic!("{e:#}"));
    let mut v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("docs/docker.md daemon.json is not JSON: {e}\n{text}"));
    let path = v
        .pointer_mut("/runtimes/husk/path")
        .unwrap_or_else(|| panic!("daemon.json has no runtimes.husk.path:\n{text}"));
    *path = Value::String(d_husk.into());
    let init = v
        .get_mut("init-path")
        .unwrap_or_else(|| panic!("daemon.json has no init-path:\n{text}"));
    *init = Value::String(d_init.into());
    v
}

#[test]
fn docker_daemon_json_entrypoint_image_and_live_restore() {
    require_docker!();
    let husk = husk_tests::husk_bin().display().to_string();
    let init = husk_tests::husk_init_bin().display().to_string();
    let json = daemon_json_from_docs(&husk, &init);
    assert_eq!(
        json["live-restore"],
        Value::Bool(true),
        "the docs snippet enables live-restore"
    );
    let mut d = start(Registration::DaemonJson(json));
    let info = d.docker(&[
        "info",
        "--format",
        "{{json .Runtimes}} {{.InitBinary}} {{.LiveRestoreEnabled}}",
    ]);
    assert!(info.stdout.contains("\"husk\""), "{info}");
    assert!(info.stdout.contains(&format!("{init} true")), "{info}");

    // The image from the docs' Dockerfile, built on the local busybox (no registry).
    let dockerfile =
        snippets::snippet("docker.md", "Dockerfile").unwrap_or_else(|e| panic!("{e:#}"));
    let mut lines = dockerfile.lines();
    let from = lines.next().unwrap_or_default();
    assert!(
        from.starts_with("FROM "),
        "the Dockerfile starts with FROM: {dockerfile}"
    );
    let ctx = d.dir.join("build");
    fs::create_dir_all(&ctx).expect("creating the build context");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\n{}\n", lines.collect::<Vec<_>>().join("\n")),
    )
    .expect("writing the Dockerfile");
    fs::copy(&init, ctx.join("husk-init")).expect("copying husk-init into the context");
    let ctx_s = ctx.display().to_string();
    let out = d.docker_with(
        &["build", "-t", "husk/busybox-init:test", &ctx_s],
        Duration::from_secs(120),
    );
    assert!(out.success(), "docker build failed:\n{out}");
    let entry = d.inspect("husk/busybox-init:test", "{{json .Config.Entrypoint}}");
    assert_eq!(entry, r#"["/sbin/husk-init","--"]"#);
    husk_init_behaviour(&d, "husk/busybox-init:test", &[], "/sbin/husk-init -- ");
    // --init from daemon.json's init-path works as well.
    let out = d.run(&["--rm", "--init"], &["/sbin/docker-init", "--version"]);
    assert!(out.stdout.contains("husk-init version"), "{out}");

    // live-restore: dockerd restarts, the husk container keeps running, untouched.
    let out = d.run(
        &["-d", "--name", "lr"],
        &["sh", "-c", "trap 'exit 42' TERM; i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"],
    );
    assert!(out.success(), "{out}");
    assert!(d.wait_status("lr", "running", T));
    let pid = d.inspect("lr", "{{.State.Pid}}");
    let pid_n: i32 = pid.parse().unwrap_or_else(|e| panic!("pid {pid:?}: {e}"));
    let before = d.docker(&["exec", "lr", "cat", "/tmp/n"]).stdout;
    d.stop();
    assert!(
        husk_tests::host::alive(pid_n),
        "the container died with dockerd"
    );
    std::thread::sleep(Duration::from_millis(500));
    d.restart()
        .unwrap_or_else(|e| panic!("restarting dockerd: {e:#}"));
    assert_eq!(
        d.inspect("lr", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {pid}")
    );
    let after = d.docker(&["exec", "lr", "cat", "/tmp/n"]);
    assert!(after.success(), "{after}");
    let (b, a): (u64, u64) = (
        before.trim().parse().unwrap_or(0),
        after.stdout.trim().parse().unwrap_or(0),
    );
    assert!(
        a > b,
        "the container did not run on while dockerd was away: {b} -> {a}"
    );
    let out = d.docker(&["pause", "lr"]);
    assert!(out.success(), "pause after restore: {out}");
    let out = d.docker(&["unpause", "lr"]);
    assert!(out.success(), "{out}");
    let out = d.docker(&["stop", "lr"]);
    assert!(out.success(), "{out}");
    assert_eq!(d.inspect("lr", "{{.State.ExitCode}}"), "42");
}
