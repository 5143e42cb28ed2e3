//! `process.terminal`: a pty made inside the container, its master sent over --console-socket.
//!
//! The master travels with SCM_RIGHTS exactly as runc sends it (containerd's console socket
//! receives it); the slave becomes the process's stdio, controlling terminal and /dev/console.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::Process;

/// Why the terminal could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("console: {op}: {source}")]
pub struct ConsoleError {
    op: String,
    source: nix::Error,
}

fn err(op: &str) -> impl FnOnce(nix::Error) -> ConsoleError + '_ {
    move |source| ConsoleError {
        op: op.to_string(),
        source,
    }
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_write_int_bad!(set_ctty, libc::TIOCSCTTY);

/// Makes the pty, sends its master over `socket`, and makes the slave this process's terminal;
/// a container's init also gets it as /dev/console.
pub fn setup(socket: RawFd, process: &Process, as_console: bool) -> Result<(), ConsoleError> {
    // /dev/ptmx here is the container's (its devpts instance), so the pty belongs to it.
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(err("open /dev/ptmx"))?;
    grantpt(&master).map_err(err("grantpt"))?;
    unlockpt(&master).map_err(err("unlockpt"))?;
    let slave_path = ptsname_r(&master).map_err(err("ptsname"))?;
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer.
        unsafe { set_winsize(master.as_raw_fd(), &ws) }.map_err(err("set window size"))?;
    }
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err("open pty slave"))?;
    if as_console {
        mount_console(&slave_path)?;
    }

    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket,
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(err("send pty master to --console-socket"))?;
    drop(master);
    // SAFETY: the console socket was handed to us and is not used after this.
    unsafe { libc::close(socket) };

    for target in 0..=2 {
        // SAFETY: dup2 onto stdio; both descriptors are valid.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(err("dup pty slave onto stdio")(nix::Error::last()));
        }
    }
    // SAFETY: TIOCSCTTY on our own session leader's terminal.
    unsafe { set_ctty(0, 0) }.map_err(err("set controlling terminal"))?;
    Ok(())
}

/// Bind-mounts the pty slave over /dev/console, as runc does, so programs that open
/// /dev/console reach the same terminal.
fn mount_console(slave_path: &str) -> Result<(), ConsoleError> {
    let console = std::path::Path::new("/dev/console");
    if !console.exists() {
        std::fs::File::create(console).map_err(|e| {
            err("create /dev/console")(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
    }
    nix::mount::mount(
        Some(slave_path),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err("bind pty slave onto /dev/console"))
}
