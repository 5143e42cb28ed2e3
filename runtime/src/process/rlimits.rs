//! `process.rlimits`: resource limits of the container process, set with setrlimit(2) on itself
//! (runc sets the same values with prlimit(2) on the init's pid).

use nix::errno::Errno;
use nix::sys::resource::Resource;
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// Why an rlimit could not be set.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// The name is not one of the RLIMIT_* resources Linux has (runc's wording).
    #[error("wrong rlimit value: {0}")]
    Unknown(String),
    /// setrlimit(2) refused the values.
    #[error("error setting rlimit type {name} (soft {soft}, hard {hard}): {errno}")]
    Set {
        /// The resource, e.g. RLIMIT_NOFILE.
        name: String,
        /// The soft limit asked for.
        soft: u64,
        /// The hard limit asked for.
        hard: u64,
        /// Why.
        errno: Errno,
    },
}

/// The resource an `RLIMIT_*` name stands for.
pub fn resource_from_name(name: &str) -> Result<Resource, RlimitError> {
    Ok(match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        other => return Err(RlimitError::Unknown(other.to_string())),
    })
}

/// The `RLIMIT_*` name of a runtime-spec rlimit type.
pub fn name_of(typ: PosixRlimitType) -> String {
    // oci-spec displays its variants in SCREAMING_SNAKE_CASE: RlimitNofile is "RLIMIT_NOFILE".
    typ.to_string()
}

/// Sets every limit in `rlimits` on the calling process, in order.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for rl in rlimits {
        let name = name_of(rl.typ());
        let resource = resource_from_name(&name)?;
        // Soft and hard go in one call: setting them apart could fail half way (soft > hard).
        nix::sys::resource::setrlimit(resource, rl.soft(), rl.hard()).map_err(|errno| {
            RlimitError::Set {
                name,
                soft: rl.soft(),
                hard: rl.hard(),
                errno,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::run;
    use nix::sys::resource::getrlimit;
    use oci_spec::runtime::PosixRlimitBuilder;

    #[test]
    fn every_spec_type_has_a_resource() {
        let all = [
            PosixRlimitType::RlimitCpu,
            PosixRlimitType::RlimitFsize,
            PosixRlimitType::RlimitData,
            PosixRlimitType::RlimitStack,
            PosixRlimitType::RlimitCore,
            PosixRlimitType::RlimitRss,
            PosixRlimitType::RlimitNproc,
            PosixRlimitType::RlimitNofile,
            PosixRlimitType::RlimitMemlock,
            PosixRlimitType::RlimitAs,
            PosixRlimitType::RlimitLocks,
            PosixRlimitType::RlimitSigpending,
            PosixRlimitType::RlimitMsgqueue,
            PosixRlimitType::RlimitNice,
            PosixRlimitType::RlimitRtprio,
            PosixRlimitType::RlimitRttime,
        ];
        for typ in all {
            let name = name_of(typ);
            assert!(name.starts_with("RLIMIT_"), "{name}");
            resource_from_name(&name).expect("known resource");
        }
        assert_eq!(name_of(PosixRlimitType::RlimitNofile), "RLIMIT_NOFILE");
        assert!(matches!(
            resource_from_name("RLIMIT_NOFILE"),
            Ok(Resource::RLIMIT_NOFILE)
        ));
    }

    #[test]
    fn unknown_name_is_named_in_the_error() {
        let err = resource_from_name("RLIMIT_BOGUS").expect_err("unknown");
        assert_eq!(err.to_string(), "wrong rlimit value: RLIMIT_BOGUS");
        assert!(resource_from_name("nofile").is_err());
    }

    #[test]
    fn sets_limits_in_a_child() {
        run(|| {
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            let want_hard = hard.min(4096);
            let limits = [
                PosixRlimitBuilder::default()
                    .typ(PosixRlimitType::RlimitNofile)
                    .soft(64u64)
                    .hard(want_hard)
                    .build()
                    .map_err(|e| e.to_string())?,
                PosixRlimitBuilder::default()
                    .typ(PosixRlimitType::RlimitCore)
                    .soft(0u64)
                    .hard(0u64)
                    .build()
                    .map_err(|e| e.to_string())?,
            ];
            apply(&limits).map_err(|e| e.to_string())?;
            let got = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            if got != (64, want_hard) {
                return Err(format!("RLIMIT_NOFILE is {got:?}"));
            }
            let got = getrlimit(Resource::RLIMIT_CORE).map_err(|e| e.to_string())?;
            if got != (0, 0) {
                return Err(format!("RLIMIT_CORE is {got:?}"));
            }
            // Soft above hard is refused, and the error names the resource.
            let bad = PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(100u64)
                .hard(50u64)
                .build()
                .map_err(|e| e.to_string())?;
            match apply(&[bad]) {
                Err(e) if e.to_string().contains("RLIMIT_NOFILE") => Ok(()),
                other => Err(format!(
                    "expected an error naming RLIMIT_NOFILE, got {other:?}"
                )),
            }
        })
        .expect("limits set in the child");
    }
}
