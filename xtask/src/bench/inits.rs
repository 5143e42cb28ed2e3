//! husk-init against tini, tini-static, dumb-init and catatonit: memory as PID 1, reaping
//! throughput and signal-forwarding latency, each init as PID 1 of its own pid namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::probes::monotonic_ns;
use super::stats::Summary;

/// An init under test and how it takes the child's command.
#[derive(Debug, Clone)]
pub struct Init {
    /// Report name.
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
}

/// `unshare --pid --fork --kill-child INIT -- ARGS`: the init is PID 1 and dies with unshare.
fn spawn(init: &Init, args: &[&str], stdout: Stdio) -> Result<Child> {
    Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(&init.bin)
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {} under unshare", init.name))
}

/// The pid of the init: unshare's only child.
fn init_pid(unshare: &Child) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let path = format!("/proc/{0}/task/{0}/children", unshare.id());
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("init under unshare {} did not appear", unshare.id());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn status_kb(pid: i32, file: &str, key: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn stop(mut child: Child) {
    // SAFETY: signals the unshare process we started; --kill-child takes the init down too.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// All figures for one init.
pub fn measure(init: &Init, xtask: &Path, n: usize, orphans: usize) -> Result<Value> {
    // Memory as PID 1 with one sleeping child.
    let child = spawn(init, &["sleep", "30"], Stdio::null())?;
    let pid = init_pid(&child)?;
    std::thread::sleep(Duration::from_millis(300));
    let rss = status_kb(pid, "status", "VmRSS:");
    let pss = status_kb(pid, "smaps_rollup", "Pss:");
    stop(child);

    // Reaping: time until `orphans` orphaned grandchildren are all reaped and the child exits.
    let x = xtask.to_string_lossy().to_string();
    let count = orphans.to_string();
    let t0 = Instant::now();
    let mut child = spawn(
        init,
        &[&x, "__bench-probe", "orphans", &count],
        Stdio::null(),
    )?;
    let status = child.wait()?;
    let reap_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !status.success() {
        bail!("{}: orphan storm exited with {status}", init.name);
    }

    // Signal forwarding: the child stamps CLOCK_MONOTONIC when SIGUSR1 arrives.
    let mut child = spawn(init, &[&x, "__bench-probe", "sigchild"], Stdio::piped())?;
    let pid = init_pid(&child)?;
    let mut lines = BufReader::new(child.stdout.take().context("probe stdout")?).lines();
    let ready = lines.next().transpose()?;
    if ready.as_deref() != Some("ready") {
        stop(child);
        bail!("{}: signal probe did not start", init.name);
    }
    let mut lat = Vec::new();
    for _ in 0..n + 3 {
        let t0 = monotonic_ns();
        // SAFETY: signals the init we started.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        let got: u64 = lines
            .next()
            .transpose()?
            .and_then(|l| l.trim().parse().ok())
            .context("probe answer")?;
        lat.push(got.saturating_sub(t0) as f64 / 1000.0);
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(child);
    let lat = Summary::of(&lat[3..]);
    Ok(json!({
        "VmRSS as PID 1 (kB)": rss,
        "Pss as PID 1 (kB)": pss,
        "reap orphans (ms)": reap_ms,
        "orphans": orphans,
        "SIGUSR1 forwarding (us)": lat.json(),
    }))
}
