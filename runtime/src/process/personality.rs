//! `linux.personality`: the execution domain of the container process, set with personality(2)
//! as runc's `setupPersonality` does.
//!
//! runc supports the LINUX and LINUX32 domains and ignores every flag with a warning; so does husk.

use nix::errno::Errno;
use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

/// PER_LINUX from linux/personality.h.
pub const PER_LINUX: libc::c_ulong = 0x0000;
/// PER_LINUX32 from linux/personality.h.
pub const PER_LINUX32: libc::c_ulong = 0x0008;

/// Why the personality could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PersonalityError {
    /// personality(2) refused the domain.
    #[error("set_personality {domain}: {errno}")]
    Set {
        /// The domain asked for.
        domain: String,
        /// Why.
        errno: Errno,
    },
}

/// The personality(2) value of a domain.
pub fn domain_value(domain: LinuxPersonalityDomain) -> libc::c_ulong {
    match domain {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    }
}

/// runc's warning about the flags it ignores, for the caller to log; None without flags.
pub fn ignored_flags_warning(p: &LinuxPersonality) -> Option<String> {
    let flags = p.flags().as_ref().filter(|f| !f.is_empty())?;
    Some(format!(
        "ignoring unsupported personality flags: [{}] because personality flag has not \
         supported at this time",
        flags.join(" ")
    ))
}

/// Sets the calling process's execution domain; the flags are ignored.
pub fn apply(p: &LinuxPersonality) -> Result<(), PersonalityError> {
    // SAFETY: personality(2) takes one integer by value and touches no memory of ours.
    let r = unsafe { libc::personality(domain_value(p.domain())) };
    Errno::result(r)
        .map(|_| ())
        .map_err(|errno| PersonalityError::Set {
            domain: p.domain().to_string(),
            errno,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::run;
    use oci_spec::runtime::LinuxPersonalityBuilder;

    /// The current personality (personality(0xffffffff) only queries).
    fn current() -> libc::c_int {
        // SAFETY: 0xffffffff asks personality(2) for the current value without changing it.
        unsafe { libc::personality(0xffff_ffff) }
    }

    #[test]
    fn domains_and_warning() {
        assert_eq!(domain_value(LinuxPersonalityDomain::PerLinux), 0);
        assert_eq!(domain_value(LinuxPersonalityDomain::PerLinux32), 8);
        let p: LinuxPersonality =
            serde_json::from_str(r#"{"domain":"LINUX32","flags":["ADDR_NO_RANDOMIZE"]}"#)
                .expect("parses");
        assert_eq!(p.domain(), LinuxPersonalityDomain::PerLinux32);
        let w = ignored_flags_warning(&p).expect("a warning");
        assert!(w.contains("ADDR_NO_RANDOMIZE"), "{w}");
        let plain: LinuxPersonality = serde_json::from_str(r#"{"domain":"LINUX"}"#).expect("ok");
        assert_eq!(ignored_flags_warning(&plain), None);
    }

    #[test]
    fn sets_linux32_in_a_child() {
        run(|| {
            let p = LinuxPersonalityBuilder::default()
                .domain(LinuxPersonalityDomain::PerLinux32)
                .build()
                .map_err(|e| e.to_string())?;
            apply(&p).map_err(|e| e.to_string())?;
            let got = current();
            if got != 8 {
                return Err(format!("personality is {got:#x}"));
            }
            let p = LinuxPersonalityBuilder::default()
                .domain(LinuxPersonalityDomain::PerLinux)
                .build()
                .map_err(|e| e.to_string())?;
            apply(&p).map_err(|e| e.to_string())?;
            match current() {
                0 => Ok(()),
                other => Err(format!("personality is {other:#x}")),
            }
        })
        .expect("personality set in the child");
    }
}
