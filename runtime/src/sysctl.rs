//! `linux.sysctl`: which kernel parameters a container may set, checked as runc's validator
//! checks them, and writing them under /proc/sys once the container's /proc is mounted.
//!
//! /proc/sys is only partly namespaced: a container may set the IPC sysctls when it has its own
//! IPC namespace, net.* when it has its own network namespace, and kernel.domainname with its
//! own UTS namespace. Anything else would change the host, so it is refused.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::statfs::PROC_SUPER_MAGIC;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// IPC sysctls outside fs.mqueue.* that belong to the IPC namespace.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Why a sysctl is refused or could not be written. Messages are runc's.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// An IPC sysctl without an IPC namespace.
    #[error("sysctl {0:?} is not allowed in the hosts ipc namespace")]
    HostIpc(String),
    /// A net.* sysctl without a network namespace of the container's own.
    #[error("sysctl {0:?} not allowed in host network namespace")]
    HostNet(String),
    /// kernel.hostname, which the `hostname` field sets.
    #[error("sysctl {0:?} is not allowed as it conflicts with the OCI \"hostname\" field")]
    HostnameConflict(String),
    /// A sysctl no namespace isolates.
    #[error("sysctl {0:?} is not in a separate kernel namespace")]
    NotNamespaced(String),
    /// The network namespace path cannot be compared with husk's own.
    #[error("invalid netns path: stat {path}: {source}")]
    NetnsPath {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key that does not name a file under /proc/sys.
    #[error("invalid sysctl key {0:?}")]
    BadKey(String),
    /// The file under /proc/sys is not on procfs: something is mounted over /proc.
    #[error("sysctl {key:?}: {path} is not on procfs")]
    NotProcfs {
        /// The sysctl.
        key: String,
        /// Its file.
        path: PathBuf,
    },
    /// Opening or writing the file failed.
    #[error("write sysctl {key:?} = {value:?} to {path}: {source}")]
    Write {
        /// The sysctl.
        key: String,
        /// The value.
        value: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A key in dotted form: "net/ipv4/conf/eno2.100/rp_filter" becomes
/// "net.ipv4.conf.eno2/100.rp_filter" (sysctl(8): when the first separator is a '/', dots are
/// part of names), as runc's convertSysctlVariableToDotsSeparator.
pub fn to_dots(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                other => other,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// The file under /proc/sys for a key, in either dotted or slashed form.
pub fn proc_path(key: &str) -> Result<PathBuf, SysctlError> {
    let dotted = to_dots(key);
    let mut path = PathBuf::from("/proc/sys");
    for part in dotted.split('.') {
        // In dotted form a '/' inside a name stands for a '.' (an interface like eno2.100).
        let name = part.replace('/', ".");
        if name.is_empty() || name == "." || name == ".." {
            return Err(SysctlError::BadKey(key.to_string()));
        }
        path.push(name);
    }
    Ok(path)
}

/// runc's check that every sysctl is in a namespace the container has of its own.
///
/// Keys are checked in sorted order so the same config always reports the same key.
pub fn validate(
    sysctl: &HashMap<String, String>,
    namespaces: &[LinuxNamespace],
) -> Result<(), SysctlError> {
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    // Whether the container's network namespace is husk's own; computed at the first net.* key.
    let mut host_net: Option<bool> = None;
    for key in keys {
        let s = to_dots(key);
        if IPC_SYSCTLS.contains(&s.as_str()) || s.starts_with("fs.mqueue.") {
            if has(LinuxNamespaceType::Ipc) {
                continue;
            }
            return Err(SysctlError::HostIpc(s));
        }
        if s.starts_with("net.") {
            let host = match host_net {
                Some(h) => h,
                None => {
                    let h = uses_host_netns(namespaces)?;
                    host_net = Some(h);
                    h
                }
            };
            if host {
                return Err(SysctlError::HostNet(s));
            }
            continue;
        }
        if has(LinuxNamespaceType::Uts) {
            match s.as_str() {
                // Namespaced, and no dedicated OCI field sets it.
                "kernel.domainname" => continue,
                "kernel.hostname" => return Err(SysctlError::HostnameConflict(s)),
                _ => {}
            }
        }
        return Err(SysctlError::NotNamespaced(s));
    }
    Ok(())
}

/// Whether the container would share the network namespace husk runs in ("host" here means
/// husk's current one, as in runc): no network namespace, or a path to the same one.
fn uses_host_netns(namespaces: &[LinuxNamespace]) -> Result<bool, SysctlError> {
    let Some(net) = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
    else {
        return Ok(true);
    };
    let Some(path) = net.path() else {
        return Ok(false);
    };
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|source| SysctlError::NetnsPath {
            path: p.to_path_buf(),
            source,
        })
    };
    let own = stat(Path::new("/proc/self/ns/net"))?;
    let theirs = stat(path)?;
    Ok(own.dev() == theirs.dev() && own.ino() == theirs.ino())
}

/// Writes every sysctl under /proc/sys, in sorted key order; run in the container once /proc
/// is mounted.
pub fn apply(sysctl: &HashMap<String, String>) -> Result<(), SysctlError> {
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        write_one(key, &sysctl[key])?;
    }
    Ok(())
}

/// Writes one sysctl, refusing a file that is not on procfs.
fn write_one(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = proc_path(key)?;
    let write_err = |source| SysctlError::Write {
        key: key.to_string(),
        value: value.to_string(),
        path: path.clone(),
        source,
    };
    // No O_CREAT: a sysctl the kernel lacks must fail (ENOENT), not be created. O_NOFOLLOW: no
    // sysctl file is a symlink, so one would be an attempt to send the write elsewhere.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(write_err)?;
    let fs = nix::sys::statfs::fstatfs(&file)
        .map_err(|errno| write_err(std::io::Error::from_raw_os_error(errno as i32)))?;
    if fs.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(SysctlError::NotProcfs {
            key: key.to_string(),
            path,
        });
    }
    // One write(2): the kernel parses each write on its own.
    file.write_all(value.as_bytes()).map_err(write_err)
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

    fn one(key: &str) -> HashMap<String, String> {
        [(key.to_string(), "1".to_string())].into_iter().collect()
    }

    fn err(key: &str, namespaces: &[LinuxNamespace]) -> String {
        validate(&one(key), namespaces)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn converts_slashed_keys() {
        assert_eq!(to_dots("net.ipv4.ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(to_dots("net/ipv4/ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(
            to_dots("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(to_dots("nodots"), "nodots");
        assert_eq!(
            proc_path("net/ipv4/conf/eno2.100/rp_filter").expect("valid"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eno2.100/rp_filter")
        );
        assert_eq!(
            proc_path("kernel.shmmax").expect("valid"),
            PathBuf::from("/proc/sys/kernel/shmmax")
        );
        for bad in ["net..x", "net/../../etc/passwd", ".net", "net.", ""] {
            assert!(proc_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipc_sysctls_need_an_ipc_namespace() {
        let ipc = [ns(LinuxNamespaceType::Ipc)];
        for key in ["kernel.shmmax", "kernel.sem", "fs.mqueue.queues_max"] {
            validate(&one(key), &ipc).expect(key);
            assert_eq!(
                err(key, &[]),
                format!("sysctl \"{key}\" is not allowed in the hosts ipc namespace")
            );
        }
    }

    #[test]
    fn net_sysctls_need_an_own_network_namespace() {
        let net = [ns(LinuxNamespaceType::Network)];
        validate(&one("net.ipv4.ip_forward"), &net).expect("own netns");
        assert_eq!(
            err("net/ipv4/ip_forward", &[]),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        // A path to husk's own network namespace is the host's.
        let joined_own = [LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path("/proc/self/ns/net")
            .build()
            .expect("valid")];
        assert!(err("net.core.somaxconn", &joined_own).contains("host network namespace"));
        let missing = [LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path("/nonexistent/netns")
            .build()
            .expect("valid")];
        assert!(err("net.core.somaxconn", &missing).starts_with("invalid netns path"));
    }

    #[test]
    fn uts_and_global_sysctls() {
        let uts = [ns(LinuxNamespaceType::Uts)];
        validate(&one("kernel.domainname"), &uts).expect("domainname with uts");
        assert_eq!(
            err("kernel.hostname", &uts),
            "sysctl \"kernel.hostname\" is not allowed as it conflicts with the OCI \"hostname\" field"
        );
        assert_eq!(
            err("kernel.domainname", &[]),
            "sysctl \"kernel.domainname\" is not in a separate kernel namespace"
        );
        let all = [
            ns(LinuxNamespaceType::Uts),
            ns(LinuxNamespaceType::Ipc),
            ns(LinuxNamespaceType::Network),
        ];
        assert_eq!(
            err("vm.max_map_count", &all),
            "sysctl \"vm.max_map_count\" is not in a separate kernel namespace"
        );
        assert!(err("kernel.msgmax_x", &all).contains("not in a separate kernel namespace"));
        validate(&HashMap::new(), &[]).expect("nothing to check");
    }

    #[test]
    fn writes_in_a_child_ipc_namespace() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("read shmmni");
        run(|| {
            // A fresh IPC namespace: kernel.shm* written here is the child's alone.
            nix::sched::unshare(CloneFlags::CLONE_NEWIPC).map_err(|e| e.to_string())?;
            let mut sysctl = HashMap::new();
            sysctl.insert("kernel.shmmni".to_string(), "1234".to_string());
            sysctl.insert("kernel/shm_rmid_forced".to_string(), "1".to_string());
            apply(&sysctl).map_err(|e| e.to_string())?;
            let got =
                std::fs::read_to_string("/proc/sys/kernel/shmmni").map_err(|e| e.to_string())?;
            if got.trim() != "1234" {
                return Err(format!("shmmni is {got:?}"));
            }
            match apply(&one("kernel.no_such_sysctl")) {
                Err(SysctlError::Write { .. }) => Ok(()),
                other => Err(format!("expected a write error, got {other:?}")),
            }
        })
        .expect("sysctl written in the child");
        let after = std::fs::read_to_string("/proc/sys/kernel/shmmni").expect("read shmmni");
        assert_eq!(host, after, "host value untouched");
    }
}
