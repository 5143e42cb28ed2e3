//! `husk checkpoint ID`: dumps a running container with criu (Debian's `criu` binary).
//!
//! runc drives criu over its RPC socket; husk runs the criu command line with the equivalent
//! options, which needs no protobuf code and shows criu's own errors unchanged: when criu
//! fails, the `Error` lines of its log are the message of husk's error. The flags are those
//! containerd's go-runc passes. After a full dump (no --leave-running, no --pre-dump) criu has
//! killed the container's processes and husk removes the container, as runc does.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;

use super::Global;
use crate::container::Status;

/// Options shared by `checkpoint` and `restore`, in runc's spelling.
#[derive(Debug, Clone, Default)]
pub struct CriuOpts {
    /// --image-path (default: ./checkpoint, as runc).
    pub image_path: Option<PathBuf>,
    /// --work-path (default: the image path).
    pub work_path: Option<PathBuf>,
    /// --parent-path: images of a previous pre-dump, relative to the image path.
    pub parent_path: Option<PathBuf>,
    /// --leave-running.
    pub leave_running: bool,
    /// --pre-dump.
    pub pre_dump: bool,
    /// --tcp-established.
    pub tcp_established: bool,
    /// --ext-unix-sk.
    pub ext_unix_sk: bool,
    /// --shell-job.
    pub shell_job: bool,
    /// --file-locks.
    pub file_locks: bool,
    /// --manage-cgroups-mode: soft, full, strict or ignore.
    pub manage_cgroups_mode: Option<String>,
    /// --empty-ns (criu supports only "network").
    pub empty_ns: Vec<String>,
    /// --status-fd.
    pub status_fd: Option<i32>,
    /// --page-server ADDRESS:PORT.
    pub page_server: Option<String>,
    /// --lazy-pages.
    pub lazy_pages: bool,
    /// --auto-dedup.
    pub auto_dedup: bool,
    /// The global --criu path (default: criu from PATH).
    pub criu: Option<PathBuf>,
}

impl CriuOpts {
    /// The image directory, absolute.
    pub fn images(&self) -> Result<PathBuf> {
        let p = self
            .image_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("checkpoint"));
        Ok(std::path::absolute(p)?)
    }

    /// The work directory (logs), absolute.
    pub fn work(&self) -> Result<PathBuf> {
        match &self.work_path {
            Some(p) => Ok(std::path::absolute(p)?),
            None => self.images(),
        }
    }

    /// The options both dump and restore pass to criu.
    pub fn common_args(&self, images: &Path, work: &Path, log: &str) -> Result<Vec<String>> {
        let mut a = vec![
            "--images-dir".into(),
            images.display().to_string(),
            "--work-dir".into(),
            work.display().to_string(),
            "--log-file".into(),
            log.into(),
            "-v4".into(),
        ];
        if self.tcp_established {
            a.push("--tcp-established".into());
        }
        if self.ext_unix_sk {
            a.push("--ext-unix-sk".into());
        }
        if self.shell_job {
            a.push("--shell-job".into());
        }
        if self.file_locks {
            a.push("--file-locks".into());
        }
        if let Some(m) = &self.manage_cgroups_mode {
            match m.as_str() {
                "soft" | "full" | "strict" | "ignore" => {
                    a.push(format!("--manage-cgroups={m}"));
                }
                _ => {
                    bail!("invalid --manage-cgroups-mode {m:?}: want soft, full, strict or ignore")
                }
            }
        }
        for ns in &self.empty_ns {
            match ns.as_str() {
                "network" | "net" => {
                    a.push("--empty-ns".into());
                    a.push("net".into());
                }
                _ => bail!("--empty-ns {ns:?}: criu can leave only the network namespace empty"),
            }
        }
        if let Some(fd) = self.status_fd {
            a.push("--status-fd".into());
            a.push(fd.to_string());
        }
        if self.lazy_pages {
            a.push("--lazy-pages".into());
        }
        if self.auto_dedup {
            a.push("--auto-dedup".into());
        }
        Ok(a)
    }

    /// The criu binary.
    pub fn criu(&self) -> PathBuf {
        self.criu.clone().unwrap_or_else(|| PathBuf::from("criu"))
    }
}

/// criu's mapping of the container's bind mounts: each is external to the image and found at
/// the same destination on restore (runc's ExtMnt entries).
pub fn external_mounts(spec: &Spec) -> Vec<String> {
    let mut a = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        if bind {
            let d = m.destination().display().to_string();
            a.push("--ext-mount-map".into());
            a.push(format!("{d}:{d}"));
        }
    }
    a
}

/// Runs criu; on failure the error carries criu's own `Error` lines from its log.
pub fn run_criu(criu: &Path, args: &[String], log: &Path) -> Result<()> {
    let out = Command::new(criu)
        .args(args)
        .output()
        .with_context(|| format!("run {} (is the criu package installed?)", criu.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let logtext = std::fs::read_to_string(log).unwrap_or_default();
    let mut errors: Vec<&str> = logtext
        .lines()
        .chain(std::str::from_utf8(&out.stderr).unwrap_or_default().lines())
        .filter(|l| l.contains("Error") || l.contains("error"))
        // criu logs a helper program it probed with and tolerated as an error too; that is
        // noise next to the reason it gave up.
        .filter(|l| !l.contains("exited, status="))
        .collect();
    errors.dedup();
    let detail = if errors.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        errors.join("; ")
    };
    bail!(
        "criu {} failed ({}): {detail} (log: {})",
        args.first().map(String::as_str).unwrap_or(""),
        out.status,
        log.display()
    )
}

/// Checkpoints `id`.
pub fn checkpoint(g: &Global, id: &str, opts: &CriuOpts) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    let status = dir.status(&state);
    if matches!(status, Status::Created | Status::Stopped | Status::Creating) {
        bail!("container {id} cannot be checkpointed in {status} state");
    }
    let spec = crate::spec::parse(&std::fs::read(dir.config_path())?)
        .map_err(|e| anyhow::anyhow!("saved config of {id}: {e}"))?;
    let images = opts.images()?;
    let work = opts.work()?;
    for d in [&images, &work] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    // Which host files the init's stdio were, for restore to reconnect them (runc's file).
    let descriptors: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{}/fd/{fd}", state.pid))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    std::fs::write(
        images.join("descriptors.json"),
        serde_json::to_vec(&descriptors)?,
    )
    .context("write descriptors.json")?;

    let log = if opts.pre_dump {
        "pre-dump.log"
    } else {
        "dump.log"
    };
    let mut args = vec![if opts.pre_dump { "pre-dump" } else { "dump" }.to_string()];
    args.extend(opts.common_args(&images, &work, log)?);
    args.extend([
        "--tree".into(),
        state.pid.to_string(),
        "--root".into(),
        state.rootfs.display().to_string(),
    ]);
    if let Some(parent) = &opts.parent_path {
        args.extend(["--prev-images-dir".into(), parent.display().to_string()]);
        args.push("--track-mem".into());
    }
    if let Some(ps) = &opts.page_server {
        let (addr, port) = ps
            .rsplit_once(':')
            .with_context(|| format!("--page-server {ps:?}: want ADDRESS:PORT"))?;
        args.extend([
            "--page-server".into(),
            "--address".into(),
            addr.into(),
            "--port".into(),
            port.into(),
        ]);
    }
    if opts.leave_running && !opts.pre_dump {
        args.push("--leave-running".into());
    }
    if opts.manage_cgroups_mode.is_none() {
        args.push("--manage-cgroups=soft".into());
    }
    args.extend(external_mounts(&spec));
    run_criu(&opts.criu(), &args, &work.join(log))?;
    if !(opts.leave_running || opts.pre_dump) {
        // criu killed the processes; the container is gone, as after runc checkpoint.
        super::delete::destroy(dir, &state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_criu_options() {
        let o = CriuOpts {
            tcp_established: true,
            shell_job: true,
            file_locks: true,
            ext_unix_sk: true,
            manage_cgroups_mode: Some("full".into()),
            empty_ns: vec!["network".into()],
            status_fd: Some(3),
            ..Default::default()
        };
        let a = o
            .common_args(Path::new("/i"), Path::new("/w"), "dump.log")
            .expect("args");
        for want in [
            "--tcp-established",
            "--shell-job",
            "--file-locks",
            "--ext-unix-sk",
            "--manage-cgroups=full",
            "--status-fd",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing in {a:?}");
        }
        let bad = CriuOpts {
            manage_cgroups_mode: Some("loose".into()),
            ..Default::default()
        };
        assert!(bad
            .common_args(Path::new("/i"), Path::new("/w"), "x")
            .is_err());
        let bad_ns = CriuOpts {
            empty_ns: vec!["pid".into()],
            ..Default::default()
        };
        assert!(bad_ns
            .common_args(Path::new("/i"), Path::new("/w"), "x")
            .is_err());
    }
}
