//! Driving husk inside the VM: running it with a time limit, bundles that share one rootfs,
//! containers that are force-deleted whatever happens, and small assertion helpers whose
//! errors say what was read, where, and what was expected.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

/// Where the unified hierarchy is mounted in the guest.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The parent every check's cgroupsPath lives under (`/husk-vm/<check>`), so leftovers are
/// easy to find and the final check can insist on an empty hierarchy.
pub const CGROUP_PARENT: &str = "/husk-vm";

/// How long one husk invocation may take before it is killed. Software emulation makes husk
/// about ten times slower than on the host; a hung husk must still not stall the whole lane.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A block device the io checks can throttle (null_blk's nullb0).
#[derive(Debug, Clone)]
pub struct BlockDev {
    /// Device node in the guest (/dev/nullb0).
    pub path: PathBuf,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

impl BlockDev {
    /// `MAJ:MIN`, as cgroup files spell a device.
    pub fn id(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// Everything a check needs: where husk and the bundle are, and a scratch directory.
pub struct Env {
    /// The husk binary.
    pub husk: PathBuf,
    /// husk's `--root`.
    pub state_root: PathBuf,
    /// Scratch space (bundles, captured output).
    pub work: PathBuf,
    /// The shared read-only busybox rootfs every bundle points at.
    pub rootfs: PathBuf,
    /// config.json as `runc spec` writes it (terminal false).
    pub template: Value,
    /// The same from `runc spec --rootless` (Null when the image lacks it).
    pub rootless_template: Value,
    /// Kernel modules the host packed, by name: the `.ko` files to insmod, dependencies first.
    pub modules: PathBuf,
    /// null_blk's device, when the module loaded.
    pub nullb: Option<BlockDev>,
    /// Why there is no null_blk device, when there is none.
    pub nullb_error: Option<String>,
    seq: AtomicU32,
}

/// What one command did.
#[derive(Debug)]
pub struct Out {
    /// The command line, for messages.
    pub cmdline: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Out {
    /// The exit code; 128+N for a death by signal N (as a shell reports it).
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => -1,
        }
    }

    /// Fails with the command, its exit code and both outputs unless it exited 0.
    pub fn ok(self) -> Result<Out> {
        ensure!(self.status.success(), "{}", self.story("failed"));
        Ok(self)
    }

    /// The whole story of the command, for error messages.
    pub fn story(&self, what: &str) -> String {
        format!(
            "`{}` {what} (exit {}):\n  stdout: {}\n  stderr: {}",
            self.cmdline,
            self.code(),
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// Runs `cmd` with stdout/stderr captured in files (a container started by it may inherit
/// them and keep them open long after it returned: a pipe would never see EOF), killing it
/// after `timeout`.
pub fn run_captured(
    mut cmd: Command,
    stdin: Option<File>,
    work: &Path,
    seq: u32,
    timeout: Duration,
) -> Result<Out> {
    let cmdline = show(&cmd);
    let out_path = work.join(format!("cmd-{seq}.out"));
    let err_path = work.join(format!("cmd-{seq}.err"));
    let out =
        File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let err =
        File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
    cmd.stdout(out).stderr(err);
    match stdin {
        Some(f) => cmd.stdin(f),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting `{cmdline}`"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{cmdline}` did not finish within {}s and was killed; stderr so far: {}",
                timeout.as_secs(),
                fs::read_to_string(&err_path).unwrap_or_default().trim()
            );
        }
        sleep(Duration::from_millis(20));
    };
    Ok(Out {
        cmdline,
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

impl Env {
    /// The guest's layout, as `cargo xtask vm-test` packs it.
    pub fn new(template: Value) -> Env {
        Env {
            husk: PathBuf::from("/usr/bin/husk"),
            state_root: PathBuf::from("/run/husk"),
            work: PathBuf::from("/run/vmtests"),
            rootfs: PathBuf::from("/bundle/rootfs"),
            template,
            rootless_template: Value::Null,
            modules: PathBuf::from("/lib/modules/husk-vm"),
            nullb: None,
            nullb_error: None,
            seq: AtomicU32::new(0),
        }
    }

    /// A fresh number for a command's capture files.
    pub fn next(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// `husk --root ROOT ARGS...`, not yet run.
    pub fn husk_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.husk);
        cmd.arg("--root").arg(&self.state_root).args(args);
        cmd
    }

    /// Runs husk with ARGS; Ok whatever its exit code (see [`Out::ok`]).
    pub fn husk(&self, args: &[&str]) -> Result<Out> {
        run_captured(
            self.husk_cmd(args),
            None,
            &self.work,
            self.next(),
            COMMAND_TIMEOUT,
        )
    }

    /// Runs husk with ARGS and `input` on its stdin.
    pub fn husk_with_stdin(&self, args: &[&str], input: &str) -> Result<Out> {
        let n = self.next();
        let path = self.work.join(format!("cmd-{n}.in"));
        fs::write(&path, input).with_context(|| format!("writing {}", path.display()))?;
        let stdin = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        run_captured(
            self.husk_cmd(args),
            Some(stdin),
            &self.work,
            n,
            COMMAND_TIMEOUT,
        )
    }

    /// Starts husk with ARGS in the background, output to files.
    pub fn spawn_husk(&self, args: &[&str]) -> Result<Background> {
        let n = self.next();
        let mut cmd = self.husk_cmd(args);
        let cmdline = show(&cmd);
        let out = self.work.join(format!("cmd-{n}.out"));
        let err = self.work.join(format!("cmd-{n}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).with_context(|| format!("creating {}", out.display()))?)
            .stderr(File::create(&err).with_context(|| format!("creating {}", err.display()))?);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting `{cmdline}`"))?;
        Ok(Background {
            child,
            cmdline,
            out,
            err,
        })
    }

    /// Runs any program (busybox applets: insmod, dd, ...) with the usual time limit.
    pub fn sh(&self, program: &str, args: &[&str]) -> Result<Out> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        run_captured(cmd, None, &self.work, self.next(), COMMAND_TIMEOUT)
    }

    /// The bundle config for a container running `args`, in cgroup `/husk-vm/<name>`, with
    /// the shared rootfs (read-only, as `runc spec` has it).
    pub fn config(&self, name: &str, args: &[&str]) -> Value {
        let mut cfg = self.template.clone();
        cfg["process"]["args"] = json!(args);
        cfg["root"]["path"] = json!(self.rootfs);
        cfg["linux"]["cgroupsPath"] = json!(format!("{CGROUP_PARENT}/{name}"));
        cfg
    }

    /// Writes the bundle for `id` and returns its directory.
    pub fn write_bundle(&self, id: &str, cfg: &Value) -> Result<PathBuf> {
        let dir = self.work.join("bundles").join(id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = serde_json::to_string_pretty(cfg).context("serializing config.json")?;
        fs::write(dir.join("config.json"), text)
            .with_context(|| format!("writing {}/config.json", dir.display()))?;
        Ok(dir)
    }

    /// `husk create` for `cfg` (global flags first, e.g. `--systemd-cgroup`); the returned
    /// guard force-deletes the container when dropped.
    pub fn create_with<'a>(
        &'a self,
        global: &[&str],
        id: &str,
        cfg: &Value,
    ) -> Result<Container<'a>> {
        let bundle = self.write_bundle(id, cfg)?;
        let bundle_s = bundle.to_string_lossy().into_owned();
        // Deleted even if create half-failed: a failed create must leave nothing, and a
        // later check must not trip over this id.
        let container = Container {
            env: self,
            id: id.to_string(),
            global: global.iter().map(|s| s.to_string()).collect(),
            cgroup: cgroup_dir_of(cfg),
        };
        let mut args: Vec<&str> = global.to_vec();
        args.extend(["create", "--bundle", &bundle_s, id]);
        self.husk(&args)?.ok()?;
        Ok(container)
    }

    /// `husk create` then `husk start`: a running container.
    pub fn start<'a>(&'a self, id: &str, cfg: &Value) -> Result<Container<'a>> {
        let c = self.create_with(&[], id, cfg)?;
        c.start()?;
        Ok(c)
    }

    /// `husk run` in the foreground (husk deletes the container when it exits); the result
    /// whatever the container's exit code. The container is force-deleted afterwards in case
    /// husk left it behind.
    pub fn run(&self, id: &str, cfg: &Value) -> Result<Out> {
        let bundle = self.write_bundle(id, cfg)?;
        let bundle_s = bundle.to_string_lossy().into_owned();
        let out = self.husk(&["run", "--bundle", &bundle_s, id]);
        let _ = self.husk(&["delete", "--force", id]);
        let _ = fs::remove_dir_all(&bundle);
        out
    }

    /// Loads a kernel module the host packed (`<name>.list` names its files, dependencies
    /// first); a dependency already loaded is fine.
    pub fn load_module(&self, name: &str, params: &[&str]) -> Result<()> {
        let list = self.modules.join(format!("{name}.list"));
        let text = fs::read_to_string(&list).with_context(|| {
            format!(
                "reading {} (the host did not pack module {name})",
                list.display()
            )
        })?;
        let files: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if files.is_empty() {
            // Built into this kernel.
            return Ok(());
        }
        for (i, file) in files.iter().enumerate() {
            let path = self.modules.join(file);
            let path_s = path.to_string_lossy().into_owned();
            let mut args = vec![path_s.as_str()];
            if i + 1 == files.len() {
                args.extend_from_slice(params);
            }
            let out = self.sh("insmod", &args)?;
            if !out.status.success() && !out.stderr.contains("File exists") {
                bail!("{}", out.story("failed"));
            }
        }
        Ok(())
    }
}

/// The host directory of the cgroup a config asks for (cgroupfs-style paths only).
fn cgroup_dir_of(cfg: &Value) -> PathBuf {
    let rel = cfg["linux"]["cgroupsPath"].as_str().unwrap_or("");
    Path::new(CGROUP_ROOT).join(rel.trim_start_matches('/'))
}

/// A husk command left running in the background (`events` streams), killed on drop.
pub struct Background {
    child: Child,
    cmdline: String,
    /// Its stdout, as written so far.
    pub out: PathBuf,
    err: PathBuf,
}

impl Background {
    /// What it printed on stdout so far.
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for it to exit by itself; killed (and an error) after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<Out> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for a child")? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "`{}` did not exit within {}s; stdout so far: {}",
                    self.cmdline,
                    timeout.as_secs(),
                    self.stdout_now().trim()
                );
            }
            sleep(Duration::from_millis(50));
        };
        Ok(Out {
            cmdline: self.cmdline.clone(),
            status,
            stdout: self.stdout_now(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A created container, force-deleted on drop.
pub struct Container<'a> {
    env: &'a Env,
    /// Its id.
    pub id: String,
    global: Vec<String>,
    /// Its cgroup directory in the guest, as the config asked for it.
    pub cgroup: PathBuf,
}

impl Container<'_> {
    fn husk(&self, args: &[&str]) -> Result<Out> {
        let mut all: Vec<&str> = self.global.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        self.env.husk(&all)
    }

    /// `husk start`.
    pub fn start(&self) -> Result<()> {
        self.husk(&["start", &self.id])?.ok()?;
        Ok(())
    }

    /// `husk state` as JSON.
    pub fn state(&self) -> Result<Value> {
        let out = self.husk(&["state", &self.id])?.ok()?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("husk state printed invalid JSON: {}", out.stdout))
    }

    /// The `status` field of `husk state`.
    pub fn status(&self) -> Result<String> {
        Ok(self.state()?["status"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The init's pid in the guest.
    pub fn pid(&self) -> Result<i32> {
        let st = self.state()?;
        st["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|&p| p > 0)
            .with_context(|| format!("husk state has no pid: {st}"))
    }

    /// `husk exec ID ARGS...` in the foreground.
    pub fn exec(&self, args: &[&str]) -> Result<Out> {
        let mut all = vec!["exec", self.id.as_str()];
        all.extend_from_slice(args);
        self.husk(&all)
    }

    /// `husk exec -d ID ARGS...`: a process left running in the container.
    pub fn exec_detached(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["exec", "-d", self.id.as_str()];
        all.extend_from_slice(args);
        self.husk(&all)?.ok()?;
        Ok(())
    }

    /// `husk exec`, which must exit 0; its stdout, trimmed.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        Ok(self.exec(args)?.ok()?.stdout.trim().to_string())
    }

    /// Any husk subcommand taking the id last (`pause`, `resume`, `events --stats`, ...),
    /// with the container's global flags.
    pub fn cmd(&self, args: &[&str]) -> Result<Out> {
        let mut all = args.to_vec();
        all.push(&self.id);
        self.husk(&all)
    }

    /// `husk kill ID SIGNAL`, which must succeed.
    pub fn kill(&self, signal: &str) -> Result<()> {
        self.husk(&["kill", &self.id, signal])?.ok()?;
        Ok(())
    }

    /// `husk update ...` with `input` on stdin (for `-r -`).
    pub fn update_stdin(&self, input: &str) -> Result<Out> {
        let mut all: Vec<&str> = self.global.iter().map(String::as_str).collect();
        all.extend(["update", "-r", "-", &self.id]);
        self.env.husk_with_stdin(&all, input)
    }

    /// Waits until `husk state` says `status`.
    pub fn wait_status(&self, status: &str, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        wait_for(timeout, || {
            last = self.status()?;
            Ok(last == status)
        })
        .with_context(|| format!("container {} stayed {last:?}, not {status:?}", self.id))
    }

    /// Reads one file of the container's cgroup, trimmed.
    pub fn cg(&self, file: &str) -> Result<String> {
        read(&self.cgroup.join(file))
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.husk(&["delete", "--force", &self.id]);
        let _ = fs::remove_dir_all(self.env.work.join("bundles").join(&self.id));
    }
}

/// A file's contents, trimmed; the error names the file.
pub fn read(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

/// The value of `key` in a flat-keyed file (`key value` per line: memory.events, cpu.stat).
pub fn keyed(path: &Path, key: &str) -> Result<u64> {
    let text = read(path)?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .with_context(|| format!("{} has no numeric {key:?}: {text:?}", path.display()))
}

/// Polls `cond` every 50 ms until it is true or `timeout` passes (an error from `cond` ends
/// the wait at once).
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("still not true after {}s", timeout.as_secs_f32());
        }
        sleep(Duration::from_millis(50));
    }
}

/// Fails unless `actual == expected`, naming what was compared.
pub fn check_eq<T: PartialEq + std::fmt::Debug>(what: &str, actual: T, expected: T) -> Result<()> {
    ensure!(
        actual == expected,
        "{what}: got {actual:?}, expected {expected:?}"
    );
    Ok(())
}

/// Fails unless the cgroup file `dir/file` reads `expected` (trimmed).
pub fn check_file(dir: &Path, file: &str, expected: &str) -> Result<()> {
    let path = dir.join(file);
    check_eq(&path.display().to_string(), read(&path)?.as_str(), expected)
}

/// Every pid in a `cgroup.procs` file.
pub fn procs(dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    read(&path)?
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .with_context(|| format!("bad pid {l:?} in {}", path.display()))
        })
        .collect()
}

/// Sub-directories (child cgroups) of `dir`, by name.
pub fn children(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_dir_from_config() {
        let cfg = json!({"linux": {"cgroupsPath": "/husk-vm/x"}});
        assert_eq!(
            cgroup_dir_of(&cfg),
            PathBuf::from("/sys/fs/cgroup/husk-vm/x")
        );
    }

    #[test]
    fn keyed_file() {
        let dir = std::env::temp_dir().join(format!("vmtests-keyed-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("memory.events");
        fs::write(&f, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert_eq!(keyed(&f, "oom_kill").unwrap(), 1);
        assert_eq!(keyed(&f, "max").unwrap(), 3);
        assert!(keyed(&f, "nope").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
