//! `linux.cgroupsPath` -> the absolute cgroup path husk manages (the same in every hierarchy).

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

/// The parent slice runc's systemd driver uses when cgroupsPath names none.
const DEFAULT_SLICE: &str = "system.slice";
/// The scope prefix for a container without cgroupsPath under `--systemd-cgroup`.
const DEFAULT_SCOPE_PREFIX: &str = "husk";

/// Resolves cgroupsPath as described on [`super::ContainerCgroup::new`].
pub(super) fn resolve(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<PathBuf, CgroupError> {
    let raw = match cgroups_path {
        Some(p) => p
            .to_str()
            .ok_or_else(|| invalid(p, "it is not valid UTF-8"))?
            .to_string(),
        None if systemd => format!("{DEFAULT_SLICE}:{DEFAULT_SCOPE_PREFIX}:{id}"),
        None => format!("/{id}"),
    };
    let value = Path::new(&raw);
    if raw.is_empty() {
        return Err(invalid(value, "it is empty"));
    }
    // An absolute path is a cgroupfs path even with --systemd-cgroup: that is how a
    // ContainerCgroup comes back from the resolved path stored in state.json.
    let path = if raw.contains(':') && !raw.starts_with('/') {
        if !systemd {
            return Err(invalid(
                value,
                "it has the systemd \"slice:prefix:name\" form but the systemd cgroup driver \
                 is not enabled (--systemd-cgroup)",
            ));
        }
        systemd_path(&raw).map_err(|reason| invalid(value, &reason))?
    } else {
        // Relative paths are anchored at the hierarchy root, as youki does. runc resolves them
        // against its own cgroup in each hierarchy and stores every resolved path; husk stores
        // one path, which must mean the same thing to every later husk command wherever that
        // command itself runs.
        PathBuf::from(format!("/{raw}"))
    };
    let cleaned = clean(&path);
    if cleaned == Path::new("/") {
        return Err(invalid(
            value,
            "it resolves to the root cgroup, which a container must not own",
        ));
    }
    Ok(cleaned)
}

fn invalid(value: &Path, reason: &str) -> CgroupError {
    CgroupError::InvalidPath {
        value: value.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Lexical cleaning like runc's utils.CleanPath: `..` can never climb above the root, so a
/// cgroupsPath cannot name a directory outside the cgroup hierarchy.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// "slice:prefix:name" -> the cgroupfs path systemd gives that unit, e.g.
/// "machine-web.slice:docker:abc" -> "/machine.slice/machine-web.slice/docker-abc.scope".
fn systemd_path(raw: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(
            "expected the systemd form \"slice:prefix:name\" (three fields separated by ':')"
                .to_string(),
        );
    };
    if name.is_empty() {
        return Err("the name field of \"slice:prefix:name\" is empty".to_string());
    }
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    let mut path = expand_slice(slice)?;
    // Like runc: a name ending in .slice is a slice of its own, anything else is a scope.
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') {
        return Err(format!("unit name {unit:?} contains '/'"));
    }
    path.push(unit);
    Ok(path)
}

/// systemd's slice naming: "a-b-c.slice" lives at "/a.slice/a-b.slice/a-b-c.slice".
fn expand_slice(slice: &str) -> Result<PathBuf, String> {
    const SUFFIX: &str = ".slice";
    let bad = || format!("invalid slice name {slice:?}");
    let stem = slice.strip_suffix(SUFFIX).ok_or_else(bad)?;
    if stem.is_empty() || slice.contains('/') {
        return Err(bad());
    }
    if stem == "-" {
        return Ok(PathBuf::from("/"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for component in stem.split('-') {
        // "a--b.slice" and "-a.slice" are not valid slice names.
        if component.is_empty() {
            return Err(bad());
        }
        path.push(format!("{prefix}{component}{SUFFIX}"));
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: Option<&str>, id: &str, systemd: bool) -> String {
        match resolve(p.map(Path::new), id, systemd) {
            Ok(p) => p.display().to_string(),
            Err(e) => panic!("{p:?}: {e}"),
        }
    }

    fn err(p: Option<&str>, systemd: bool) -> String {
        match resolve(p.map(Path::new), "ctr", systemd) {
            Ok(p) => panic!("accepted {}", p.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cgroupfs_paths() {
        assert_eq!(ok(None, "ctr", false), "/ctr");
        assert_eq!(ok(Some("/a/b"), "ctr", false), "/a/b");
        assert_eq!(ok(Some("a/b"), "ctr", false), "/a/b");
        assert_eq!(ok(Some("/a/../../etc/./x/"), "ctr", false), "/etc/x");
        assert_eq!(ok(Some("/a/b"), "ctr", true), "/a/b");
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            ok(Some("system.slice:docker:abc"), "ctr", true),
            "/system.slice/docker-abc.scope"
        );
        assert_eq!(
            ok(Some("machine-web.slice:cri:x"), "ctr", true),
            "/machine.slice/machine-web.slice/cri-x.scope"
        );
        assert_eq!(
            ok(Some(":husk:x"), "ctr", true),
            "/system.slice/husk-x.scope"
        );
        assert_eq!(ok(Some("-.slice::x"), "ctr", true), "/x.scope");
        assert_eq!(
            ok(Some("a.slice:p:b.slice"), "ctr", true),
            "/a.slice/b.slice"
        );
        assert_eq!(ok(None, "ctr", true), "/system.slice/husk-ctr.scope");
    }

    #[test]
    fn rejected_paths() {
        let e = err(Some("system.slice:docker:abc"), false);
        assert!(
            e.contains("system.slice:docker:abc") && e.contains("--systemd-cgroup"),
            "{e}"
        );
        assert!(err(Some("a:b"), true).contains("slice:prefix:name"));
        assert!(err(Some("a-.slice:p:n"), true).contains("invalid slice"));
        assert!(err(Some("nosuffix:p:n"), true).contains("invalid slice"));
        assert!(err(Some("/"), false).contains("root cgroup"));
        assert!(err(Some("/.."), false).contains("root cgroup"));
        assert!(err(Some(""), false).contains("empty"));
    }
}
