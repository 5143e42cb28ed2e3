//! Pause mode (`husk-init --pause`): the process that holds a Kubernetes pod's namespaces, like
//! the kubelet's `pause` binary and `catatonit -P`. It runs no program: it sleeps until a
//! signal comes, reaps every zombie on SIGCHLD (the pod's orphans land on it when the pod
//! shares one PID namespace) and exits 0 on SIGTERM or SIGINT, as pause.c does. Every other
//! signal is ignored, so a stray SIGHUP or SIGQUIT cannot take the pod's namespaces down.

use core::ffi::c_int;

use crate::args::Config;
use crate::log;
use crate::reap::reap;
use crate::signals::{self, Signals};
use crate::sys;

/// Exit code of a pause process asked to stop (pause.c's `sigdown` exits 0).
const STOPPED: c_int = 0;

/// What pause mode does with a signal.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Shut down with exit code 0.
    Exit,
    /// Collect the exited children.
    Reap,
    /// Nothing: keep sleeping.
    Ignore,
}

/// How pause mode answers `sig`.
pub fn react(sig: c_int) -> Reaction {
    match sig {
        libc::SIGTERM | libc::SIGINT => Reaction::Exit,
        libc::SIGCHLD => Reaction::Reap,
        _ => Reaction::Ignore,
    }
}

/// Sleeps, reaping, until SIGTERM or SIGINT; returns husk-init's exit code.
pub fn pause(cfg: &Config) -> c_int {
    log::set_verbosity(cfg.verbosity);
    let signals = match Signals::configure() {
        Ok(s) => s,
        Err((what, e)) => return fatal(what, e),
    };
    if cfg.subreaper {
        if let Err(e) = sys::set_child_subreaper() {
            return fatal(b"Registering as child subreaper", e);
        }
    }
    crate::init::reaper_check();
    let sfd = match signals.signalfd() {
        Ok(fd) => fd,
        Err(e) => return fatal(b"signalfd", e),
    };
    let mut fds = [libc::pollfd {
        fd: sfd.raw(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        fds[0].revents = 0;
        if let Err(e) = sys::poll(&mut fds, -1) {
            return fatal(b"poll", e);
        }
        loop {
            let sig = match sys::read_signal(&sfd) {
                Ok(Some(sig)) => sig,
                Ok(None) => break,
                Err(e) => return fatal(b"Reading signals", e),
            };
            match react(sig) {
                Reaction::Exit => {
                    let mut msg = log::info();
                    msg.s(b"Pause: shutting down on ");
                    signals::describe(&mut msg, sig);
                    msg.emit();
                    return STOPPED;
                }
                // No main child: pid 0 never matches a waited pid, so every zombie goes.
                Reaction::Reap => {
                    if let Err(e) = reap(0, cfg.warn_on_reap) {
                        return fatal(b"waitpid", e);
                    }
                }
                Reaction::Ignore => {
                    let mut msg = log::debug();
                    msg.s(b"Pause: ignoring ");
                    signals::describe(&mut msg, sig);
                    msg.emit();
                }
            }
        }
    }
}

/// Prints a fatal error about `what` failing with `errno` and returns exit code 1.
fn fatal(what: &[u8], errno: sys::Errno) -> c_int {
    log::fatal().s(what).s(b" failed: ").err(errno).emit();
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_match_the_kubelet_pause_binary() {
        assert_eq!(react(libc::SIGTERM), Reaction::Exit);
        assert_eq!(react(libc::SIGINT), Reaction::Exit);
        assert_eq!(react(libc::SIGCHLD), Reaction::Reap);
        for sig in [libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGWINCH] {
            assert_eq!(react(sig), Reaction::Ignore, "signal {sig}");
        }
    }
}
