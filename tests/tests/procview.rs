//! procview (issue 10): with the annotation `io.husk.procview` = "true", a container reads its
//! own limits in /proc/meminfo, /proc/cpuinfo and /sys/devices/system/cpu/online, served by the
//! husk-procview FUSE server the test starts; without it, the host's.
//!
//! The server is the test's own child, mounted in a temp dir handed to husk through
//! HUSK_PROCVIEW_DIR; [`Server`]'s Drop stops it by pid and unmounts that dir even when an
//! assertion failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use husk_tests::{capture, husk_bin, require_root, target_dir, temp_dir, Bundle, Output, Runtime};
use serde_json::json;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

// Files are read with read(2) (grep, the shell's `read`): busybox `cat` uses sendfile(2), which
// a FUSE direct-I/O file of size 0 answers with EOF (docs/procview.md, "Known limits").
const SCRIPT: &str = "grep MemTotal /proc/meminfo; echo cpus=$(grep -c ^processor /proc/cpuinfo); \
                      echo nproc=$(nproc); read online < /sys/devices/system/cpu/online; \
                      echo online=$online; free";

/// The husk-procview binary: next to husk (HUSK_BIN), else in the target dir.
fn procview_bin() -> PathBuf {
    husk_bin()
        .parent()
        .map(|d| d.join("husk-procview"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| target_dir().join("debug/husk-procview"))
}

/// A running husk-procview mounted at `dir/m`; stopped and unmounted on drop.
struct Server {
    child: Child,
    mount: PathBuf,
    _dir: TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = temp_dir("procview");
        let mount = dir.path().join("m");
        let child = Command::new(procview_bin())
            .arg("--dir")
            .arg(&mount)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning husk-procview (cargo build --bins first)");
        let server = Server {
            child,
            mount,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while !server.mounted() {
            assert!(Instant::now() < deadline, "husk-procview did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn mounted(&self) -> bool {
        self.mount.join("proc/meminfo").exists()
    }

    fn mountinfo_has(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let m = self.mount.to_string_lossy().into_owned();
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(m.as_str()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child, which has not been reaped yet (its pid is ours).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // The server unmounts on SIGTERM; after a SIGKILL the mount is ours to remove.
        if self.mountinfo_has() {
            let c = std::ffi::CString::new(self.mount.to_string_lossy().into_owned())
                .expect("mount path");
            // SAFETY: a valid C string; MNT_DETACH of the dir this test mounted.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// `husk run` of bundle `b` with the server's dir in the environment; husk may start a server
/// there itself only when `server_bin` is given.
fn run_with(
    rt: &Runtime,
    b: &Bundle,
    procview_dir: &Path,
    scratch: &Path,
    server_bin: Option<&Path>,
) -> Output {
    let id = rt.new_id();
    let mut cmd = rt.command();
    let bin = server_bin.map_or_else(
        || PathBuf::from("/nonexistent/husk-procview"),
        Path::to_path_buf,
    );
    cmd.env("HUSK_PROCVIEW_DIR", procview_dir)
        .env("HUSK_PROCVIEW_BIN", bin)
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id);
    capture(cmd, scratch, Duration::from_secs(30))
}

/// `husk run` with a server already running (or deliberately none): husk starts no server.
fn run(rt: &Runtime, b: &Bundle, procview_dir: &Path, scratch: &Path) -> Output {
    run_with(rt, b, procview_dir, scratch, None)
}

/// A server husk started on demand at `mount`: stopped by pid (found by its --dir argument)
/// and unmounted on drop, even when the test fails.
struct Started {
    mount: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let wanted = self.mount.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.first().is_some_and(|a| a.ends_with("husk-procview")) && args.contains(&wanted)
            {
                // SAFETY: kill(2) of the server this test caused husk to start.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && self.mount.join("proc/meminfo").exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if info
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
        {
            let c = std::ffi::CString::new(wanted).expect("mount path");
            // SAFETY: a valid C string; MNT_DETACH of the mount this test caused.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn limited_bundle(annotated: bool) -> Bundle {
    Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", SCRIPT]);
        c["linux"]["resources"] = json!({
            "memory": {"limit": 67108864},
            "cpu": {"cpus": "0", "mems": "0"}
        });
        if annotated {
            c["annotations"] = json!({"io.husk.procview": "true"});
        }
    })
}

fn host_memtotal() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn host_cpus() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

#[test]
fn annotated_container_sees_its_limits() {
    require_root!();
    let server = Server::start();
    let rt = Runtime::husk("procview");
    let scratch = temp_dir("procview-out");
    let b = limited_bundle(true);
    let out = run(&rt, &b, &server.mount, scratch.path());
    out.ok();
    assert!(
        out.stdout.contains("MemTotal:          65536 kB\n"),
        "meminfo:\n{out}"
    );
    assert!(out.stdout.contains("cpus=1\n"), "cpuinfo:\n{out}");
    assert!(out.stdout.contains("nproc=1\n"), "nproc:\n{out}");
    assert!(out.stdout.contains("online=0\n"), "cpu/online:\n{out}");
    // busybox `free` takes total/used/free from sysinfo(2), which no /proc view can change;
    // its "available" column is /proc/meminfo's MemAvailable, so it is within the limit.
    let available = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(6))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        available.is_some_and(|a| a <= 65536),
        "free's available column should be within the limit:\n{out}"
    );
}

#[test]
fn container_without_annotation_sees_the_host() {
    require_root!();
    let server = Server::start();
    let rt = Runtime::husk("procview-off");
    let scratch = temp_dir("procview-out");
    let b = limited_bundle(false);
    let out = run(&rt, &b, &server.mount, scratch.path());
    out.ok();
    assert!(
        out.stdout.contains(&format!("{}\n", host_memtotal())),
        "host meminfo expected:\n{out}"
    );
    let cpus = format!("cpus={}\n", host_cpus());
    assert!(out.stdout.contains(&cpus), "host cpuinfo expected:\n{out}");
}

#[test]
fn no_server_is_a_warning_not_a_failed_start() {
    require_root!();
    let rt = Runtime::husk("procview-none");
    let scratch = temp_dir("procview-out");
    // A plain directory: no server is mounted there.
    let empty = temp_dir("procview-empty");
    let b = limited_bundle(true);
    let out = run(&rt, &b, empty.path(), scratch.path());
    out.ok();
    assert!(
        out.stdout.contains(&format!("{}\n", host_memtotal())),
        "host meminfo expected:\n{out}"
    );
    assert!(
        out.stderr.contains("procview: no husk-procview server"),
        "one warning line expected:\n{out}"
    );
}

#[test]
fn husk_starts_the_server_on_demand() {
    require_root!();
    let rt = Runtime::husk("procview-demand");
    let scratch = temp_dir("procview-out");
    let dir = temp_dir("procview-demand");
    let started = Started {
        mount: dir.path().join("m"),
    };
    let b = limited_bundle(true);
    let out = run_with(
        &rt,
        &b,
        &started.mount,
        scratch.path(),
        Some(&procview_bin()),
    );
    out.ok();
    assert!(
        out.stdout.contains("MemTotal:          65536 kB"),
        "the container's limit expected from a server husk started:\n{out}"
    );
    drop(started);
}
