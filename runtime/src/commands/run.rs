//! `husk run ID`: create + start, then wait for the container and return its exit status.

use anyhow::Result;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{create, CreateOpts};
use super::Global;

/// Signals `run` passes on to the container instead of dying of them, as runc does.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGALRM,
    Signal::SIGPIPE,
];

/// Runs container `id`; returns the exit code `husk run` exits with.
pub fn run(g: &Global, id: &str, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32> {
    let created = create(g, id, opts)?;
    if let Err(e) = super::start::start(g, id) {
        let _ = destroy(g, id);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let status = wait_forwarding(created.pid)?;
    if !keep {
        destroy(g, id)?;
    }
    Ok(status)
}

fn destroy(g: &Global, id: &str) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    super::delete::destroy(dir, &state)
}

/// Waits for the init (our child by CLONE_PARENT), forwarding signals to it meanwhile.
pub fn wait_forwarding(init: Pid) -> Result<i32> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    // Blocked signals queue up for sigwait: none is lost between two waits.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    loop {
        if let Some(code) = reap(init)? {
            return Ok(code);
        }
        let sig = set.wait()?;
        if sig != Signal::SIGCHLD {
            let _ = kill(init, sig);
        }
    }
}

/// Reaps finished children; returns the exit code once the init is among them.
fn reap(init: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                return Ok(Some(128 + sig as i32))
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::Error::ECHILD) => return Ok(Some(0)),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
