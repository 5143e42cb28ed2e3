//! The caller's terminal for `run -t` / `exec -t` without `--console-socket`.
//!
//! runc's model, without its goroutines: husk makes a socketpair and hands one end to the
//! container process as its console socket, so the pty is still made inside the container
//! (console.rs) and its master arrives with SCM_RIGHTS exactly as a shim would receive it. husk
//! then puts the caller's terminal in raw mode, copies bytes both ways with poll(2), turns
//! SIGWINCH into a window-size change of the pty, forwards other signals to the process, and
//! restores the terminal when it is done (also on error: [`RawMode`] restores on drop).
//!
//! Everything here runs in the single-threaded husk process after the container process exists.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;

/// Why the terminal could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// A system call failed.
    #[error("terminal: {op}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The error.
        source: nix::Error,
    },
    /// The container process closed its console socket without sending the pty master.
    #[error("terminal: the container process did not send its pty master")]
    NoMaster,
    /// Nothing arrived on the console socket in time.
    #[error("terminal: timed out waiting for the pty master")]
    Timeout,
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> TtyError {
    move |source| TtyError::Sys { op, source }
}

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// A connected stream socketpair: husk keeps the first end and passes the second to the
/// container process as its console socket. Both are close-on-exec, so the user process never
/// inherits them.
pub fn console_pair() -> Result<(OwnedFd, OwnedFd), TtyError> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair for the console"))
}

/// Receives the pty master sent with SCM_RIGHTS over `socket` (what a shim's console socket
/// does), waiting at most `timeout`.
pub fn recv_master(socket: BorrowedFd<'_>, timeout: Duration) -> Result<OwnedFd, TtyError> {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(socket, PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Err(TtyError::Timeout),
            Ok(_) => break,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(sys("poll the console socket")(e)),
        }
    }
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("receive the pty master"))?;
    let mut master = None;
    for cmsg in msg.cmsgs().map_err(sys("read the control message"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: SCM_RIGHTS installed this descriptor in our table; we own it now.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if master.is_none() {
                    master = Some(owned);
                }
            }
        }
    }
    master.ok_or(TtyError::NoMaster)
}

/// The first of stdin, stdout, stderr that is a terminal: the caller's terminal.
pub fn host_terminal() -> Option<RawFd> {
    (0..=2).find(|fd| {
        // SAFETY: isatty only inspects the descriptor number.
        unsafe { libc::isatty(*fd) == 1 }
    })
}

/// The caller's terminal in raw mode; restores the saved settings when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// Puts terminal `fd` in raw mode (cfmakeraw, as runc's console.SetRaw).
    pub fn enter(fd: RawFd) -> Result<RawMode, TtyError> {
        // SAFETY: fd is one of our stdio descriptors, open for the life of the process.
        let tty = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = termios::tcgetattr(tty).map_err(sys("read the terminal settings"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(tty, SetArg::TCSANOW, &raw).map_err(sys("set raw mode"))?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in enter(): a stdio descriptor of this process.
        let tty = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(tty, SetArg::TCSANOW, &self.saved);
    }
}

/// Gives the pty the caller's window size (on start and on every SIGWINCH); a terminal that
/// reports 0x0 (e.g. a fresh pty nobody sized) leaves the pty's size (process.consoleSize).
pub fn copy_window_size(from: RawFd, to: BorrowedFd<'_>) -> Result<(), TtyError> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into a valid pointer.
    unsafe { get_winsize(from, &mut ws) }.map_err(sys("read the window size"))?;
    if ws.ws_row == 0 && ws.ws_col == 0 {
        return Ok(());
    }
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    unsafe { set_winsize(to.as_raw_fd(), &ws) }.map_err(sys("set the window size"))?;
    Ok(())
}

/// Copies the caller's stdin to the pty master and the master to stdout until `reap` reports
/// the process's exit code, forwarding `forward` signals to `pid` and SIGWINCH as a resize.
///
/// `reap` reaps finished children without blocking and returns the exit code once `pid` is
/// among them. The caller's terminal (if any) should already be in raw mode.
pub fn proxy(
    master: OwnedFd,
    pid: Pid,
    forward: &[Signal],
    reap: &mut dyn FnMut() -> Result<Option<i32>, nix::Error>,
) -> Result<i32, TtyError> {
    let host = host_terminal();
    if let Some(fd) = host {
        // A window size we cannot read is not worth failing the container for.
        let _ = copy_window_size(fd, master.as_fd());
    }
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    for s in forward {
        set.add(*s);
    }
    // Blocked signals queue on the signalfd: none is lost between two polls.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(sys("block signals"))?;
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys("signalfd"))?;
    // Non-blocking master: a container that does not read its input must not stall output.
    fcntl(
        &master,
        FcntlArg::F_SETFL(OFlag::O_RDWR | OFlag::O_NONBLOCK),
    )
    .map_err(sys("set the pty master non-blocking"))?;
    // SAFETY: stdin and stdout are this process's own descriptors, open for its whole life.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };

    let mut stdin_open = true;
    let mut master_open = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(code) = reap().map_err(sys("wait for the process"))? {
            if master_open {
                drain(&master, stdout, &mut buf);
            }
            return Ok(code);
        }
        let mut master_events = PollFlags::empty();
        if master_open {
            master_events |= PollFlags::POLLIN;
            if !pending.is_empty() {
                master_events |= PollFlags::POLLOUT;
            }
        }
        let want_stdin = stdin_open && pending.is_empty();
        let mut fds = vec![
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), master_events),
        ];
        if want_stdin {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(sys("poll")(e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .unwrap_or(PollFlags::empty())
        };
        let (sig_ev, master_ev, stdin_ev) = (ready(0), ready(1), ready(2));

        if sig_ev.contains(PollFlags::POLLIN) {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {}
                    Signal::SIGWINCH => {
                        if let Some(fd) = host {
                            let _ = copy_window_size(fd, master.as_fd());
                        }
                    }
                    other => {
                        let _ = kill(pid, other);
                    }
                }
            }
        }
        if master_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => master_open = false,
                Ok(n) => write_all(stdout, &buf[..n]),
                Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(sys("read the pty master")(e)),
            }
        }
        if master_ev.contains(PollFlags::POLLOUT) && !pending.is_empty() {
            match nix::unistd::write(&master, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
                Err(_) => pending.clear(),
            }
        }
        if stdin_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
}

/// Copies what the pty still holds after the process exited, bounded: other processes of
/// the container may keep the terminal open and writing.
fn drain(master: &OwnedFd, stdout: BorrowedFd<'_>, buf: &mut [u8]) {
    let mut total = 0usize;
    while total < 4 << 20 {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        match nix::unistd::read(master, buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                write_all(stdout, &buf[..n]);
                total += n;
            }
        }
    }
}

/// Writes everything to `fd`; a caller that closed its stdout loses the output, as with runc.
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(nix::Error::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::io::IoSlice;

    #[test]
    fn master_travels_over_the_pair() {
        let (ours, theirs) = console_pair().expect("pair");
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let fds = [file.as_raw_fd()];
        sendmsg::<()>(
            theirs.as_raw_fd(),
            &[IoSlice::new(b"/dev/ptmx")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        let got = recv_master(ours.as_fd(), Duration::from_secs(1)).expect("received");
        assert!(got.as_raw_fd() >= 0);
        drop(theirs);
        assert!(matches!(
            recv_master(ours.as_fd(), Duration::from_secs(1)),
            Err(TtyError::NoMaster)
        ));
    }
}
