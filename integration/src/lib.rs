//! Harness for end-to-end tests with a real containerd (Debian's package): a private
//! containerd (own config, root, state dir and sockets in a temp dir) with a locally built
//! busybox image imported, driven with `ctr`, through husk's shim (`io.containerd.husk.v2`) or
//! containerd-shim-runc-v2 with `BinaryName` pointing at husk (through a wrapper that logs the
//! command lines). Dropping a [`Containerd`] removes everything it made, containers, shims,
//! mounts, cgroups and the daemon, even when the test failed.

pub mod archive;
pub mod cri;
pub mod docker;
pub mod image;
pub mod podman;
pub mod pty;
pub mod snippets;
pub mod tmux;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use husk_tests::Output;
use tempfile::TempDir;

/// How long one `ctr` command may take.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// containerd and ctr: `HUSK_CONTAINERD` / `HUSK_CTR` (set by `cargo xtask test`), else
/// from PATH.
pub fn containerd_bins() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .or_else(|| husk_tests::which(name))
    };
    Some((
        find("HUSK_CONTAINERD", "containerd")?,
        find("HUSK_CTR", "ctr")?,
    ))
}

/// Returns early from a test when it cannot run here (not root, or no containerd), saying so.
#[macro_export]
macro_rules! require_containerd {
    () => {
        husk_tests::require_root!();
        if $crate::containerd_bins().is_none() {
            eprintln!(
                "SKIPPED {}: containerd/ctr not installed (`cargo xtask test` installs them)",
                module_path!()
            );
            return;
        }
    };
}

/// Which shim a scenario runs containers through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shim {
    /// husk's own shim, `io.containerd.husk.v2`.
    Husk,
    /// containerd-shim-runc-v2 with `--runc-binary` = a wrapper logging argv, then husk.
    RuncV2,
    /// husk's shim driving Debian's runc (`BinaryName` = runc): the shim as a drop-in for
    /// containerd-shim-runc-v2.
    HuskWithRunc,
}

/// A private containerd.
pub struct Containerd {
    tmp: Option<TempDir>,
    /// The temp dir holding everything.
    pub dir: PathBuf,
    /// containerd's gRPC socket.
    pub address: String,
    /// The namespace the test uses (also the containers' cgroup parent).
    pub namespace: String,
    containerd: PathBuf,
    ctr: PathBuf,
    husk: PathBuf,
    child: Option<Child>,
    scratch: PathBuf,
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

impl Containerd {
    /// Sets up and starts a containerd with the busybox image imported.
    pub fn start() -> Result<Containerd> {
        let (containerd, ctr) = containerd_bins().context("containerd is not installed")?;
        let husk = husk_tests::husk_bin();
        let shim = husk_tests::husk_shim_bin();
        // Short: unix socket paths must fit 108 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("husk-ctrd-")
            .tempdir_in("/tmp")
            .context("creating a temp dir")?;
        let dir = tmp.path().to_path_buf();
        let namespace = husk_tests::unique("husk-test-ctrd");
        let bin = dir.join("bin");
        for d in [
            "bin",
            "root",
            "state",
            "fifo",
            "scratch",
            "husk-root",
            "runc-root",
        ] {
            fs::create_dir_all(dir.join(d))?;
        }
        symlink(&shim, bin.join("containerd-shim-husk-v2"))?;
        write_exec(
            &bin.join("husk-logged"),
            &format!(
                "#!/bin/sh\n# Records the command lines containerd-shim-runc-v2 runs, then runs husk.\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
                dir.join("runc-argv.log").display(),
                husk.display()
            ),
        )?;
        fs::write(
            dir.join("husk.toml"),
            format!("Root = \"{}\"\n", dir.join("husk-root").display()),
        )?;
        if let Some(runc) = husk_tests::which("runc") {
            fs::write(
                dir.join("husk-runc.toml"),
                format!(
                    "BinaryName = \"{}\"\nRoot = \"{}\"\n",
                    runc.display(),
                    dir.join("runc-root").display()
                ),
            )?;
        }
        let address = dir.join("c.sock").to_string_lossy().into_owned();
        fs::write(
            dir.join("config.toml"),
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{address}"
[debug]
  level = "debug"
"#,
                root = dir.join("root").display(),
                state = dir.join("state").display(),
            ),
        )?;
        let mut c = Containerd {
            tmp: Some(tmp),
            scratch: dir.join("scratch"),
            dir,
            address,
            namespace,
            containerd,
            ctr,
            husk,
            child: None,
        };
        c.spawn()?;
        let archive = image::build(&c.dir)?;
        let archive = archive.to_string_lossy().into_owned();
        let out = c.ctr(&["images", "import", &archive]);
        if !out.success() {
            bail!("importing the image failed:\n{out}");
        }
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let path = format!(
            "{}:{}:/usr/local/sbin:/usr/sbin:/sbin",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.containerd);
        cmd.arg("--config").arg(self.dir.join("config.toml"));
        let child = spawn_daemon(cmd, &self.dir.join("containerd.log"), &path)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ctr(&["version"]).success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("containerd did not come up:\n{}", self.log());
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10s). Shims and containers stay.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(10));
        }
    }

    /// Stops containerd and starts it again with the same config and state.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Runs `ctr --address A --namespace NS ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.ctr);
        cmd.args(["--address", &self.address, "--namespace", &self.namespace])
            .args(args);
        husk_tests::capture(cmd, &self.scratch, CTR_TIMEOUT)
    }

    /// The same command, as a `Command` (for running under a pty).
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.args(["--address", &self.address, "--namespace", &self.namespace])
            .args(args);
        cmd
    }

    /// `ctr run` flags selecting `shim` (and keeping FIFOs in the temp dir).
    pub fn runtime_flags(&self, shim: Shim) -> Vec<String> {
        let mut f = vec!["--fifo-dir".to_string(), self.fifo_dir()];
        match shim {
            Shim::Husk => f.extend([
                "--runtime".into(),
                "io.containerd.husk.v2".into(),
                "--runtime-config-path".into(),
                self.dir.join("husk.toml").to_string_lossy().into_owned(),
            ]),
            Shim::HuskWithRunc => f.extend([
                "--runtime".into(),
                "io.containerd.husk.v2".into(),
                "--runtime-config-path".into(),
                self.dir
                    .join("husk-runc.toml")
                    .to_string_lossy()
                    .into_owned(),
            ]),
            Shim::RuncV2 => f.extend([
                "--runtime".into(),
                "io.containerd.runc.v2".into(),
                "--runc-binary".into(),
                self.dir
                    .join("bin/husk-logged")
                    .to_string_lossy()
                    .into_owned(),
                "--runc-root".into(),
                self.dir.join("runc-root").to_string_lossy().into_owned(),
            ]),
        }
        f
    }

    /// Where ctr puts FIFOs.
    pub fn fifo_dir(&self) -> String {
        self.dir.join("fifo").to_string_lossy().into_owned()
    }

    /// `ctr run [flags] IMAGE ID ARGS...` through `shim`.
    pub fn run(&self, shim: Shim, extra: &[&str], id: &str, args: &[&str]) -> Output {
        let flags = self.runtime_flags(shim);
        let mut a: Vec<&str> = vec!["run"];
        a.extend(flags.iter().map(String::as_str));
        a.extend_from_slice(extra);
        a.push(image::IMAGE);
        a.push(id);
        a.extend_from_slice(args);
        self.ctr(&a)
    }

    /// The task's status and pid from `ctr task ls`.
    pub fn task(&self, id: &str) -> Option<(String, i32)> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| {
                (
                    f.get(2).map(|s| s.to_string()).unwrap_or_default(),
                    f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0),
                )
            })
        })
    }

    /// Polls `ctr task ls` until the task has `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.task(id).is_some_and(|(s, _)| s == status) {
                return true;
            }
            sleep(Duration::from_millis(100));
        }
        false
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// The command lines containerd-shim-runc-v2 ran (one per line).
    pub fn runc_argv(&self) -> String {
        fs::read_to_string(self.dir.join("runc-argv.log")).unwrap_or_default()
    }

    /// Pids of the shims serving this containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c).replace('\0', " ");
                        c.contains("containerd-shim") && c.contains(&self.address)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Bundles' shim socket addresses, from the state dir.
    fn shim_sockets(&self) -> Vec<PathBuf> {
        let base = self
            .dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace);
        let Ok(rd) = fs::read_dir(base) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| fs::read_to_string(e.path().join("address")).ok())
            .map(|a| PathBuf::from(a.trim().trim_start_matches("unix://")))
            .collect()
    }

    fn cleanup(&mut self) {
        if self.child.is_some() {
            for id in self.ctr(&["task", "ls", "-q"]).stdout.lines() {
                let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline && !self.ctr(&["task", "rm", id]).success() {
                    sleep(Duration::from_millis(100));
                }
            }
            for id in self.ctr(&["containers", "ls", "-q"]).stdout.lines() {
                let _ = self.ctr(&["containers", "rm", id]);
            }
        }
        let sockets = self.shim_sockets();
        self.stop();
        for pid in self.shim_pids() {
            // SAFETY: plain syscall; these are shims this containerd started for the test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for s in sockets {
            let _ = fs::remove_file(s);
        }
        for root in ["husk-root", "runc-root"] {
            let r = self.dir.join(root).join(&self.namespace);
            let Ok(rd) = fs::read_dir(&r) else { continue };
            for e in rd.flatten() {
                let _ = Command::new(&self.husk)
                    .arg("--root")
                    .arg(&r)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        husk_tests::host::remove_cgroup(&format!("/{}", self.namespace));
        if let Some(tmp) = self.tmp.take() {
            husk_tests::remove_temp_dir(tmp);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Pids of the processes (other than this one) whose command line contains `needle`: how the
/// harnesses find the daemons' helpers (containerd, shims, conmon) that name the test's temp
/// dir, to kill them by pid when cleaning up.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Starts a daemon the harness owns: stdout and stderr appended to `log`, stdin closed, `PATH`
/// set, and its own process group, so a signal for the test's group never reaches it.
pub fn spawn_daemon(mut cmd: Command, log: &Path, path: &str) -> Result<Child> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    cmd.env("PATH", path)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    cmd.spawn().with_context(|| format!("starting {name}"))
}

/// Stops a daemon this harness started: SIGTERM, then SIGKILL once `grace` has passed, and
/// reaps it either way.
pub fn terminate(mut child: std::process::Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain syscall on our own child, which we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
