//! state.json: what husk records about a container, and the runtime-spec state derived from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Status;
use crate::util;

/// Everything later commands need to find and act on a container, saved as state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The runtime-spec version of the bundle's config.
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// Host pid of the container's init (0 once it is known to be gone).
    pub pid: i32,
    /// The init's start time in clock ticks, to tell it from a recycled pid.
    pub init_start_time: u64,
    /// Absolute path of the bundle.
    pub bundle: PathBuf,
    /// Absolute path of the rootfs on the host.
    pub rootfs: PathBuf,
    /// RFC 3339 time of creation.
    pub created: String,
    /// Owner of the container (runc reports the empty string for root-owned state).
    pub owner: String,
    /// Annotations from config.json.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup path as libcgroups was given it.
    pub cgroup_path: PathBuf,
    /// Whether the cgroup is managed through systemd.
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// Whether the container runs in its own user namespace (rootless-style).
    #[serde(default)]
    pub rootless: bool,
}

/// The runtime-spec state document, plus runc's extra fields, as `state` prints it.
#[derive(Debug, Serialize, Deserialize)]
pub struct OciState {
    /// Runtime-spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init pid (0 when stopped).
    pub pid: i32,
    /// Status name.
    pub status: String,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path (runc's extra).
    pub rootfs: PathBuf,
    /// Creation time (runc's extra).
    pub created: String,
    /// Owner (runc's extra).
    pub owner: String,
    /// Annotations, omitted when empty as runc does.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

impl State {
    /// Whether the recorded init is still the same live process (not gone, not a zombie, not recycled).
    pub fn init_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match (
            util::process_state(self.pid),
            util::process_start_time(self.pid),
        ) {
            (Some('Z' | 'X'), _) | (None, _) | (_, None) => false,
            (Some(_), Some(start)) => start == self.init_start_time,
        }
    }

    /// The runtime-spec document for this state and status.
    pub fn to_oci(&self, status: Status) -> OciState {
        OciState {
            oci_version: self.oci_version.clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status: status.as_str().to_string(),
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }

    /// The state document as hooks in the runtime namespace receive it on stdin: the init's
    /// host pid while it lives (even while creating), no pid once stopped (runc omits it too;
    /// the runtime-spec requires it only for created and running).
    pub fn hook_json(&self, status: Status) -> String {
        let oci = self.to_oci(status);
        let pid = (status != Status::Stopped).then_some(self.pid);
        HookState::new(&oci, pid).to_json()
    }
}

/// The state document hooks read on stdin: [`OciState`] with an optional pid.
#[derive(Serialize)]
struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    status: &'a str,
    bundle: &'a Path,
    rootfs: &'a Path,
    created: &'a str,
    owner: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    annotations: &'a HashMap<String, String>,
}

impl<'a> HookState<'a> {
    fn new(oci: &'a OciState, pid: Option<i32>) -> Self {
        HookState {
            oci_version: &oci.oci_version,
            id: &oci.id,
            pid,
            status: &oci.status,
            bundle: &oci.bundle,
            rootfs: &oci.rootfs,
            created: &oci.created,
            owner: &oci.owner,
            annotations: &oci.annotations,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The state document for hooks that run in the container's namespaces (createContainer,
/// startContainer), made from the runtime's: the runtime-spec wants the pid "as seen by the
/// container" there, which is the calling init's own getpid() (1 in a new pid namespace), and
/// `status` as runc gives it at that point. Input that does not parse is passed on unchanged.
pub fn container_hook_json(runtime_json: &str, status: Status) -> String {
    match serde_json::from_str::<OciState>(runtime_json) {
        Ok(mut oci) => {
            oci.status = status.as_str().to_string();
            // SAFETY: getpid cannot fail.
            let pid = unsafe { libc::getpid() };
            HookState::new(&oci, Some(pid)).to_json()
        }
        Err(_) => runtime_json.to_string(),
    }
}

impl State {
    /// Reads state.json from a container dir.
    pub fn load(path: &Path) -> std::io::Result<State> {
        let data = std::fs::read(path)?;
        serde_json::from_slice(&data)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}
