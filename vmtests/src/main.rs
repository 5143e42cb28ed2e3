//! `husk-vmtests`: the cgroup v2 checks of `cargo xtask vm-test`, run inside a qemu VM whose
//! kernel has only the unified hierarchy (see docs/cgroup-v2.md).
//!
//! The VM's init runs it once; it prints one line per check on the serial console
//! (`PASS name`, `FAIL name: why`, `GAP name: what`), then the line the host parses:
//!
//! ```text
//! HUSK-VM-RESULT: 25 passed, 0 failed, 0 known-gap
//! ```
//!
//! It exits 0 when nothing failed, 1 otherwise. It changes the machine's cgroups and loads
//! kernel modules, so it refuses to run anywhere but in the VM (the image has a marker file).
//! `husk-vmtests helper ...` are probes run inside containers (see `helper.rs`).

mod bpf;
mod checks;
mod harness;
mod helper;
mod rootless;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use checks::{Outcome, CHECKS};
use harness::{BlockDev, Env};

/// Only the VM image has this file; on any other machine the suite refuses to run.
const GUEST_MARKER: &str = "/etc/husk-vm-guest";
/// The base config.json xtask packs (what `runc spec` writes, terminal false).
const TEMPLATE: &str = "/bundle/config.json";
/// The same from `runc spec --rootless`.
const TEMPLATE_ROOTLESS: &str = "/bundle/config-rootless.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("helper") {
        let code = helper::main(&args[1..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match suite(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            println!("HUSK-VM-ERROR: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Names of checks to run: the arguments, else `husk.filter=a,b` on the kernel command line
/// (how `cargo xtask vm-test -- NAME...` reaches the guest), else all of them.
fn wanted(args: &[String]) -> Vec<String> {
    if !args.is_empty() {
        return args.to_vec();
    }
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("husk.filter="))
        .map(|f| {
            f.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the checks; Ok(true) when none failed.
fn suite(args: &[String]) -> Result<bool> {
    if !Path::new(GUEST_MARKER).exists() {
        bail!(
            "{GUEST_MARKER} is missing: husk-vmtests only runs inside the VM of \
             `cargo xtask vm-test` (it loads modules and rewrites /sys/fs/cgroup)"
        );
    }
    let text = fs::read_to_string(TEMPLATE).with_context(|| format!("reading {TEMPLATE}"))?;
    let template: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {TEMPLATE}"))?;
    let mut env = Env::new(template);
    if let Ok(text) = fs::read_to_string(TEMPLATE_ROOTLESS) {
        env.rootless_template =
            serde_json::from_str(&text).with_context(|| format!("parsing {TEMPLATE_ROOTLESS}"))?;
    }
    for dir in [&env.work, &env.state_root] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match setup_nullb(&env) {
        Ok(dev) => env.nullb = Some(dev),
        Err(e) => env.nullb_error = Some(format!("{e:#}")),
    }

    let filter = wanted(args);
    let selected: Vec<_> = CHECKS
        .iter()
        .filter(|(name, _)| {
            filter.is_empty() || filter.iter().any(|f| f == name) || *name == "no_cgroup_left"
        })
        .collect();
    if selected.len() == 1 && !filter.is_empty() {
        bail!(
            "no check matches {filter:?}; checks: {}",
            CHECKS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
        );
    }
    println!("HUSK-VM-BEGIN: {} checks", selected.len());
    let (mut passed, mut failed, mut gaps) = (0, 0, 0);
    let suite_start = Instant::now();
    for (name, check) in selected {
        let t = Instant::now();
        let res = check(&env);
        let secs = t.elapsed().as_secs_f32();
        match res {
            Ok(Outcome::Pass) => {
                passed += 1;
                println!("PASS {name} ({secs:.1}s)");
            }
            Ok(Outcome::KnownGap(what)) => {
                gaps += 1;
                println!("GAP  {name} ({secs:.1}s): {what}");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name} ({secs:.1}s): {}", indent(&format!("{e:#}")));
            }
        }
    }
    println!(
        "HUSK-VM-TIME: {:.1}s for the checks",
        suite_start.elapsed().as_secs_f32()
    );
    println!("HUSK-VM-RESULT: {passed} passed, {failed} failed, {gaps} known-gap");
    Ok(failed == 0)
}

/// Multi-line error text indented under its FAIL line.
fn indent(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\n    ")
}

/// Loads null_blk (one memory-less device, what the io and device checks use) and finds its
/// node.
fn setup_nullb(env: &Env) -> Result<BlockDev> {
    env.load_module("null_blk", &["nr_devices=1"])?;
    let sys = Path::new("/sys/block/nullb0/dev");
    let mut dev = None;
    harness::wait_for(std::time::Duration::from_secs(10), || {
        dev = fs::read_to_string(sys).ok();
        Ok(dev.is_some())
    })
    .with_context(|| format!("{} never appeared after loading null_blk", sys.display()))?;
    let text = dev.unwrap_or_default();
    let (major, minor) = text
        .trim()
        .split_once(':')
        .with_context(|| format!("{} holds {text:?}", sys.display()))?;
    let path = PathBuf::from("/dev/nullb0");
    harness::wait_for(std::time::Duration::from_secs(10), || Ok(path.exists()))
        .context("/dev/nullb0 never appeared (devtmpfs)")?;
    Ok(BlockDev {
        path,
        major: major.parse().context("null_blk major")?,
        minor: minor.parse().context("null_blk minor")?,
    })
}
