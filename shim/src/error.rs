//! The shim's error type and its mapping onto the gRPC codes containerd's errdefs understands.

use containerd_shim::protos::ttrpc::{self, get_status, Code};

use crate::runtime::RuntimeError;

/// Everything a Task RPC can fail with. The variant picks the gRPC code: containerd turns
/// NOT_FOUND into `ErrNotFound` (e.g. "process already finished" for a kill after exit), and
/// so on, so the codes matter as much as the messages.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No such container, exec or process (or it already finished).
    #[error("{0}: not found")]
    NotFound(String),
    /// An id that is already in use.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// The request is valid but the process is in the wrong state for it.
    #[error("{0}: failed precondition")]
    FailedPrecondition(String),
    /// A malformed request.
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    /// The runtime binary failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A local I/O failure (fifos, mounts, state files).
    #[error("{context}: {source}")]
    Io {
        /// What the shim was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with its story.
    #[error("{0}")]
    Other(String),
}

impl ShimError {
    /// An [`ShimError::Io`] with context, for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
        let context = context.into();
        move |source| ShimError::Io { context, source }
    }

    fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::Runtime(_) | ShimError::Io { .. } | ShimError::Other(_) => Code::UNKNOWN,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        let code = e.code();
        // containerd prints this message as is ("OCI runtime create failed: ..."): keep the
        // whole chain in it.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let text = s.to_string();
            if !msg.contains(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            src = s.source();
        }
        ttrpc::Error::RpcStatus(get_status(code, msg))
    }
}

/// The shim's result type.
pub type Result<T, E = ShimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_variant() {
        let e: ttrpc::Error = ShimError::NotFound("process already finished".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert!(s.message().contains("process already finished"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e: ttrpc::Error = ShimError::Other("boom".into()).into();
        assert!(matches!(e, ttrpc::Error::RpcStatus(s) if s.code() == Code::UNKNOWN));
    }
}
