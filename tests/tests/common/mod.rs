//! Helpers shared by the spec-field test files (spec_fields, namespaces, mounts, cgroups, hooks,
//! cli_flags, bad_input, cycles): the runc/husk pair, output comparison, static C probes built
//! with gcc, network namespaces made with `ip netns`, and leftover-process detection.
//!
//! Each test file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use husk_tests::{capture, host, target_dir, temp_dir, unique, Bundle, Output, Runtime};
use serde_json::Value;

/// How long tests wait for a status or a process.
pub const WAIT: Duration = Duration::from_secs(15);

/// The oracle (Debian's runc) and husk, each with its own `--root`.
pub struct Pair {
    pub oracle: Runtime,
    pub husk: Runtime,
}

pub fn pair(test: &str) -> Pair {
    Pair {
        oracle: Runtime::oracle(test),
        husk: Runtime::husk(test),
    }
}

impl Pair {
    /// Both runtimes, the oracle first.
    pub fn both(&self) -> [&Runtime; 2] {
        [&self.oracle, &self.husk]
    }

    /// Runs `b` under the oracle, then under husk.
    pub fn run(&self, b: &Bundle) -> (Output, Output) {
        let o = self.oracle.run_new(b);
        let h = self.husk.run_new(b);
        (o, h)
    }

    /// Runs `b` under both, requires both to exit 0, and returns both stdouts.
    #[track_caller]
    pub fn run_ok(&self, b: &Bundle) -> (String, String) {
        let (o, h) = self.run(b);
        o.ok();
        h.ok();
        (o.stdout, h.stdout)
    }

    /// Runs `b` under both and requires the same stdout from both; returns it.
    #[track_caller]
    pub fn run_same(&self, what: &str, b: &Bundle) -> String {
        let (o, h) = self.run_ok(b);
        assert_same(what, &o, &h);
        h
    }
}

/// Panics with a line diff unless the oracle's and husk's views are the same.
#[track_caller]
pub fn assert_same(what: &str, oracle: &str, husk: &str) {
    if oracle == husk {
        return;
    }
    let o: BTreeSet<&str> = oracle.lines().collect();
    let h: BTreeSet<&str> = husk.lines().collect();
    let only_o: Vec<&str> = o.difference(&h).copied().collect();
    let only_h: Vec<&str> = h.difference(&o).copied().collect();
    panic!(
        "{what} differs between runc and husk\n\
         --- only under runc ---\n{}\n--- only under husk ---\n{}\n\
         --- runc ---\n{oracle}\n--- husk ---\n{husk}",
        only_o.join("\n"),
        only_h.join("\n")
    );
}

/// /proc/self/mountinfo reduced to "mountpoint fstype mount-options super-options", sorted:
/// mount ids, peer groups and device numbers differ between any two runs.
pub fn mount_table(mountinfo: &str) -> String {
    let mut v: Vec<String> = host::parse_mountinfo(mountinfo)
        .into_iter()
        .map(|m| {
            format!(
                "{} {} {} {}",
                m.mount_point, m.fstype, m.mount_opts, m.super_opts
            )
        })
        .collect();
    v.sort();
    v.join("\n")
}

/// Serialises probe compilation inside one test process (the output path is shared).
static PROBE_LOCK: Mutex<()> = Mutex::new(());

/// A static C program compiled once with `gcc -static` into `<target>/husk-probes/NAME`, for
/// what busybox cannot show (keyctl, ...). Rebuilt when its source changes.
pub fn probe(name: &str, source: &str) -> PathBuf {
    let _guard = PROBE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join("husk-probes");
    fs::create_dir_all(&dir).expect("creating the probe dir");
    let bin = dir.join(name);
    let src = dir.join(format!("{name}.c"));
    if bin.is_file() && fs::read_to_string(&src).ok().as_deref() == Some(source) {
        return bin;
    }
    // Another test process may be building the same probe: build under a unique name and
    // rename into place, which is atomic.
    let tmp_src = dir.join(format!("{}.c", unique(name)));
    let tmp_bin = dir.join(unique(name));
    fs::write(&tmp_src, source).expect("writing probe source");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&tmp_bin)
        .arg(&tmp_src)
        .output()
        .expect("running gcc (is it installed?)");
    assert!(
        out.status.success(),
        "gcc -static {name}.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp_bin, &bin).expect("moving the probe into place");
    fs::rename(&tmp_src, &src).expect("moving the probe source into place");
    bin
}

/// Copies probe NAME into the bundle's rootfs as /bin/NAME and returns that container path.
pub fn install_probe(b: &Bundle, name: &str, source: &str) -> String {
    let bin = probe(name, source);
    let dest = b.rootfs().join("bin").join(name);
    fs::copy(&bin, &dest).expect("copying the probe into the rootfs");
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod probe");
    format!("/bin/{name}")
}

/// Lets a process whose root is an unprivileged host uid (a user namespace) reach the bundle:
/// temp dirs are 0700.
pub fn open_bundle_to_all(b: &Bundle) {
    fs::set_permissions(b.path(), fs::Permissions::from_mode(0o755)).expect("chmod bundle");
}

/// `readlink /proc/PID/ns/NAME` ("net:[4026531840]").
pub fn ns_id(pid: &str, name: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{name}: {e}"))
}

/// A network namespace made with `ip netns add` (a bind mount under /run/netns), deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new() -> NetNs {
        let name = unique("husk-test-netns");
        let out = Command::new(husk_tests::which("ip").expect("ip(8) is installed"))
            .args(["netns", "add", &name])
            .output()
            .expect("running ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        NetNs { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip netns exec NAME ARGS...` and returns its stdout; panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = Command::new(husk_tests::which("ip").expect("ip(8)"))
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("running ip netns exec");
        assert!(
            out.status.success(),
            "ip netns exec {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(ip) = husk_tests::which("ip") {
            let _ = Command::new(ip).args(["netns", "del", &self.name]).output();
        }
    }
}

/// Pids of live processes whose environment holds `marker` (an env var this test set on a
/// runtime invocation: the runtime, its children and hooks inherit it).
pub fn procs_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let needle = marker.as_bytes();
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || !host::alive(pid) {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == needle) {
            v.push(pid);
        }
    }
    v
}

/// Waits until no live process carries `marker`; returns those still alive after WAIT.
pub fn wait_no_marked_procs(marker: &str) -> Vec<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = procs_with_marker(marker);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A runtime invocation with extra environment, stdin from /dev/null, a timeout, and outputs in
/// `scratch`. Ids it names must be tracked by the caller (`rt.track_id`).
pub fn exec_env(
    rt: &Runtime,
    env: &[(&str, &str)],
    global: &[&str],
    args: &[&str],
    scratch: &Path,
) -> Output {
    let mut cmd = rt.command();
    cmd.envs(env.iter().copied()).args(global).args(args);
    capture(cmd, scratch, husk_tests::COMMAND_TIMEOUT)
}

/// Parses the JSON lines of a `--log-format json` file.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// Receives one message with an SCM_RIGHTS descriptor from `sock`; returns the fd and payload.
pub fn recv_fd(sock: RawFd) -> Option<(RawFd, Vec<u8>)> {
    let mut buf = [0u8; 4096];
    // Room for one cmsg carrying up to 4 fds.
    let mut cbuf = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header we then fill in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers sized as declared.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return None;
    }
    // SAFETY: walking the control buffer the kernel just filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
                return Some((fd, buf[..n as usize].to_vec()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    None
}

/// A descriptor and the payload it came with, if one arrived.
type Received = Option<(RawFd, Vec<u8>)>;

/// A unix socket listener in a temp dir that accepts one connection in a background thread and
/// receives one descriptor from it (a console master, a pidfd).
pub struct FdReceiver {
    pub path: PathBuf,
    dir: Option<tempfile::TempDir>,
    thread: Option<std::thread::JoinHandle<Received>>,
}

impl FdReceiver {
    pub fn new(prefix: &str) -> FdReceiver {
        use std::os::fd::AsRawFd;
        let dir = temp_dir(prefix);
        let path = dir.path().join("sock");
        let listener =
            std::os::unix::net::UnixListener::bind(&path).expect("binding the unix socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + WAIT;
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).ok()?;
                        stream.set_read_timeout(Some(WAIT)).ok()?;
                        let got = recv_fd(stream.as_raw_fd());
                        return got;
                    }
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return None,
                }
            }
        });
        FdReceiver {
            path,
            dir: Some(dir),
            thread: Some(thread),
        }
    }

    /// The descriptor and payload received, or None when nothing came within WAIT.
    pub fn take(&mut self) -> Option<(RawFd, Vec<u8>)> {
        self.thread.take()?.join().ok()?
    }
}

impl Drop for FdReceiver {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            husk_tests::remove_temp_dir(d);
        }
    }
}

/// Reads everything from `fd` until EOF, EIO (a pty whose slave side closed) or `timeout`.
pub fn read_all_fd(fd: RawFd, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r <= 0 {
            continue;
        }
        // SAFETY: reading into a stack buffer of the given size.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    out
}

/// Everything a runtime invocation left that a failing `create` must not: entries in `--root`,
/// the bundle's cgroup, mounts under the bundle and root, processes carrying `marker`.
pub fn leftovers_after_failure(rt: &Runtime, b: &Bundle, marker: &str) -> Vec<String> {
    let mut v: Vec<String> = rt
        .root_entries()
        .into_iter()
        .map(|e| format!("--root entry left: {e}"))
        .collect();
    let cgs: Vec<String> = b.cgroups_path().into_iter().collect();
    v.extend(host::leftovers(&[rt.root(), b.path()], &cgs));
    for pid in wait_no_marked_procs(marker) {
        let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        v.push(format!("process left: {pid} {cmd}"));
    }
    v
}

/// The host's uptime in seconds (first field of /proc/uptime).
pub fn host_uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .expect("reading /proc/uptime")
}

/// Field `n` (1-based, as proc(5) numbers them) of a /proc/PID/stat line.
pub fn stat_field(stat: &str, n: usize) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 3 is the first after "(comm) ".
    rest.split_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_string)
}

/// Whether this test process has capability number `cap` in its bounding set (this host may
/// run the tests without some, e.g. CAP_SYS_RESOURCE).
pub fn host_has_cap(cap: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << cap) != 0)
}

/// CAP_SYS_RESOURCE: raising rlimits and lowering oom_score_adj need it.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// This process's hard limit of `resource` (RLIM_INFINITY as u64::MAX).
pub fn own_hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return 0;
    }
    r.rlim_max
}
