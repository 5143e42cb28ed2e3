//! podman (Debian 12's 4.3, with conmon) driving husk: `--runtime /path/to/husk`, husk named in
//! containers.conf (the snippet in docs/podman.md), and rootless as an unprivileged user. Each
//! test has its own storage and state (see husk_integration::podman::Podman), which it removes
//! with everything it started.

use std::time::{Duration, Instant};

use husk_integration::archive::IMAGE;
use husk_integration::podman::{safe_ulimits, Podman};
use husk_integration::{require_podman, snippets, tmux};

const T: Duration = Duration::from_secs(20);

/// A loop that reports SIGHUP and exits 42 on SIGTERM.
const TRAPS: &str = "trap 'echo got-hup' HUP; trap 'echo got-term; exit 42' TERM; \
                     echo started; while true; do sleep 0.1; done";

fn wait_logs(p: &Podman, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let out = p.podman(&["logs", name]);
        let all = format!("{}{}", out.stdout, out.stderr);
        if all.contains(needle) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in the logs of {name}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// run (output, exit codes), a detached container's exec, signals, pause, stop and rm.
fn lifecycle(p: &Podman) {
    let out = p.run(&["--rm"], &["sh", "-c", "echo hello from husk; exit 3"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("hello from husk"), "{out}");
    let out = p.run(&["--rm"], &["sh", "-c", "echo to-stderr >&2; exit 1"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    let out = p.run(&["--rm", "--user", "1000:1000"], &["id"]);
    assert!(
        out.stdout.contains("uid=1000(user) gid=1000(user)"),
        "{out}"
    );
    // podman maps the runtime's wording to 127 / 126 as Docker does.
    let out = p.run(&["--rm"], &["no-such-command"]);
    assert_eq!(out.code, 127, "{out}");
    assert!(out.stderr.contains("executable file not found"), "{out}");

    let out = p.run(&["-d", "--name", "p1"], &["sh", "-c", TRAPS]);
    assert!(out.success(), "{out}");
    wait_logs(p, "p1", "started");
    if let Some(rt) = p.runtime() {
        assert_eq!(p.inspect("p1", "{{.OCIRuntime}}"), rt);
    }
    let out = p.podman(&["exec", "p1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stdout.contains("in-exec"), "{out}");
    let out = p.podman(&[
        "exec",
        "-u",
        "1000",
        "-w",
        "/tmp",
        "p1",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["1000", "/tmp"],
        "{out}"
    );
    let out = p.podman(&["exec", "-t", "p1", "sh", "-c", "tty; exit 4"]);
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    let out = p.podman(&["kill", "-s", "HUP", "p1"]);
    assert!(out.success(), "{out}");
    wait_logs(p, "p1", "got-hup");
    if !p.rootless() {
        // Rootless podman on cgroup v1 has no cgroup to freeze.
        let out = p.podman(&["pause", "p1"]);
        assert!(out.success(), "{out}");
        assert_eq!(p.inspect("p1", "{{.State.Status}}"), "paused");
        let out = p.podman(&["unpause", "p1"]);
        assert!(out.success(), "{out}");
        assert_eq!(p.inspect("p1", "{{.State.Status}}"), "running");
    }
    let t0 = Instant::now();
    let out = p.podman(&["stop", "-t", "10", "p1"]);
    assert!(out.success(), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "stop took {:?}: SIGTERM did not reach the app",
        t0.elapsed()
    );
    assert_eq!(p.inspect("p1", "{{.State.ExitCode}}"), "42");
    wait_logs(p, "p1", "got-term");
    let out = p.podman(&["rm", "p1"]);
    assert!(out.success(), "{out}");
    let ps = p.podman(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ps.success() && !ps.stdout.contains("p1"), "{ps}");
}

/// `podman run -it` under tmux: a pty of the terminal's size, typed input, exit code.
fn interactive_tty(p: &Podman) {
    if tmux::tmux_bin().is_none() {
        eprintln!("SKIPPED the -it part: tmux is not installed (`cargo xtask test` installs it)");
        return;
    }
    let mut cmd = p.podman_command(&["run", "-it", "--rm", "--network", "none", "--pull", "never"]);
    cmd.args(safe_ulimits());
    if let Some(cg) = &p.cgroup_parent {
        cmd.args(["--cgroup-parent", cg]);
    }
    cmd.args([IMAGE, "sh"]);
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut script: Vec<String> = vec![quote(&cmd.get_program().to_string_lossy())];
    script.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    let script = format!("{}; echo podman-exit=$?", script.join(" "));
    let env: Vec<(String, String)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut t = tmux::Tmux::start(&p.dir.join("tmux.sock"), &env, &script, 90, 25)
        .unwrap_or_else(|e| panic!("tmux: {e:#}"));
    // capture-pane drops trailing blanks: the prompt "/ # " reads "/ #".
    t.wait_for("/ #", T)
        .unwrap_or_else(|e| panic!("no shell prompt: {e:#}"));
    // conmon applies the client's window size through its resize channel after start, which
    // can land after the first prompt on a loaded machine: wait for it (bounded).
    t.type_line(
        "i=0; while [ \"$(stty size 2>/dev/null)\" != '25 90' ] && [ $i -lt 100 ]; do \
         sleep 0.1; i=$((i+1)); done; tty; stty size; echo typed-$((6*7))",
    )
    .unwrap_or_else(|e| panic!("typing: {e:#}"));
    let screen = t
        .wait_for("typed-42", T)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(screen.contains("/dev/pts/0"), "{screen}");
    assert!(screen.contains("25 90"), "{screen}");
    t.type_line("exit 6")
        .unwrap_or_else(|e| panic!("typing: {e:#}"));
    t.wait_for("podman-exit=6", T)
        .unwrap_or_else(|e| panic!("{e:#}"));
    t.kill();
}

#[test]
fn podman_runtime_path_runs_husk() {
    require_podman!();
    let husk = husk_tests::husk_bin().display().to_string();
    let p = Podman::start(Some(&husk), None).unwrap_or_else(|e| panic!("podman: {e:#}"));
    lifecycle(&p);
    interactive_tty(&p);
}

#[test]
fn podman_containers_conf_from_docs_runs_husk() {
    require_podman!();
    let conf =
        snippets::snippet("podman.md", "containers.conf").unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        conf.contains("\"/usr/sbin/husk\""),
        "the snippet names /usr/sbin/husk:\n{conf}"
    );
    let husk = husk_tests::husk_bin().display().to_string();
    let conf = conf.replace("\"/usr/sbin/husk\"", &format!("{husk:?}"));
    // No --runtime: the snippet makes husk podman's default runtime.
    let p = Podman::start(None, Some(&conf)).unwrap_or_else(|e| panic!("podman: {e:#}"));
    let info = p.podman(&[
        "info",
        "--format",
        "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}",
    ]);
    assert_eq!(info.stdout.trim(), format!("husk {husk}"), "{info}");
    let out = p.run(&["-d", "--name", "c1"], &["sleep", "60"]);
    assert!(out.success(), "{out}");
    assert_eq!(p.inspect("c1", "{{.OCIRuntime}}"), "husk");
    lifecycle(&p);
    // With husk in `runtime_supports_json`, podman passes `--log-format=json --log FILE` and
    // shows the runtime's error message alone, as it does for runc.
    let out = p.run(&["--rm"], &["/etc/passwd"]);
    assert_eq!(out.code, 126, "{out}");
    assert!(out.stderr.contains("permission denied"), "{out}");
    assert!(
        !out.stderr.contains("level=error"),
        "raw log line shown:\n{out}"
    );
}

/// `sh -c 'cat /proc/self/uid_map; id -u'` under rootless podman with `runtime`.
fn rootless_run(runtime: &std::path::Path) -> (Podman, husk_tests::Output) {
    let p = Podman::start_rootless(runtime).unwrap_or_else(|e| panic!("podman: {e:#}"));
    let out = p.run(&["--rm"], &["sh", "-c", "cat /proc/self/uid_map; id -u"]);
    (p, out)
}

/// The control for the rootless test: rootless podman with Debian's runc, as an unprivileged
/// user the harness creates. Passing shows this machine can run rootless containers, so a
/// failure of `podman_rootless_runs_husk` is husk's.
#[test]
fn podman_rootless_control_with_runc() {
    require_podman!();
    let Some(runc) = husk_tests::which("runc") else {
        eprintln!("SKIPPED podman_rootless_control_with_runc: runc is not installed");
        return;
    };
    let (p, out) = rootless_run(&runc);
    assert!(out.success(), "rootless podman with runc:\n{out}");
    // Container root is the unprivileged user outside: uid_map's first line maps 0 to it.
    assert!(out.stdout.lines().last() == Some("0"), "{out}");
    assert!(
        !out.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .eq(["0", "0", "4294967295"]),
        "not in a user namespace:\n{out}"
    );
    lifecycle(&p);
}

/// Rootless podman with husk, as an unprivileged user the harness creates.
#[test]
fn podman_rootless_runs_husk() {
    require_podman!();
    let (p, out) = rootless_run(&husk_tests::husk_bin());
    assert!(out.success(), "rootless podman with husk:\n{out}");
    assert!(out.stdout.lines().last() == Some("0"), "{out}");
    lifecycle(&p);
}
