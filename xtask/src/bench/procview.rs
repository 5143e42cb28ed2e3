//! procview against lxcfs: reads per second of /proc/meminfo (open, read to the end, close)
//! through husk-procview and through Debian's lxcfs, with 1 and 4 reader threads, next to the
//! host's own /proc/meminfo.
//!
//! The readers are this process's threads, moved for the measurement into a cgroup of their
//! own (a 512 MiB memory limit, the cpuset of the parent), so both servers render a container's
//! view rather than the host's; the process moves back and the cgroups are removed afterwards.
//! Both servers are this benchmark's children on private mount points in a temp dir (never the
//! system's /var/lib/lxcfs), stopped by pid and unmounted when done, on failure too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// How a server is started: its command, its mount point, a file that exists once mounted.
type Start<'a> = (Command, &'a Path, &'a str);

/// Reader threads per figure.
const THREADS: [usize; 2] = [1, 4];

/// A FUSE server this benchmark started; stopped and unmounted on drop.
struct Server {
    child: Child,
    mount: PathBuf,
}

impl Server {
    fn start(mut cmd: Command, mount: &Path, probe: &str) -> Result<Server> {
        std::fs::create_dir_all(mount).with_context(|| format!("mkdir {}", mount.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {:?}", cmd.get_program()))?;
        let server = Server {
            child,
            mount: mount.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mount.join(probe).exists() {
            if Instant::now() > deadline {
                bail!("{:?} did not mount {}", cmd.get_program(), mount.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) of our own child, not reaped yet.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let m = self.mount.to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if info
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(m.as_str()))
        {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: a valid C string; MNT_DETACH of the mount point this benchmark made.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// This process in a cgroup of its own (v1 memory, cpu, cpuacct, cpuset) while alive; moved
/// back to where it was and the cgroups removed on drop.
struct Placement {
    made: Vec<(PathBuf, PathBuf)>,
}

impl Placement {
    fn enter() -> Result<Placement> {
        let name = format!("husk-bench-procview-{}", std::process::id());
        let own = std::fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
        let mut p = Placement { made: Vec::new() };
        for controller in ["memory", "cpu", "cpuacct", "cpuset"] {
            let root = Path::new("/sys/fs/cgroup").join(controller);
            let Some(current) = own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, cs, path) = (f.next()?, f.next()?, f.next()?);
                cs.split(',')
                    .any(|c| c == controller)
                    .then(|| path.to_string())
            }) else {
                continue;
            };
            if !root.join("tasks").exists() {
                continue;
            }
            let back = root.join(current.trim_start_matches('/'));
            let dir = back.join(&name);
            if !dir.exists() {
                std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            }
            p.made.push((dir.clone(), back.clone()));
            match controller {
                "memory" => write(&dir.join("memory.limit_in_bytes"), "536870912")?,
                "cpuset" => {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(back.join(f))
                            .with_context(|| format!("read {}", back.join(f).display()))?;
                        write(&dir.join(f), v.trim())?;
                    }
                }
                _ => {}
            }
            write(&dir.join("cgroup.procs"), &std::process::id().to_string())?;
        }
        Ok(p)
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        for (dir, back) in self.made.iter().rev() {
            let _ = std::fs::write(back.join("cgroup.procs"), &me);
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value} to {}", path.display()))
}

/// Reads of `file` per second over `secs` with `threads` readers; and the bytes of one read.
fn rate(file: &Path, threads: usize, secs: f64) -> Result<(f64, usize)> {
    let len = std::fs::read(file)
        .with_context(|| format!("read {}", file.display()))?
        .len();
    if len == 0 {
        bail!("{} reads empty", file.display());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let counts: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<u64> {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(0)))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok((total as f64 / elapsed, len))
}

/// Measures the three sources; an `{"error": ...}` entry for one that could not run.
pub fn measure(quick: bool) -> Result<Value> {
    husk_tests::bundle::apt_install(&["lxcfs"])?;
    crate::run_step({
        let mut c = crate::cargo();
        c.args(["build", "--release", "-p", "husk-procview"]);
        c
    })?;
    let procview_bin = crate::target_dir()?.join("release/husk-procview");
    let secs = if quick { 1.0 } else { 3.0 };
    let tmp = tempfile::tempdir()?;

    let pv_mount = tmp.path().join("procview");
    let mut pv_cmd = Command::new(&procview_bin);
    pv_cmd.arg("--dir").arg(&pv_mount);
    let lx_mount = tmp.path().join("lxcfs");
    let mut lx_cmd = Command::new("lxcfs");
    lx_cmd
        .args(["-f", "--enable-cfs", "--pidfile"])
        .arg(tmp.path().join("lxcfs.pid"))
        .arg(&lx_mount);

    let _placed = Placement::enter()?;
    let mut out = Map::new();
    // What a container reads: its own copy of the tree (husk binds c/<key>/...).
    let sources: [(&str, Option<Start>, PathBuf); 3] = [
        (
            "procview",
            Some((pv_cmd, pv_mount.as_path(), "proc/meminfo")),
            pv_mount.join("c/bench/proc/meminfo"),
        ),
        (
            "lxcfs",
            Some((lx_cmd, lx_mount.as_path(), "proc/meminfo")),
            lx_mount.join("proc/meminfo"),
        ),
        ("host /proc", None, PathBuf::from("/proc/meminfo")),
    ];
    for (name, server, file) in sources {
        eprintln!("bench: /proc/meminfo through {name} ...");
        let run = || -> Result<Value> {
            let _server = match server {
                Some((cmd, mount, probe)) => Some(Server::start(cmd, mount, probe)?),
                None => None,
            };
            let mut fig = Map::new();
            for threads in THREADS {
                let (per_sec, len) = rate(&file, threads, secs)?;
                fig.insert(format!("reads/s, {threads} thread(s)"), json!(per_sec));
                fig.insert("bytes per read".into(), json!(len));
            }
            Ok(Value::Object(fig))
        };
        out.insert(
            name.into(),
            run().unwrap_or_else(|e| json!({"error": format!("{e:#}")})),
        );
    }
    Ok(Value::Object(out))
}

/// The section of the report's Markdown.
pub fn markdown(v: &Value) -> String {
    let mut s = String::new();
    let Some(sources) = v.as_object() else {
        return s;
    };
    let _ = writeln!(
        s,
        "\n## procview: /proc/meminfo reads per second (open, read, close)\n\n\
         | source | {} | bytes |\n|---|{}---|",
        THREADS
            .iter()
            .map(|t| format!("{t} thread(s)"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(THREADS.len())
    );
    for (name, fig) in sources {
        if let Some(e) = fig.get("error") {
            let _ = writeln!(s, "| {name} | error: {e} |");
            continue;
        }
        let mut row = format!("| {name} |");
        for t in THREADS {
            match fig[format!("reads/s, {t} thread(s)")].as_f64() {
                Some(r) => {
                    let _ = write!(row, " {r:.0} |");
                }
                None => row.push_str(" - |"),
            }
        }
        let _ = writeln!(row, " {} |", fig["bytes per read"]);
        s.push_str(&row);
    }
    let ratio = |t: usize| {
        let k = format!("reads/s, {t} thread(s)");
        match (v["procview"][&k].as_f64(), v["lxcfs"][&k].as_f64()) {
            (Some(p), Some(l)) if l > 0.0 => format!("{:.2}x", p / l),
            _ => "-".into(),
        }
    };
    let _ = writeln!(
        s,
        "\nprocview / lxcfs: {}\n",
        THREADS
            .iter()
            .map(|t| format!("{} with {t} thread(s)", ratio(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

#[cfg(test)]
mod tests {
    /// This section alone, as root: `cargo test -p xtask procview -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs root, apt and a release build; run by hand"]
    fn procview_and_lxcfs_both_serve_reads() {
        let v = super::measure(true).expect("measure");
        println!("{}", super::markdown(&v));
        for source in ["procview", "lxcfs", "host /proc"] {
            let r = v[source]["reads/s, 1 thread(s)"].as_f64();
            assert!(r.is_some_and(|r| r > 0.0), "{source}: {}", v[source]);
        }
    }
}
