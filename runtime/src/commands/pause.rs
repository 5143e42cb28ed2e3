//! `husk pause ID` / `husk resume ID`: freeze and thaw every process of a container.

use anyhow::{bail, Result};

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::Status;

/// Freezes a running container (v1 freezer, v2 cgroup.freeze).
pub fn pause(g: &Global, id: &str) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    match dir.status(&state) {
        Status::Running | Status::Created => {}
        Status::Paused => bail!("container {id} is already paused"),
        _ => bail!("container not running"),
    }
    ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?.freeze()?;
    Ok(())
}

/// Thaws a paused container.
pub fn resume(g: &Global, id: &str) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    if dir.status(&state) != Status::Paused {
        bail!("container not paused");
    }
    ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?.thaw()?;
    Ok(())
}
