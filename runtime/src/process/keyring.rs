//! A fresh session keyring per container (runc's default; `--no-new-keyring` skips it), so
//! containers never share the host's or each other's keys.

/// Why the keyring could not be made.
#[derive(Debug, thiserror::Error)]
#[error("join session keyring {name}: {source}")]
pub struct KeyringError {
    name: String,
    source: std::io::Error,
}

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;

/// Joins a new anonymous-to-the-host session keyring named `_ses.<id>`, as runc names it.
pub fn join_session(id: &str) -> Result<(), KeyringError> {
    let name = format!("_ses.{id}");
    let c = std::ffi::CString::new(name.clone()).map_err(|_| KeyringError {
        name: name.clone(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads one NUL-terminated string we own.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        // Kernels without keys, or a seccomp'd parent, refuse it: runc carries on then too.
        if matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return Ok(());
        }
        return Err(KeyringError { name, source: err });
    }
    Ok(())
}
