//! The container's state on disk, in its bundle (`husk-shim.json`): enough for a shim
//! started later (or the `delete` action after the shim died) to know the container's
//! processes, pids, stdio and exit statuses without asking anyone. Written atomically
//! (temp file + rename) after every change.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::process::{Exit, Process, Status};
use crate::stdio::StdioPaths;

/// The state file's name in the bundle.
pub const STATE_FILE: &str = "husk-shim.json";

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// I/O on the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad JSON.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// One process as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Host pid (0 if never started).
    pub pid: i32,
    /// Status when recorded.
    pub status: Status,
    /// Exit status, once exited.
    pub exit_status: Option<u32>,
    /// Exit time in nanoseconds since the epoch.
    pub exited_at_ns: Option<u128>,
    /// stdio as containerd passed it.
    pub stdio: StdioPaths,
    /// Exec process spec (JSON text), for execs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

impl ProcessRecord {
    /// Records `p` as it is now.
    pub fn of(p: &Process) -> ProcessRecord {
        let s = p.snapshot();
        ProcessRecord {
            pid: s.pid,
            status: s.status,
            exit_status: s.exit.map(|e| e.status),
            exited_at_ns: s.exit.and_then(|e| {
                e.at.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_nanos())
            }),
            stdio: p.stdio.clone(),
            spec: p
                .spec
                .as_ref()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
        }
    }

    /// The recorded exit, if any.
    pub fn exit(&self) -> Option<Exit> {
        self.exit_status.map(|status| Exit {
            status,
            at: self
                .exited_at_ns
                .and_then(|ns| u64::try_from(ns).ok())
                .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
                .unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }
}

/// One container as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Format version.
    pub version: u32,
    /// Container id.
    pub id: String,
    /// containerd namespace.
    pub namespace: String,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Whether the shim mounted `bundle/rootfs` (and so must unmount it).
    pub rootfs_mounted: bool,
    /// The shim serving it.
    pub shim_pid: u32,
    /// The container's init.
    pub init: ProcessRecord,
    /// Exec processes by exec id.
    pub execs: BTreeMap<String, ProcessRecord>,
}

/// Writes `data` to `path` atomically: a temp file in the same directory, fsync'd, renamed.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".husk-shim-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl ContainerRecord {
    /// Writes the record into its bundle.
    pub fn save(&self) -> Result<(), PersistError> {
        let path = self.bundle.join(STATE_FILE);
        let data = serde_json::to_vec_pretty(self).map_err(|source| PersistError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &data).map_err(|source| PersistError::Io { path, source })
    }

    /// Reads the record in `bundle`, `None` when there is none.
    pub fn load(bundle: &Path) -> Result<Option<ContainerRecord>, PersistError> {
        let path = bundle.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PersistError::Io { path, source }),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| PersistError::Json { path, source })
    }

    /// Removes the record (after the container is deleted).
    pub fn remove(bundle: &Path) {
        let _ = fs::remove_file(bundle.join(STATE_FILE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_exits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let init = Process::new(
            "",
            StdioPaths {
                stdout: "/x/out".into(),
                ..Default::default()
            },
            None,
        );
        init.set_pid(1234);
        init.set_status(Status::Running);
        let exec = Process::new(
            "e1",
            StdioPaths::default(),
            Some(b"{\"args\":[\"sh\"]}".to_vec()),
        );
        exec.set_pid(1300);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        exec.set_exited(7, at);
        let rec = ContainerRecord {
            version: 1,
            id: "c1".into(),
            namespace: "ns".into(),
            bundle: dir.path().to_path_buf(),
            rootfs_mounted: true,
            shim_pid: 99,
            init: ProcessRecord::of(&init),
            execs: [("e1".to_string(), ProcessRecord::of(&exec))].into(),
        };
        rec.save().expect("save");
        let back = ContainerRecord::load(dir.path())
            .expect("load")
            .expect("present");
        assert_eq!(back, rec);
        assert_eq!(back.execs["e1"].exit(), Some(Exit { status: 7, at }));
        assert_eq!(back.init.status, Status::Running);
        ContainerRecord::remove(dir.path());
        assert!(ContainerRecord::load(dir.path()).expect("load").is_none());
    }
}
