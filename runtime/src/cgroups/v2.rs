//! cgroup v2 (unified) hosts, on top of libcgroups' v2 manager.
//!
//! libcgroups applies limits, freezes (cgroup.freeze) and reads statistics. husk creates and
//! joins the directory itself (libcgroups' `add_task` takes a nix 0.29 `Pid`), enabling the
//! parent's available controllers in `cgroup.subtree_control` from the root down to the
//! container's parent exactly as libcgroups' `create_unified_cgroup` does, and removes it
//! itself so that sub-cgroups the container created go too.
//!
//! Device rules are an eBPF program on v2; husk builds and attaches it itself (`devices`),
//! because libcgroups' (its `cgroupsv2_devices` feature) needs libbpf, a C library. A
//! resources object without `devices` (what `update` passes) leaves the filter as it is.

mod devices;

use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt, FreezerState};
use libcgroups::v2::manager::Manager;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::{fs, CgroupError, Stats};

/// A cgroup2 hierarchy mounted at `root`.
pub(super) struct V2 {
    root: PathBuf,
}

impl V2 {
    /// The unified hierarchy mounted at `root` (/sys/fs/cgroup).
    pub(super) fn new(root: &Path) -> Self {
        V2 {
            root: root.to_path_buf(),
        }
    }

    /// The container's directory.
    pub(super) fn dir(&self, rel: &Path) -> PathBuf {
        fs::join(&self.root, rel)
    }

    /// Creates the container's cgroup, delegating controllers down to its parent.
    pub(super) fn create(&self, rel: &Path) -> Result<(), CgroupError> {
        fs::create_chain(&self.root, rel, enable_controllers, |_, _| Ok(()))
    }

    /// Creates the cgroup and moves `pid` into it.
    pub(super) fn add_task(&self, rel: &Path, pid: Pid) -> Result<(), CgroupError> {
        self.create(rel)?;
        fs::attach(&self.dir(rel), pid)
    }

    fn manager(&self, rel: &Path) -> Result<Manager, CgroupError> {
        Manager::new(self.root.clone(), rel.to_path_buf()).map_err(|e| CgroupError::Manager {
            op: "opening",
            cgroup: rel.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Applies `resources` (already passed through `super::prepare`).
    pub(super) fn apply(&self, rel: &Path, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.create(rel)?;
        // io weights are written here, not by libcgroups 0.7: it converts a blkio weight to
        // io.weight in u16 arithmetic (any weight over 16 overflows) and writes the default
        // weight after the per-device ones, which resets them (found by the v2 VM lane).
        let mut resources = resources.clone();
        let weights = resources.block_io().clone().map(|mut b| {
            let w = (b.weight(), b.weight_device().clone());
            b.set_weight(None);
            b.set_weight_device(None);
            resources.set_block_io(Some(b));
            w
        });
        let resources = &resources;
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: resources
                .memory()
                .as_ref()
                .and_then(|m| m.disable_oom_killer())
                .unwrap_or(false),
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager(rel)?
            .apply(&opt)
            .map_err(|e| CgroupError::Manager {
                op: "applying linux.resources to",
                cgroup: rel.to_path_buf(),
                source: Box::new(e),
            })?;
        if let Some((weight, devices)) = weights {
            self.apply_io_weights(rel, weight, devices.as_deref().unwrap_or_default())?;
        }
        if let Some(rules) = resources.devices() {
            devices::apply(&self.dir(rel), rules).map_err(|e| CgroupError::DeviceFilter {
                cgroup: rel.to_path_buf(),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// The default io weight first, then each device's, as runc writes them: to io.bfq.weight
    /// (1..1000, as given) when bfq is in use, else to io.weight with runc's conversion of the
    /// blkio range 10..1000 onto 1..10000.
    fn apply_io_weights(
        &self,
        rel: &Path,
        weight: Option<u16>,
        devices: &[oci_spec::runtime::LinuxWeightDevice],
    ) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        let bfq = dir.join("io.bfq.weight");
        let (file, convert): (PathBuf, fn(u16) -> u64) = if bfq.exists() {
            (bfq, u64::from)
        } else {
            (dir.join("io.weight"), blkio_to_io_weight)
        };
        if let Some(w) = weight.filter(|w| *w > 0) {
            fs::write_file(&file, &format!("default {}", convert(w)))?;
        }
        for d in devices {
            if let Some(w) = d.weight().filter(|w| *w > 0) {
                let line = format!("{}:{} {}", d.major(), d.minor(), convert(w));
                fs::write_file(&file, &line)?;
            }
        }
        Ok(())
    }

    /// Freezes or thaws through cgroup.freeze.
    pub(super) fn set_frozen(&self, rel: &Path, frozen: bool) -> Result<(), CgroupError> {
        if !self.dir(rel).exists() {
            return Err(CgroupError::NotFound {
                cgroup: rel.to_path_buf(),
            });
        }
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.manager(rel)?
            .freeze(state)
            .map_err(|e| CgroupError::Manager {
                op: if frozen { "freezing" } else { "thawing" },
                cgroup: rel.to_path_buf(),
                source: Box::new(e),
            })
    }

    /// Whether cgroup.freeze is set; false when the cgroup is gone.
    pub(super) fn is_frozen(&self, rel: &Path) -> Result<bool, CgroupError> {
        let file = self.dir(rel).join("cgroup.freeze");
        match std::fs::read_to_string(&file) {
            Ok(s) => Ok(s.trim() == "1"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(fs::io_err("reading", &file)(e)),
        }
    }

    /// Pids in the container's cgroup and below.
    pub(super) fn pids(&self, rel: &Path) -> Result<Vec<Pid>, CgroupError> {
        fs::all_pids(&self.dir(rel))
    }

    /// libcgroups' statistics.
    pub(super) fn stats(&self, rel: &Path) -> Result<Stats, CgroupError> {
        if !self.dir(rel).exists() {
            return Err(CgroupError::NotFound {
                cgroup: rel.to_path_buf(),
            });
        }
        self.manager(rel)?
            .stats()
            .map_err(|e| CgroupError::Manager {
                op: "reading statistics of",
                cgroup: rel.to_path_buf(),
                source: Box::new(e),
            })
    }

    /// Removes the cgroup and its sub-cgroups.
    pub(super) fn remove(&self, rel: &Path) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        let freeze = dir.join("cgroup.freeze");
        if freeze.exists() {
            let _ = fs::write_file(&freeze, "0");
        }
        fs::remove_tree(&dir)
    }
}

/// Best-effort `+controller` for everything `parent` has, one at a time so that one the
/// kernel refuses (e.g. a threaded-only controller) does not block the rest; a limit that
/// needs a missing controller fails later with the file it could not write.
fn enable_controllers(parent: &Path) {
    let Ok(available) = fs::read_file(&parent.join("cgroup.controllers")) else {
        return;
    };
    let enabled = fs::read_file(&parent.join("cgroup.subtree_control")).unwrap_or_default();
    for controller in available.split_whitespace() {
        if !enabled.split_whitespace().any(|c| c == controller) {
            let _ = fs::write_file(
                &parent.join("cgroup.subtree_control"),
                &format!("+{controller}"),
            );
        }
    }
}

/// runc's ConvertBlkIOToIOWeightValue: blkio weights 10..1000 onto io.weight 1..10000.
fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

#[cfg(test)]
mod weight_tests {
    use super::blkio_to_io_weight;

    #[test]
    fn blkio_weights_map_like_runc() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }
}
