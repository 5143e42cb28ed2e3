//! The shim: containerd-shim-husk-v2 driving husk against containerd-shim-runc-v2 driving
//! runc, under one private containerd. Per shim process: VmRSS (/proc/PID/status) and PSS
//! (/proc/PID/smaps_rollup) with 1, 10 and 50 detached containers (one shim each, as
//! containerd starts them without a pod annotation), measured 3 s after the last start, and
//! the wall time of `ctr run --rm IMAGE ID true`.

mod containerd;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use self::containerd::{Containerd, IMAGE};
use super::stats::Summary;
use super::timing;

/// The report key of husk's shim.
const HUSK: &str = "containerd-shim-husk-v2 + husk";
/// The report key of the Go shim.
const GO: &str = "containerd-shim-runc-v2 + runc";

/// How long after the last start the shims are measured.
const SETTLE: Duration = Duration::from_secs(3);

/// A shim under test: how `ctr run` selects it.
struct Shim {
    name: &'static str,
    flags: Vec<String>,
}

fn shims(c: &Containerd, runc: &Path) -> Vec<Shim> {
    let p = |rel: &str| c.dir.join(rel).to_string_lossy().into_owned();
    vec![
        Shim {
            name: HUSK,
            flags: vec![
                "--runtime".into(),
                "io.containerd.husk.v2".into(),
                "--runtime-config-path".into(),
                p("husk.toml"),
            ],
        },
        Shim {
            name: GO,
            flags: vec![
                "--runtime".into(),
                "io.containerd.runc.v2".into(),
                "--runc-binary".into(),
                runc.to_string_lossy().into_owned(),
                "--runc-root".into(),
                p("runc-root"),
            ],
        },
    ]
}

/// `key:   N kB` from a /proc file.
fn proc_kb(pid: i32, file: &str, key: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Mean VmRSS, PSS and thread count over the shims running now.
fn shim_memory(c: &Containerd) -> Result<Value> {
    let pids = c.shim_pids();
    anyhow::ensure!(!pids.is_empty(), "no shim process found");
    let mean = |file: &str, key: &str| {
        let v: Vec<f64> = pids.iter().filter_map(|p| proc_kb(*p, file, key)).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    Ok(json!({
        "shims": pids.len(),
        "VmRSS per shim (kB)": mean("status", "VmRSS:"),
        "Pss per shim (kB)": mean("smaps_rollup", "Pss:"),
        "threads per shim": mean("status", "Threads:"),
    }))
}

/// Detached `sleep` containers, counted up to each of `counts`, measured at each.
fn memory(c: &Containerd, shim: &Shim, counts: &[usize]) -> Result<Value> {
    let mut out = Map::new();
    let mut started = 0;
    for &count in counts {
        while started < count {
            let id = format!("mem-{started}");
            let mut a: Vec<&str> = vec!["run", "-d", "--fifo-dir"];
            let fifo = c.dir.join("fifo").to_string_lossy().into_owned();
            a.push(&fifo);
            a.extend(shim.flags.iter().map(String::as_str));
            a.extend([IMAGE, &id, "sleep", "100000"]);
            c.ctr_ok(&a)
                .with_context(|| format!("{}: starting container {id}", shim.name))?;
            started += 1;
        }
        // Steady state, which is how shims spend their lives: start-up work done, event
        // connections to containerd closed (the husk shim closes its after 2 s idle).
        std::thread::sleep(SETTLE);
        out.insert(count.to_string(), shim_memory(c)?);
    }
    c.remove_all();
    Ok(Value::Object(out))
}

/// `ctr run --rm IMAGE ID true`: warm-up, then `n` timed runs.
fn run_true(c: &Containerd, shim: &Shim, n: usize) -> Result<Value> {
    let fifo = c.dir.join("fifo");
    let mut ms = Vec::new();
    for i in 0..n + 2 {
        let mut cmd = c.ctr();
        cmd.args(["run", "--rm", "--fifo-dir"])
            .arg(&fifo)
            .args(&shim.flags)
            .args([IMAGE, &format!("true-{i}"), "true"]);
        let run = timing::timed(&mut cmd).with_context(|| format!("{}: ctr run", shim.name))?;
        timing::reap_all();
        if i >= 2 {
            ms.push(run.ms);
        }
    }
    Ok(Summary::of(&ms).json())
}

/// Runs the shim section: `counts` containers for memory, `n` timed runs.
pub fn measure(shim_bin: &Path, husk: &Path, counts: &[usize], n: usize) -> Result<Value> {
    let runc: PathBuf = super::which("runc");
    let c = Containerd::start(shim_bin, husk)?;
    let mut out = Map::new();
    for shim in shims(&c, &runc) {
        eprintln!("bench: shim {} ...", shim.name);
        let v = memory(&c, &shim, counts)
            .and_then(|m| {
                Ok(json!({"memory": m, "ctr run --rm true (ms)": run_true(&c, &shim, n)?}))
            })
            .unwrap_or_else(|e| {
                eprintln!("bench: shim {} failed: {e:#}", shim.name);
                c.remove_all();
                json!({"error": format!("{e:#}")})
            });
        out.insert(shim.name.into(), v);
    }
    if let Ok(m) = std::fs::metadata(shim_bin) {
        out.insert("containerd-shim-husk-v2 bytes".into(), json!(m.len()));
    }
    Ok(Value::Object(out))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// The shim section of the Markdown report.
pub fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Shims (one private containerd 1.6; one shim per container)\n\n| figure | {HUSK} | {GO} | husk / Go |\n|---|---|---|---|"
    );
    if let Some(e) = r.get("error") {
        let _ = writeln!(s, "| error | {e} | | |");
        return s;
    }
    let (h, g) = (&r[HUSK], &r[GO]);
    let counts: Vec<String> = h["memory"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut counts: Vec<(usize, String)> = counts
        .into_iter()
        .filter_map(|k| Some((k.parse().ok()?, k)))
        .collect();
    counts.sort();
    for key in [
        "VmRSS per shim (kB)",
        "Pss per shim (kB)",
        "threads per shim",
    ] {
        for (_, n) in &counts {
            let (a, b) = (h["memory"][n][key].as_f64(), g["memory"][n][key].as_f64());
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
            let _ = writeln!(
                s,
                "| {key}, {n} containers | {} | {} | {} |",
                f(a),
                f(b),
                ratio(a, b)
            );
        }
    }
    let run = "ctr run --rm true (ms)";
    let cell = |v: &Value| match (v["median"].as_f64(), v["min"].as_f64(), v["p90"].as_f64()) {
        (Some(m), Some(lo), Some(hi)) => format!("{m:.1} ({lo:.1} / {hi:.1})"),
        _ => "-".into(),
    };
    let _ = writeln!(
        s,
        "| {run}, median (min / p90) | {} | {} | {} |",
        cell(&h[run]),
        cell(&g[run]),
        ratio(h[run]["median"].as_f64(), g[run]["median"].as_f64())
    );
    for (k, v) in [(HUSK, h), (GO, g)] {
        if let Some(e) = v.get("error") {
            let _ = writeln!(s, "\n{k} failed: {e}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim section alone, against the release binaries `cargo xtask bench` builds (as
    /// root, with containerd installed): `cargo test -p xtask shim_section -- --ignored`.
    #[test]
    #[ignore = "needs root, containerd and release binaries; run by hand"]
    fn shim_section_measures_both_shims() {
        timing::become_subreaper().expect("subreaper");
        let release = crate::target_dir().expect("target dir").join("release");
        let n = std::env::var("HUSK_BENCH_SHIM_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let r = measure(
            &release.join("containerd-shim-husk-v2"),
            &release.join("husk"),
            &[1, 10],
            n,
        )
        .expect("shim section");
        println!(
            "{}\n{}",
            serde_json::to_string_pretty(&r).expect("json"),
            markdown(&r)
        );
        for name in [HUSK, GO] {
            assert!(
                r[name]["memory"]["1"]["Pss per shim (kB)"]
                    .as_f64()
                    .unwrap_or(0.0)
                    > 0.0,
                "{name}: {r}"
            );
            assert_eq!(r[name]["memory"]["10"]["shims"], 10, "{name}: {r}");
            assert_eq!(r[name]["ctr run --rm true (ms)"]["n"], n, "{name}: {r}");
        }
    }
}
