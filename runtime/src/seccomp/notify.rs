//! SCMP_ACT_NOTIFY: handing the filter's listener to the seccomp agent at `listenerPath`.
//!
//! As runc does: one `sendmsg` on a stream connection to the agent carrying the
//! runtime-spec `ContainerProcessState` JSON (`fds: ["seccompFd"]`, the process pid, the
//! `listenerMetadata` and the container state) with the listener in SCM_RIGHTS.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::Serialize;

use super::SeccompError;

/// The name runc gives the listener in `fds` (specs.SeccompFdName).
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// The runtime-spec `ContainerProcessState` sent with the listener.
#[derive(Debug, Serialize)]
pub struct ContainerProcessState {
    /// Runtime-spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Names of the descriptors sent along, in order.
    pub fds: Vec<String>,
    /// Host pid of the process the filter is in.
    pub pid: i64,
    /// `linux.seccomp.listenerMetadata`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// The container's state document.
    pub state: serde_json::Value,
}

/// A connection to the agent, made while its socket is reachable, and the message to send.
#[derive(Debug)]
pub struct Agent {
    path: String,
    stream: UnixStream,
    message: Vec<u8>,
}

impl Agent {
    /// Connects to the agent at `path` and prepares the state message for the init whose
    /// state document (with its host pid) is `state_json`.
    pub fn connect(
        path: &str,
        state_json: &str,
        metadata: Option<&str>,
    ) -> Result<Agent, SeccompError> {
        let fail = |reason: String| SeccompError::Agent {
            path: path.to_string(),
            reason,
        };
        let full: serde_json::Value = serde_json::from_str(state_json)
            .map_err(|e| fail(format!("the container state is not JSON: {e}")))?;
        // The runtime-spec state only (runc sends specs.State): the hooks' document carries
        // runc's extra fields too (rootfs, created, owner).
        let mut state = serde_json::Map::new();
        for key in ["ociVersion", "id", "status", "pid", "bundle", "annotations"] {
            if let Some(v) = full.get(key).filter(|v| !v.is_null()) {
                state.insert(key.to_string(), v.clone());
            }
        }
        let state = serde_json::Value::Object(state);
        let msg = ContainerProcessState {
            oci_version: state["ociVersion"].as_str().unwrap_or("1.0.2").to_string(),
            fds: vec![SECCOMP_FD_NAME.to_string()],
            pid: state["pid"].as_i64().unwrap_or(0),
            metadata: metadata.unwrap_or_default().to_string(),
            state,
        };
        let message =
            serde_json::to_vec(&msg).map_err(|e| fail(format!("encode the state: {e}")))?;
        let stream = UnixStream::connect(path).map_err(|e| fail(format!("connect: {e}")))?;
        Ok(Agent {
            path: path.to_string(),
            stream,
            message,
        })
    }

    /// listenerPath.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends the state and the listener; our copy of the listener is closed afterwards.
    pub fn send(self, listener: OwnedFd) -> Result<(), SeccompError> {
        let fds = [listener.as_raw_fd()];
        let iov = [IoSlice::new(&self.message)];
        let sent = sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| SeccompError::Agent {
            path: self.path.clone(),
            reason: format!("send the listener: {e}"),
        })?;
        if sent != self.message.len() {
            return Err(SeccompError::Agent {
                path: self.path,
                reason: format!("sent {sent} of {} bytes", self.message.len()),
            });
        }
        Ok(())
    }
}
