//! The runtime options: runc's (`containerd.runc.v1.Options`, what `ctr run --runc-binary` and
//! CRI's `runtimes.*.options` send) or a config file named by `runtimeoptions.v1.Options`
//! (`ctr run --runtime-config-path FILE`), decoded into one struct. Persisted as
//! `options.json` in the bundle, in runc-v2's JSON shape, so the `delete` action of a dead shim
//! drives the same binary with the same root.

use std::fs;
use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

/// Where runtime state goes when the options name no root: the husk counterpart of runc-v2's
/// `/run/containerd/runc`. The namespace is appended, as runc-v2 does.
pub const DEFAULT_ROOT: &str = "/run/containerd/husk";
/// The runtime binary used when the options name none.
pub const DEFAULT_BINARY: &str = "husk";
/// The file in the bundle holding the options.
pub const OPTIONS_FILE: &str = "options.json";

/// Errors decoding or storing options.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The protobuf payload did not decode.
    #[error("decoding runtime options {type_url}: {source}")]
    Decode {
        /// The Any's type URL.
        type_url: String,
        /// The protobuf error.
        #[source]
        source: containerd_shim::protos::protobuf::Error,
    },
    /// An options type this shim does not know.
    #[error("unsupported runtime options type {0:?}")]
    Unsupported(String),
    /// The runtime config file could not be read.
    #[error("reading runtime config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime config file is not valid TOML of the expected shape.
    #[error("parsing runtime config {path}: {msg}")]
    Parse {
        /// The file (or "<inline>").
        path: PathBuf,
        /// The parser's message.
        msg: String,
    },
    /// options.json could not be written or read.
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
}

/// The options that change how the shim drives the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShimOptions {
    /// Runtime binary: a path, or a name looked up next to the shim and on PATH.
    pub binary_name: String,
    /// Runtime `--root` (the namespace is appended).
    pub root: String,
    /// Pass `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// Pass `--no-pivot` to create.
    pub no_pivot_root: bool,
    /// Pass `--no-new-keyring` to create.
    pub no_new_keyring: bool,
    /// Pass `--criu PATH`.
    pub criu_path: String,
    /// Default checkpoint image path.
    pub criu_image_path: String,
    /// Default checkpoint work path.
    pub criu_work_path: String,
    /// Cgroup the shim itself should live in (used by `start`).
    pub shim_cgroup: String,
    /// Owner of the stdio pipes.
    pub io_uid: u32,
    /// Group of the stdio pipes.
    pub io_gid: u32,
}

/// The runtime config file's keys: the TOML names containerd's CRI config uses for runc.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct ConfigFile {
    binary_name: String,
    root: String,
    systemd_cgroup: bool,
    no_pivot_root: bool,
    no_new_keyring: bool,
    criu_path: String,
    criu_image_path: String,
    criu_work_path: String,
    shim_cgroup: String,
    io_uid: u32,
    io_gid: u32,
}

impl From<ConfigFile> for ShimOptions {
    fn from(c: ConfigFile) -> Self {
        ShimOptions {
            binary_name: c.binary_name,
            root: c.root,
            systemd_cgroup: c.systemd_cgroup,
            no_pivot_root: c.no_pivot_root,
            no_new_keyring: c.no_new_keyring,
            criu_path: c.criu_path,
            criu_image_path: c.criu_image_path,
            criu_work_path: c.criu_work_path,
            shim_cgroup: c.shim_cgroup,
            io_uid: c.io_uid,
            io_gid: c.io_gid,
        }
    }
}

impl From<RuncOptions> for ShimOptions {
    fn from(o: RuncOptions) -> Self {
        ShimOptions {
            binary_name: o.binary_name,
            root: o.root,
            systemd_cgroup: o.systemd_cgroup,
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            criu_path: String::new(),
            criu_image_path: o.criu_image_path,
            criu_work_path: o.criu_work_path,
            shim_cgroup: o.shim_cgroup,
            io_uid: o.io_uid,
            io_gid: o.io_gid,
        }
    }
}

/// The message name of an Any (the part after the last '/').
fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or("")
}

impl ShimOptions {
    /// Decodes the options containerd attached to CreateTask (or to the `start` action).
    /// `None` (no options) gives the defaults.
    pub fn from_any(any: Option<&Any>) -> Result<ShimOptions, OptionsError> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(ShimOptions::default());
        };
        match type_name(any) {
            "containerd.runc.v1.Options" | "containerd.runhcs.v1.Options" => {
                let o = RuncOptions::parse_from_bytes(&any.value).map_err(|source| {
                    OptionsError::Decode {
                        type_url: any.type_url.clone(),
                        source,
                    }
                })?;
                Ok(o.into())
            }
            "runtimeoptions.v1.Options" => {
                let (path, body) =
                    decode_runtimeoptions(&any.value).map_err(|source| OptionsError::Decode {
                        type_url: any.type_url.clone(),
                        source,
                    })?;
                if !path.is_empty() {
                    let path = PathBuf::from(path);
                    let text = fs::read_to_string(&path).map_err(|source| OptionsError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    Self::from_toml(&text, &path)
                } else {
                    Self::from_toml(&body, Path::new("<inline>"))
                }
            }
            other => Err(OptionsError::Unsupported(other.to_string())),
        }
    }

    /// Parses a runtime config file (TOML with runc's option names: `BinaryName`, `Root`,
    /// `SystemdCgroup`, `NoPivotRoot`, `NoNewKeyring`, `CriuPath`, ...).
    pub fn from_toml(text: &str, path: &Path) -> Result<ShimOptions, OptionsError> {
        let c: ConfigFile = toml::from_str(text).map_err(|e| OptionsError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Ok(c.into())
    }

    /// The runtime binary: `binary_name` if it is a path; else that name (default `husk`)
    /// next to the shim's own binary, then on PATH; else the bare name (the spawn error will
    /// say it is missing).
    pub fn resolve_binary(&self) -> PathBuf {
        let name = if self.binary_name.is_empty() {
            DEFAULT_BINARY
        } else {
            self.binary_name.as_str()
        };
        if name.contains('/') {
            return PathBuf::from(name);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(name)));
        if let Some(p) = beside.filter(|p| p.is_file()) {
            return p;
        }
        let path = std::env::var("PATH").unwrap_or_default();
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }

    /// The runtime `--root` for `namespace`: `<root or default>/<namespace>`.
    pub fn runtime_root(&self, namespace: &str) -> PathBuf {
        let root = if self.root.is_empty() {
            DEFAULT_ROOT
        } else {
            self.root.as_str()
        };
        Path::new(root).join(namespace)
    }

    /// Writes `bundle/options.json` (atomically).
    pub fn write(&self, bundle: &Path) -> Result<(), OptionsError> {
        let path = bundle.join(OPTIONS_FILE);
        let text = serde_json::to_vec(self).map_err(|e| OptionsError::File {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        crate::persist::write_atomic(&path, &text).map_err(|e| OptionsError::File {
            path,
            msg: e.to_string(),
        })
    }

    /// Reads `bundle/options.json`; defaults when it does not exist.
    pub fn read(bundle: &Path) -> Result<ShimOptions, OptionsError> {
        let path = bundle.join(OPTIONS_FILE);
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| OptionsError::File {
                path,
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ShimOptions::default()),
            Err(e) => Err(OptionsError::File {
                path,
                msg: e.to_string(),
            }),
        }
    }
}

/// Decodes `runtimeoptions.v1.Options { string type_url = 1; string config_path = 2;
/// string config_body = 3; }` by hand: containerd-shim-protos does not ship that message.
fn decode_runtimeoptions(
    data: &[u8],
) -> Result<(String, String), containerd_shim::protos::protobuf::Error> {
    let mut is = CodedInputStream::from_bytes(data);
    let (mut path, mut body) = (String::new(), String::new());
    while let Some(tag) = is.read_raw_tag_or_eof()? {
        match (tag >> 3, tag & 7) {
            (2, 2) => path = is.read_string()?,
            (3, 2) => body = is.read_string()?,
            (_, wire) => {
                let wire = containerd_shim::protos::protobuf::rt::WireType::new(wire)
                    .unwrap_or(containerd_shim::protos::protobuf::rt::WireType::LengthDelimited);
                is.skip_field(wire)?;
            }
        }
    }
    Ok((path, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    #[test]
    fn runc_options_decode() {
        let o = RuncOptions {
            binary_name: "/usr/bin/crun".into(),
            root: "/tmp/r".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().expect("encode"),
            ..Default::default()
        };
        let s = ShimOptions::from_any(Some(&any)).expect("decode");
        assert_eq!(s.binary_name, "/usr/bin/crun");
        assert!(s.systemd_cgroup);
        assert_eq!(s.runtime_root("k8s.io"), PathBuf::from("/tmp/r/k8s.io"));
        assert_eq!(s.resolve_binary(), PathBuf::from("/usr/bin/crun"));
    }

    #[test]
    fn runtimeoptions_config_path_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("husk.toml");
        fs::write(
            &cfg,
            "BinaryName = \"/bin/true\"\nRoot = \"/tmp/x\"\nNoPivotRoot = true\nCriuPath = \"/usr/sbin/criu\"\n",
        )
        .expect("write");
        let mut value = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut value);
            os.write_string(1, "").expect("encode");
            os.write_string(2, &cfg.to_string_lossy()).expect("encode");
            os.flush().expect("flush");
        }
        let any = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value,
            ..Default::default()
        };
        let s = ShimOptions::from_any(Some(&any)).expect("decode");
        assert_eq!(s.binary_name, "/bin/true");
        assert_eq!(s.root, "/tmp/x");
        assert!(s.no_pivot_root);
        assert_eq!(s.criu_path, "/usr/sbin/criu");
    }

    #[test]
    fn unknown_keys_and_types_are_errors() {
        assert!(ShimOptions::from_toml("Bogus = 1", Path::new("x")).is_err());
        let any = Any {
            type_url: "example.Other".into(),
            ..Default::default()
        };
        assert!(matches!(
            ShimOptions::from_any(Some(&any)),
            Err(OptionsError::Unsupported(_))
        ));
        assert_eq!(
            ShimOptions::from_any(None).expect("none"),
            ShimOptions::default()
        );
    }

    #[test]
    fn options_json_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = ShimOptions {
            binary_name: "husk".into(),
            no_new_keyring: true,
            ..Default::default()
        };
        o.write(dir.path()).expect("write");
        assert_eq!(ShimOptions::read(dir.path()).expect("read"), o);
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            ShimOptions::read(empty.path()).expect("read"),
            ShimOptions::default()
        );
    }
}
