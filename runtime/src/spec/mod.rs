//! config.json: loading it from a bundle with clear errors, checking it, and runc's default spec.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// The config runc's `spec` writes, kept byte-for-byte as runc 1.1 prints it.
const DEFAULT_SPEC: &str = include_str!("default.json");
/// The config `runc spec --rootless` writes (uid/gid maps are filled in for the caller).
const ROOTLESS_SPEC: &str = include_str!("rootless.json");

/// Why a bundle's config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// config.json is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// config.json is not a valid runtime-spec document.
    #[error("invalid config {path}: {reason}")]
    Parse {
        /// The config path.
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },
    /// A field holds something husk must refuse.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A config.json loaded from a bundle, with its paths made absolute.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The parsed spec.
    pub spec: Spec,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
}

/// Loads and checks `DIR/config.json`.
pub fn load_bundle(dir: &Path) -> Result<Bundle, SpecError> {
    let dir = std::path::absolute(dir).map_err(|source| SpecError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    let data = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let spec = parse(&data).map_err(|reason| SpecError::Parse {
        path: path.clone(),
        reason,
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("root must be set".into()))?;
    let rootfs = dir.join(root.path());
    let meta = std::fs::metadata(&rootfs).map_err(|e| {
        SpecError::Invalid(format!("rootfs ({}) does not exist: {e}", rootfs.display()))
    })?;
    if !meta.is_dir() {
        return Err(SpecError::Invalid(format!(
            "rootfs ({}) is not a directory",
            rootfs.display()
        )));
    }
    validate(&spec)?;
    Ok(Bundle { dir, spec, rootfs })
}

/// Parses a runtime-spec document.
pub fn parse(data: &[u8]) -> Result<Spec, String> {
    serde_json::from_slice::<Spec>(data).map_err(|e| e.to_string())
}

/// The checks runc makes before it creates anything.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("process must be set".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::Invalid("args must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::Invalid(format!(
            "cwd {:?} is not an absolute path",
            process.cwd()
        )));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("linux must be set".into()))?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    crate::namespaces::validate(&namespaces).map_err(|e| SpecError::Invalid(e.to_string()))?;
    if let Some(sysctl) = linux.sysctl() {
        crate::sysctl::validate(sysctl, &namespaces)
            .map_err(|e| SpecError::Invalid(e.to_string()))?;
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(SpecError::Invalid(format!(
                "mount destination {} is not absolute",
                m.destination().display()
            )));
        }
    }
    Ok(())
}

/// The default config.json text, as `husk spec` writes it.
pub fn default_json(rootless: bool) -> String {
    if !rootless {
        return DEFAULT_SPEC.to_string();
    }
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let mut v: serde_json::Value = match serde_json::from_str(ROOTLESS_SPEC) {
        Ok(v) => v,
        Err(_) => return ROOTLESS_SPEC.to_string(),
    };
    v["linux"]["uidMappings"][0]["hostID"] = uid.into();
    v["linux"]["gidMappings"][0]["hostID"] = gid.into();
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| ROOTLESS_SPEC.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_specs_parse_and_validate() {
        for rootless in [false, true] {
            let spec = parse(default_json(rootless).as_bytes()).expect("parses");
            validate(&spec).expect("valid");
        }
    }

    #[test]
    fn empty_args_are_refused() {
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_SPEC).expect("json");
        v["process"]["args"] = serde_json::json!([]);
        let spec = parse(v.to_string().as_bytes()).expect("parses");
        let err = validate(&spec).expect_err("refused");
        assert!(err.to_string().contains("args"), "{err}");
    }
}
