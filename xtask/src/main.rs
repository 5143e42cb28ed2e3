//! `cargo xtask ...`: the project's set-up and automation.
//!
//! - `bundle DIR [--rootless] [-- ARGS...]`: a complete busybox OCI bundle.
//! - `test [-- CARGO_TEST_ARGS...]`: install what the tests need, lint, build, run every test.
//! - `demo`: build husk and show a container's lifecycle with it.
//! - `vm-test [-- CHECKS...]`: the cgroup v2 lane in a qemu VM (docs/cgroup-v2.md); `test` runs
//!   it after the host tests.
//! - `dist [--out DIR]`: release binaries, man pages, completions and install.sh (dist.rs).

mod bench;
mod dist;
mod integration;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use husk_tests::bundle;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "husk project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a busybox OCI bundle (rootfs + config.json like `runc spec` makes) in DIR.
    Bundle {
        dir: PathBuf,
        /// Start from `runc spec --rootless` (user namespace mapping your uid to root).
        #[arg(long)]
        rootless: bool,
        /// process.args (default: sh).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install test dependencies (as root, with apt-get), check fmt and clippy, build the
    /// binaries and run every test.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Skip the cgroup v2 VM lane that runs after the host tests (it says so).
        #[arg(long)]
        no_vm: bool,
        /// Arguments for `cargo test` (a filter, `--nocapture` after another `--`, ...).
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// Measure husk and husk-init side by side with runc, crun, tini, dumb-init and catatonit.
    Bench(bench::BenchArgs),
    /// Internal: a benchmark probe (floor, orphans, sigchild).
    #[command(name = "__bench-probe", hide = true)]
    BenchProbe {
        /// Probe name.
        name: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Boot a pure cgroup v2 kernel under qemu and run the v2 checks in it (docs/cgroup-v2.md).
    VmTest(vm::VmArgs),
    /// Build release binaries, man pages and shell completions into one directory with an
    /// install.sh (Debian's runc layout).
    Dist(dist::DistArgs),
    /// Build husk, make a bundle and show a container's lifecycle with it (needs root).
    Demo {
        /// Use this runtime binary instead of building husk (e.g. /usr/sbin/runc, to compare).
        #[arg(long, value_name = "PATH")]
        runtime: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Bundle {
            dir,
            rootless,
            args,
        } => cmd_bundle(&dir, rootless, args),
        Cmd::Test {
            no_lint,
            no_vm,
            test_args,
        } => cmd_test(no_lint, no_vm, &test_args),
        Cmd::VmTest(args) => vm::cmd_vm_test(&args),
        Cmd::Demo { runtime } => cmd_demo(runtime),
        Cmd::Dist(args) => workspace_root().and_then(|root| dist::cmd_dist(&args, &root)),
        Cmd::Bench(args) => bench::cmd_bench(&args),
        Cmd::BenchProbe { name, args } => match bench::run_probe(&name, &args) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The workspace root: xtask lives in `<root>/xtask`.
fn workspace_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest dir has no parent")
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if let Ok(root) = workspace_root() {
        cmd.current_dir(root);
    }
    cmd
}

fn show(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') || a.contains(';') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect();
    format!("{prog} {}", args.join(" "))
}

/// Runs `cmd` with inherited stdout/stderr (stdin from /dev/null), failing on non-zero exit.
fn run_step(mut cmd: Command) -> Result<()> {
    let line = show(&cmd);
    eprintln!("+ {line}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {line}"))?;
    ensure!(status.success(), "`{line}` failed: {status}");
    Ok(())
}

fn cmd_bundle(dir: &Path, rootless: bool, args: Vec<String>) -> Result<()> {
    bundle::ensure_busybox()?;
    let mut opts = bundle::Options {
        rootless,
        ..Default::default()
    };
    if !args.is_empty() {
        opts.args = args;
    }
    bundle::make_with(dir, &opts)
        .with_context(|| format!("making a bundle in {}", dir.display()))?;
    println!("bundle ready: {}", dir.display());
    Ok(())
}

/// Debian packages the tests use: the oracle runtimes, the init peers, probes' toolchain (gcc
/// -static needs libc6-dev), `ip netns`, `ps` and criu.
const TEST_PACKAGES: &[&str] = &[
    "runc",
    "crun",
    "busybox-static",
    "tini",
    "strace",
    "criu",
    "procps",
    "iproute2",
    "gcc",
    "libc6-dev",
    // newuidmap/newgidmap: security::rootless_as_an_unprivileged_user maps a 65536-id range.
    "uidmap",
    // procview::differential_against_lxcfs runs its own lxcfs on a private mount point.
    "lxcfs",
];

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn install_test_packages() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: test packages present: {}", TEST_PACKAGES.join(" "));
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "xtask: warning: not root, not installing {} (tests that need root will skip)",
            missing.join(" ")
        );
        return Ok(());
    }
    bundle::apt_get(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(&missing);
    bundle::apt_get(&args)
}

/// Cargo's target directory, from `cargo metadata`.
fn target_dir() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        out.status
    );
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

fn cmd_test(no_lint: bool, no_vm: bool, test_args: &[String]) -> Result<()> {
    install_test_packages()?;
    integration::install()?;
    if !no_lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        run_step(fmt).context("formatting: run `cargo fmt --all`")?;
        let mut clippy = cargo();
        clippy.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        run_step(clippy)?;
    }
    let mut build = cargo();
    // xtask is running: leave its binary alone.
    build.args(["build", "--workspace", "--exclude", "xtask", "--bins"]);
    run_step(build)?;

    let debug = target_dir()?.join("debug");
    let bins = [
        ("HUSK_BIN", "husk"),
        ("HUSK_INIT_BIN", "husk-init"),
        ("HUSK_SHIM_BIN", "containerd-shim-husk-v2"),
    ];
    let mut test = cargo();
    // Every test binary runs even when an earlier one fails; the exit code still says so.
    test.args(["test", "--workspace", "--no-fail-fast"]);
    for (var, name) in bins {
        let path = debug.join(name);
        ensure!(path.is_file(), "{} was not built", path.display());
        eprintln!("xtask: {var}={}", path.display());
        test.env(var, path);
    }
    if std::env::var_os("HUSK_ORACLE").is_none() {
        if let Some(runc) = husk_tests::which("runc") {
            test.env("HUSK_ORACLE", runc);
        }
    }
    test.envs(integration::env());
    test.args(test_args);
    let host = run_step(test);
    if no_vm {
        eprintln!("xtask: cgroup v2 VM lane SKIPPED (--no-vm): nothing was tested on cgroup v2");
        return host;
    }
    // The lane runs even when host tests failed: CI then reports both. A lane that cannot
    // run (no kernel, no qemu, no boot) is an error, never a silent pass.
    let lane = vm::run(&vm::Lane {
        bin_dir: &debug,
        release: false,
        timeout: Duration::from_secs(vm::DEFAULT_TIMEOUT_SECS),
        checks: &[],
    });
    match (host, lane) {
        (Ok(()), lane) => lane,
        (Err(host), Ok(())) => Err(host),
        (Err(host), Err(lane)) => Err(anyhow::anyhow!(
            "{host:#}\nand the cgroup v2 VM lane failed too: {lane:#}"
        )),
    }
}

/// Force-deletes the demo's containers and removes its temp dirs, whatever happened.
struct DemoGuard {
    husk: PathBuf,
    root: PathBuf,
    dirs: Vec<tempfile::TempDir>,
    ids: Vec<String>,
}

impl DemoGuard {
    fn husk(&self) -> Command {
        let mut cmd = Command::new(&self.husk);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// Prints the command line, runs it with the demo's stdout/stderr, returns its exit code.
    fn step(&self, args: &[&str]) -> Result<i32> {
        let mut cmd = self.husk();
        cmd.args(args);
        println!("\n$ {}", show(&cmd));
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {}", self.husk.display()))?;
        status
            .code()
            .with_context(|| format!("husk {} was killed: {status}", args.join(" ")))
    }

    fn must(&self, args: &[&str]) -> Result<()> {
        let code = self.step(args)?;
        ensure!(code == 0, "husk {} exited {code}", args.join(" "));
        Ok(())
    }

    fn state(&self, id: &str) -> Result<Value> {
        let out = self
            .husk()
            .args(["state", id])
            .stdin(Stdio::null())
            .output()
            .context("running husk state")?;
        ensure!(
            out.status.success(),
            "husk state {id} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        serde_json::from_slice(&out.stdout).context("husk state printed invalid JSON")
    }
}

impl Drop for DemoGuard {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self
                .husk()
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Never remove a dir with something still mounted below it.
        for dir in self.dirs.drain(..) {
            husk_tests::remove_temp_dir(dir);
        }
    }
}

fn demo_bundle(dir: &Path, script: &str) -> Result<()> {
    bundle::make_with(
        dir,
        &bundle::Options {
            rootless: false,
            args: vec!["sh".into(), "-c".into(), script.into()],
        },
    )?;
    // Without cgroupsPath runc (and husk) would name the cgroup after the id; keep it explicit.
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).context("reading config.json")?;
    let mut cfg: Value = serde_json::from_str(&text).context("parsing config.json")?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "demo".into());
    cfg["linux"]["cgroupsPath"] = json!(format!("/husk-demo-{name}"));
    bundle::write_config(dir, &cfg)
}

fn cmd_demo(runtime: Option<PathBuf>) -> Result<()> {
    ensure!(
        is_root(),
        "the demo runs containers with namespaces and cgroups: run it as root"
    );
    bundle::ensure_busybox()?;
    let husk = match runtime {
        Some(bin) => bin,
        None => {
            let mut build = cargo();
            build.args(["build", "--package", "husk", "--bin", "husk"]);
            run_step(build)?;
            target_dir()?.join("debug/husk")
        }
    };
    ensure!(husk.is_file(), "{} does not exist", husk.display());

    let tmp = tempfile::Builder::new()
        .prefix("husk-demo-")
        .tempdir()
        .context("creating a temp dir")?;
    let b1 = tmp.path().join("bundle1");
    let b2 = tmp.path().join("bundle2");
    demo_bundle(
        &b1,
        "echo hello from husk; echo hostname: $(hostname); id; sleep 2",
    )?;
    demo_bundle(&b2, "echo second container, exiting with 42; exit 42")?;
    let root = tempfile::Builder::new()
        .prefix("husk-demo-root-")
        .tempdir()
        .context("creating a temp dir")?;
    let pid = std::process::id();
    let id1 = format!("demo-{pid}");
    let id2 = format!("demo-run-{pid}");
    let guard = DemoGuard {
        husk,
        root: root.path().to_path_buf(),
        dirs: vec![root, tmp],
        ids: vec![id1.clone(), id2.clone()],
    };
    println!(
        "bundle: {} (busybox, config.json like `runc spec`)",
        b1.display()
    );
    let b1s = b1.to_string_lossy().into_owned();
    let b2s = b2.to_string_lossy().into_owned();

    guard.must(&["create", "--bundle", &b1s, &id1])?;
    guard.must(&["state", &id1])?;
    guard.must(&["list"])?;
    guard.must(&["start", &id1])?;
    guard.must(&["state", &id1])?;
    println!("\n(waiting for {id1} to exit)");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = guard.state(&id1)?;
        if st["status"] == "stopped" {
            break;
        }
        if Instant::now() > deadline {
            bail!("{id1} still {} after 30s", st["status"]);
        }
        sleep(Duration::from_millis(100));
    }
    guard.must(&["state", &id1])?;
    guard.must(&["delete", &id1])?;
    guard.must(&["list"])?;

    let code = guard.step(&["run", "--bundle", &b2s, &id2])?;
    println!("exit code: {code}");
    ensure!(
        code == 42,
        "husk run returned {code}, the container exited 42"
    );
    println!("\ndemo finished: both containers ran");
    drop(guard);
    Ok(())
}
