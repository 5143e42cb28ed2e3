//! `process.noNewPrivileges`: PR_SET_NO_NEW_PRIVS, so exec can never grant more privileges
//! (setuid bits and file capabilities stop working) in the container process and its children.

use nix::errno::Errno;

/// Why no_new_privs could not be set.
#[derive(Debug, thiserror::Error)]
pub enum NoNewPrivsError {
    /// prctl(PR_SET_NO_NEW_PRIVS) failed.
    #[error("set no_new_privs: {0}")]
    Set(Errno),
}

/// Sets no_new_privs on the calling process (it cannot be unset again).
pub fn apply() -> Result<(), NoNewPrivsError> {
    nix::sys::prctl::set_no_new_privs().map_err(NoNewPrivsError::Set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::{run, status_field};

    #[test]
    fn sets_flag_in_a_child() {
        run(|| {
            apply().map_err(|e| e.to_string())?;
            match status_field("NoNewPrivs")?.as_str() {
                "1" => Ok(()),
                other => Err(format!("NoNewPrivs is {other}")),
            }
        })
        .expect("no_new_privs set in the child");
    }
}
