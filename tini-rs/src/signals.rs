//! Signal plumbing: block what the main loop collects, ignore SIGTTIN/SIGTTOU, hand the child
//! the original mask, and forward signals to the child or its process group.

use core::ffi::c_int;

use crate::log;
use crate::signame;
use crate::sys::{self, Fd, SigAction, SigSet};

/// Signals husk-init does not collect: synchronous faults must take it down at once rather
/// than queue, and SIGTTIN/SIGTTOU are ignored instead (see [`Signals::configure`]).
const NOT_COLLECTED: [c_int; 9] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// The signal state husk-init set up, and what it replaced (restored in the child).
pub struct Signals {
    collected: SigSet,
    child_mask: SigSet,
    ttin: SigAction,
    ttou: SigAction,
}

/// A failed signal call: what was attempted and the errno.
pub type Failure = (&'static [u8], sys::Errno);

impl Signals {
    /// Blocks every signal the main loop collects and ignores SIGTTIN/SIGTTOU.
    ///
    /// Blocked signals stay pending for the signalfd, and a blocked signal is never discarded,
    /// not even for PID 1 of a namespace, where the kernel drops default-action signals.
    /// SIGTTIN/SIGTTOU are ignored because the child takes the terminal's foreground; a
    /// background husk-init writing a message to a TOSTOP terminal must not be stopped.
    pub fn configure() -> Result<Signals, Failure> {
        let mut collected = SigSet::full();
        for sig in NOT_COLLECTED {
            collected.remove(sig);
        }
        let child_mask = collected.set_mask().map_err(|e| (&b"sigprocmask"[..], e))?;
        let ttin = sys::ignore_signal(libc::SIGTTIN).map_err(|e| (&b"ignoring SIGTTIN"[..], e))?;
        let ttou = sys::ignore_signal(libc::SIGTTOU).map_err(|e| (&b"ignoring SIGTTOU"[..], e))?;
        Ok(Signals {
            collected,
            child_mask,
            ttin,
            ttou,
        })
    }

    /// In the child before exec: puts back the mask and dispositions husk-init started with.
    pub fn restore_for_child(&self) -> Result<(), Failure> {
        self.child_mask
            .set_mask()
            .map_err(|e| (&b"restoring the signal mask"[..], e))?;
        sys::restore_signal(libc::SIGTTIN, &self.ttin)
            .map_err(|e| (&b"restoring SIGTTIN"[..], e))?;
        sys::restore_signal(libc::SIGTTOU, &self.ttou).map_err(|e| (&b"restoring SIGTTOU"[..], e))
    }

    /// Waits for the next collected signal and returns it.
    pub fn wait(&self) -> sys::Result<c_int> {
        self.collected.wait()
    }

    /// A signalfd reporting the collected signals.
    pub fn signalfd(&self) -> sys::Result<Fd> {
        self.collected.signalfd()
    }
}

/// Appends `SIGNAME` (or the number) to a message.
pub fn describe(msg: &mut log::Msg, sig: c_int) {
    match signame::name(sig) {
        Some(name) => msg.s(b"SIG").s(name),
        None => msg.s(b"signal ").n(sig as i64),
    };
}

/// Sends `sig` to the child, or to its process group when `group` is set.
///
/// A child that is already gone is only worth a warning: it will be reaped next.
pub fn forward(child: libc::pid_t, sig: c_int, group: bool) -> sys::Result<()> {
    let target = if group { -child } else { child };
    // Sent before the message is built: the child's latency is the figure that counts.
    let sent = sys::kill(target, sig);
    let mut msg = log::debug();
    msg.s(b"Passing signal: ");
    describe(&mut msg, sig);
    msg.emit();
    match sent {
        Ok(()) => Ok(()),
        Err(libc::ESRCH) => {
            log::warn()
                .s(b"Child was dead when forwarding signal")
                .emit();
            Ok(())
        }
        Err(e) => Err(e),
    }
}
