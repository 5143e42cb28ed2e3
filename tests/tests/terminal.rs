//! Terminals: the pty is made in the container and its master sent over --console-socket with
//! SCM_RIGHTS (this test is the receiver, as containerd's console socket is), and `run -t` /
//! `exec -t` without a socket proxy the caller's terminal: raw mode, both directions, window
//! size changes, the terminal restored afterwards. The caller's terminal is a pty the test owns.

mod ops_support;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use husk_tests::{require_root, temp_dir, Bundle, Runtime};
use ops_support::{
    is_tty, open_pty, read_until, recv_fd, run_detached, set_winsize, spawn_on_pty, term_flags,
    wait_child, write_fd,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn console_socket_receives_master_for_create_and_exec() {
    require_root!();
    let rt = Runtime::husk("tty-socket");
    let b = Bundle::new(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 40, "width": 100});
        c["process"]["args"] = json!(["sh"]);
    });
    let dir = temp_dir("console");
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind console socket");
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    // containerd's command line: create --bundle B --console-socket S ID.
    rt.exec(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        sock.to_str().expect("utf8"),
        &id,
    ])
    .ok();
    let (stream, _) = listener.accept().expect("accept");
    let master = recv_fd(&stream, WAIT);
    assert!(is_tty(master.as_raw_fd()), "received fd is not a terminal");
    rt.start(&id).ok();
    let m = master.as_raw_fd();
    write_fd(m, b"tty; stty size; echo sum-$((6*7))\n");
    let mut out = String::new();
    assert!(
        read_until(m, &mut out, "sum-42", WAIT),
        "no output: {out:?}"
    );
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("40 100"), "consoleSize not applied: {out:?}");
    // /dev/console is the same terminal, as under runc.
    write_fd(m, b"echo via-console > /dev/console\n");
    let mut out = String::new();
    assert!(read_until(m, &mut out, "via-console\r\n", WAIT), "{out:?}");

    // exec -t -d --console-socket: a second pty for the exec'd process.
    let sock2 = dir.path().join("exec.sock");
    let listener2 = UnixListener::bind(&sock2).expect("bind");
    rt.exec(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock2.to_str().expect("utf8"),
        &id,
        "sh",
    ])
    .ok();
    let (stream2, _) = listener2.accept().expect("accept");
    let master2 = recv_fd(&stream2, WAIT);
    let m2 = master2.as_raw_fd();
    write_fd(m2, b"tty; echo exec-$((2+3)); exit\n");
    let mut out = String::new();
    assert!(read_until(m2, &mut out, "exec-5", WAIT), "{out:?}");
    assert!(out.contains("/dev/pts/1"), "{out:?}");

    write_fd(m, b"exit 0\n");
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id).ok();
    rt.assert_host_clean(&[&b]);
}

#[test]
fn console_socket_rules() {
    require_root!();
    let rt = Runtime::husk("tty-rules");
    let b = Bundle::new(|c| c["process"]["terminal"] = json!(true));
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    // A terminal without a socket cannot be detached.
    rt.exec(&["create", "--bundle", &bundle, &id])
        .fails()
        .stderr_has("console socket");
    rt.exec(&["run", "-d", "--bundle", &bundle, &id])
        .fails()
        .stderr_has("console socket");
    let plain = Bundle::with_args(&["sleep", "100"]);
    let (pid_id, _) = run_detached(&rt, &plain);
    rt.exec(&["exec", "-t", "-d", &pid_id, "true"])
        .fails()
        .stderr_has("console socket");
    rt.exec(&[
        "exec",
        "--console-socket",
        "/nonexistent.sock",
        &pid_id,
        "true",
    ])
    .fails()
    .stderr_has("console socket");
    // A socket nobody listens on: a clear error, nothing started.
    rt.exec(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        "/nonexistent.sock",
        &pid_id,
        "true",
    ])
    .fails()
    .stderr_has("/nonexistent.sock");
    assert!(rt.root_entries().iter().all(|e| e == &pid_id));
    rt.delete_force(&pid_id).ok();
    rt.assert_host_clean(&[&b, &plain]);
}

/// Drives an interactive shell through the proxy: output, input, resize, exit code, and the
/// caller's terminal settings restored.
fn drive_shell(rt: &Runtime, args: &[&str], exit_code: i32) {
    let (master, slave) = open_pty();
    let m = master.as_raw_fd();
    set_winsize(m, 24, 80);
    let before = term_flags(slave.as_raw_fd());
    let mut child = spawn_on_pty(rt, args, &slave);
    write_fd(m, b"stty size; echo ready-$((1+1))\n");
    let mut out = String::new();
    assert!(
        read_until(m, &mut out, "ready-2", WAIT),
        "no output: {out:?}"
    );
    assert!(out.contains("24 80"), "window size not copied: {out:?}");
    // While husk runs, the caller's terminal is raw: no echo, no canonical mode.
    let during = term_flags(slave.as_raw_fd());
    assert_eq!(during.0 & (libc::ECHO | libc::ICANON), 0, "not in raw mode");
    // A resize of the caller's terminal reaches the container (SIGWINCH -> TIOCSWINSZ).
    set_winsize(m, 50, 132);
    std::thread::sleep(Duration::from_millis(300));
    write_fd(m, b"stty size; echo again-$((2+2))\n");
    let mut out = String::new();
    assert!(read_until(m, &mut out, "again-4", WAIT), "{out:?}");
    assert!(out.contains("50 132"), "resize not forwarded: {out:?}");
    // ^C goes to the container's terminal, not to husk: the shell survives it.
    write_fd(m, b"\x03");
    write_fd(m, b"echo alive-$((3+3))\n");
    let mut out = String::new();
    assert!(read_until(m, &mut out, "alive-6", WAIT), "{out:?}");
    write_fd(m, format!("exit {exit_code}\n").as_bytes());
    let code = wait_child(&mut child, WAIT).expect("husk did not exit");
    assert_eq!(code, exit_code);
    assert_eq!(
        term_flags(slave.as_raw_fd()),
        before,
        "terminal settings not restored"
    );
}

#[test]
fn run_with_callers_terminal() {
    require_root!();
    let rt = Runtime::husk("tty-run");
    let b = Bundle::new(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["args"] = json!(["sh"]);
    });
    let id = rt.new_id();
    rt.track_id(&id);
    let bundle = b.path().to_string_lossy().into_owned();
    drive_shell(&rt, &["run", "--bundle", &bundle, &id], 7);
    rt.state(&id).fails().stderr_has("does not exist");
    rt.assert_host_clean(&[&b]);
}

#[test]
fn exec_with_callers_terminal() {
    require_root!();
    let rt = Runtime::husk("tty-exec");
    let b = Bundle::with_args(&["sleep", "1000"]);
    let (id, _) = run_detached(&rt, &b);
    drive_shell(&rt, &["exec", "-t", &id, "sh"], 3);
    // Without a terminal at all (stdin not a tty) the proxy still copies output.
    let out = rt.exec(&["exec", "-t", &id, "sh", "-c", "tty; echo done"]);
    let o = &out.ok().stdout;
    assert!(o.contains("/dev/pts/") && o.contains("done"), "{out}");
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}
