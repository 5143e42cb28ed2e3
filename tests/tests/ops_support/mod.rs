//! Helpers shared by the operations tests (exec, terminal, operations, checkpoint): commands
//! with stdin or extra descriptors, a pty the test owns, and a console-socket receiver that
//! does what containerd's console socket does.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use husk_tests::{capture, temp_dir, Bundle, Output, Runtime};

/// Runs `BIN --root ROOT ARGS...` with `input` on stdin; output captured like the harness.
pub fn exec_with_stdin(rt: &Runtime, args: &[&str], input: &[u8]) -> Output {
    let scratch = temp_dir("stdin");
    let path = scratch.path().join("stdin");
    std::fs::write(&path, input).expect("write stdin file");
    let mut cmd = rt.command();
    cmd.args(args);
    let f = File::open(&path).expect("open stdin file");
    // capture() sets stdin to /dev/null; dup the file onto fd 0 in the child instead.
    let fd = f.as_raw_fd();
    // SAFETY: dup2 in the forked child before exec; fd stays open in the parent meanwhile.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = capture(cmd, scratch.path(), husk_tests::COMMAND_TIMEOUT);
    drop(f);
    husk_tests::remove_temp_dir(scratch);
    out
}

/// Runs `BIN --root ROOT ARGS...` with `files` open as fds 3, 4, ... in the runtime.
pub fn exec_with_fds(rt: &Runtime, args: &[&str], files: &[&File]) -> Output {
    let scratch = temp_dir("fds");
    let mut cmd = rt.command();
    cmd.args(args);
    let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: dup2 in the forked child before exec; the files stay open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            // First move every source out of the way of the targets, then place them.
            let mut tmp = Vec::new();
            for fd in &raw {
                let t = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if t < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                tmp.push(t);
            }
            for (i, t) in tmp.iter().enumerate() {
                if libc::dup2(*t, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*t);
            }
            Ok(())
        });
    }
    let out = capture(cmd, scratch.path(), husk_tests::COMMAND_TIMEOUT);
    husk_tests::remove_temp_dir(scratch);
    out
}

/// `run --detach` of `b`, asserting success; returns the id and the init's host pid.
#[track_caller]
pub fn run_detached(rt: &Runtime, b: &Bundle) -> (String, i32) {
    let id = rt.new_id();
    rt.run_detached(b, &id).ok();
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid") as i32;
    (id, pid)
}

/// The host pids of a v1/v2 cgroup path (from the pids or memory hierarchy), sorted.
pub fn cgroup_pids(cgroups_path: &str) -> Vec<i32> {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates = [
        format!("/sys/fs/cgroup/pids/{rel}/cgroup.procs"),
        format!("/sys/fs/cgroup/{rel}/cgroup.procs"),
    ];
    for c in candidates {
        if let Ok(text) = std::fs::read_to_string(&c) {
            let mut v: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            v.sort_unstable();
            return v;
        }
    }
    Vec::new()
}

/// True on a cgroup v2 (unified) host.
pub fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A cgroup control file of the container as the host sees it (v1: under the controller's
/// hierarchy; v2: the unified dir).
pub fn host_cgroup_file(controller: &str, cgroups_path: &str, file: &str) -> String {
    let rel = cgroups_path.trim_start_matches('/');
    let p = if is_v2() {
        format!("/sys/fs/cgroup/{rel}/{file}")
    } else {
        format!("/sys/fs/cgroup/{controller}/{rel}/{file}")
    };
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {p}: {e}"))
        .trim()
        .to_string()
}

// ---- ptys ----

/// A pty pair owned by the test: (master, slave).
pub fn open_pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: plain libc pty calls on descriptors this function owns.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(
            s >= 0,
            "open pty slave: {}",
            std::io::Error::last_os_error()
        );
        (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    }
}

/// Sets the window size of a pty (on the master: the foreground group of the slave gets
/// SIGWINCH).
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

/// The terminal settings of `fd` (lflag, oflag, iflag) to compare before and after.
pub fn term_flags(fd: RawFd) -> (u32, u32, u32) {
    // SAFETY: tcgetattr fills a valid termios.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd, &mut t), 0, "tcgetattr");
        (t.c_lflag, t.c_oflag, t.c_iflag)
    }
}

/// Writes all of `data` to `fd`.
pub fn write_fd(fd: RawFd, data: &[u8]) {
    // SAFETY: borrowing the fd as a File without taking ownership (ManuallyDrop).
    let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    f.write_all(data).expect("write to pty");
}

/// Reads from `fd` into `acc` until `acc` contains `needle` or `timeout` passes; returns
/// whether it was found.
pub fn read_until(fd: RawFd, acc: &mut String, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !acc.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read into a valid buffer.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return acc.contains(needle);
        }
        acc.push_str(&String::from_utf8_lossy(&buf[..r as usize]));
    }
    true
}

/// Spawns `BIN --root ROOT ARGS...` as a session leader whose controlling terminal (and
/// stdio) is `slave`, as a user's shell would run it.
pub fn spawn_on_pty(rt: &Runtime, args: &[&str], slave: &OwnedFd) -> Child {
    let mut cmd = rt.command();
    cmd.args(args);
    let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup slave"));
    cmd.stdin(dup(slave)).stdout(dup(slave)).stderr(dup(slave));
    // SAFETY: setsid and TIOCSCTTY in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn the runtime on a pty")
}

/// Waits for a child up to `timeout`; kills it and returns None when it does not exit.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            use std::os::unix::process::ExitStatusExt;
            return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Receives one descriptor sent with SCM_RIGHTS (what containerd's console socket does with
/// the pty master).
pub fn recv_fd(stream: &UnixStream, timeout: Duration) -> OwnedFd {
    stream
        .set_read_timeout(Some(timeout))
        .expect("set read timeout");
    // SAFETY: recvmsg into buffers that live for the call; CMSG macros walk our own buffer.
    unsafe {
        let mut data = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no control message with the fd");
        assert_eq!((*cmsg).cmsg_level, libc::SOL_SOCKET);
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
        // runc sends the name of the pty master as the payload.
        assert_eq!(&data[..n as usize], b"/dev/ptmx");
        OwnedFd::from_raw_fd(fd)
    }
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}
