//! The flags of `create`/`run` that change what the container gets: --pid-file,
//! --preserve-fds, --no-new-keyring, --pidfd-socket, --console-socket, and the global --log
//! with --log-format json on a failure. (--no-pivot is in mounts.rs.) Differential against
//! runc where runc 1.1 has the flag; --pidfd-socket is runc 1.2's, so husk only.

mod common;

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{install_probe, json_lines, pair, read_all_fd, FdReceiver, WAIT};
use husk_tests::{capture, require_root, temp_dir, Bundle, Flavor, Runtime, COMMAND_TIMEOUT};
use serde_json::json;

#[test]
fn pid_file_absolute_and_relative() {
    require_root!();
    let p = pair("pidfile");
    let b = Bundle::with_args(&["sleep", "100"]);
    let bundle = b.path().to_string_lossy().into_owned();
    for rt in p.both() {
        let dir = temp_dir("pidfile");
        for (arg, path) in [
            (
                dir.path().join("abs.pid").to_string_lossy().into_owned(),
                dir.path().join("abs.pid"),
            ),
            ("rel.pid".to_string(), dir.path().join("rel.pid")),
        ] {
            let id = rt.new_id();
            let mut cmd = rt.command();
            cmd.args(["create", "--bundle", &bundle, "--pid-file", &arg, &id])
                .current_dir(dir.path());
            let out = capture(cmd, dir.path(), COMMAND_TIMEOUT);
            out.ok();
            let st = rt.state_json(&id);
            let written = fs::read_to_string(&path).expect("pid file written");
            // runc writes no newline either.
            assert_eq!(
                written,
                st["pid"].to_string(),
                "{}: {arg}",
                rt.flavor.name()
            );
            rt.delete_force(&id).ok();
        }
        husk_tests::remove_temp_dir(dir);
    }
}

/// Runs `BIN run --bundle B ID` with `extra` flags and the files `paths` opened afresh onto
/// fds 3, 4, ...
fn run_with_fds(
    rt: &Runtime,
    b: &Bundle,
    extra: &[&str],
    paths: &[std::path::PathBuf],
) -> husk_tests::Output {
    let id = rt.new_id();
    let bundle = b.path().to_string_lossy().into_owned();
    let scratch = temp_dir("fds");
    let files: Vec<fs::File> = paths
        .iter()
        .map(|p| fs::File::open(p).expect("open a file to pass"))
        .collect();
    let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = rt.command();
    cmd.arg("run").args(extra).args(["--bundle", &bundle, &id]);
    // SAFETY: only fcntl and dup2 between fork and exec, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (a source may itself be 3 or 4), then into place; dup2
            // onto another number leaves the copy without FD_CLOEXEC.
            let mut high = Vec::with_capacity(fds.len());
            for fd in &fds {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = capture(cmd, scratch.path(), COMMAND_TIMEOUT);
    drop(files);
    husk_tests::remove_temp_dir(scratch);
    out
}

#[test]
fn preserve_fds() {
    require_root!();
    let p = pair("preservefds");
    let dir = temp_dir("preserve");
    fs::write(dir.path().join("three"), "from fd 3\n").expect("write");
    fs::write(dir.path().join("four"), "from fd 4\n").expect("write");
    let paths = [dir.path().join("three"), dir.path().join("four")];
    let b = Bundle::sh(
        "cat <&3 2>/dev/null || echo no fd 3; cat <&4 2>/dev/null || echo no fd 4; \
         ls /proc/self/fd | sort -n | tr '\\n' ' '",
    );
    let mut outs = Vec::new();
    for rt in p.both() {
        let one = run_with_fds(rt, &b, &["--preserve-fds", "1"], &paths);
        let two = run_with_fds(rt, &b, &["--preserve-fds", "2"], &paths);
        let none = run_with_fds(rt, &b, &[], &paths);
        outs.push(format!(
            "{}---\n{}---\n{}",
            one.ok().stdout,
            two.ok().stdout,
            none.ok().stdout
        ));
    }
    common::assert_same("--preserve-fds", &outs[0], &outs[1]);
    // ls's own directory fd is the last one listed.
    assert_eq!(
        outs[1],
        "from fd 3\nno fd 4\n0 1 2 3 4 ---\nfrom fd 3\nfrom fd 4\n0 1 2 3 4 5 ---\n\
         no fd 3\nno fd 4\n0 1 2 3 "
    );
    husk_tests::remove_temp_dir(dir);
}

const KEYRING_PROBE: &str = r#"
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_DESCRIBE 6
#define KEY_SPEC_SESSION_KEYRING -3
int main(void) {
    long id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    char desc[256] = {0};
    long n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, id, desc, sizeof desc - 1);
    printf("%ld %s\n", id, n > 0 ? desc : "?");
    return 0;
}
"#;

/// The session keyring of this test process: (serial, description).
fn own_session_keyring() -> (i64, String) {
    // SAFETY: keyctl with scalar arguments and a stack buffer of the size given.
    unsafe {
        let id = libc::syscall(libc::SYS_keyctl, 0, -3i64, 0);
        let mut desc = [0u8; 256];
        libc::syscall(libc::SYS_keyctl, 6, id, desc.as_mut_ptr(), 255);
        let end = desc.iter().position(|&c| c == 0).unwrap_or(0);
        (id, String::from_utf8_lossy(&desc[..end]).into_owned())
    }
}

/// Each container gets a new session keyring named `_ses.<id>`, unless --no-new-keyring keeps
/// the caller's. The probe reads it with keyctl(2); busybox has no keyctl.
#[test]
fn session_keyring_and_no_new_keyring() {
    require_root!();
    let p = pair("keyring");
    let b = Bundle::with_args(&["true"]);
    let probe = install_probe(&b, "keyring-probe", KEYRING_PROBE);
    b.edit(|c| c["process"]["args"] = json!([probe]));
    let (own_id, _) = own_session_keyring();
    let bundle = b.path().to_string_lossy().into_owned();
    for rt in p.both() {
        let id = rt.new_id();
        let out = rt.run(&b, &id);
        let text = out.ok().stdout.clone();
        let (serial, desc) = text.trim().split_once(' ').expect("probe output");
        assert_ne!(
            serial.parse::<i64>().ok(),
            Some(own_id),
            "{}: {text}",
            rt.flavor.name()
        );
        // keyring;uid;gid;perm;name
        assert!(
            desc.starts_with("keyring;0;0;") && desc.ends_with(&format!(";_ses.{id}")),
            "{}: {desc}",
            rt.flavor.name()
        );
        let id = rt.new_id();
        rt.track_id(&id);
        let out = rt.exec(&["run", "--no-new-keyring", "--bundle", &bundle, &id]);
        let text = out.ok().stdout.clone();
        let serial: i64 = text
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("serial");
        assert_eq!(
            serial,
            own_id,
            "{}: --no-new-keyring: {text}",
            rt.flavor.name()
        );
    }
}

fn poll_in(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    r > 0 && pfd.revents & libc::POLLIN != 0
}

/// --pidfd-socket (runc 1.2): the caller receives a pidfd of the init over SCM_RIGHTS; it
/// becomes readable when the container exits.
#[test]
fn pidfd_socket() {
    require_root!();
    let rt = Runtime::husk("pidfd");
    let b = Bundle::with_args(&["sleep", "100"]);
    let bundle = b.path().to_string_lossy().into_owned();
    for cmd in ["create", "run"] {
        let mut rx = FdReceiver::new("pidfd");
        let sock = rx.path.to_string_lossy().into_owned();
        let id = rt.new_id();
        let mut args = vec![cmd, "--pidfd-socket", &sock, "--bundle", &bundle];
        if cmd == "run" {
            args.insert(1, "--detach");
        }
        args.push(&id);
        rt.exec(&args).ok();
        let (fd, _) = rx.take().expect("a pidfd arrived");
        // SAFETY: the descriptor was just received and is ours.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let fdinfo = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
        let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
        assert!(
            fdinfo.lines().any(|l| l == format!("Pid:\t{pid}")),
            "{cmd}: the pidfd is not the init's ({pid}):\n{fdinfo}"
        );
        assert!(!poll_in(pidfd.as_raw_fd(), Duration::from_millis(100)));
        if cmd == "create" {
            rt.start(&id).ok();
        }
        rt.kill(&id, "KILL").ok();
        assert!(
            poll_in(pidfd.as_raw_fd(), WAIT),
            "{cmd}: the pidfd did not report the exit"
        );
        rt.delete(&id).ok();
    }
    rt.assert_host_clean(&[&b]);
}

/// --console-socket: the caller receives the pty master; the container's stdio is the slave.
#[test]
fn console_socket() {
    require_root!();
    let p = pair("console");
    let b = Bundle::new(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "tty; stty size; ls -l /dev/console | cut -c1; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; echo done"
        ]);
        c["process"]["consoleSize"] = json!({"height": 40, "width": 120});
    });
    let bundle = b.path().to_string_lossy().into_owned();
    let mut outs = Vec::new();
    for rt in p.both() {
        let mut rx = FdReceiver::new("console");
        let sock = rx.path.to_string_lossy().into_owned();
        let id = rt.new_id();
        rt.track_id(&id);
        rt.exec(&[
            "create",
            "--console-socket",
            &sock,
            "--bundle",
            &bundle,
            &id,
        ])
        .ok();
        let (fd, _) = rx.take().expect("a pty master arrived");
        // SAFETY: the descriptor was just received and is ours.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        rt.start(&id).ok();
        let text =
            String::from_utf8_lossy(&read_all_fd(master.as_raw_fd(), WAIT)).replace('\r', "");
        rt.wait_status(&id, "stopped", WAIT);
        rt.delete(&id).ok();
        outs.push(text);
    }
    common::assert_same("the console", &outs[0], &outs[1]);
    assert_eq!(outs[1], "/dev/pts/0\n40 120\nc\nall-ttys\ndone\n");
    // Without a socket, a terminal is refused, by both.
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).fails();
    }
    p.husk.assert_host_clean(&[&b]);
}

/// --log FILE --log-format json: a failure inside the container's set-up ends the log with a
/// {"level":"error","msg":...} line naming it (what containerd-shim reads), like runc's.
#[test]
fn log_json_on_a_setup_failure() {
    require_root!();
    let p = pair("logjson");
    let missing = temp_dir("gone").path().join("no-such-source");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/data", "type": "bind", "source": missing, "options": ["rbind"]
        }));
    });
    let bundle = b.path().to_string_lossy().into_owned();
    for rt in p.both() {
        let dir = temp_dir("log");
        let log = dir.path().join("log.json");
        let id = rt.new_id();
        let out = rt.exec_with(
            &["--log", &log.to_string_lossy(), "--log-format", "json"],
            &["create", "--bundle", &bundle, &id],
            COMMAND_TIMEOUT,
        );
        out.fails();
        let text = fs::read_to_string(&log).expect("the log was written");
        let lines = json_lines(&text);
        let last = lines.last().expect("a log line");
        assert_eq!(last["level"], "error", "{}: {text}", rt.flavor.name());
        let msg = last["msg"].as_str().expect("msg");
        assert!(
            msg.contains(&*missing.to_string_lossy()) && msg.contains("/data"),
            "{}: {msg}",
            rt.flavor.name()
        );
        assert!(last["time"].is_string(), "{last}");
        if rt.flavor == Flavor::Husk {
            // The one error is also the one line on stderr.
            assert_eq!(out.stderr_lines(), [msg], "{out}");
        }
        rt.state(&id).fails();
        husk_tests::remove_temp_dir(dir);
    }
    p.husk.assert_host_clean(&[&b]);
}
