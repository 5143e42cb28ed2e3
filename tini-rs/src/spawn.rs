//! Starting the child: its own process group, the terminal's foreground, the original signal
//! state, then exec.

use core::ffi::c_int;

use crate::log;
use crate::signals::Signals;
use crate::sys::{self, Argv, Forked};

/// Forks and execs `argv[program..]`; returns the child's pid.
pub fn spawn(signals: &Signals, argv: &Argv, program: usize) -> sys::Result<libc::pid_t> {
    match sys::fork()? {
        Forked::Child => sys::exit_now(child(signals, argv, program)),
        Forked::Parent(pid) => {
            // Also set the group from this side, so a `-g` signal sent before the child got to
            // run cannot miss it. The child may already have exec'd (EACCES): then it did it.
            let _ = sys::setpgid(pid, pid);
            let name = argv.get(program).map_or(&b""[..], |p| p.to_bytes());
            log::info()
                .s(b"Spawned child process '")
                .s(name)
                .s(b"' with pid '")
                .n(pid as i64)
                .s(b"'")
                .emit();
            Ok(pid)
        }
    }
}

/// The child's side of the fork; returns the exit code if exec fails.
fn child(signals: &Signals, argv: &Argv, program: usize) -> c_int {
    if let Err(e) = sys::setpgid(0, 0) {
        log::fatal().s(b"setpgid failed: ").err(e).emit();
        return 1;
    }
    // Safe to do here because SIGTTOU is still blocked; doing it in the child rather than the
    // parent avoids a race when one init runs another (as tini explains).
    match sys::take_terminal_foreground() {
        Ok(()) | Err(libc::ENOTTY) | Err(libc::ENXIO) => {}
        Err(e) => {
            log::fatal().s(b"tcsetpgrp failed: ").err(e).emit();
            return 1;
        }
    }
    if let Err((what, e)) = signals.restore_for_child() {
        log::fatal().s(what).s(b" failed: ").err(e).emit();
        return 1;
    }
    let e = sys::execvp(argv, program);
    let name = argv.get(program).map_or(&b""[..], |p| p.to_bytes());
    log::fatal()
        .s(b"exec ")
        .s(name)
        .s(b" failed: ")
        .err(e)
        .emit();
    // The shell's conventions: 127 not found, 126 not executable.
    match e {
        libc::ENOENT => 127,
        libc::EACCES => 126,
        _ => 1,
    }
}
