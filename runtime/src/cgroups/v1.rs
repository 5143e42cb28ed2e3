//! cgroup v1 hosts, legacy and hybrid, on top of libcgroups' v1 manager.
//!
//! What libcgroups 0.7's v1 manager does and does not do, and what this file adds:
//! - It finds controller hierarchies by the *name* of their mount point (`.../cpu`,
//!   `.../cpu,cpuacct`, ...), skipping controllers that are not mounted. That copes with
//!   separate `cpu` and `cpuacct` hierarchies, a missing v1 `hugetlb`, missing `net_cls`,
//!   `net_prio` and `perf_event`, and it ignores the `cgroup2` mount of a hybrid host.
//!   husk uses the same lookup (`list_supported_mount_points`), so the directories it creates
//!   and joins are exactly those libcgroups writes limits to.
//! - It joins neither the named `name=systemd` hierarchy nor, on a hybrid host, the cgroup2
//!   hierarchy at /sys/fs/cgroup/unified. runc joins both (so `/proc/<pid>/cgroup` shows the
//!   container's path on every line, and systemd/the unified tools see it); husk does too.
//! - hugetlb: with no v1 hugetlb hierarchy libcgroups fails any hugetlb limit with
//!   "cgroup hugetlb is required ... not supported". On a hybrid host the unified hierarchy
//!   can carry the hugetlb controller, so husk writes `hugetlb.<size>.max` in the container's
//!   unified cgroup when the host delegates the controller there (it is in the parent's
//!   cgroup.subtree_control). husk never enables controllers in host-owned cgroups itself; if
//!   the controller is not delegated the error says so and names the file to change.
//! - It writes `memory.kmem.limit_in_bytes` for `memory.kernel`; runc ignores that
//!   deprecated field (kernels since 5.16 refuse or ignore it), and so does husk.
//! - It requires both `net_cls` and `net_prio` hierarchies for any `network` object (even an
//!   empty one); husk writes `net_cls.classid` and `net_prio.ifpriomap` itself, each needing
//!   its own controller only when that field is set (runc's behaviour).
//! - It ignores `blockIO.weightDevice` and `leafWeight`; husk writes them as runc does, to the
//!   bfq files when the host's scheduler is bfq. A `weight` on a host with neither
//!   `blkio.weight` nor `blkio.bfq.weight` gets a clear error instead of ENOENT.
//! - Its `remove` deletes only the leaf directory of controller hierarchies (failing when the
//!   container made sub-cgroups), its `freeze` recreates a deleted freezer cgroup, and its
//!   `add_task` takes a nix 0.29 `Pid` while husk uses nix 0.31. So husk creates (seeding
//!   `cpuset.cpus`/`cpuset.mems` down the path as libcgroups does), joins, lists and removes
//!   the directories itself, and checks existence before freezing.
//! - Devices: libcgroups writes the spec's rules and then runc's default allow list
//!   (AllowedDevices in runc's specconv): `c *:* m`, `b *:* m`, /dev/null, zero, full, tty,
//!   random, urandom, console (5:1), ptmx (5:2), pts (136:*) and net/tun (10:200), all `rwm`.
//!   A deny-all spec therefore still gets those, as under runc, except the host console: runc
//!   dropped 5:1 from its list, so husk revokes what of it the spec itself does not grant.
//!   husk also normalises a rule without `access` to `rwm`, the way runc reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcgroups::v1::manager::{Manager, V1ManagerError};
use libcgroups::v1::ControllerType;
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxNetwork,
    LinuxResources,
};

use super::{fs, CgroupError, Stats};

/// Which role a mounted v1 (or hybrid cgroup2) hierarchy plays for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// A hierarchy with these controllers attached (several when co-mounted).
    Controllers(Vec<ControllerType>),
    /// The named `name=systemd` hierarchy: joined for bookkeeping, no limits.
    Systemd,
    /// The cgroup2 hierarchy of a hybrid host: joined, and used for hugetlb limits.
    Unified,
}

/// One hierarchy the container gets a directory in.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    role: Role,
}

impl Hierarchy {
    fn has(&self, controller: ControllerType) -> bool {
        matches!(&self.role, Role::Controllers(c) if c.contains(&controller))
    }
}

/// The v1 hierarchies of this host, as libcgroups sees them plus systemd and unified.
#[derive(Clone)]
pub(super) struct V1 {
    hierarchies: Vec<Hierarchy>,
}

/// This process's discovery: one husk command asks for the hierarchies several times (create,
/// join, apply limits; delete's pids, remove), and the host's mounts do not change under it.
static DISCOVERED: std::sync::OnceLock<V1> = std::sync::OnceLock::new();

impl V1 {
    /// The mounted hierarchies, read from /proc/self/mountinfo once per process.
    pub(super) fn discover() -> Result<Self, CgroupError> {
        if let Some(v1) = DISCOVERED.get() {
            return Ok(v1.clone());
        }
        let v1 = Self::read_mounts()?;
        Ok(DISCOVERED.get_or_init(|| v1).clone())
    }

    fn read_mounts() -> Result<Self, CgroupError> {
        // One read of mountinfo: libcgroups' list_supported_mount_points re-reads it (through a
        // hardened procfs handle) once per controller, which was most of create's syscalls.
        let mounts = fs::cgroup_mounts()?;
        let supported = supported_mount_points(&mounts);
        let mut by_mount: BTreeMap<PathBuf, Vec<ControllerType>> = BTreeMap::new();
        for (controller, mount) in supported {
            by_mount.entry(mount).or_default().push(controller);
        }
        let mut hierarchies: Vec<Hierarchy> = by_mount
            .into_iter()
            .map(|(mount, mut controllers)| {
                controllers.sort_by_key(|c| c.to_string());
                Hierarchy {
                    mount,
                    role: Role::Controllers(controllers),
                }
            })
            .collect();
        for m in mounts {
            let role = if m.fs_type == "cgroup2" {
                Role::Unified
            } else if m.super_options.iter().any(|o| o == "name=systemd") {
                Role::Systemd
            } else {
                continue;
            };
            // The first mount of each wins; later ones are bind mounts of the same hierarchy.
            if !hierarchies.iter().any(|h| h.role == role) {
                hierarchies.push(Hierarchy {
                    mount: m.mount_point,
                    role,
                });
            }
        }
        Ok(V1 { hierarchies })
    }

    fn with(&self, controller: ControllerType) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.has(controller))
    }

    fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.role == Role::Unified)
    }

    /// The container's directory in every hierarchy.
    pub(super) fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| fs::join(&h.mount, rel))
            .collect()
    }

    /// The container's directory in the hierarchy of `controller`, if it is mounted.
    pub(super) fn controller_dir(&self, controller: &str, rel: &Path) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| match &h.role {
                Role::Controllers(c) => c.iter().any(|c| c.to_string() == controller),
                Role::Systemd => controller == "name=systemd",
                Role::Unified => controller == "unified",
            })
            .map(|h| fs::join(&h.mount, rel))
    }

    /// Creates the container's directory in every hierarchy.
    pub(super) fn create(&self, rel: &Path) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let cpuset = h.has(ControllerType::CpuSet);
            fs::create_chain(
                &h.mount,
                rel,
                |_| {},
                |parent, child| {
                    if cpuset {
                        seed_cpuset(parent, child)
                    } else {
                        Ok(())
                    }
                },
            )?;
        }
        Ok(())
    }

    /// Creates the directories and moves `pid` into each.
    pub(super) fn add_task(&self, rel: &Path, pid: Pid) -> Result<(), CgroupError> {
        self.create(rel)?;
        for dir in self.dirs(rel) {
            fs::attach(&dir, pid)?;
        }
        Ok(())
    }

    /// The `tasks` file of every hierarchy but a hybrid host's cgroup2 one, which has none.
    pub(super) fn self_join_files(&self, rel: &Path) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .filter(|h| h.role != Role::Unified)
            .map(|h| fs::join(&h.mount, rel).join("tasks"))
            .collect()
    }

    /// Moves `pid` into the hierarchies `self_join_files` leaves out (the directories exist).
    pub(super) fn add_task_rest(&self, rel: &Path, pid: Pid) -> Result<(), CgroupError> {
        for h in self.hierarchies.iter().filter(|h| h.role == Role::Unified) {
            fs::attach(&fs::join(&h.mount, rel), pid)?;
        }
        Ok(())
    }

    /// Applies `resources` (already passed through `super::prepare`).
    pub(super) fn apply(&self, rel: &Path, resources: &LinuxResources) -> Result<(), CgroupError> {
        let cgroup = rel.to_path_buf();
        if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            // runc: "cannot use unified on cgroup v1".
            return Err(CgroupError::Unsupported {
                cgroup,
                what: "linux.resources.unified needs cgroup v2, and this host uses cgroup v1"
                    .to_string(),
            });
        }
        let mut resources = resources.clone();
        let hugepages: Vec<LinuxHugepageLimit> =
            resources.hugepage_limits().clone().unwrap_or_default();
        let v1_hugetlb = self.with(ControllerType::HugeTlb).is_some();
        if !v1_hugetlb {
            // Handled on the unified hierarchy below; libcgroups would refuse them.
            resources.set_hugepage_limits(None);
        }
        if let Some(blkio) = resources.block_io() {
            self.check_blkio_weight(rel, blkio)?;
        }
        // libcgroups demands both net_cls and net_prio for any `network` object, even one
        // asking for only one of them or nothing at all; husk applies each part itself.
        let network = resources.network().clone();
        resources.set_network(None);

        self.create(rel)?;
        if only_devices(&resources) {
            self.apply_devices(rel, resources.devices().as_deref().unwrap_or_default())?;
        } else {
            let manager = self.manager(rel)?;
            let opt = ControllerOpt {
                resources: &resources,
                disable_oom_killer: resources
                    .memory()
                    .as_ref()
                    .and_then(|m| m.disable_oom_killer())
                    .unwrap_or(false),
                // oomScoreAdj is a process attribute; the process code sets it.
                oom_score_adj: None,
                freezer_state: None,
            };
            if let Err(e) = manager.apply(&opt) {
                return Err(self.apply_error(rel, &resources, e));
            }
        }
        self.revoke_console(rel, resources.devices().as_deref().unwrap_or_default())?;
        if let Some(blkio) = resources.block_io() {
            self.apply_blkio_extras(rel, blkio)?;
        }
        if let Some(network) = &network {
            self.apply_network(rel, network)?;
        }
        if !hugepages.is_empty() && !v1_hugetlb {
            self.apply_hugetlb_unified(rel, &hugepages)?;
        }
        Ok(())
    }

    /// Exactly what libcgroups' v1 devices controller writes: the spec's rules in order, then
    /// its default devices and allow list (see the module doc). Done here because a
    /// libcgroups manager first looks up every controller's mount point through a hardened
    /// /proc handle, 12 rounds of ~30 syscalls, for a container that only has device rules
    /// (runc's default spec, Docker without limits): a third of `create`'s syscalls.
    fn apply_devices(&self, rel: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        let Some(h) = self.with(ControllerType::Devices) else {
            return Err(CgroupError::Unsupported {
                cgroup: rel.to_path_buf(),
                what: "linux.resources needs the devices controller, which has no cgroup v1 \
                       hierarchy mounted on this host"
                    .to_string(),
            });
        };
        let dir = fs::join(&h.mount, rel);
        let (allow, deny) = (dir.join("devices.allow"), dir.join("devices.deny"));
        for rule in rules {
            let file = if rule.allow() { &allow } else { &deny };
            fs::write_file(file, &rule.to_string())?;
        }
        for rule in LIBCGROUPS_DEFAULT_DEVICES {
            fs::write_file(&allow, rule)?;
        }
        Ok(())
    }

    /// libcgroups' default allow list grants `c 5:1 rwm`, the host's /dev/console; runc
    /// removed it from its list (runc 1.0, commit 60e21ec2) because a container must not
    /// reach the host console. Take back whatever the spec's own rules do not grant.
    fn revoke_console(&self, rel: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        let Some(h) = self.with(ControllerType::Devices) else {
            return Ok(());
        };
        let granted = console_access(rules);
        if granted == "rwm" {
            return Ok(());
        }
        let dir = fs::join(&h.mount, rel);
        // Drop the entry whole, then give back what the spec granted: removing only part of
        // it would leave a `c 5:1 m` line runc's list does not have.
        fs::write_file(&dir.join("devices.deny"), &format!("c {CONSOLE} rwm"))?;
        if !granted.is_empty() {
            fs::write_file(
                &dir.join("devices.allow"),
                &format!("c {CONSOLE} {granted}"),
            )?;
        }
        Ok(())
    }

    fn manager(&self, rel: &Path) -> Result<Manager, CgroupError> {
        Manager::new(rel).map_err(|e| CgroupError::Manager {
            op: "opening",
            cgroup: rel.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Turns libcgroups' apply errors into messages that say what to change.
    fn apply_error(&self, rel: &Path, res: &LinuxResources, e: V1ManagerError) -> CgroupError {
        let cgroup = rel.to_path_buf();
        match e {
            V1ManagerError::CGroupRequired(controller) => CgroupError::Unsupported {
                cgroup,
                what: format!(
                    "linux.resources needs the {controller} controller, which has no cgroup v1 \
                     hierarchy mounted on this host"
                ),
            },
            V1ManagerError::MemoryController(inner) => {
                // The kernel answers EBUSY when it cannot reclaim down to the new limit;
                // usage still above the limit afterwards is how that case shows.
                let limit = res.memory().as_ref().and_then(|m| m.limit()).unwrap_or(0);
                let usage = self
                    .with(ControllerType::Memory)
                    .map(|h| fs::join(&h.mount, rel).join("memory.usage_in_bytes"))
                    .and_then(|p| fs::read_file(&p).ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match usage {
                    Some(usage) if limit > 0 && usage > limit.unsigned_abs() => {
                        CgroupError::MemoryBelowUsage {
                            cgroup,
                            limit,
                            usage,
                        }
                    }
                    _ => CgroupError::Manager {
                        op: "applying memory limits to",
                        cgroup,
                        source: Box::new(inner),
                    },
                }
            }
            other => CgroupError::Manager {
                op: "applying linux.resources to",
                cgroup,
                source: Box::new(other),
            },
        }
    }

    fn check_blkio_weight(&self, rel: &Path, blkio: &LinuxBlockIo) -> Result<(), CgroupError> {
        let wants_weight = blkio.weight().is_some_and(|w| w != 0)
            || blkio
                .weight_device()
                .as_ref()
                .is_some_and(|d| d.iter().any(|wd| wd.weight().is_some_and(|w| w != 0)));
        if !wants_weight {
            return Ok(());
        }
        let Some(h) = self.with(ControllerType::Blkio) else {
            return Ok(()); // libcgroups reports the missing controller.
        };
        // The cgroup may not exist yet; its parent has the same files.
        let probe = fs::join(&h.mount, rel.parent().unwrap_or(Path::new("/")));
        if !probe.join("blkio.weight").exists() && !probe.join("blkio.bfq.weight").exists() {
            return Err(CgroupError::Unsupported {
                cgroup: rel.to_path_buf(),
                what: format!(
                    "linux.resources.blockIO weights need blkio.weight or blkio.bfq.weight, and \
                     {} has neither (the host's I/O scheduler has no proportional weights)",
                    probe.display()
                ),
            });
        }
        Ok(())
    }

    /// weightDevice and leafWeight, which libcgroups' v1 blkio skips; runc's file choice.
    fn apply_blkio_extras(&self, rel: &Path, blkio: &LinuxBlockIo) -> Result<(), CgroupError> {
        let Some(h) = self.with(ControllerType::Blkio) else {
            return Ok(());
        };
        let dir = fs::join(&h.mount, rel);
        let weight_device = if dir.join("blkio.bfq.weight").exists() {
            "blkio.bfq.weight_device"
        } else {
            "blkio.weight_device"
        };
        if let Some(w) = blkio.leaf_weight().filter(|w| *w != 0) {
            fs::write_file(&dir.join("blkio.leaf_weight"), &w.to_string())?;
        }
        for wd in blkio.weight_device().as_deref().unwrap_or(&[]) {
            if let Some(w) = wd.weight().filter(|w| *w != 0) {
                let line = format!("{}:{} {}", wd.major(), wd.minor(), w);
                fs::write_file(&dir.join(weight_device), &line)?;
            }
            if let Some(w) = wd.leaf_weight().filter(|w| *w != 0) {
                let line = format!("{}:{} {}", wd.major(), wd.minor(), w);
                fs::write_file(&dir.join("blkio.leaf_weight_device"), &line)?;
            }
        }
        Ok(())
    }

    /// net_cls.classid and net_prio.ifpriomap, each only when asked for.
    fn apply_network(&self, rel: &Path, network: &LinuxNetwork) -> Result<(), CgroupError> {
        let need = |controller: ControllerType, field: &str| {
            self.with(controller)
                .map(|h| fs::join(&h.mount, rel))
                .ok_or_else(|| CgroupError::Unsupported {
                    cgroup: rel.to_path_buf(),
                    what: format!(
                        "linux.resources.network.{field} needs the {controller} controller, \
                         which has no cgroup v1 hierarchy mounted on this host"
                    ),
                })
        };
        if let Some(class_id) = network.class_id() {
            let dir = need(ControllerType::NetworkClassifier, "classID")?;
            fs::write_file(&dir.join("net_cls.classid"), &class_id.to_string())?;
        }
        let priorities = network.priorities().as_deref().unwrap_or(&[]);
        if !priorities.is_empty() {
            let dir = need(ControllerType::NetworkPriority, "priorities")?;
            for p in priorities {
                let line = format!("{} {}", p.name(), p.priority());
                fs::write_file(&dir.join("net_prio.ifpriomap"), &line)?;
            }
        }
        Ok(())
    }

    /// hugetlb limits on the hybrid host's cgroup2 hierarchy (see the module doc).
    fn apply_hugetlb_unified(
        &self,
        rel: &Path,
        limits: &[LinuxHugepageLimit],
    ) -> Result<(), CgroupError> {
        let cgroup = rel.to_path_buf();
        for limit in limits {
            let page_size = limit.page_size().to_string();
            let err = |reason: String| CgroupError::Hugetlb {
                cgroup: cgroup.clone(),
                page_size: page_size.clone(),
                reason,
            };
            if !valid_page_size(&page_size) {
                return Err(err("the page size must look like 2MB or 1GB".to_string()));
            }
            let Some(unified) = self.unified() else {
                return Err(err(
                    "this cgroup v1 host has no hugetlb hierarchy and no hybrid cgroup2 \
                     hierarchy to apply it on"
                        .to_string(),
                ));
            };
            let dir = fs::join(&unified.mount, rel);
            let file = dir.join(format!("hugetlb.{page_size}.max"));
            if !file.exists() {
                let parent = dir.parent().unwrap_or(&unified.mount).to_path_buf();
                let delegated = fs::read_file(&parent.join("cgroup.subtree_control"))
                    .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
                    .unwrap_or(false);
                return Err(err(if delegated {
                    format!(
                        "the kernel has no {} (unsupported page size)",
                        file.display()
                    )
                } else {
                    format!(
                        "this host has no cgroup v1 hugetlb hierarchy, and its cgroup2 \
                         hierarchy at {} does not delegate hugetlb to {} (add it with \
                         `echo +hugetlb > {}/cgroup.subtree_control`; husk does not change \
                         host-wide controller settings)",
                        unified.mount.display(),
                        parent.display(),
                        parent.display()
                    )
                }));
            }
            fs::write_file(&file, &limit.limit().to_string())?;
            let rsvd = dir.join(format!("hugetlb.{page_size}.rsvd.max"));
            if rsvd.exists() {
                fs::write_file(&rsvd, &limit.limit().to_string())?;
            }
        }
        Ok(())
    }

    fn freezer_dir(&self, rel: &Path) -> Result<PathBuf, CgroupError> {
        let h = self
            .with(ControllerType::Freezer)
            .ok_or_else(|| CgroupError::Unsupported {
                cgroup: rel.to_path_buf(),
                what: "freezing needs the freezer controller, which has no cgroup v1 hierarchy \
                       mounted on this host"
                    .to_string(),
            })?;
        Ok(fs::join(&h.mount, rel))
    }

    /// Freezes or thaws by writing freezer.state and waiting for the kernel to get there,
    /// rewriting while it reports FREEZING as runc does. Done directly: a libcgroups manager
    /// re-reads mountinfo and /proc/self/cgroup once per controller just to find this file.
    pub(super) fn set_frozen(&self, rel: &Path, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.freezer_dir(rel)?;
        // Writing freezer.state of a deleted cgroup must not recreate it: refuse instead.
        if !dir.exists() {
            return Err(CgroupError::NotFound {
                cgroup: rel.to_path_buf(),
            });
        }
        let file = dir.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            fs::write_file(&file, want)?;
            if fs::read_file(&file)?.trim() == want {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(CgroupError::FreezeTimeout {
                    cgroup: rel.to_path_buf(),
                    want,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Whether freezer.state says FROZEN; false when the cgroup is gone.
    pub(super) fn is_frozen(&self, rel: &Path) -> Result<bool, CgroupError> {
        let Some(h) = self.with(ControllerType::Freezer) else {
            return Ok(false);
        };
        let file = fs::join(&h.mount, rel).join("freezer.state");
        match std::fs::read_to_string(&file) {
            Ok(s) => Ok(s.trim() == "FROZEN"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(fs::io_err("reading", &file)(e)),
        }
    }

    /// Pids in the container's cgroup and below, from the devices hierarchy like libcgroups
    /// (any hierarchy holds the same processes; devices is the one every runtime joins).
    pub(super) fn pids(&self, rel: &Path) -> Result<Vec<Pid>, CgroupError> {
        let h = self.with(ControllerType::Devices).or_else(|| {
            self.hierarchies
                .iter()
                .find(|h| matches!(h.role, Role::Controllers(_)))
        });
        match h {
            Some(h) => fs::all_pids(&fs::join(&h.mount, rel)),
            None => Ok(Vec::new()),
        }
    }

    /// libcgroups' statistics for every mounted controller.
    pub(super) fn stats(&self, rel: &Path) -> Result<Stats, CgroupError> {
        if !self.dirs(rel).iter().any(|d| d.exists()) {
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

    /// Removes the container's directory (and sub-cgroups) in every hierarchy.
    pub(super) fn remove(&self, rel: &Path) -> Result<(), CgroupError> {
        // Frozen tasks cannot act on SIGKILL, so thaw before anything may need killing.
        if let Some(h) = self.with(ControllerType::Freezer) {
            let state = fs::join(&h.mount, rel).join("freezer.state");
            if state.exists() {
                let _ = fs::write_file(&state, "THAWED");
            }
        }
        let mut first_error = None;
        for dir in self.dirs(rel) {
            // Keep going: one stuck hierarchy must not leave the others behind.
            if let Err(e) = fs::remove_tree(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// New cpuset cgroups start with empty cpus/mems, and joining one fails with ENOSPC; copy the
/// parent's values down each level we pass, as runc and libcgroups do.
/// Every v1 controller libcgroups manages.
const CONTROLLERS: [ControllerType; 12] = [
    ControllerType::Cpu,
    ControllerType::CpuAcct,
    ControllerType::CpuSet,
    ControllerType::Devices,
    ControllerType::HugeTlb,
    ControllerType::Pids,
    ControllerType::PerfEvent,
    ControllerType::Memory,
    ControllerType::Blkio,
    ControllerType::NetworkPriority,
    ControllerType::NetworkClassifier,
    ControllerType::Freezer,
];

/// The mount point of each controller, chosen exactly as libcgroups'
/// `get_subsystem_mount_point` chooses it (the first v1 mount whose path ends with the
/// controller's name, co-mounts included), so husk's dirs are where libcgroups writes limits.
fn supported_mount_points(mounts: &[fs::CgroupMount]) -> Vec<(ControllerType, PathBuf)> {
    let ends =
        |m: &fs::CgroupMount, names: &[&str]| names.iter().any(|n| m.mount_point.ends_with(n));
    CONTROLLERS
        .iter()
        .filter_map(|c| {
            let name = c.to_string();
            mounts
                .iter()
                .filter(|m| m.fs_type == "cgroup")
                .find(|m| match name.as_str() {
                    "net_cls" => ends(m, &["net_cls,net_prio", "net_prio,net_cls", "net_cls"]),
                    "net_prio" => ends(m, &["net_cls,net_prio", "net_prio,net_cls", "net_prio"]),
                    "cpu" => ends(m, &["cpu,cpuacct", "cpu"]),
                    "cpuacct" => ends(m, &["cpu,cpuacct", "cpuacct"]),
                    other => ends(m, &[other]),
                })
                .map(|m| (*c, m.mount_point.clone()))
        })
        .collect()
}

fn seed_cpuset(parent: &Path, child: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read_file(&child.join(file))?.is_empty() {
            let value = fs::read_file(&parent.join(file))?;
            if value.is_empty() {
                return Err(CgroupError::Unsupported {
                    cgroup: child.to_path_buf(),
                    what: format!(
                        "{} is empty, so no cpuset can be inherited",
                        parent.join(file).display()
                    ),
                });
            }
            fs::write_file(&child.join(file), &value)?;
        }
    }
    Ok(())
}

/// "2MB", "1GB", "64KB": a power of two followed by a unit, as the kernel names hugetlb files.
fn valid_page_size(size: &str) -> bool {
    let digits: String = size.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = &size[digits.len()..];
    digits.parse::<u64>().is_ok_and(u64::is_power_of_two) && matches!(unit, "KB" | "MB" | "GB")
}

/// What libcgroups 0.7 allows after the spec's rules, in its order: `default_devices()` (null,
/// zero, full, tty, urandom, random) and then `default_allow_devices()`.
const LIBCGROUPS_DEFAULT_DEVICES: [&str; 12] = [
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:9 rwm",
    "c 1:8 rwm",
    "c *:* m",
    "b *:* m",
    "c 5:1 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// Whether `r` asks for nothing but device rules, which is all libcgroups would apply then
/// (the devices controller is the only one it always handles).
fn only_devices(r: &LinuxResources) -> bool {
    let mut rest = r.clone();
    rest.set_devices(None);
    rest == LinuxResources::default()
}

/// The host console's device number, major:minor.
const CONSOLE: &str = "5:1";

/// The access to /dev/console (c 5:1) that the spec's device rules alone leave, replayed in
/// order as the kernel does from a cgroup that inherits allow-all: "rwm", a subset, or "".
fn console_access(rules: &[LinuxDeviceCgroup]) -> String {
    let mut access: Vec<char> = vec!['r', 'w', 'm'];
    for rule in rules {
        let typ_matches = matches!(
            rule.typ().unwrap_or(LinuxDeviceType::A),
            LinuxDeviceType::A | LinuxDeviceType::C
        );
        // A negative or absent number is the wildcard.
        let major_matches = rule.major().is_none_or(|m| m < 0 || m == 5);
        let minor_matches = rule.minor().is_none_or(|m| m < 0 || m == 1);
        if !(typ_matches && major_matches && minor_matches) {
            continue;
        }
        let bits = rule.access().clone().unwrap_or_else(|| "rwm".to_string());
        if rule.allow() {
            for c in ['r', 'w', 'm'] {
                if bits.contains(c) && !access.contains(&c) {
                    access.push(c);
                }
            }
        } else {
            access.retain(|c| !bits.contains(*c));
        }
    }
    ['r', 'w', 'm']
        .iter()
        .filter(|c| access.contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert!(valid_page_size("2MB"));
        assert!(valid_page_size("1GB"));
        assert!(!valid_page_size("3MB"));
        assert!(!valid_page_size("2M"));
        assert!(!valid_page_size("MB"));
        assert!(!valid_page_size("2MB/../x"));
    }

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    }

    #[test]
    fn console_access_replays_the_spec_rules() {
        // No rules: the inherited allow-all stands.
        assert_eq!(console_access(&[]), "rwm");
        // runc spec's deny-all, then other devices: nothing for the console.
        let deny_all = rule(false, None, None, None, "rwm");
        let null = rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm");
        assert_eq!(console_access(&[deny_all.clone(), null]), "");
        // Explicitly granted, fully or in part, or through a wildcard.
        let console_r = rule(true, Some(LinuxDeviceType::C), Some(5), Some(1), "r");
        assert_eq!(console_access(&[deny_all.clone(), console_r]), "r");
        let all_c5 = rule(true, Some(LinuxDeviceType::C), Some(5), Some(-1), "rw");
        assert_eq!(console_access(&[deny_all.clone(), all_c5]), "rw");
        let privileged = rule(true, None, None, None, "rwm");
        assert_eq!(console_access(&[deny_all, privileged]), "rwm");
        // Block devices 5:1 are another device.
        let block = rule(false, Some(LinuxDeviceType::B), Some(5), Some(1), "rwm");
        assert_eq!(console_access(&[block]), "rwm");
        let deny_w = rule(false, Some(LinuxDeviceType::C), Some(5), Some(1), "w");
        assert_eq!(console_access(&[deny_w]), "rm");
    }
}
