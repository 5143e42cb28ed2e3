//! `husk restore ID`: brings a container back from criu images made by `husk checkpoint`.
//!
//! criu recreates the process tree, its namespaces and mounts inside the bundle's rootfs;
//! `--restore-sibling` makes the restored init husk's child, so `restore` (without --detach)
//! waits for it and forwards signals exactly like `run`. husk records the new container in its
//! state dir like `create` does; any failure removes the state dir and the cgroup again.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;

use super::checkpoint::{external_mounts, run_criu, CriuOpts};
use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::State;

/// The flags of `restore` beyond those shared with `checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    /// Shared criu options.
    pub criu: CriuOpts,
    /// --bundle.
    pub bundle: PathBuf,
    /// --detach.
    pub detach: bool,
    /// --pid-file.
    pub pid_file: Option<PathBuf>,
    /// --console-socket.
    pub console_socket: Option<PathBuf>,
    /// --no-pivot (criu restores the mounts itself; accepted).
    pub no_pivot: bool,
    /// --no-subreaper / -no-subreaper (the init is always husk's child; accepted).
    pub no_subreaper: bool,
}

/// Restores container `id`; returns the exit code `restore` exits with (the container's when
/// not detached).
pub fn restore(g: &Global, id: &str, opts: &RestoreOpts) -> Result<i32> {
    let bundle = crate::spec::load_bundle(&opts.bundle)?;
    let spec = &bundle.spec;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal || opts.console_socket.is_some() {
        bail!(
            "husk cannot restore a container with a terminal (process.terminal / --console-socket)"
        );
    }
    let images = opts.criu.images()?;
    if !images.is_dir() {
        bail!("image path {} does not exist", images.display());
    }
    let work = opts.criu.work()?;
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow!("linux must be set"))?;

    let mut dir = g.store().create(id)?;
    std::fs::write(dir.config_path(), serde_json::to_vec(spec)?)
        .with_context(|| format!("save config in {}", dir.path().display()))?;
    let cgroup = ContainerCgroup::new(linux.cgroups_path().as_deref(), id, g.systemd_cgroup)?;
    let pidfile = work.join("restore.pid");
    let _ = std::fs::remove_file(&pidfile);

    let mut args = vec!["restore".to_string()];
    args.extend(opts.criu.common_args(&images, &work, "restore.log")?);
    args.extend([
        "--root".into(),
        bundle.rootfs.display().to_string(),
        "--restore-detached".into(),
        "--restore-sibling".into(),
        "--pidfile".into(),
        pidfile.display().to_string(),
    ]);
    if opts.criu.manage_cgroups_mode.is_none() {
        args.push("--manage-cgroups=soft".into());
    }
    // Bind mounts were dumped as external under their destination; map each key to the host
    // source it has in this bundle.
    let keys = external_mounts(spec);
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let d = m.destination().display().to_string();
        if keys.iter().any(|k| k == &format!("{d}:{d}")) {
            if let Some(src) = m.source() {
                args.extend(["--ext-mount-map".into(), format!("{d}:{}", src.display())]);
            }
        }
    }
    // Pipes and sockets that were the init's stdio are this process's stdio now (runc's
    // descriptors.json + inherit-fd).
    if let Ok(data) = std::fs::read(images.join("descriptors.json")) {
        let fds: Vec<String> = serde_json::from_slice(&data).unwrap_or_default();
        for (i, d) in fds.iter().enumerate() {
            if d.starts_with("pipe:") || d.starts_with("socket:") {
                args.extend(["--inherit-fd".into(), format!("fd[{i}]:{d}")]);
            }
        }
    }
    if let Err(e) = run_criu(&opts.criu.criu(), &args, &work.join("restore.log")) {
        let _ = cgroup.remove();
        return Err(e);
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| anyhow!("criu restore wrote no pid to {}", pidfile.display()))?;
    let state = State {
        oci_version: spec.version().clone(),
        id: id.to_string(),
        pid,
        init_start_time: crate::util::process_start_time(pid)
            .ok_or_else(|| anyhow!("restored init {pid} exited at once"))?,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::util::rfc3339_nano(std::time::SystemTime::now()),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup_path: cgroup.path().to_path_buf(),
        systemd_cgroup: g.systemd_cgroup,
        rootless: false,
    };
    // criu restores into the dumped cgroup; joining ours as well keeps later commands exact.
    let finish = || -> Result<()> {
        cgroup.add_task(Pid::from_raw(pid))?;
        dir.save(&state)?;
        if let Some(p) = &opts.pid_file {
            std::fs::write(p, pid.to_string()).with_context(|| format!("write {}", p.display()))?;
        }
        Ok(())
    };
    if let Err(e) = finish() {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        let _ = cgroup.remove();
        return Err(e);
    }
    dir.keep();
    drop(dir);
    if opts.detach {
        return Ok(0);
    }
    let code = super::run::wait_forwarding(Pid::from_raw(pid))?;
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    super::delete::destroy(dir, &state)?;
    Ok(code)
}
