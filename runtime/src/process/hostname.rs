//! `hostname` and `domainname`: set in the container's own UTS namespace, as runc does.

use nix::errno::Errno;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// Why the hostname or domain name could not be set.
#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    /// A name is set but the container shares the host's UTS namespace (runc's wording).
    #[error("unable to set {0} without a private UTS namespace")]
    NoUtsNamespace(&'static str),
    /// sethostname(2) refused the name.
    #[error("sethostname {name:?}: {errno}")]
    Hostname {
        /// The name asked for.
        name: String,
        /// Why (EINVAL: longer than 64 bytes).
        errno: Errno,
    },
    /// setdomainname(2) refused the name.
    #[error("setdomainname {name:?}: {errno}")]
    Domainname {
        /// The name asked for.
        name: String,
        /// Why (EINVAL: longer than 64 bytes).
        errno: Errno,
    },
}

/// runc's check: a hostname or domainname needs a UTS namespace in `namespaces`.
pub fn validate(
    hostname: Option<&str>,
    domainname: Option<&str>,
    namespaces: &[LinuxNamespace],
) -> Result<(), HostnameError> {
    let has_uts = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts);
    if has_uts {
        return Ok(());
    }
    if hostname.is_some_and(|h| !h.is_empty()) {
        return Err(HostnameError::NoUtsNamespace("hostname"));
    }
    if domainname.is_some_and(|d| !d.is_empty()) {
        return Err(HostnameError::NoUtsNamespace("domainname"));
    }
    Ok(())
}

/// Sets the hostname and domain name; absent or empty names are left as they are, as in runc.
pub fn apply(hostname: Option<&str>, domainname: Option<&str>) -> Result<(), HostnameError> {
    if let Some(name) = hostname.filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(name).map_err(|errno| HostnameError::Hostname {
            name: name.to_string(),
            errno,
        })?;
    }
    if let Some(name) = domainname.filter(|d| !d.is_empty()) {
        // SAFETY: setdomainname(2) reads exactly `name.len()` bytes from a live &str; it needs no
        // NUL terminator.
        let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        Errno::result(r)
            .map(|_| ())
            .map_err(|errno| HostnameError::Domainname {
                name: name.to_string(),
                errno,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::{is_root, run};
    use nix::sched::CloneFlags;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(typ: LinuxNamespaceType) -> LinuxNamespace {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .expect("valid")
    }

    #[test]
    fn names_need_a_uts_namespace() {
        let without = [ns(LinuxNamespaceType::Pid)];
        let with = [ns(LinuxNamespaceType::Uts)];
        let err = validate(Some("box"), None, &without).expect_err("no uts");
        assert_eq!(
            err.to_string(),
            "unable to set hostname without a private UTS namespace"
        );
        let err = validate(None, Some("example.org"), &without).expect_err("no uts");
        assert!(err.to_string().contains("domainname"), "{err}");
        validate(Some("box"), Some("example.org"), &with).expect("uts present");
        validate(Some(""), None, &without).expect("empty names need nothing");
    }

    #[test]
    fn sets_names_in_a_child_uts_namespace() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let before = nix::unistd::gethostname().expect("gethostname");
        run(|| {
            // Never the host's names: a fresh UTS namespace for the child only.
            nix::sched::unshare(CloneFlags::CLONE_NEWUTS).map_err(|e| e.to_string())?;
            apply(Some("husk-test"), Some("husk.example")).map_err(|e| e.to_string())?;
            let name = nix::unistd::gethostname().map_err(|e| e.to_string())?;
            if name != "husk-test" {
                return Err(format!("hostname is {name:?}"));
            }
            let domain = std::fs::read_to_string("/proc/sys/kernel/domainname")
                .map_err(|e| e.to_string())?;
            if domain.trim() != "husk.example" {
                return Err(format!("domainname is {domain:?}"));
            }
            let long = "x".repeat(65);
            match apply(Some(&long), None) {
                Err(HostnameError::Hostname {
                    errno: Errno::EINVAL,
                    ..
                }) => Ok(()),
                other => Err(format!("expected EINVAL for a 65-byte name, got {other:?}")),
            }
        })
        .expect("names set in the child");
        let after = nix::unistd::gethostname().expect("gethostname");
        assert_eq!(before, after, "host name untouched");
    }
}
