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
    #[error("cannot read {path}: {source}{}", read_hint(source))]
    Read {
        /// The config path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// config.json is not a valid runtime-spec document.
    #[error(
        "invalid config {path}: {reason} (fix that line; `husk spec` in an empty directory \
         writes a valid example)"
    )]
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

/// What to do about an unreadable config.json: the bare OS error does not say that the usual
/// cause is a wrong `--bundle` (it defaults to the current directory).
fn read_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            "; is --bundle right (default: the current directory)? `husk spec` writes a default \
             config.json"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; run husk as root or fix the bundle's permissions"
        }
        _ => "",
    }
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
        SpecError::Invalid(format!(
            "rootfs ({}) does not exist: {e}; root.path in config.json is relative to the \
             bundle: unpack the container's root filesystem there",
            rootfs.display()
        ))
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
    serde_json::from_slice::<Spec>(data).map_err(|e| {
        // serde says "unknown variant" without the field; name it for linux.seccomp.
        match crate::seccomp::explain_parse_error(data) {
            Some(field) => format!("{e} ({field})"),
            None => e.to_string(),
        }
    })
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
    crate::namespaces::validate_id_mappings(
        &namespaces,
        linux.uid_mappings().as_deref().unwrap_or_default(),
        linux.gid_mappings().as_deref().unwrap_or_default(),
    )
    .map_err(|e| SpecError::Invalid(e.to_string()))?;
    // Checked here, before anything exists: applied without a UTS namespace of its own, a
    // hostname would be the host's.
    crate::process::hostname::validate(
        spec.hostname().as_deref(),
        spec.domainname().as_deref(),
        &namespaces,
    )
    .map_err(|e| SpecError::Invalid(e.to_string()))?;
    if let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) {
        crate::process::timens::validate(offsets, &namespaces)
            .map_err(|e| SpecError::Invalid(e.to_string()))?;
    }
    refuse_unsupported_security(spec)?;
    for var in process.env().iter().flatten() {
        if !var.contains('=') {
            return Err(SpecError::Invalid(format!(
                "invalid environment variable: {var:?}"
            )));
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        crate::sysctl::validate(sysctl, &namespaces)
            .map_err(|e| SpecError::Invalid(e.to_string()))?;
    }
    if let Some(seccomp) = linux.seccomp() {
        // Compiled here so a bad profile fails create before anything exists.
        crate::seccomp::validate(seccomp).map_err(|e| SpecError::Invalid(e.to_string()))?;
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

/// Settings husk cannot apply whose silent omission would weaken the container, refused as
/// runc refuses them on a host that lacks the feature: AppArmor, SELinux, Intel RDT and the
/// rdma controller. (husk's `features` reports them disabled.)
fn refuse_unsupported_security(spec: &Spec) -> Result<(), SpecError> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let refuse = |what: &str| {
        Err(SpecError::Invalid(format!(
            "{what} is set, but husk does not support it"
        )))
    };
    if let Some(process) = spec.process() {
        if set(process.apparmor_profile()) {
            return refuse("process.apparmorProfile (AppArmor)");
        }
        if set(process.selinux_label()) {
            return refuse("process.selinuxLabel (SELinux)");
        }
    }
    if let Some(linux) = spec.linux() {
        if set(linux.mount_label()) {
            return refuse("linux.mountLabel (SELinux)");
        }
        if linux.intel_rdt().is_some() {
            return refuse("linux.intelRdt (Intel RDT)");
        }
        let rdma = linux.resources().as_ref().and_then(|r| r.rdma().as_ref());
        if rdma.is_some_and(|r| !r.is_empty()) {
            return refuse("linux.resources.rdma (the rdma cgroup controller)");
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
    fn unsupported_security_settings_are_refused() {
        let cases = [
            (
                "process",
                "apparmorProfile",
                serde_json::json!("docker-default"),
            ),
            (
                "process",
                "selinuxLabel",
                serde_json::json!("system_u:system_r:t:s0"),
            ),
            (
                "linux",
                "mountLabel",
                serde_json::json!("system_u:object_r:t:s0"),
            ),
            ("linux", "intelRdt", serde_json::json!({"closID": "x"})),
        ];
        for (parent, key, value) in cases {
            let mut v: serde_json::Value = serde_json::from_str(DEFAULT_SPEC).expect("json");
            v[parent][key] = value;
            let spec = parse(v.to_string().as_bytes()).expect("parses");
            let err = validate(&spec).expect_err("refused");
            assert!(err.to_string().contains(key), "{err}");
        }
        // Empty strings are "not set".
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_SPEC).expect("json");
        v["process"]["apparmorProfile"] = serde_json::json!("");
        validate(&parse(v.to_string().as_bytes()).expect("parses")).expect("empty is unset");
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
