//! `linux.namespaces`: which namespaces are new, which are joined by path, and the id maps.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

/// Errors in namespace configuration or joining.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A namespace type is listed twice.
    #[error("duplicate namespace {0}")]
    Duplicate(String),
    /// The `path` of a namespace cannot be opened.
    #[error("open namespace path {path}: {source}")]
    Open {
        /// The namespace path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// setns(2) refused a namespace.
    #[error("join {kind} namespace {path}: {source}")]
    Join {
        /// The namespace type.
        kind: String,
        /// The namespace path.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// Writing an id map failed.
    #[error("write {path}: {source}")]
    Map {
        /// The map file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// User namespace configured without maps, or maps without a user namespace.
    #[error("{0}")]
    Invalid(String),
}

/// Name of a namespace type as config.json spells it.
pub fn type_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// Refuses a namespace list runc would refuse.
pub fn validate(namespaces: &[LinuxNamespace]) -> Result<(), NamespaceError> {
    let mut seen = HashSet::new();
    for ns in namespaces {
        if !seen.insert(ns.typ() as i64) {
            return Err(NamespaceError::Duplicate(type_name(ns.typ()).to_string()));
        }
    }
    Ok(())
}

/// runc's rule: a new user namespace needs uid and gid mappings (a joined one has its own).
/// Mappings without a user namespace are ignored, as runc ignores them.
pub fn validate_id_mappings(
    namespaces: &[LinuxNamespace],
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let new_user = namespaces.iter().any(|n| {
        n.typ() == LinuxNamespaceType::User
            && n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
    });
    if new_user && uid_maps.is_empty() {
        return Err(NamespaceError::Invalid(
            "User namespaces enabled, but no uid mappings found.".into(),
        ));
    }
    if new_user && gid_maps.is_empty() {
        return Err(NamespaceError::Invalid(
            "User namespaces enabled, but no gid mappings found.".into(),
        ));
    }
    Ok(())
}

/// The namespace plan for one container.
#[derive(Debug)]
pub struct Plan {
    /// Namespaces to create (excluding user and time, which are unshared before the clone).
    pub clone_flags: CloneFlags,
    /// A new user namespace is made.
    pub new_user: bool,
    /// A new time namespace is made.
    pub new_time: bool,
    /// Namespaces to join, already opened, in the order they must be joined.
    pub join: Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clone_flags: CloneFlags::empty(),
            new_user: false,
            new_time: false,
            join: Vec::new(),
        }
    }
}

impl Plan {
    /// Whether the container's namespace of `t` is its own (new or joined), not the host's.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        let joined = self.join.iter().any(|(k, _, _)| *k == t);
        joined
            || match t {
                LinuxNamespaceType::User => self.new_user,
                LinuxNamespaceType::Time => self.new_time,
                other => self.clone_flags.contains(flag(other)),
            }
    }
}

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_truncate(t as libc::c_int)
}

/// Opens every namespace path (while the host's paths are still reachable) and sorts the rest.
pub fn plan(namespaces: &[LinuxNamespace]) -> Result<Plan, NamespaceError> {
    let mut plan = Plan::default();
    for ns in namespaces {
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                let file = File::open(path).map_err(|source| NamespaceError::Open {
                    path: path.clone(),
                    source,
                })?;
                plan.join
                    .push((ns.typ(), path.clone(), OwnedFd::from(file)));
            }
            _ => match ns.typ() {
                LinuxNamespaceType::User => plan.new_user = true,
                LinuxNamespaceType::Time => plan.new_time = true,
                t => plan.clone_flags |= flag(t),
            },
        }
    }
    // The user namespace first (it grants the rights to join the others), mount last (after it
    // the host's paths are gone), as runc orders them.
    plan.join.sort_by_key(|(t, _, _)| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    Ok(plan)
}

/// The namespaces of a running process that differ from ours, opened for joining (`exec`).
pub fn plan_join_process(pid: i32) -> Result<Plan, NamespaceError> {
    use std::os::unix::fs::MetadataExt;
    let kinds = [
        (LinuxNamespaceType::User, "user"),
        (LinuxNamespaceType::Ipc, "ipc"),
        (LinuxNamespaceType::Uts, "uts"),
        (LinuxNamespaceType::Network, "net"),
        (LinuxNamespaceType::Pid, "pid"),
        (LinuxNamespaceType::Cgroup, "cgroup"),
        (LinuxNamespaceType::Time, "time"),
        (LinuxNamespaceType::Mount, "mnt"),
    ];
    let mut namespaces = Vec::new();
    for (t, name) in kinds {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            // The kernel lacks this namespace type: nothing to join.
            continue;
        };
        // Joining our own user namespace is EINVAL, and joining any other of our own is waste.
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let ns = oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(t)
            .path(theirs)
            .build()
            .map_err(|e| NamespaceError::Invalid(e.to_string()))?;
        namespaces.push(ns);
    }
    plan(&namespaces)
}

/// Joins every namespace the plan opened. The pid namespace applies to children only.
pub fn join_all(plan: &Plan) -> Result<(), NamespaceError> {
    for (t, path, fd) in &plan.join {
        nix::sched::setns(fd, flag(*t)).map_err(|source| NamespaceError::Join {
            kind: type_name(*t).to_string(),
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Renders id mappings in the /proc/PID/uid_map format.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes uid_map and gid_map of `pid` (a process that has just unshared its user namespace).
///
/// Maps beyond the caller's own id need newuidmap/newgidmap when unprivileged; as root the
/// kernel takes any map directly. setgroups is denied only when the caller cannot map groups
/// freely (unprivileged), as runc does for rootless containers.
pub fn write_id_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let root = nix::unistd::geteuid().is_root();
    let uid_helper = !root && !only_own_id(uid_maps, nix::unistd::geteuid().as_raw());
    let gid_helper = !root && !only_own_id(gid_maps, nix::unistd::getegid().as_raw());
    // An unprivileged writer of gid_map must deny setgroups first; newgidmap decides that from
    // /etc/subgid itself (and fails if setgroups is already "deny"), so not then.
    if !root && !gid_helper {
        let p = base.join("setgroups");
        std::fs::write(&p, "deny").map_err(|source| NamespaceError::Map { path: p, source })?;
    }
    for (file, maps, helper) in [
        ("uid_map", uid_maps, uid_helper.then_some("newuidmap")),
        ("gid_map", gid_maps, gid_helper.then_some("newgidmap")),
    ] {
        match helper {
            Some(tool) => run_map_helper(tool, pid, maps)?,
            None => {
                let p = base.join(file);
                std::fs::write(&p, map_text(maps))
                    .map_err(|source| NamespaceError::Map { path: p, source })?;
            }
        }
    }
    Ok(())
}

/// Whether `maps` maps only `id` itself, which the kernel lets an unprivileged user write.
fn only_own_id(maps: &[LinuxIdMapping], id: u32) -> bool {
    matches!(maps, [m] if m.size() == 1 && m.host_id() == id)
}

/// The arguments of newuidmap/newgidmap after the pid: `cid hid size` per mapping.
fn helper_args(maps: &[LinuxIdMapping]) -> Vec<String> {
    maps.iter()
        .flat_map(|m| [m.container_id(), m.host_id(), m.size()])
        .map(|n| n.to_string())
        .collect()
}

/// Runs newuidmap/newgidmap (setuid root, from shadow's uidmap package): they check the
/// ranges against /etc/subuid and /etc/subgid and write the map an unprivileged user cannot.
fn run_map_helper(tool: &str, pid: i32, maps: &[LinuxIdMapping]) -> Result<(), NamespaceError> {
    let out = std::process::Command::new(tool)
        .arg(pid.to_string())
        .args(helper_args(maps))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            NamespaceError::Invalid(format!(
                "run {tool} for a rootless id mapping beyond your own id (install uidmap?): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(NamespaceError::Invalid(format!(
            "{tool} {pid} {} failed ({}): {}",
            helper_args(maps).join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder};

    fn ns(t: LinuxNamespaceType) -> LinuxNamespace {
        LinuxNamespaceBuilder::default().typ(t).build().expect("ns")
    }

    #[test]
    fn duplicates_are_refused() {
        let list = vec![ns(LinuxNamespaceType::Pid), ns(LinuxNamespaceType::Pid)];
        assert!(validate(&list).is_err());
    }

    #[test]
    fn plan_splits_new_namespaces() {
        let list = vec![
            ns(LinuxNamespaceType::Pid),
            ns(LinuxNamespaceType::Mount),
            ns(LinuxNamespaceType::User),
            ns(LinuxNamespaceType::Time),
        ];
        let p = plan(&list).expect("plan");
        assert!(p.new_user && p.new_time);
        assert_eq!(
            p.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
        assert!(p.has(LinuxNamespaceType::Pid) && !p.has(LinuxNamespaceType::Network));
    }

    #[test]
    fn missing_path_is_an_error() {
        let list = vec![LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path("/nonexistent/ns/net")
            .build()
            .expect("ns")];
        let err = plan(&list).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ns/net"));
    }

    #[test]
    fn new_user_namespace_needs_maps() {
        let m = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100_000u32)
            .size(1u32)
            .build()
            .expect("map");
        let user = vec![ns(LinuxNamespaceType::User)];
        let err = validate_id_mappings(&user, &[], &[]).expect_err("no maps");
        assert!(err.to_string().contains("no uid mappings"), "{err}");
        let err = validate_id_mappings(&user, &[m], &[]).expect_err("no gid maps");
        assert!(err.to_string().contains("no gid mappings"), "{err}");
        validate_id_mappings(&user, &[m], &[m]).expect("both maps");
        let joined = vec![LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .path("/proc/1/ns/user")
            .build()
            .expect("ns")];
        validate_id_mappings(&joined, &[], &[]).expect("a joined user ns has its maps");
        assert!(only_own_id(&[m], 100_000) && !only_own_id(&[m], 1000));
        assert_eq!(
            helper_args(&[m, m]),
            ["0", "100000", "1", "0", "100000", "1"]
        );
        validate_id_mappings(&[], &[m], &[]).expect("maps without a user ns are ignored");
    }

    #[test]
    fn maps_render() {
        let m = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(1000u32)
            .size(65536u32)
            .build()
            .expect("map");
        assert_eq!(map_text(&[m]), "0 1000 65536\n");
    }
}
