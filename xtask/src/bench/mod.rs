//! `cargo xtask bench`: husk and husk-init measured side by side with runc, crun, tini,
//! dumb-init and catatonit in one run, reported as figures and as ratios to the best peer.
//!
//! crun 1.8 refuses this machine's hybrid cgroup layout (a cgroup2 mount next to v1), so the
//! whole benchmark re-executes itself in a private mount namespace where
//! /sys/fs/cgroup/unified is unmounted; every runtime runs there, for fairness. The host's mount
//! table is untouched (the namespace is private).

mod inits;
mod probes;
mod procview;
mod runtimes;
mod shim;
mod stats;
mod timing;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

pub use probes::run as run_probe;

/// Flags of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A smoke run: few repetitions, 1,000 orphans.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per figure (default 30, or 5 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
}

const INNER: &str = "HUSK_BENCH_INNER";

/// Entry point.
pub fn cmd_bench(args: &BenchArgs) -> Result<()> {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench needs root (it creates containers and namespaces)");
    }
    let ws = crate::workspace_root()?;
    if std::env::var_os(INNER).is_none() {
        husk_tests::bundle::apt_install(&[
            "runc",
            "crun",
            "tini",
            "dumb-init",
            "catatonit",
            "busybox-static",
            "containerd",
        ])?;
        crate::run_step({
            let mut c = crate::cargo();
            c.args(["build", "--release", "-p", "husk", "-p", "husk-init"])
                .args(["-p", "containerd-shim-husk-v2"]);
            c
        })?;
        let exe = std::env::current_exe()?;
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--"])
            .arg(exe)
            .arg("bench")
            .env(INNER, "1");
        if args.quick {
            c.arg("--quick");
        }
        if let Some(r) = args.reps {
            c.arg("--reps").arg(r.to_string());
        }
        let status = c.status().context("re-run the benchmark under unshare")?;
        if !status.success() {
            bail!("benchmark failed ({status})");
        }
        return Ok(());
    }
    inner(args, &ws)
}

fn inner(args: &BenchArgs, ws: &Path) -> Result<()> {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if is_mountpoint(unified) {
        let c = std::ffi::CString::new("/sys/fs/cgroup/unified")?;
        // SAFETY: umount2 in our private mount namespace only.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } < 0 {
            bail!(
                "unmount {} in the private namespace: {}",
                unified.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    timing::become_subreaper()?;
    let n = args.reps.unwrap_or(if args.quick { 5 } else { 30 });
    let orphans = if args.quick { 1_000 } else { 10_000 };
    let release = crate::target_dir()?.join("release");
    let husk = release.join("husk");
    let husk_init = release.join("husk-init");

    let tmp = tempfile::tempdir()?;
    let tb = tmp.path().join("true");
    let sb = tmp.path().join("sleep");
    for (dir, a) in [(&tb, vec!["true"]), (&sb, vec!["sleep", "100000"])] {
        let opts = husk_tests::bundle::Options {
            rootless: false,
            args: a.into_iter().map(String::from).collect(),
        };
        husk_tests::bundle::make_with(dir, &opts)?;
    }

    let mut report = Map::new();
    let machine = machine();
    report.insert("machine".into(), json!(machine));
    report.insert("repetitions".into(), json!(n));
    report.insert(
        "note".into(),
        json!("all runtimes ran in a private mount namespace with /sys/fs/cgroup/unified unmounted (crun 1.8 refuses the hybrid layout)"),
    );

    let mut rts = Map::new();
    for (name, bin) in [
        ("husk", husk.clone()),
        ("runc", which("runc")),
        ("crun", which("crun")),
    ] {
        if !bin.exists() {
            eprintln!("bench: {name} not found, skipped");
            continue;
        }
        eprintln!("bench: {name} ...");
        let rt = runtimes::Runtime {
            name: name.into(),
            bin,
        };
        match runtimes::measure(&rt, &tb, &sb, n) {
            Ok(f) => {
                rts.insert(name.into(), Value::Object(f.results.into_iter().collect()));
            }
            Err(e) => {
                eprintln!("bench: {name} failed: {e:#}");
                rts.insert(name.into(), json!({"error": format!("{e:#}")}));
            }
        }
    }
    let xtask = std::env::current_exe()?;
    let mut floor = Vec::new();
    for _ in 0..n {
        let mut c = Command::new(&xtask);
        c.args(["__bench-probe", "floor"]).arg(tb.join("rootfs"));
        floor.push(timing::timed(&mut c)?.ms);
    }
    rts.insert(
        "floor".into(),
        json!({"run": stats::Summary::of(&floor).json()}),
    );
    report.insert("runtimes".into(), Value::Object(rts));

    let mut ins = Map::new();
    for (name, bin) in [
        ("husk-init", husk_init.clone()),
        ("tini", which("tini")),
        ("tini-static", which("tini-static")),
        ("dumb-init", which("dumb-init")),
        ("catatonit", which("catatonit")),
    ] {
        if !bin.exists() {
            eprintln!("bench: {name} not found, skipped");
            continue;
        }
        eprintln!("bench: {name} ...");
        let init = inits::Init {
            name: name.into(),
            bin,
        };
        let v = inits::measure(&init, &xtask, n, orphans)
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        ins.insert(name.into(), v);
    }
    report.insert("inits".into(), Value::Object(ins));

    eprintln!("bench: shims ...");
    let counts: &[usize] = if args.quick { &[1, 10] } else { &[1, 10, 50] };
    let shim_bin = release.join("containerd-shim-husk-v2");
    let shims = shim::measure(&shim_bin, &release.join("husk"), counts, n)
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    report.insert("shim".into(), shims);

    eprintln!("bench: procview ...");
    let pv = procview::measure(args.quick).unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    report.insert("procview".into(), pv);

    let mut sizes = Map::new();
    for (name, bin) in [
        ("husk", husk),
        ("runc", which("runc")),
        ("crun", which("crun")),
        ("husk-init", husk_init),
        ("tini-static", which("tini-static")),
        ("dumb-init", which("dumb-init")),
        ("catatonit", which("catatonit")),
    ] {
        if let Ok(m) = std::fs::metadata(&bin) {
            sizes.insert(name.into(), json!(m.len()));
        }
    }
    report.insert("binary bytes".into(), Value::Object(sizes));

    let report = Value::Object(report);
    let md = markdown(&report);
    let out = ws.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), &md)?;
    println!("{md}");
    eprintln!("bench: report in {}", out.display());
    Ok(())
}

fn which(name: &str) -> PathBuf {
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn is_mountpoint(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(4) == Some(&*p.to_string_lossy()))
        })
        .unwrap_or(false)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cpus, {cpu}, kernel {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim()
    )
}

/// The median of a summary (or a plain number).
fn median(v: &Value) -> Option<f64> {
    v.get("median")
        .and_then(Value::as_f64)
        .or_else(|| v.as_f64())
}

/// Renders the report as Markdown tables, each row with husk's ratio to the best peer.
fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# husk benchmark\n\nMachine: {}. Repetitions: {}. {}\n",
        r["machine"].as_str().unwrap_or(""),
        r["repetitions"],
        r["note"].as_str().unwrap_or("")
    );
    let rts = r["runtimes"].as_object().cloned().unwrap_or_default();
    let names: Vec<&String> = rts.keys().collect();
    let _ = writeln!(s, "## Runtimes (median ms; min / p90 in brackets)\n");
    let _ = writeln!(
        s,
        "| figure | {} | husk / best peer |",
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|{}---|", "---|".repeat(names.len()));
    let figures = [
        "run",
        "create",
        "start",
        "wait",
        "delete",
        "state",
        "list",
        "kill",
        "exec true",
        "run peak RSS (kB)",
    ];
    for fig in figures {
        let mut row = format!("| {fig} |");
        for n in &names {
            let v = &rts[*n][fig];
            match (
                median(v),
                v.get("min").and_then(Value::as_f64),
                v.get("p90").and_then(Value::as_f64),
            ) {
                (Some(m), Some(lo), Some(hi)) => {
                    let _ = write!(row, " {m:.2} ({lo:.2} / {hi:.2}) |");
                }
                _ => row.push_str(" - |"),
            }
        }
        let _ = writeln!(s, "{row} {} |", ratio(&rts, "husk", fig, &["runc", "crun"]));
    }
    let _ = writeln!(
        s,
        "\nhusk run / floor: {}\n",
        match (median(&rts["husk"]["run"]), median(&rts["floor"]["run"])) {
            (Some(h), Some(f)) if f > 0.0 => format!("{:.2}x", h / f),
            _ => "-".into(),
        }
    );
    let _ = writeln!(s, "### 100 containers, 2 workers\n\n| runtime | create+start wall ms | delete wall ms | state bytes per container |\n|---|---|---|---|");
    for n in &names {
        let v = &rts[*n]["100 containers"];
        if v.is_object() {
            let _ = writeln!(
                s,
                "| {n} | {:.0} | {:.0} | {:.0} |",
                v["create+start wall (ms)"].as_f64().unwrap_or(0.0),
                v["delete wall (ms)"].as_f64().unwrap_or(0.0),
                v["state dir bytes per container"].as_f64().unwrap_or(0.0)
            );
        }
    }
    let ins = r["inits"].as_object().cloned().unwrap_or_default();
    let inames: Vec<&String> = ins.keys().collect();
    let _ = writeln!(
        s,
        "\n## Inits as PID 1\n\n| figure | {} | husk-init / best peer |",
        inames
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|{}---|", "---|".repeat(inames.len()));
    for fig in [
        "VmRSS as PID 1 (kB)",
        "Pss as PID 1 (kB)",
        "reap orphans (ms)",
        "SIGUSR1 forwarding (us)",
    ] {
        let mut row = format!("| {fig} |");
        for n in &inames {
            match median(&ins[*n][fig]) {
                Some(m) => {
                    let _ = write!(row, " {m:.1} |");
                }
                None => row.push_str(" - |"),
            }
        }
        let peers: Vec<&str> = inames
            .iter()
            .map(|n| n.as_str())
            .filter(|n| *n != "husk-init")
            .collect();
        let _ = writeln!(s, "{row} {} |", ratio(&ins, "husk-init", fig, &peers));
    }
    s.push_str(&shim::markdown(&r["shim"]));
    s.push_str(&procview::markdown(&r["procview"]));
    let _ = writeln!(
        s,
        "\n## Binary sizes (bytes)\n\n| binary | bytes |\n|---|---|"
    );
    for (k, v) in r["binary bytes"].as_object().cloned().unwrap_or_default() {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    s
}

fn ratio(group: &Map<String, Value>, ours: &str, fig: &str, peers: &[&str]) -> String {
    let best = peers
        .iter()
        .filter_map(|p| group.get(*p).and_then(|v| median(&v[fig])))
        .fold(f64::INFINITY, f64::min);
    match group.get(ours).and_then(|v| median(&v[fig])) {
        Some(m) if best.is_finite() && best > 0.0 => format!("{:.2}x", m / best),
        _ => "-".into(),
    }
}
