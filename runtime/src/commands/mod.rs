//! One module per runc command; each is "open the container, act, report", with anyhow context.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use std::path::PathBuf;

use crate::container::Store;

/// The global flags every command sees.
#[derive(Debug, Clone)]
pub struct Global {
    /// --root: where container state lives.
    pub root: PathBuf,
    /// --systemd-cgroup.
    pub systemd_cgroup: bool,
    /// --rootless (true, false or auto).
    pub rootless: Option<String>,
    /// --criu: the criu binary for checkpoint/restore (default: criu from PATH).
    pub criu: Option<PathBuf>,
}

impl Global {
    /// The container store under --root.
    pub fn store(&self) -> Store {
        Store::new(&self.root)
    }

    /// Whether to run rootless: --rootless true/false, or auto (the default, as runc's):
    /// rootless when not root. Rootless means cgroups we have no right to are skipped.
    pub fn is_rootless(&self) -> anyhow::Result<bool> {
        match self.rootless.as_deref() {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            None | Some("auto") => Ok(!nix::unistd::geteuid().is_root() || in_user_namespace()),
            Some(other) => {
                anyhow::bail!("invalid --rootless value {other:?}: want true, false or auto")
            }
        }
    }
}

/// Whether this process runs in a user namespace other than the initial one (rootless podman
/// runs runtimes as uid 0 of such a namespace): the initial one maps every id to itself.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let fields: Vec<&str> = m.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}
