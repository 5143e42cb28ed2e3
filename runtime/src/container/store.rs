//! The `--root` directory: one locked sub-directory per container holding state.json and exec.fifo.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{State, Status};

/// Errors of the container store. The wording of `NotExist` is runc's: callers match on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No container of that id.
    // The id and the hint go after runc's words, which callers match as a substring.
    #[error(
        "container does not exist: {0:?} (`husk list` shows the containers under this --root)"
    )]
    NotExist(String),
    /// The id is taken.
    #[error(
        "container with given ID already exists: {0:?} (`husk delete` it first, or pick another id)"
    )]
    Exists(String),
    /// The id has characters runc refuses.
    #[error("invalid container id format: {0:?}")]
    InvalidId(String),
    /// A filesystem call on the store failed.
    #[error("{op} {path}: {source}{}", permission_hint(source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The usual cause of EACCES on the store: an unprivileged user on root's /run/husk.
fn permission_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        "; run husk as root, or give --root a directory you own (without --root an \
         unprivileged user gets $XDG_RUNTIME_DIR/husk, if XDG_RUNTIME_DIR is set)"
    } else {
        ""
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// runc's id rule: `^[\w+-\.]+$`, and neither `.` nor `..`.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_string()))
    }
}

/// The `--root` directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root` without creating it (reads must not leave a directory behind).
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes a new container directory, failing if the id exists; it is removed again on drop
    /// unless [`ContainerDir::keep`] is called, so a failed `create` leaves nothing behind.
    pub fn create(&self, id: &str) -> Result<ContainerDir, StoreError> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io("create root directory", &self.root))?;
        let path = self.root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists(id.to_string()))
            }
            Err(e) => return Err(io("create container directory", &path)(e)),
        }
        let mut dir = ContainerDir::lock(id, path.clone())?;
        dir.remove_on_drop = true;
        Ok(dir)
    }

    /// Opens and locks an existing container's directory.
    pub fn open(&self, id: &str) -> Result<ContainerDir, StoreError> {
        validate_id(id).map_err(|_| StoreError::NotExist(id.to_string()))?;
        let path = self.root.join(id);
        if !path.join(STATE_FILE).exists() {
            return Err(StoreError::NotExist(id.to_string()));
        }
        ContainerDir::lock(id, path)
    }

    /// Ids of every container with a state file, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read root directory", &self.root)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

const STATE_FILE: &str = "state.json";
const FIFO_FILE: &str = "exec.fifo";
const CONFIG_FILE: &str = "config.json";

/// One container's directory, held under an exclusive flock for the life of this value.
#[derive(Debug)]
pub struct ContainerDir {
    id: String,
    path: PathBuf,
    _lock: OwnedFd,
    remove_on_drop: bool,
}

impl ContainerDir {
    fn lock(id: &str, path: PathBuf) -> Result<ContainerDir, StoreError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::NotExist(id.to_string())
                } else {
                    io("open container directory", &path)(e)
                }
            })?;
        // Every command takes this lock, so two commands never act on one container at once.
        // SAFETY: flock on a descriptor we own; it only takes a lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(io("lock container directory", &path)(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            _lock: OwnedFd::from(file),
            remove_on_drop: false,
        })
    }

    /// The lock's descriptor: a forked child must close it, or it would hold the lock (flock
    /// belongs to the open file, which fork shares) until it execs.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the exec FIFO that holds the init until `start`.
    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(FIFO_FILE)
    }

    /// Path of the copy of config.json taken at create time.
    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// Keeps the directory when this value is dropped: `create` succeeded.
    pub fn keep(&mut self) {
        self.remove_on_drop = false;
    }

    /// Writes state.json atomically (a rename), so readers never see half a file.
    ///
    /// Not fsynced, as runc and crun do not: the rename alone keeps concurrent readers safe,
    /// and durability across a host crash buys nothing, since no container survives a reboot
    /// (--root is normally a tmpfs, /run). On a disk-backed --root the fsync was the single
    /// most expensive call of `create`.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let tmp = self.path.join(".state.json.tmp");
        let data = serde_json::to_vec(state).map_err(|e| StoreError::Io {
            op: "encode state",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("write state", &tmp))?;
        f.write_all(&data).map_err(io("write state", &tmp))?;
        let dst = self.path.join(STATE_FILE);
        fs::rename(&tmp, &dst).map_err(io("rename state", &dst))
    }

    /// Reads state.json.
    pub fn load(&self) -> Result<State, StoreError> {
        let p = self.path.join(STATE_FILE);
        State::load(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotExist(self.id.clone())
            } else {
                io("read state", &p)(e)
            }
        })
    }

    /// The container's status now, from the kernel's view of its init and cgroup.
    pub fn status(&self, state: &State) -> Status {
        if !state.init_alive() {
            return Status::Stopped;
        }
        if self.fifo_path().exists() {
            return Status::Created;
        }
        if super::status::cgroup_frozen(&state.cgroup_path) {
            return Status::Paused;
        }
        Status::Running
    }

    /// Removes the directory and everything in it.
    pub fn remove(mut self) -> Result<(), StoreError> {
        self.remove_on_drop = false;
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove container directory", &self.path)(e)),
        }
    }
}

impl Drop for ContainerDir {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for good in ["a", "abc-1_2.3+x", "ABC"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_is_exclusive_and_cleans_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::new(&tmp.path().join("root"));
        let dir = store.create("c1").expect("first create");
        assert!(matches!(store.create("c1"), Err(StoreError::Exists(_))));
        drop(dir);
        assert!(
            !tmp.path().join("root/c1").exists(),
            "dropped create is removed"
        );
        assert!(matches!(store.open("c1"), Err(StoreError::NotExist(_))));
        assert_eq!(store.ids().expect("ids"), Vec::<String>::new());
    }
}
