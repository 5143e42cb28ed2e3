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
}
