//! `husk run ID`: create + start, then wait for the container and return its exit status.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{create, CreateOpts};
use super::Global;
use crate::process::tty;

/// Signals `run` passes on to the container instead of dying of them, as runc does.
pub const FORWARDED: &[Signal] = &[
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

/// How long husk waits for the pty master once the process reported it is ready (it was sent
/// before that, so this only guards against a broken peer).
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs container `id`; returns the exit code `husk run` exits with.
///
/// With `process.terminal` and no `--console-socket`, the container's pty is proxied to the
/// caller's terminal (see [`crate::process::tty`]).
pub fn run(g: &Global, id: &str, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32> {
    let terminal = wants_terminal(&opts.bundle);
    let proxy = terminal && opts.console_socket.is_none() && opts.console_fd.is_none();
    if proxy && detach {
        bail!("cannot allocate tty if runc will detach without setting console socket");
    }
    let mut opts = opts.clone();
    let pair = if proxy {
        let (ours, theirs) = tty::console_pair()?;
        opts.console_fd = Some(theirs.as_raw_fd());
        Some((ours, theirs))
    } else {
        None
    };
    let created = create(g, id, &opts)?;
    // The container's init holds its own copy of the socket; ours must go so that a dead
    // init shows up as end-of-file.
    let ours = pair.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });
    let master = match &ours {
        Some(sock) => match tty::recv_master(sock.as_fd(), MASTER_TIMEOUT) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = destroy(g, id);
                return Err(e.into());
            }
        },
        None => None,
    };
    if let Err(e) = super::start::start(g, id) {
        let _ = destroy(g, id);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let status = match master {
        Some(m) => wait_with_terminal(created.pid, m)?,
        None => wait_forwarding(created.pid)?,
    };
    if !keep {
        destroy(g, id)?;
    }
    Ok(status)
}

/// Whether the bundle's config asks for a terminal (a config create cannot read fails there,
/// with its own message).
fn wants_terminal(bundle: &std::path::Path) -> bool {
    crate::spec::load_bundle(bundle)
        .ok()
        .and_then(|b| b.spec.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

fn destroy(g: &Global, id: &str) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    super::delete::destroy(dir, &state)
}

/// Waits for `pid` while proxying the caller's terminal to its pty `master`; the terminal is
/// in raw mode meanwhile and restored afterwards.
pub fn wait_with_terminal(pid: Pid, master: OwnedFd) -> Result<i32> {
    let raw = match tty::host_terminal() {
        Some(fd) => Some(tty::RawMode::enter(fd)?),
        None => None,
    };
    let mut reaper = || reap(pid);
    let code = tty::proxy(master, pid, FORWARDED, &mut reaper).context("terminal proxy");
    drop(raw);
    code
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

/// Reaps finished children; returns the exit code once the init is among them (128+N when
/// signal N killed it, as runc reports).
fn reap(init: Pid) -> Result<Option<i32>, nix::Error> {
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
            Err(e) => return Err(e),
        }
    }
}
