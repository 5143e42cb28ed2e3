//! `husk start ID`: releases a created container's init by reading its exec FIFO.

use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::Global;
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
    let mut buf = [0u8; 1];
    let n = nix::unistd::read(&fd, &mut buf).context("read exec fifo")?;
    if n == 0 {
        bail!("container init exited before start");
    }
    std::fs::remove_file(&fifo).with_context(|| format!("remove {}", fifo.display()))?;
    // poststart failures are warnings: the container is running whatever they say.
    let spec = crate::spec::parse(&std::fs::read(dir.config_path())?).ok();
    if let Some(list) = spec
        .as_ref()
        .and_then(|s| s.hooks().as_ref())
        .and_then(|h| h.poststart().as_ref())
    {
        let json = state.hook_json(Status::Running);
        if let Err(e) = hooks::run(HookKind::Poststart, list, &json) {
            crate::logging::warn(&format!("poststart hook failed: {e}"));
        }
    }
    Ok(())
}
