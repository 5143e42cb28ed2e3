//! The runtime benchmarks: husk, runc and crun driven with the same bundles, one after another.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::stats::Summary;
use super::timing::{self, timed};

/// A runtime under test.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Short name for the report.
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
}

/// One runtime's figures, each a summary in milliseconds unless named otherwise.
pub struct Figures {
    /// name -> JSON summary.
    pub results: Vec<(String, Value)>,
}

struct Ctx<'a> {
    rt: &'a Runtime,
    root: tempfile::TempDir,
    n: usize,
    seq: usize,
}

impl Ctx<'_> {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.rt.bin);
        c.arg("--root").arg(self.root.path());
        c
    }

    fn id(&mut self, what: &str) -> String {
        self.seq += 1;
        format!(
            "bench-{}-{what}-{}-{}",
            self.rt.name,
            std::process::id(),
            self.seq
        )
    }

    fn state_pid(&self, id: &str) -> Result<i32> {
        let out = self.cmd().args(["state", id]).output()?;
        let v: Value = serde_json::from_slice(&out.stdout).context("parse state")?;
        Ok(v["pid"].as_i64().unwrap_or(0) as i32)
    }
}

/// Measures one runtime on the `true` bundle and the `sleep` bundle.
pub fn measure(rt: &Runtime, true_bundle: &Path, sleep_bundle: &Path, n: usize) -> Result<Figures> {
    // Every runtime writes its state under /tmp (a disk here): start each with nothing left to
    // write back from the build or from the runtime before, or the first one measured pays
    // for the others' journal commits.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let mut c = Ctx {
        rt,
        root: tempfile::tempdir()?,
        n,
        seq: 0,
    };
    let mut results = Vec::new();
    let tb = true_bundle.to_string_lossy().to_string();
    let sb = sleep_bundle.to_string_lossy().to_string();

    // run `true`: warm-up, then n runs; peak RSS from the same runs.
    for _ in 0..5 {
        let id = c.id("warm");
        timed(c.cmd().args(["run", "--bundle", &tb, &id]))?;
    }
    let mut run_ms = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..c.n {
        let id = c.id("run");
        let r = timed(c.cmd().args(["run", "--bundle", &tb, &id]))?;
        run_ms.push(r.ms);
        rss.push(r.maxrss_kb as f64);
    }
    results.push(("run".into(), Summary::of(&run_ms).json()));
    results.push(("run peak RSS (kB)".into(), Summary::of(&rss).json()));

    // The split: create / start / wait / delete.
    let (mut cr, mut st, mut wt, mut dl) = (vec![], vec![], vec![], vec![]);
    for _ in 0..c.n {
        let id = c.id("split");
        cr.push(timed(c.cmd().args(["create", "--bundle", &tb, &id]))?.ms);
        let pid = c.state_pid(&id)?;
        st.push(timed(c.cmd().args(["start", &id]))?.ms);
        let t0 = Instant::now();
        timing::wait_pid(pid);
        wt.push(t0.elapsed().as_secs_f64() * 1000.0);
        dl.push(timed(c.cmd().args(["delete", &id]))?.ms);
    }
    for (name, v) in [("create", cr), ("start", st), ("wait", wt), ("delete", dl)] {
        results.push((name.into(), Summary::of(&v).json()));
    }

    // state / list / kill / exec on one running container.
    let id = c.id("live");
    timed(c.cmd().args(["run", "--detach", "--bundle", &sb, &id]))?;
    let ops: [(&str, Vec<&str>); 4] = [
        ("state", vec!["state", &id]),
        ("list", vec!["list"]),
        ("kill", vec!["kill", &id, "CONT"]),
        ("exec true", vec!["exec", &id, "true"]),
    ];
    for (name, args) in ops {
        let mut v = Vec::new();
        for _ in 0..c.n {
            v.push(timed(c.cmd().args(&args))?.ms);
        }
        results.push((name.into(), Summary::of(&v).json()));
    }
    let _ = timed(c.cmd().args(["delete", "--force", &id]));
    timing::reap_all();

    results.push(("100 containers".into(), hundred(&c, &sb)?));
    timing::reap_all();
    Ok(Figures { results })
}

/// 100 containers created and started by 2 parallel workers, then deleted: wall times, and the
/// state dir's bytes per container while they run.
fn hundred(c: &Ctx, bundle: &str) -> Result<Value> {
    let ids: Vec<String> = (0..100)
        .map(|i| format!("bench-{}-many-{}-{i}", c.rt.name, std::process::id()))
        .collect();
    let root = c.root.path().to_path_buf();
    let bin = c.rt.bin.clone();
    let parallel = |args: &(dyn Fn(&str) -> Vec<String> + Sync)| -> Result<f64> {
        let t0 = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = ids
                .chunks(50)
                .map(|chunk| {
                    let (bin, root) = (&bin, &root);
                    s.spawn(move || -> Result<()> {
                        for id in chunk {
                            let mut cmd = Command::new(bin);
                            cmd.arg("--root").arg(root).args(args(id));
                            timed(&mut cmd)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
            }
            Ok(())
        })?;
        Ok(t0.elapsed().as_secs_f64() * 1000.0)
    };
    let up = parallel(&|id| {
        ["run", "--detach", "--bundle", bundle, id]
            .map(String::from)
            .to_vec()
    })?;
    let bytes = dir_bytes(&root);
    let down = parallel(&|id| ["delete", "--force", id].map(String::from).to_vec())?;
    Ok(json!({
        "create+start wall (ms)": up,
        "delete wall (ms)": down,
        "state dir bytes per container": bytes as f64 / 100.0,
    }))
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
