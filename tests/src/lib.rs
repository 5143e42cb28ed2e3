//! The husk integration-test harness.
//!
//! - [`Runtime`] drives one runtime binary (husk, or runc as the oracle) with its own `--root`
//!   temp dir, captures every invocation's stdout/stderr, and on Drop force-deletes every
//!   container it created, kills leftover processes by pid (checking their start time), removes
//!   the tests' cgroups and its temp dirs: tests clean up even when they fail.
//! - [`Bundle`] is a fresh busybox bundle in a temp dir (see [`bundle`]) with a unique
//!   `linux.cgroupsPath` "/husk-test-..." so tests never touch host cgroups and can run in
//!   parallel.
//!
//! Which binaries: `HUSK_BIN` (else `<workspace>/target/debug/husk`) and `HUSK_ORACLE` (else
//! `runc` from PATH or /usr/sbin). Tests need root; without it they say so and return early.

pub mod bundle;
pub mod host;

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// How long one runtime invocation may take before the harness kills it (runc needs well
/// under a second for any of them; a hung runtime must not stall the suite).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// True when running as root (the integration tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns early from a test, saying so on stderr, when not running as root. This is a skip,
/// not a pass: the message is in the test output.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "SKIPPED {}: needs root (run `cargo xtask test` as root)",
                module_path!()
            );
            return;
        }
    };
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Cargo's target dir: `CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}

fn bin_from_env(var: &str, default: impl FnOnce() -> Option<PathBuf>) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(default)
        .unwrap_or_else(|| panic!("{var} is not set and no default binary was found"));
    assert!(
        path.is_file(),
        "{} ({var}) does not exist: build it first (`cargo build --workspace --bins`) or run \
         `cargo xtask test`",
        path.display()
    );
    path
}

/// Looks `name` up in PATH and the sbin directories (which a non-login root shell may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The husk binary under test: `HUSK_BIN`, else `<target>/debug/husk`.
pub fn husk_bin() -> PathBuf {
    bin_from_env("HUSK_BIN", || Some(target_dir().join("debug/husk")))
}

/// husk-init: `HUSK_INIT_BIN`, else `<target>/debug/husk-init`.
pub fn husk_init_bin() -> PathBuf {
    bin_from_env("HUSK_INIT_BIN", || {
        Some(target_dir().join("debug/husk-init"))
    })
}

/// The shim: `HUSK_SHIM_BIN`, else `<target>/debug/containerd-shim-husk-v2`.
pub fn husk_shim_bin() -> PathBuf {
    bin_from_env("HUSK_SHIM_BIN", || {
        Some(target_dir().join("debug/containerd-shim-husk-v2"))
    })
}

/// The reference runtime: `HUSK_ORACLE`, else runc from PATH or /usr/sbin.
pub fn oracle_bin() -> PathBuf {
    bin_from_env("HUSK_ORACLE", || which("runc"))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across this test process and concurrent ones: `PREFIX-PID-N`.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A temp dir for the tests: under $TMPDIR, named `husk-PREFIX-...`.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("husk-{prefix}-"))
        .tempdir()
        .expect("creating a temp dir")
}

/// Removes a temp dir only after detaching anything mounted below it, so a leaked bind mount
/// can never make the removal reach outside it.
pub fn remove_temp_dir(dir: TempDir) {
    host::detach_mounts_under(dir.path());
    if host::safe_to_remove(dir.path()) {
        drop(dir);
    } else {
        eprintln!(
            "leaving {} in place: mounts below it could not be detached",
            dir.keep().display()
        );
    }
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; 128+N when killed by signal N; -1 when the harness killed it on timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Files holding stdout/stderr: a created container keeps writing to them after `create`
    /// returned (runc's stdio pass-through without a terminal), so read them again later.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole story unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics unless the command exited non-zero (and was not killed on timeout).
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(
            self.code > 0,
            "command was expected to fail but exited {}:\n{self}",
            self.code
        );
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{self}"
        );
        self
    }

    /// stdout as written so far, re-read from its file (a container may still be writing).
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// stdout parsed as JSON, when the command succeeded and printed JSON.
    pub fn json(&self) -> Option<Value> {
        if !self.success() {
            return None;
        }
        serde_json::from_str(&self.stdout).ok()
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "$ {}", self.cmdline)?;
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Which runtime a binary is, judged from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Husk,
    Runc,
}

impl Flavor {
    pub fn of(bin: &Path) -> Flavor {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains("runc") {
            Flavor::Runc
        } else {
            Flavor::Husk
        }
    }

    /// The name `--version` starts with.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Husk => "husk",
            Flavor::Runc => "runc",
        }
    }
}

/// Runs a command with stdin from /dev/null and stdout/stderr into files under `scratch`,
/// killing its process group after `timeout`.
pub fn capture(mut cmd: Command, scratch: &Path, timeout: Duration) -> Output {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let stdout_path = scratch.join(format!("{n}.stdout"));
    let stderr_path = scratch.join(format!("{n}.stderr"));
    let out = File::create(&stdout_path).expect("creating a stdout file");
    let err = File::create(&stderr_path).expect("creating a stderr file");
    let cmdline = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning `{cmdline}`: {e}"));
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait().expect("waiting for a child") {
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                break status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1);
            }
            None if Instant::now() > deadline => {
                // SAFETY: plain syscall on the child's own process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                eprintln!("`{cmdline}` timed out after {timeout:?}: killed");
                break -1;
            }
            None => sleep(Duration::from_millis(5)),
        }
    };
    Output {
        cmdline,
        code,
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
        stdout_path,
        stderr_path,
    }
}

/// A fresh busybox bundle in a temp dir. config.json is `runc spec`'s with terminal false,
/// `process.args` ["sh"] and a unique `linux.cgroupsPath` "/husk-test-PID-N".
pub struct Bundle {
    dir: Option<TempDir>,
}

impl Bundle {
    /// A bundle whose config.json `edit` may change.
    pub fn new(edit: impl FnOnce(&mut Value)) -> Bundle {
        let dir = temp_dir("bundle");
        bundle::make(dir.path()).expect("making a busybox bundle");
        let b = Bundle { dir: Some(dir) };
        b.edit(|cfg| {
            cfg["linux"]["cgroupsPath"] = json!(format!("/{}", unique("husk-test")));
            edit(cfg)
        });
        b
    }

    /// A bundle running `args`.
    pub fn with_args(args: &[&str]) -> Bundle {
        Bundle::new(|cfg| cfg["process"]["args"] = json!(args))
    }

    /// A bundle running `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Bundle {
        Bundle::with_args(&["sh", "-c", script])
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("bundle dir").path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    pub fn config(&self) -> Value {
        let text = fs::read_to_string(self.config_path()).expect("reading config.json");
        serde_json::from_str(&text).expect("parsing config.json")
    }

    pub fn set_config(&self, cfg: &Value) {
        bundle::write_config(self.path(), cfg).expect("writing config.json");
    }

    /// Edits config.json in place.
    pub fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut cfg = self.config();
        f(&mut cfg);
        self.set_config(&cfg);
    }

    /// `process.args` = `sh -c SCRIPT`.
    pub fn set_sh(&self, script: &str) {
        self.edit(|cfg| cfg["process"]["args"] = json!(["sh", "-c", script]));
    }

    /// `linux.cgroupsPath`, when it is one of the tests' own.
    pub fn cgroups_path(&self) -> Option<String> {
        let cfg: Value = fs::read_to_string(self.config_path())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())?;
        cfg["linux"]["cgroupsPath"]
            .as_str()
            .filter(|p| p.trim_start_matches('/').starts_with("husk-test-"))
            .map(str::to_string)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroups_path() {
            host::remove_cgroup(&cg);
        }
        if let Some(dir) = self.dir.take() {
            remove_temp_dir(dir);
        }
    }
}

/// One runtime binary with its own `--root`. Dropping it cleans up everything it created.
pub struct Runtime {
    pub bin: PathBuf,
    pub flavor: Flavor,
    test: String,
    root: Option<TempDir>,
    scratch: Option<TempDir>,
    ids: Mutex<Vec<String>>,
    procs: Mutex<Vec<(i32, u64)>>,
    cgroups: Mutex<Vec<String>>,
}

impl Runtime {
    /// The binary under test ([`husk_bin`]); `test` names the test in container ids.
    pub fn husk(test: &str) -> Runtime {
        Runtime::with_bin(husk_bin(), test)
    }

    /// The reference runtime ([`oracle_bin`], runc).
    pub fn oracle(test: &str) -> Runtime {
        Runtime::with_bin(oracle_bin(), test)
    }

    pub fn with_bin(bin: PathBuf, test: &str) -> Runtime {
        let flavor = Flavor::of(&bin);
        Runtime {
            bin,
            flavor,
            test: test.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-"),
            root: Some(temp_dir("root")),
            scratch: Some(temp_dir("out")),
            ids: Mutex::new(Vec::new()),
            procs: Mutex::new(Vec::new()),
            cgroups: Mutex::new(Vec::new()),
        }
    }

    /// The `--root` dir.
    pub fn root(&self) -> &Path {
        self.root.as_ref().expect("root dir").path()
    }

    fn scratch(&self) -> &Path {
        self.scratch.as_ref().expect("scratch dir").path()
    }

    /// A new unique container id, remembered for cleanup.
    pub fn new_id(&self) -> String {
        let id = unique(&self.test);
        self.track_id(&id);
        id
    }

    /// Remembers `id` for `delete --force` on Drop.
    pub fn track_id(&self, id: &str) {
        let mut ids = self.ids.lock().expect("ids lock");
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    fn track_bundle(&self, b: &Bundle) {
        if let Some(cg) = b.cgroups_path() {
            let mut cgs = self.cgroups.lock().expect("cgroups lock");
            if !cgs.contains(&cg) {
                cgs.push(cg);
            }
        }
    }

    /// Remembers `pid` (with its start time) to be killed on Drop if still alive.
    pub fn track_pid(&self, pid: i32) {
        if let Some(start) = host::proc_starttime(pid) {
            self.procs.lock().expect("procs lock").push((pid, start));
        }
    }

    /// A command for `BIN --root ROOT` (add the subcommand and its arguments).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(self.root());
        cmd
    }

    /// `BIN --root ROOT GLOBAL... ARGS...` with a timeout.
    pub fn exec_with(&self, global: &[&str], args: &[&str], timeout: Duration) -> Output {
        let mut cmd = self.command();
        cmd.args(global).args(args);
        capture(cmd, self.scratch(), timeout)
    }

    /// `BIN --root ROOT ARGS...`.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_with(&[], args, COMMAND_TIMEOUT)
    }

    /// `BIN ARGS...` without `--root` (for `--version`, `spec`, ...), run in `cwd`.
    pub fn exec_plain(&self, args: &[&str], cwd: &Path) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).current_dir(cwd);
        capture(cmd, self.scratch(), COMMAND_TIMEOUT)
    }

    /// `create --bundle B ID`; records the init's pid for cleanup.
    pub fn create(&self, b: &Bundle, id: &str) -> Output {
        self.track_id(id);
        self.track_bundle(b);
        let bundle = b.path().to_string_lossy().into_owned();
        let out = self.exec(&["create", "--bundle", &bundle, id]);
        if out.success() {
            self.track_state_pid(id);
        }
        out
    }

    fn track_state_pid(&self, id: &str) {
        if let Some(pid) = self.state(id).json().and_then(|s| s["pid"].as_i64()) {
            self.track_pid(pid as i32);
        }
    }

    pub fn start(&self, id: &str) -> Output {
        self.exec(&["start", id])
    }

    /// `run --bundle B ID`: waits for the container and returns its exit code and output.
    pub fn run(&self, b: &Bundle, id: &str) -> Output {
        self.track_id(id);
        self.track_bundle(b);
        let bundle = b.path().to_string_lossy().into_owned();
        self.exec(&["run", "--bundle", &bundle, id])
    }

    /// `run --detach --bundle B ID`.
    pub fn run_detached(&self, b: &Bundle, id: &str) -> Output {
        self.track_id(id);
        self.track_bundle(b);
        let bundle = b.path().to_string_lossy().into_owned();
        let out = self.exec(&["run", "--detach", "--bundle", &bundle, id]);
        if out.success() {
            self.track_state_pid(id);
        }
        out
    }

    /// Runs bundle `b` in a new container and returns what it did.
    pub fn run_new(&self, b: &Bundle) -> Output {
        let id = self.new_id();
        self.run(b, &id)
    }

    pub fn state(&self, id: &str) -> Output {
        self.exec(&["state", id])
    }

    /// `state ID` parsed; panics when it fails or is not JSON.
    #[track_caller]
    pub fn state_json(&self, id: &str) -> Value {
        let out = self.state(id);
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"))
    }

    /// The `status` field of `state ID`.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state_json(id)["status"]
            .as_str()
            .expect("state has a string status")
            .to_string()
    }

    /// Polls `state ID` until its status is `want`; panics after `timeout`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.state_json(id);
            if st["status"] == want {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{id} did not reach status {want:?} within {timeout:?}; last state: {st}"
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.exec(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.exec(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.exec(&["delete", "--force", id])
    }

    pub fn list(&self, args: &[&str]) -> Output {
        let mut a = vec!["list"];
        a.extend_from_slice(args);
        self.exec(&a)
    }

    /// Entries in the `--root` dir (a failed create must leave none).
    pub fn root_entries(&self) -> Vec<String> {
        fs::read_dir(self.root())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Deletes everything this runtime created and kills leftovers; idempotent.
    pub fn cleanup(&self) {
        let ids: Vec<String> = self.ids.lock().map(|v| v.clone()).unwrap_or_default();
        for id in ids.iter().rev() {
            let st = self.exec_with(&[], &["state", id], Duration::from_secs(5));
            if let Some(pid) = st.json().and_then(|s| s["pid"].as_i64()) {
                self.track_pid(pid as i32);
            }
            if st.success() {
                self.exec_with(&[], &["delete", "--force", id], Duration::from_secs(10));
            }
        }
        let procs: Vec<(i32, u64)> = self.procs.lock().map(|v| v.clone()).unwrap_or_default();
        for (pid, start) in procs {
            host::kill_if_same(pid, start);
        }
        let cgs: Vec<String> = self.cgroups.lock().map(|v| v.clone()).unwrap_or_default();
        for cg in cgs {
            host::remove_cgroup(&cg);
        }
    }

    /// Cleans up, then panics if anything is left on the host: mounts under this runtime's
    /// dirs or the bundles', the bundles' cgroups, a changed /dev/null.
    #[track_caller]
    pub fn assert_host_clean(&self, bundles: &[&Bundle]) {
        // Deleted containers must already be gone: check before the harness's own cleanup.
        let mut dirs: Vec<&Path> = vec![self.root(), self.scratch()];
        dirs.extend(bundles.iter().map(|b| b.path()));
        let cgs: Vec<String> = bundles.iter().filter_map(|b| b.cgroups_path()).collect();
        let left = host::leftovers(&dirs, &cgs);
        assert!(
            left.is_empty(),
            "{} left on the host:\n{}",
            self.bin.display(),
            left.join("\n")
        );
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.cleanup();
        if let Some(d) = self.root.take() {
            remove_temp_dir(d);
        }
        if let Some(d) = self.scratch.take() {
            remove_temp_dir(d);
        }
    }
}
