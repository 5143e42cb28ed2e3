//! One container: its init, its execs, the runtime that drives it, its rootfs mounts and its
//! state file. The Task service maps RPCs onto these methods.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::{CheckpointOptions, ProcessDetails};
use containerd_shim::protos::types::mount::Mount;
use containerd_shim::protos::types::task::ProcessInfo;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Result, ShimError};
use crate::logger::LogIdentity;
use crate::oom::OomWatcher;
use crate::options::ShimOptions;
use crate::persist::{ContainerRecord, ProcessRecord};
use crate::process::{Exit, Process, Status};
use crate::runtime::{
    read_pid_file, CheckpointOpts, CmdIo, CreateOpts, ExecOpts, RestoreOpts, Runtime, RuntimeError,
};
use crate::stdio::{ConsoleSocket, ProcessIo, StdioPaths};

/// How long Delete waits for a process's output to drain before closing its FIFOs.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for the runtime's pty master after a successful create/exec.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// 128 + SIGKILL: the status reported for a process that was killed without the shim
/// seeing its exit.
pub const KILLED_STATUS: u32 = 137;

/// What Create needs from the request.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Rootfs mounts containerd passed (mounted on `bundle/rootfs`).
    pub rootfs: Vec<Mount>,
    /// stdio.
    pub stdio: StdioPaths,
    /// Checkpoint to restore from (restored at Start).
    pub checkpoint: String,
    /// Parent checkpoint.
    pub parent_checkpoint: String,
    /// Runtime options.
    pub options: ShimOptions,
}

/// A container.
pub struct Container {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// containerd namespace.
    pub namespace: String,
    /// Runtime options in force.
    pub options: ShimOptions,
    /// The runtime binary and its global flags.
    pub runtime: Runtime,
    /// The init process.
    pub init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    rootfs_mounted: bool,
    checkpoint: Option<(String, String)>,
    oom: Mutex<Option<OomWatcher>>,
    /// Serializes state-changing operations (start, exec start, delete, pause) so the
    /// runtime never sees two of them at once for this container.
    ops: Mutex<()>,
}

fn runtime_failed(what: &str, e: RuntimeError) -> ShimError {
    ShimError::Other(format!("OCI runtime {what} failed: {e}"))
}

/// Errors from `kill` that mean the process is gone already (runc's and husk's wording).
fn is_gone(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not running")
        || m.contains("no such process")
        || m.contains("process already finished")
        || m.contains("container does not exist")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means a panic elsewhere; the maps stay consistent (single inserts and
    // removes), and the shim must keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mounts containerd's rootfs mounts on `target`, in order; on failure unmounts what it did.
fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    std::fs::create_dir_all(target)
        .map_err(ShimError::io(format!("creating {}", target.display())))?;
    for m in mounts {
        let fstype = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fstype, source, &m.options, target) {
            unmount_all(target);
            return Err(ShimError::Other(format!(
                "mounting {} ({}) on {}: {e}",
                m.source,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(())
}

/// Unmounts everything at or below `target` (lazily: a busy mount must not keep the
/// container from being deleted).
pub fn unmount_all(target: &Path) {
    let Some(t) = target.to_str() else { return };
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(t), libc::MNT_DETACH) {
        log::warn!("unmounting {t}: {e}");
    }
}

impl Container {
    /// Runs `create` (or prepares a restore) and returns the container, init created.
    /// `register` is called with the init (pid set) before anything else can see it, so
    /// an exit that raced the create is matched.
    pub fn create(
        namespace: &str,
        spec: CreateSpec,
        register: impl FnOnce(&Arc<Process>, i32),
    ) -> Result<Container> {
        let opts = spec.options.clone();
        opts.write(&spec.bundle)
            .map_err(|e| ShimError::Other(e.to_string()))?;
        let runtime = Runtime {
            binary: opts.resolve_binary(),
            root: opts.runtime_root(namespace),
            log: spec.bundle.join("log.json"),
            systemd_cgroup: opts.systemd_cgroup,
            criu: (!opts.criu_path.is_empty()).then(|| PathBuf::from(&opts.criu_path)),
        };
        let rootfs = spec.bundle.join("rootfs");
        let rootfs_mounted = !spec.rootfs.is_empty();
        if rootfs_mounted {
            mount_all(&spec.rootfs, &rootfs)?;
        }
        let init = Arc::new(Process::new("", spec.stdio.clone(), None));
        let mut c = Container {
            id: spec.id.clone(),
            bundle: spec.bundle.clone(),
            namespace: namespace.to_string(),
            options: opts,
            runtime,
            init,
            execs: Mutex::new(HashMap::new()),
            rootfs_mounted,
            checkpoint: None,
            oom: Mutex::new(None),
            ops: Mutex::new(()),
        };
        if !spec.checkpoint.is_empty() {
            // As runc-v2: the restore itself happens at Start.
            c.checkpoint = Some((spec.checkpoint.clone(), spec.parent_checkpoint.clone()));
            c.save();
            return Ok(c);
        }
        match c.run_create(register) {
            Ok(()) => {
                c.save();
                Ok(c)
            }
            Err(e) => {
                if c.rootfs_mounted {
                    unmount_all(&rootfs);
                }
                Err(e)
            }
        }
    }

    fn pid_file(&self, exec_id: &str) -> PathBuf {
        if exec_id.is_empty() {
            self.bundle.join("init.pid")
        } else {
            self.bundle.join(format!("{exec_id}.pid"))
        }
    }

    /// Sets up the stdio of `p` for a runtime command: pipes, or a console socket.
    fn prepare_io(&self, p: &Process) -> Result<(CmdIo, Option<ProcessIo>, Option<ConsoleSocket>)> {
        if p.stdio.terminal {
            let sock = ConsoleSocket::new().map_err(ShimError::io("creating console socket"))?;
            Ok((CmdIo::default(), None, Some(sock)))
        } else {
            let (cmd, io) = ProcessIo::pipes(
                &p.stdio,
                &self.log_identity(p),
                self.options.io_uid,
                self.options.io_gid,
            )
            .map_err(ShimError::io("opening stdio"))?;
            Ok((cmd, Some(io), None))
        }
    }

    /// Who a `binary://` logger is told it logs for: the container id for the init, the exec
    /// id for an exec (as runc-v2 does).
    fn log_identity(&self, p: &Process) -> LogIdentity {
        LogIdentity {
            id: if p.exec_id.is_empty() {
                self.id.clone()
            } else {
                p.exec_id.clone()
            },
            namespace: self.namespace.clone(),
        }
    }

    /// After a successful create/exec/restore: attach the pty (if any) and the pipes.
    fn attach_io(
        &self,
        p: &Process,
        io: Option<ProcessIo>,
        sock: Option<ConsoleSocket>,
    ) -> Result<()> {
        if let Some(sock) = sock {
            let master = sock
                .receive(CONSOLE_TIMEOUT)
                .map_err(ShimError::io("receiving the pty master from the runtime"))?;
            let io = ProcessIo::console(master, &p.stdio, &self.log_identity(p))
                .map_err(ShimError::io("attaching the terminal"))?;
            p.set_io(io);
        } else if let Some(io) = io {
            p.set_io(io);
        }
        Ok(())
    }

    fn run_create(&self, register: impl FnOnce(&Arc<Process>, i32)) -> Result<()> {
        let (cmd, io, sock) = self.prepare_io(&self.init)?;
        let opts = CreateOpts {
            pid_file: self.pid_file(""),
            console_socket: sock.as_ref().map(|s| s.path().to_path_buf()),
            no_pivot: self.options.no_pivot_root,
            no_new_keyring: self.options.no_new_keyring,
        };
        self.runtime
            .create(&self.id, &self.bundle, &opts, cmd)
            .map_err(|e| runtime_failed("create", e))?;
        let pid = read_pid_file(&opts.pid_file).map_err(ShimError::io("reading init.pid"))?;
        register(&self.init, pid);
        if let Err(e) = self.attach_io(&self.init, io, sock) {
            let _ = self.runtime.delete(&self.id, true);
            return Err(e);
        }
        Ok(())
    }

    /// Starts the init (or restores it from the checkpoint given at Create).
    pub fn start_init(
        &self,
        register: impl FnOnce(&Arc<Process>, i32),
        oom: impl Fn() + Send + 'static,
    ) -> Result<i32> {
        let _g = lock(&self.ops);
        if let Some((image, parent)) = &self.checkpoint {
            let (cmd, io, sock) = self.prepare_io(&self.init)?;
            let o = RestoreOpts {
                checkpoint: CheckpointOpts {
                    image_path: PathBuf::from(image),
                    work_path: Some(self.work_path()),
                    parent_path: (!parent.is_empty()).then(|| PathBuf::from(parent)),
                    ..Default::default()
                },
                pid_file: self.pid_file(""),
                bundle: self.bundle.clone(),
                console_socket: sock.as_ref().map(|s| s.path().to_path_buf()),
                no_pivot: self.options.no_pivot_root,
            };
            self.runtime
                .restore(&self.id, &o, cmd)
                .map_err(|e| runtime_failed("restore", e))?;
            let pid = read_pid_file(&o.pid_file).map_err(ShimError::io("reading init.pid"))?;
            register(&self.init, pid);
            self.attach_io(&self.init, io, sock)?;
        } else {
            match self.init.snapshot().status {
                Status::Created => {}
                Status::Stopped => {
                    return Err(ShimError::FailedPrecondition(format!(
                        "container {} has exited",
                        self.id
                    )))
                }
                _ => {
                    return Err(ShimError::FailedPrecondition(format!(
                        "container {} is already started",
                        self.id
                    )))
                }
            }
            self.runtime
                .start(&self.id)
                .map_err(|e| runtime_failed("start", e))?;
        }
        self.init.set_status(Status::Running);
        let pid = self.init.pid();
        match crate::oom::watch(pid, oom) {
            Ok(w) => *lock(&self.oom) = w,
            // A process that already exited has no cgroup to read: nothing to watch.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("no OOM events for {}: {e}", self.id)
            }
            Err(e) => log::warn!("no OOM events for {}: {e}", self.id),
        }
        self.save();
        Ok(pid)
    }

    fn work_path(&self) -> PathBuf {
        if self.options.criu_work_path.is_empty() {
            self.bundle.join("criu-work")
        } else {
            PathBuf::from(&self.options.criu_work_path)
        }
    }

    /// The process with `exec_id` ("" is the init).
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        lock(&self.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id} of {}", self.id)))
    }

    /// All execs.
    pub fn execs(&self) -> Vec<Arc<Process>> {
        lock(&self.execs).values().cloned().collect()
    }

    /// Registers an exec (the Exec RPC); it starts with Start.
    pub fn add_exec(&self, exec_id: &str, stdio: StdioPaths, spec: &Any) -> Result<()> {
        if self.init.snapshot().status == Status::Stopped {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is stopped",
                self.id
            )));
        }
        let mut execs = lock(&self.execs);
        if execs.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!("exec {exec_id}")));
        }
        // The spec is the runtime-spec Process, JSON-encoded in the Any (containerd's typeurl
        // for runtime-spec types).
        serde_json::from_slice::<serde_json::Value>(&spec.value).map_err(|e| {
            ShimError::InvalidArgument(format!("exec {exec_id}: process spec is not JSON: {e}"))
        })?;
        execs.insert(
            exec_id.to_string(),
            Arc::new(Process::new(exec_id, stdio, Some(spec.value.clone()))),
        );
        drop(execs);
        self.save();
        Ok(())
    }

    /// Starts an exec with `husk exec --process ... --detach`.
    pub fn start_exec(
        &self,
        exec_id: &str,
        register: impl FnOnce(&Arc<Process>, i32),
    ) -> Result<i32> {
        let p = self.process(exec_id)?;
        let _g = lock(&self.ops);
        if p.snapshot().status != Status::Created {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id} was already started"
            )));
        }
        let spec_path = self.bundle.join(format!(".exec-{exec_id}.json"));
        let spec = p.spec.clone().unwrap_or_default();
        crate::persist::write_atomic(&spec_path, &spec)
            .map_err(ShimError::io(format!("writing {}", spec_path.display())))?;
        let (cmd, io, sock) = self.prepare_io(&p)?;
        let o = ExecOpts {
            process: spec_path.clone(),
            pid_file: self.pid_file(exec_id),
            console_socket: sock.as_ref().map(|s| s.path().to_path_buf()),
        };
        let res = self.runtime.exec(&self.id, &o, cmd);
        let _ = std::fs::remove_file(&spec_path);
        res.map_err(|e| runtime_failed("exec", e))?;
        let pid = read_pid_file(&o.pid_file).map_err(ShimError::io("reading the exec pid file"))?;
        let _ = std::fs::remove_file(&o.pid_file);
        register(&p, pid);
        p.set_status(Status::Running);
        self.attach_io(&p, io, sock)?;
        self.save();
        Ok(pid)
    }

    /// Sends `signal` to a process (`all`: every process of the container).
    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let p = self.process(exec_id)?;
        let snap = p.snapshot();
        let finished = || ShimError::NotFound("process already finished".to_string());
        if exec_id.is_empty() {
            if snap.status == Status::Stopped && !all {
                return Err(finished());
            }
            return self.runtime.kill(&self.id, signal, all).map_err(|e| {
                if is_gone(&e.to_string()) {
                    finished()
                } else {
                    runtime_failed("kill", e)
                }
            });
        }
        if snap.status != Status::Running || snap.pid <= 0 {
            return Err(finished());
        }
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or_else(|| ShimError::InvalidArgument(format!("signal {signal}")))?;
        nix::sys::signal::kill(Pid::from_raw(snap.pid), sig).map_err(|e| {
            if e == nix::errno::Errno::ESRCH {
                finished()
            } else {
                ShimError::Other(format!("kill {}: {e}", snap.pid))
            }
        })
    }

    /// Deletes an exec (must not be running) and returns how it ended.
    pub fn delete_exec(&self, exec_id: &str) -> Result<(i32, Exit)> {
        let p = self.process(exec_id)?;
        let snap = p.snapshot();
        if snap.status == Status::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id} is running"
            )));
        }
        p.close_io(FLUSH_TIMEOUT);
        lock(&self.execs).remove(exec_id);
        self.save();
        Ok((
            snap.pid,
            snap.exit.unwrap_or(Exit {
                status: 0,
                at: SystemTime::now(),
            }),
        ))
    }

    /// Deletes the container: runtime `delete`, output flushed, rootfs unmounted, state
    /// file removed. The init must not be running.
    pub fn delete(&self) -> Result<(i32, Exit)> {
        let _g = lock(&self.ops);
        let snap = self.init.snapshot();
        if matches!(snap.status, Status::Running | Status::Paused) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot delete a running container {}",
                self.id
            )));
        }
        let force = snap.status != Status::Stopped;
        if let Err(e) = self.runtime.delete(&self.id, force) {
            let msg = e.to_string();
            // Already gone (e.g. a restore that never ran) is fine; anything else is not.
            if !msg.contains("does not exist") && !msg.contains("not found") {
                return Err(runtime_failed("delete", e));
            }
        }
        for p in self.execs() {
            p.close_io(FLUSH_TIMEOUT);
        }
        self.init.close_io(FLUSH_TIMEOUT);
        lock(&self.oom).take();
        if self.rootfs_mounted {
            unmount_all(&self.bundle.join("rootfs"));
        }
        ContainerRecord::remove(&self.bundle);
        let exit = self.init.snapshot().exit.unwrap_or(Exit {
            status: KILLED_STATUS,
            at: SystemTime::now(),
        });
        Ok((snap.pid, exit))
    }

    /// Freezes the container.
    pub fn pause(&self) -> Result<()> {
        let _g = lock(&self.ops);
        self.runtime
            .pause(&self.id)
            .map_err(|e| runtime_failed("pause", e))?;
        self.init.set_status(Status::Paused);
        self.save();
        Ok(())
    }

    /// Thaws the container.
    pub fn resume(&self) -> Result<()> {
        let _g = lock(&self.ops);
        self.runtime
            .resume(&self.id)
            .map_err(|e| runtime_failed("resume", e))?;
        self.init.set_status(Status::Running);
        self.save();
        Ok(())
    }

    /// The container's processes, execs marked with their exec id.
    pub fn pids(&self) -> Result<Vec<ProcessInfo>> {
        let pids = self
            .runtime
            .ps(&self.id)
            .map_err(|e| runtime_failed("ps", e))?;
        let execs: HashMap<i32, String> = self
            .execs()
            .iter()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        let mut out = Vec::new();
        for pid in pids {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = i32::try_from(pid).ok().and_then(|p| execs.get(&p)) {
                let d = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                if let Ok(value) = d.write_to_bytes() {
                    info.info = containerd_shim::protos::protobuf::MessageField::some(Any {
                        type_url: "containerd.runc.v1.ProcessDetails".to_string(),
                        value,
                        ..Default::default()
                    });
                }
            }
            out.push(info);
        }
        Ok(out)
    }

    /// Changes resources (`update --resources -`; the Any holds runtime-spec JSON).
    pub fn update(&self, resources: &Any) -> Result<()> {
        self.runtime
            .update(&self.id, &resources.value)
            .map_err(|e| runtime_failed("update", e))
    }

    /// Checkpoints the container into `path`.
    pub fn checkpoint(&self, path: &str, options: Option<&Any>) -> Result<()> {
        let _g = lock(&self.ops);
        let o = match options.filter(|a| !a.value.is_empty() || !a.type_url.is_empty()) {
            Some(a) => CheckpointOptions::parse_from_bytes(&a.value)
                .map_err(|e| ShimError::InvalidArgument(format!("checkpoint options: {e}")))?,
            None => CheckpointOptions::default(),
        };
        let image = if !path.is_empty() {
            path.to_string()
        } else if !o.image_path.is_empty() {
            o.image_path.clone()
        } else {
            self.options.criu_image_path.clone()
        };
        if image.is_empty() {
            return Err(ShimError::InvalidArgument(
                "checkpoint: no image path".into(),
            ));
        }
        let opts = CheckpointOpts {
            image_path: PathBuf::from(&image),
            work_path: Some(if o.work_path.is_empty() {
                self.work_path()
            } else {
                PathBuf::from(&o.work_path)
            }),
            parent_path: None,
            leave_running: !o.exit,
            tcp_established: o.open_tcp,
            ext_unix_sk: o.external_unix_sockets,
            shell_job: o.terminal,
            file_locks: o.file_locks,
            empty_ns: o.empty_namespaces.clone(),
            cgroups_mode: (!o.cgroups_mode.is_empty()).then(|| o.cgroups_mode.clone()),
        };
        self.runtime
            .checkpoint(&self.id, &opts)
            .map_err(|e| runtime_failed("checkpoint", e))
    }

    /// Writes the state file (best effort: a failure is logged, the container runs on).
    pub fn save(&self) {
        let execs: BTreeMap<String, ProcessRecord> = self
            .execs()
            .iter()
            .map(|p| (p.exec_id.clone(), ProcessRecord::of(p)))
            .collect();
        let rec = ContainerRecord {
            version: 1,
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            bundle: self.bundle.clone(),
            rootfs_mounted: self.rootfs_mounted,
            shim_pid: std::process::id(),
            init: ProcessRecord::of(&self.init),
            execs,
        };
        if let Err(e) = rec.save() {
            log::warn!("saving state of {}: {e}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_messages() {
        assert!(is_gone("container not running"));
        assert!(is_gone("kill: No such process"));
        assert!(!is_gone("permission denied"));
    }
}
