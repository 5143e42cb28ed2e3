//! `husk start ID`: releases a created container's init by reading its exec FIFO.

use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::Status;
use crate::hooks::{self, HookKind};

/// Starts `id`, then runs its poststart hooks.
pub fn start(g: &Global, id: &str) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    match dir.status(&state) {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Running | Status::Paused => bail!("cannot start an already running container"),
        Status::Creating => bail!("cannot start a container that is still being created"),
    }
    let fifo = dir.fifo_path();
    // Non-blocking open: a reader may open a FIFO with no writer yet; the init opens its end
    // (and so learns that start came) as soon as this one exists.
    let fd = open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open exec fifo {}", fifo.display()))?;
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => {
                if !state.init_alive() {
                    bail!("container init exited before start");
                }
            }
            Ok(_) => break,
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e).context("wait on exec fifo"),
        }
    }
    // The init answers after its startContainer hooks: "0" to go on, or "1" and why not,
    // in one atomic write of at most PIPE_BUF bytes.
    let mut buf = [0u8; libc::PIPE_BUF];
    let n = nix::unistd::read(&fd, &mut buf).context("read exec fifo")?;
    std::fs::remove_file(&fifo).with_context(|| format!("remove {}", fifo.display()))?;
    match buf[..n].split_first() {
        None => bail!("container init exited before start"),
        Some((b'0', _)) => {}
        // The init exits after saying why: the container is stopped.
        Some((_, why)) => bail!("{}", String::from_utf8_lossy(why)),
    }
    let spec = crate::spec::parse(&std::fs::read(dir.config_path())?).ok();
    if let Some(list) = spec
        .as_ref()
        .and_then(|s| s.hooks().as_ref())
        .and_then(|h| h.poststart().as_ref())
    {
        let json = state.hook_json(Status::Running);
        // In the bundle, as runc runs them. A failure fails `start` and stops the container
        // (runtime-spec since PR #1262; runc has always killed it); delete cleans up.
        if let Err(e) = hooks::run_in(HookKind::Poststart, list, &json, Some(&state.bundle)) {
            stop(&state);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Kills every process of a container whose start failed.
fn stop(state: &crate::container::State) {
    if state.init_alive() {
        let _ = super::kill::signal_pid(state.pid, libc::SIGKILL);
    }
    // Processes outside the init's pid namespace (a shared or host one) are in the cgroup.
    if let Ok(cg) = ContainerCgroup::new(Some(&state.cgroup_path), &state.id, state.systemd_cgroup)
    {
        let _ = super::kill::signal_all(&cg, libc::SIGKILL);
    }
}
