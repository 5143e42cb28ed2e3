//! `linux.seccomp`: the runtime-spec profile translated to a seccomp BPF filter, installed in the
//! container process at the points runc installs it.
//!
//! - [`translate`] checks the profile and merges its rules the way libseccomp does, then builds
//!   one cBPF program covering every architecture the profile names that this kernel can run
//!   (x86_64, i386 and x32 on x86_64 hosts). seccompiler compiles the argument comparisons; husk
//!   lays out the per-architecture dispatch around them (seccompiler knows one architecture and
//!   one match action per filter).
//! - [`install`] loads it with seccomp(2) and the profile's flags, without setting no_new_privs:
//!   seccompiler's `apply_filter` always sets it, the spec does not.
//! - [`notify`] sends the SCMP_ACT_NOTIFY listener to the agent at `listenerPath`, with the
//!   container state, as runc does.
//!
//! docs/security.md explains the choices (32-bit syscalls, the -ENOSYS stub, merging).

pub mod install;
pub mod notify;
mod tables;
pub mod translate;

#[cfg(test)]
mod emulator;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};

pub use translate::{compile, Filter};

/// Why a seccomp profile cannot be used, or could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of `linux.seccomp` holds something husk refuses; `field` is its JSON path.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the field, e.g. `linux.seccomp.syscalls[3].args[0].index`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// seccompiler refused the rules of one syscall.
    #[error("linux.seccomp: compiling the rules for {syscall}: {source}")]
    Compile {
        /// The syscall name.
        syscall: String,
        /// seccompiler's explanation.
        source: seccompiler::BackendError,
    },
    /// seccompiler's output did not have the shape husk splices (a seccompiler upgrade).
    #[error("linux.seccomp: unexpected code from seccompiler for {0}")]
    Unexpected(String),
    /// The program is longer than the kernel accepts.
    #[error(
        "linux.seccomp: the filter needs {0} BPF instructions; the kernel accepts at most 4096"
    )]
    TooLarge(usize),
    /// seccomp(2) refused the filter.
    #[error("install the seccomp filter (flags {flags:#x}): {source}{hint}")]
    Install {
        /// The SECCOMP_FILTER_FLAG_* bits passed.
        flags: u64,
        /// The kernel's error.
        source: std::io::Error,
        /// A likely cause, when the error has a well-known one.
        hint: &'static str,
    },
    /// The SCMP_ACT_NOTIFY agent could not be reached or sent the listener.
    #[error("seccomp agent at {path} (linux.seccomp.listenerPath): {reason}")]
    Agent {
        /// listenerPath.
        path: String,
        /// What failed.
        reason: String,
    },
}

impl SeccompError {
    /// An [`SeccompError::Invalid`] for `field`.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SeccompError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks `linux.seccomp` completely (everything `compile` would refuse), without installing.
pub fn validate(seccomp: &LinuxSeccomp) -> Result<(), SeccompError> {
    compile(seccomp).map(|_| ())
}

/// Where the filter goes: the container's init (the agent gets the state as `creating`), or a
/// process `husk exec` adds to a running container.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The init; the state document `create` sent (what hooks receive), with the init's pid.
    Init {
        /// The runtime-spec state JSON, status "creating".
        state_json: &'a str,
    },
    /// A process joining a running container.
    Exec,
}

/// A compiled filter waiting to be installed in this process, with its agent connection.
pub struct Pending {
    filter: Filter,
    no_new_privileges: bool,
    agent: Option<notify::Agent>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("instructions", &self.filter.program.len())
            .field("flags", &self.filter.flags)
            .field("no_new_privileges", &self.no_new_privileges)
            .field("agent", &self.agent.is_some())
            .finish()
    }
}

/// Compiles the config's filter for `process` and, when a rule notifies, connects to the agent
/// now: the init must do so while host paths are still visible (before pivot_root).
pub fn prepare(
    spec: &Spec,
    process: &Process,
    target: Target,
) -> Result<Option<Pending>, SeccompError> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let filter = compile(seccomp)?;
    let agent = if filter.notify {
        let path = seccomp
            .listener_path()
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match target {
            Target::Init { state_json } => Some(notify::Agent::connect(
                &path,
                state_json,
                seccomp.listener_metadata().as_deref(),
            )?),
            // The exec'd process has joined the container's mount namespace before any of
            // this runs, so the agent's socket on the host cannot be reached from here.
            Target::Exec => {
                return Err(SeccompError::invalid(
                    "linux.seccomp.listenerPath",
                    "husk exec cannot yet hand a SCMP_ACT_NOTIFY listener to the agent \
                     (the exec'd process cannot reach the host socket); refusing rather \
                     than running the process with notifying syscalls failing",
                ))
            }
        }
    } else {
        None
    };
    Ok(Some(Pending {
        filter,
        no_new_privileges: process.no_new_privileges() == Some(true),
        agent,
    }))
}

impl Pending {
    /// True when the filter must go in while the process still has CAP_SYS_ADMIN: without
    /// no_new_privs the kernel requires it, so runc installs before the user switch.
    pub fn needs_privilege(&self) -> bool {
        !self.no_new_privileges
    }

    /// Installs the filter in this process and, for SCMP_ACT_NOTIFY, sends the listener to the
    /// agent.
    pub fn install(self) -> Result<(), SeccompError> {
        let listener = install::load(&self.filter)?;
        match (listener, self.agent) {
            (Some(fd), Some(agent)) => agent.send(fd),
            (None, Some(agent)) => Err(SeccompError::Agent {
                path: agent.path().to_string(),
                reason: "the kernel returned no listener".into(),
            }),
            _ => Ok(()),
        }
    }
}

/// Names the `linux.seccomp` field that makes `data` fail to parse, when that is the cause:
/// serde's message says "unknown variant" without saying where.
pub fn explain_parse_error(data: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    translate::explain_raw(v.get("linux")?.get("seccomp")?)
}

/// The `linux.seccomp` part of `husk features`.
pub fn features() -> serde_json::Value {
    translate::features()
}
