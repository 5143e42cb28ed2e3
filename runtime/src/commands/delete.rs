//! `husk delete ID`: removes a stopped (or, with --force, any) container and all it left.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::store::StoreError;
use crate::container::{ContainerDir, State, Status};
use crate::hooks::{self, HookKind};

/// Deletes `id`. A created container is killed first (runc does the same without --force).
pub fn delete(g: &Global, id: &str, force: bool) -> Result<()> {
    let dir = match g.store().open(id) {
        Ok(d) => d,
        // runc: `delete --force` of an unknown id succeeds, so cleanup scripts can repeat it.
        Err(StoreError::NotExist(_)) if force => {
            let _ = std::fs::remove_dir_all(g.root.join(id));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let state = dir.load()?;
    match dir.status(&state) {
        Status::Stopped | Status::Created => {}
        status if !force => {
            bail!(
                "cannot delete container {id} that is not stopped: {status} (`husk kill` it \
                 first, or use `husk delete --force`)"
            )
        }
        _ => {}
    }
    destroy(dir, &state)
}

/// Kills whatever still runs, removes the cgroup, runs poststop hooks and removes the state.
pub fn destroy(dir: ContainerDir, state: &State) -> Result<()> {
    let cg = ContainerCgroup::new(Some(&state.cgroup_path), &state.id, state.systemd_cgroup)?;
    if dir.status(state) != Status::Stopped {
        let _ = super::kill::signal_pid(state.pid, libc::SIGKILL);
    }
    // Every process of the container, not only its init (a shared pid namespace leaves them).
    // (Freezing an empty cgroup to signal nobody is most of a stopped container's delete.)
    if cg.pids().is_ok_and(|p| !p.is_empty()) {
        let _ = super::kill::signal_all(&cg, libc::SIGKILL);
    }
    wait_gone(state, &cg);
    cg.remove()?;
    if let Ok(data) = std::fs::read(dir.config_path()) {
        if let Ok(spec) = crate::spec::parse(&data) {
            if let Some(list) = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()) {
                // poststop failures are warnings (runtime-spec): the container is gone anyway.
                let json = state.hook_json(Status::Stopped);
                if let Err(e) = hooks::run(HookKind::Poststop, list, &json) {
                    crate::logging::warn(&format!("poststop hook failed: {e}"));
                }
            }
        }
    }
    dir.remove()?;
    Ok(())
}

/// Waits (bounded) until the init is dead and the cgroup is empty.
fn wait_gone(state: &State, cg: &ContainerCgroup) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let init_gone = !state.init_alive();
        let empty = cg.pids().map(|p| p.is_empty()).unwrap_or(true);
        if init_gone && empty {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
