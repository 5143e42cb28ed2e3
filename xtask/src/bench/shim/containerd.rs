//! A private containerd for the shim benchmark: its own config, root, state dir and socket in
//! a temp dir, the husk shim on its PATH, the locally built busybox image imported. Dropping it
//! removes every container, shim, cgroup and file it made.
//!
//! The harness in integration/src/lib.rs does the same for the tests; it is not reused because
//! husk-integration also carries the CRI test's tonic/tokio/protoc build, which xtask should not.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[path = "../../../../integration/src/image.rs"]
mod image;

pub use image::IMAGE;

/// A running private containerd.
pub struct Containerd {
    tmp: Option<tempfile::TempDir>,
    /// The temp dir holding everything.
    pub dir: PathBuf,
    /// containerd's gRPC socket.
    pub address: String,
    /// The containerd namespace (also the containers' cgroup parent).
    pub namespace: String,
    ctr: PathBuf,
    husk: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd with `shim` as containerd-shim-husk-v2 (driving `husk`) and imports
    /// the busybox image.
    pub fn start(shim: &Path, husk: &Path) -> Result<Containerd> {
        // Short: unix socket paths must fit 108 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("husk-bench-")
            .tempdir_in("/tmp")
            .context("creating the containerd temp dir")?;
        let dir = tmp.path().to_path_buf();
        for d in ["bin", "root", "state", "fifo", "husk-root", "runc-root"] {
            fs::create_dir_all(dir.join(d))?;
        }
        std::os::unix::fs::symlink(shim, dir.join("bin/containerd-shim-husk-v2"))?;
        fs::write(
            dir.join("husk.toml"),
            format!(
                "BinaryName = \"{}\"\nRoot = \"{}\"\n",
                husk.display(),
                dir.join("husk-root").display()
            ),
        )?;
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
"#,
                root = dir.join("root").display(),
                state = dir.join("state").display(),
            ),
        )?;
        let mut c = Containerd {
            tmp: Some(tmp),
            // Named husk-test-*: the prefix husk_tests::host::remove_cgroup agrees to remove.
            namespace: husk_tests::unique("husk-test-bench"),
            dir,
            address,
            ctr: super::super::which("ctr"),
            husk: husk.to_path_buf(),
            child: None,
        };
        c.spawn()?;
        let archive = image::build(&c.dir)?;
        let out = c
            .ctr()
            .args(["images", "import"])
            .arg(&archive)
            .output()
            .context("running ctr images import")?;
        if !out.status.success() {
            bail!(
                "importing {} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::File::create(self.dir.join("containerd.log"))?;
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.join("bin").display()
        );
        let child = Command::new(super::super::which("containerd"))
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting containerd")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = self
                .ctr()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not come up: {}",
                    fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr --address A --namespace NS` (add the arguments).
    pub fn ctr(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.args(["--address", &self.address, "--namespace", &self.namespace])
            .stdin(Stdio::null());
        c
    }

    /// Runs `ctr ARGS`, failing with its stderr when it fails.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let out = self
            .ctr()
            .args(args)
            .output()
            .with_context(|| format!("running ctr {args:?}"))?;
        if !out.status.success() {
            bail!(
                "ctr {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Pids of the shims serving this containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains("containerd-shim") && c.contains(&self.address)
                })
            })
            .collect()
    }

    /// Kills and removes every task and container, waiting until their shims are gone.
    pub fn remove_all(&self) {
        let tasks = self.ctr_ok(&["task", "ls", "-q"]).unwrap_or_default();
        for id in tasks.lines() {
            let _ = self.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
        }
        for id in tasks.lines() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.ctr_ok(&["task", "rm", id]).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let containers = self.ctr_ok(&["containers", "ls", "-q"]).unwrap_or_default();
        for id in containers.lines() {
            let _ = self.ctr_ok(&["containers", "rm", id]);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.shim_pids().is_empty() && Instant::now() < deadline {
            super::super::timing::reap_all();
            std::thread::sleep(Duration::from_millis(50));
        }
        super::super::timing::reap_all();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_all();
        }
        // Shims that outlived their tasks (a failed run) go by pid, as do their containers.
        let shims = self.shim_pids();
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscall on our own, unreaped child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in shims {
            // SAFETY: plain syscall; these shims serve this containerd only.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let runc = super::super::which("runc");
        for (root, runtime) in [("husk-root", &self.husk), ("runc-root", &runc)] {
            let r = self.dir.join(root).join(&self.namespace);
            let Ok(rd) = fs::read_dir(&r) else { continue };
            for e in rd.flatten() {
                let _ = Command::new(runtime)
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
        super::super::timing::reap_all();
        husk_tests::host::remove_cgroup(&format!("/{}", self.namespace));
        if let Some(tmp) = self.tmp.take() {
            husk_tests::remove_temp_dir(tmp);
        }
    }
}
