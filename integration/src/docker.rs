//! A private dockerd (Debian's `docker.io`) with husk registered as a runtime: its own data
//! root, exec root, pid file, socket, daemon.json and cgroup parent in a fresh `/tmp/husk-dkr-*`
//! dir, its own managed containerd (dockerd starts one under the exec root when given no
//! `--containerd`), no iptables, no bridge, no IP forwarding: containers run with
//! `--network none`. The busybox image is loaded from a locally built archive
//! ([`crate::archive`]). Dropping a [`Dockerd`] removes every container, the daemon, its
//! containerd and shims, mounts, cgroups and the temp dir, even when the test failed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use husk_tests::Output;
use serde_json::Value;
use tempfile::TempDir;

/// How long one `docker` command may take (`docker stop` alone may wait 10 s for a container).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime name husk is registered under.
pub const RUNTIME: &str = "husk";

/// dockerd and the docker client.
#[derive(Debug, Clone)]
pub struct DockerBins {
    /// `HUSK_DOCKERD`, else dockerd from PATH or the sbin dirs.
    pub dockerd: PathBuf,
    /// `HUSK_DOCKER`, else the client of the package dockerd came from.
    pub docker: PathBuf,
}

/// Finds dockerd and its client. The client is `/usr/bin/docker` when dockerd is Debian's
/// `/usr/sbin/dockerd`: another client earlier in PATH (a newer one that wants buildx, say)
/// would not be the one the package pairs with its daemon.
pub fn docker_bins() -> Option<DockerBins> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    let dockerd = from_env("HUSK_DOCKERD").or_else(|| husk_tests::which("dockerd"))?;
    let docker = from_env("HUSK_DOCKER").or_else(|| {
        let paired = Path::new("/usr/bin/docker");
        if dockerd.starts_with("/usr/sbin") && paired.is_file() {
            Some(paired.to_path_buf())
        } else {
            husk_tests::which("docker")
        }
    })?;
    Some(DockerBins { dockerd, docker })
}

/// Returns early from a test when it cannot run here (not root, no docker.io), saying so.
#[macro_export]
macro_rules! require_docker {
    () => {
        husk_tests::require_root!();
        if $crate::docker::docker_bins().is_none() {
            eprintln!(
                "SKIPPED {}: dockerd/docker not installed (Debian's docker.io; \
                 `cargo xtask test` installs it)",
                module_path!()
            );
            return;
        }
    };
}

/// How husk is made known to dockerd.
#[derive(Debug, Clone)]
pub enum Registration {
    /// On dockerd's command line: `--add-runtime husk=PATH --init-path HUSK_INIT`; daemon.json
    /// is `{}`.
    Flags,
    /// In daemon.json (the given document, already naming this machine's binaries); no flags.
    DaemonJson(Value),
}

/// Host paths dockerd 20.10 creates whatever flags it is given: its trust key
/// (`/etc/docker/key.json`, from `getDaemonConfDir`, not configurable), the plugin socket dir
/// (`/run/docker/plugins`, hard-coded) and, through the containerd it manages (whose config
/// dockerd writes, with the `opt` plugin on), `/opt/containerd/{bin,lib}`. Removed again
/// (children first) after the last daemon of this test process stops, when they did not exist
/// before the first one started.
const DOCKERD_HOST_PATHS: [&str; 7] = [
    "/etc/docker/key.json",
    "/etc/docker",
    "/run/docker/plugins",
    "/run/docker",
    "/opt/containerd/bin",
    "/opt/containerd/lib",
    "/opt/containerd",
];

/// Daemons alive in this test process and the host paths the first one found missing.
static HOST_PATHS: Mutex<(usize, Vec<&'static str>)> = Mutex::new((0, Vec::new()));

fn host_paths_acquire() {
    if let Ok(mut g) = HOST_PATHS.lock() {
        if g.0 == 0 {
            g.1 = DOCKERD_HOST_PATHS
                .into_iter()
                .filter(|p| fs::symlink_metadata(p).is_err())
                .collect();
        }
        g.0 += 1;
    }
}

fn host_paths_release() {
    if let Ok(mut g) = HOST_PATHS.lock() {
        g.0 = g.0.saturating_sub(1);
        if g.0 == 0 {
            for p in g.1.drain(..) {
                let path = Path::new(p);
                // Files go; directories only when empty (something else may have put files
                // there meanwhile).
                if path.is_dir() {
                    let _ = fs::remove_dir(path);
                } else {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

/// A private dockerd.
pub struct Dockerd {
    tmp: Option<TempDir>,
    /// The temp dir holding everything.
    pub dir: PathBuf,
    /// dockerd's API socket.
    pub socket: PathBuf,
    /// The cgroup parent of every container (`--cgroup-parent`), unique to this daemon.
    pub cgroup_parent: String,
    /// dockerd and its client.
    pub bins: DockerBins,
    /// The husk binary registered as runtime `husk`.
    pub husk: PathBuf,
    /// husk-init, registered as Docker's init.
    pub husk_init: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    scratch: PathBuf,
    holds_host_paths: bool,
    /// Docker applies an AppArmor profile on this host (the kernel has AppArmor).
    pub apparmor: bool,
}

impl Dockerd {
    /// Starts a dockerd with husk registered as `reg` says and the busybox image loaded.
    pub fn start(reg: Registration) -> Result<Dockerd> {
        let bins = docker_bins().context("docker.io is not installed")?;
        let husk = husk_tests::husk_bin();
        let husk_init = husk_tests::husk_init_bin();
        // Short: unix socket paths (ours and containerd's under the exec root) must fit 108
        // bytes.
        let tmp = tempfile::Builder::new()
            .prefix("husk-dkr-")
            .tempdir_in("/tmp")
            .context("creating a temp dir")?;
        let dir = tmp.path().to_path_buf();
        for d in ["data", "exec", "scratch", "cli", "work"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let cgroup_parent = format!("/{}", husk_tests::unique("husk-test-docker"));
        let mut args: Vec<String> = Vec::new();
        let daemon_json = match reg {
            Registration::Flags => {
                args.push("--add-runtime".into());
                args.push(format!("{RUNTIME}={}", husk.display()));
                args.push("--init-path".into());
                args.push(husk_init.display().to_string());
                Value::Object(Default::default())
            }
            Registration::DaemonJson(v) => v,
        };
        fs::write(
            dir.join("daemon.json"),
            serde_json::to_vec_pretty(&daemon_json)?,
        )?;
        let socket = dir.join("d.sock");
        let p = |sub: &str| dir.join(sub).display().to_string();
        args.extend([
            "--data-root".into(),
            p("data"),
            "--exec-root".into(),
            p("exec"),
            "--pidfile".into(),
            p("dockerd.pid"),
            "--host".into(),
            format!("unix://{}", socket.display()),
            "--config-file".into(),
            p("daemon.json"),
            // No host networking changes: no iptables rules, no docker0, no ip_forward sysctl.
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--ip-forward=false".into(),
            "--bridge=none".into(),
            "--cgroup-parent".into(),
            cgroup_parent.clone(),
            "--log-level=debug".into(),
        ]);
        host_paths_acquire();
        let mut d = Dockerd {
            tmp: Some(tmp),
            scratch: dir.join("scratch"),
            socket,
            cgroup_parent,
            bins,
            husk,
            husk_init,
            args,
            dir,
            child: None,
            holds_host_paths: true,
            apparmor: false,
        };
        d.spawn()?;
        // Docker sends `process.apparmorProfile` (docker-default) only where the kernel has
        // AppArmor, and husk refuses that field: there every run opts out explicitly.
        let sec = d.docker(&["info", "--format", "{{json .SecurityOptions}}"]);
        d.apparmor = sec.stdout.contains("apparmor");
        if d.apparmor {
            eprintln!(
                "note: Docker applies AppArmor on this host; runs get \
                 --security-opt apparmor=unconfined (husk does not support apparmorProfile)"
            );
        }
        let archive = crate::archive::build(&d.dir.join("work"))?;
        let archive = archive.display().to_string();
        let out = d.docker(&["load", "-i", &archive]);
        if !out.success() {
            bail!("docker load failed:\n{out}");
        }
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        // dockerd finds containerd, containerd-shim-runc-v2, runc and docker-init on PATH.
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.bins.dockerd);
        cmd.args(&self.args)
            .env_remove("DOCKER_HOST")
            .env_remove("NOTIFY_SOCKET");
        let child = crate::spawn_daemon(cmd, &self.dir.join("dockerd.log"), &path)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .docker_with(&["version"], Duration::from_secs(10))
                .success()
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    bail!("dockerd exited ({st}) while starting:\n{}", self.log_tail());
                }
            }
            if Instant::now() > deadline {
                bail!("dockerd did not come up in 60s:\n{}", self.log_tail());
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Stops dockerd (SIGTERM, SIGKILL after 30 s). With `live-restore` the containers, their
    /// shims and the shims' containers keep running.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::terminate(child, Duration::from_secs(30));
        }
    }

    /// Stops dockerd and starts it again with the same flags, config and state.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// The environment the docker client needs to talk to this daemon (and nothing of the
    /// user's: its own config dir, the classic builder).
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "DOCKER_HOST".into(),
                format!("unix://{}", self.socket.display()),
            ),
            (
                "DOCKER_CONFIG".into(),
                self.dir.join("cli").display().to_string(),
            ),
            // The classic builder: BuildKit's needs nothing from the network either, but the
            // classic one is what 20.10's client uses by default and it shows each step.
            ("DOCKER_BUILDKIT".into(), "0".into()),
        ]
    }

    /// `docker ARGS` as a Command (for running under tmux or a pty).
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bins.docker);
        cmd.args(args)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .envs(self.client_env());
        cmd
    }

    /// Runs `docker ARGS` with a timeout.
    pub fn docker_with(&self, args: &[&str], timeout: Duration) -> Output {
        husk_tests::capture(self.docker_command(args), &self.scratch, timeout)
    }

    /// Runs `docker ARGS`.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_with(args, DOCKER_TIMEOUT)
    }

    /// `docker run --runtime husk --network none --pull never FLAGS... IMAGE ARGS...`.
    pub fn run(&self, flags: &[&str], args: &[&str]) -> Output {
        self.run_image(crate::archive::IMAGE, flags, args)
    }

    /// [`Dockerd::run`] with another image.
    pub fn run_image(&self, image: &str, flags: &[&str], args: &[&str]) -> Output {
        let mut a = vec![
            "run",
            "--runtime",
            RUNTIME,
            "--network",
            "none",
            "--pull",
            "never",
        ];
        if self.apparmor {
            a.extend(["--security-opt", "apparmor=unconfined"]);
        }
        a.extend_from_slice(flags);
        a.push(image);
        a.extend_from_slice(args);
        self.docker(&a)
    }

    /// `docker inspect -f FORMAT NAME`, trimmed ("" when it fails).
    pub fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "-f", format, name]);
        if out.success() {
            out.stdout.trim().to_string()
        } else {
            String::new()
        }
    }

    /// Polls `docker inspect` until `{{.State.Status}}` is `status`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.inspect(name, "{{.State.Status}}") == status {
                return true;
            }
            sleep(Duration::from_millis(100));
        }
        false
    }

    /// Polls `docker logs NAME` until it contains `needle`; returns the logs.
    pub fn wait_logs(&self, name: &str, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.docker(&["logs", name]);
            let all = format!("{}{}", out.stdout, out.stderr);
            if all.contains(needle) {
                return Ok(all);
            }
            if Instant::now() > deadline {
                bail!("{needle:?} not in the logs of {name} after {timeout:?}:\n{out}");
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// The cgroup v1 directory of `controller` for container `name` (under this daemon's
    /// cgroup parent), when the host has that hierarchy (None on a cgroup v2 host). The path is
    /// returned even when it does not exist, so a check reading it fails loudly.
    pub fn cgroup_dir(&self, name: &str, controller: &str) -> Option<PathBuf> {
        let id = self.inspect(name, "{{.Id}}");
        if id.is_empty() {
            return None;
        }
        let rel = format!("{}/{id}", self.cgroup_parent.trim_start_matches('/'));
        husk_tests::host::cgroup_mounts()
            .into_iter()
            .filter(|m| {
                m.file_name()
                    .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == controller))
            })
            .map(|m| m.join(&rel))
            .next()
    }

    /// The last 200 lines of dockerd's log (its managed containerd logs there too).
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    }

    /// Pids of the processes serving this daemon: its containerd and the shims (their command
    /// lines name the exec root).
    pub fn helper_pids(&self) -> Vec<i32> {
        crate::pids_with_cmdline(&self.dir.join("exec").display().to_string())
    }

    fn state_dir(&self) -> PathBuf {
        self.dir
            .join("exec/containerd/daemon/io.containerd.runtime.v2.task/moby")
    }

    fn cleanup(&mut self) {
        if self.child.is_some() {
            let paused = self.docker_with(
                &["ps", "-q", "--filter", "status=paused"],
                Duration::from_secs(20),
            );
            for id in paused.stdout.split_whitespace() {
                let _ = self.docker_with(&["unpause", id], Duration::from_secs(20));
            }
            let all = self.docker_with(&["ps", "-aq"], Duration::from_secs(20));
            for id in all.stdout.split_whitespace() {
                let _ = self.docker_with(&["rm", "-f", id], Duration::from_secs(30));
            }
        }
        // Shim sockets live outside the temp dir (containerd 1.6: /run/containerd/s/HASH).
        let sockets: Vec<PathBuf> = fs::read_dir(self.state_dir())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| fs::read_to_string(e.path().join("address")).ok())
                    .map(|a| PathBuf::from(a.trim().trim_start_matches("unix://")))
                    .collect()
            })
            .unwrap_or_default();
        self.stop();
        for pid in self.helper_pids() {
            // SAFETY: plain syscall; containerd and shims this daemon started for the test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for s in sockets {
            let _ = fs::remove_file(s);
        }
        // Containers the daemon could not remove: force-delete them in husk's state roots
        // (`<exec-root>/runtime-husk/moby`), which also kills them.
        let roots = fs::read_dir(self.dir.join("exec"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
                    .map(|e| e.path().join("moby"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for root in roots {
            let Ok(rd) = fs::read_dir(&root) else {
                continue;
            };
            for e in rd.flatten() {
                let _ = Command::new(&self.husk)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        husk_tests::host::remove_cgroup(&self.cgroup_parent);
        if self.holds_host_paths {
            self.holds_host_paths = false;
            host_paths_release();
        }
        if let Some(tmp) = self.tmp.take() {
            husk_tests::remove_temp_dir(tmp);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}
