//! The sync channel between `husk create`, the intermediate process and the container init.
//!
//! A SOCK_SEQPACKET socketpair carries one small JSON message per packet, so message framing
//! is the kernel's and a dead peer shows up as end-of-file instead of a hang.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// One step of the create protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// intermediate -> main: I unshared a user namespace; write my uid/gid maps.
    MapIds,
    /// main -> intermediate: the maps are written.
    MapsWritten,
    /// main -> intermediate: you are in the container's cgroup; clone the init.
    CgroupJoined,
    /// intermediate -> main: the init's pid, as seen from the main process.
    InitPid(i32),
    /// main -> init: main knows the init's pid; the init may speak now. Carries the state
    /// document for hooks in the container, or None when main runs prestart/createRuntime
    /// hooks first (then `Prepared` and `HooksDone` follow).
    Go(Option<String>),
    /// init -> main: the rootfs is mounted; run prestart and createRuntime hooks.
    Prepared,
    /// main -> init: hooks ran; here is the state document hooks in the container receive.
    HooksDone(String),
    /// init -> main: set-up is finished; the init now waits on the exec FIFO.
    Ready,
    /// any -> main: set-up failed, with the reason.
    Error(String),
}

/// Errors on the sync channel.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// socketpair/send/recv/poll failed.
    #[error("sync channel {op}: {source}")]
    Sys {
        /// The call.
        op: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// The peer closed its end without saying why (it died).
    #[error("the container's set-up process exited before {0}")]
    Closed(&'static str),
    /// Nothing arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// A message that does not belong at this point.
    #[error("unexpected sync message while waiting for {wanted}: {got:?}")]
    Unexpected {
        /// What was awaited.
        wanted: &'static str,
        /// What came.
        got: Msg,
    },
    /// The peer reported an error.
    #[error("{0}")]
    Remote(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Makes a connected pair of channel ends (close-on-exec, so the user process never sees them).
pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| SyncError::Sys {
        op: "socketpair",
        source,
    })?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        let data = serde_json::to_vec(msg).unwrap_or_default();
        send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .map(|_| ())
            .map_err(|source| SyncError::Sys { op: "send", source })
    }

    /// Waits up to `timeout` for one message; an `Error` message becomes `SyncError::Remote`.
    pub fn recv(&self, wanted: &'static str, timeout: Duration) -> Result<Msg, SyncError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SyncError::Timeout(wanted));
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(source) => return Err(SyncError::Sys { op: "poll", source }),
            }
        }
        // MSG_TRUNC with MSG_PEEK reports the packet's full length without taking it, so the
        // buffer is exactly as big as the message (a zeroed 64 kB buffer per message cost
        // more page faults than the message itself).
        let len = loop {
            match recv(
                self.fd.as_raw_fd(),
                &mut [0u8; 1],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Err(nix::Error::EINTR) => continue,
                other => break other.map_err(|source| SyncError::Sys { op: "recv", source })?,
            }
        };
        let mut buf = vec![0u8; len.max(1)];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                other => break other.map_err(|source| SyncError::Sys { op: "recv", source })?,
            }
        };
        if n == 0 {
            return Err(SyncError::Closed(wanted));
        }
        let msg: Msg = serde_json::from_slice(&buf[..n]).map_err(|_| SyncError::Sys {
            op: "decode",
            source: nix::Error::EBADMSG,
        })?;
        match msg {
            Msg::Error(reason) => Err(SyncError::Remote(reason)),
            other => Ok(other),
        }
    }

    /// Waits for one specific message.
    pub fn expect(
        &self,
        want: &Msg,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(), SyncError> {
        let got = self.recv(what, timeout)?;
        if &got == want {
            Ok(())
        } else {
            Err(SyncError::Unexpected { wanted: what, got })
        }
    }

    /// The raw descriptor (for closing it in a child that must not hold it).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_eof() {
        let (a, b) = pair().expect("pair");
        a.send(&Msg::InitPid(42)).expect("send");
        assert_eq!(
            b.recv("pid", Duration::from_secs(1)).expect("recv"),
            Msg::InitPid(42)
        );
        // A message of any size arrives whole (the receive buffer is sized to the packet).
        let big = Msg::Go(Some("x".repeat(100_000)));
        a.send(&big).expect("send");
        assert_eq!(b.recv("big", Duration::from_secs(1)).expect("recv"), big);
        a.send(&Msg::Error("boom".into())).expect("send");
        assert!(
            matches!(b.recv("x", Duration::from_secs(1)), Err(SyncError::Remote(r)) if r == "boom")
        );
        drop(a);
        assert!(matches!(
            b.recv("ready", Duration::from_secs(1)),
            Err(SyncError::Closed("ready"))
        ));
    }

    #[test]
    fn timeout_when_silent() {
        let (_a, b) = pair().expect("pair");
        let r = b.recv("nothing", Duration::from_millis(50));
        assert!(matches!(r, Err(SyncError::Timeout("nothing"))));
    }
}
