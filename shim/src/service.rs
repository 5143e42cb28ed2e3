//! The ttrpc Task service: every RPC of containerd's shim v2 API, over the containers this
//! shim serves (one, or a pod's worth when grouped), plus the exit loop that turns the
//! reaper's exit notifications into process exits and TaskExit events.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime};

use containerd_shim::api;
use containerd_shim::event::Event;
use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO,
    TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::task::Status as TaskStatus;
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};

use crate::container::{Container, CreateSpec};
use crate::error::{Result, ShimError};
use crate::options::ShimOptions;
use crate::process::{unix_parts, Process, Status};
use crate::publisher::{Publisher, TypeName};
use crate::stdio::StdioPaths;

/// Exits nobody claimed yet (a process may exit before its pid is registered).
const EARLY_EXITS: usize = 256;

/// A process the exit loop should recognise, by pid.
struct Registered {
    container_id: String,
    process: Arc<Process>,
}

#[derive(Default)]
struct Registry {
    pids: HashMap<i32, Registered>,
    unclaimed: VecDeque<EarlyExit>,
}

#[derive(Debug, Clone, Copy)]
struct EarlyExit {
    pid: i32,
    status: u32,
    at: SystemTime,
}

/// The service state shared with the exit loop.
pub struct Inner {
    namespace: String,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    publisher: Publisher,
    exit: Arc<ExitSignal>,
    /// Registered pids and unclaimed exits. Matching an exit to a process and registering a
    /// pid both happen under this lock, so an exit is never lost between "the runtime wrote
    /// the pid file" and "the shim knows the pid".
    registry: Mutex<Registry>,
}

/// The Task service handed to the ttrpc server.
pub struct Service {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn timestamp(t: SystemTime) -> Timestamp {
    let (seconds, nanos) = unix_parts(t);
    Timestamp {
        seconds,
        nanos,
        ..Default::default()
    }
}

fn task_status(s: Status) -> TaskStatus {
    match s {
        Status::Created => TaskStatus::CREATED,
        Status::Running => TaskStatus::RUNNING,
        Status::Paused => TaskStatus::PAUSED,
        Status::Stopped => TaskStatus::STOPPED,
    }
}

impl Inner {
    fn publish<E: Event + Message + TypeName>(&self, e: E) {
        self.publisher.publish(e);
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("container {id}")))
    }

    /// Records `pid` for `p` of container `cid`, claiming an exit that already happened.
    fn register(&self, cid: &str, p: &Arc<Process>, pid: i32, since: SystemTime) {
        let mut reg = lock(&self.registry);
        p.set_pid(pid);
        let claimed = reg
            .unclaimed
            .iter()
            .position(|e| e.pid == pid && e.at >= since)
            .and_then(|i| reg.unclaimed.remove(i));
        match claimed {
            Some(e) => {
                drop(reg);
                self.process_exited(cid, p, e.status, e.at);
            }
            None => {
                reg.pids.insert(
                    pid,
                    Registered {
                        container_id: cid.to_string(),
                        process: p.clone(),
                    },
                );
            }
        }
    }

    /// The exit loop: one subscription to every child exit the reaper sees.
    fn exit_loop(self: Arc<Self>) {
        let sub = match monitor_subscribe(Topic::All) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot subscribe to exits: {e}");
                return;
            }
        };
        while let Ok(ev) = sub.rx.recv() {
            let Subject::Pid(pid) = ev.subject else {
                continue;
            };
            let status = u32::try_from(ev.exit_code).unwrap_or(KILLED);
            let at = SystemTime::now();
            let mut reg = lock(&self.registry);
            match reg.pids.remove(&pid) {
                Some(r) => {
                    drop(reg);
                    self.process_exited(&r.container_id, &r.process, status, at);
                }
                None => {
                    if reg.unclaimed.len() >= EARLY_EXITS {
                        reg.unclaimed.pop_front();
                    }
                    reg.unclaimed.push_back(EarlyExit { pid, status, at });
                }
            }
        }
    }

    /// A managed process exited: record it, persist, tell containerd.
    fn process_exited(&self, cid: &str, p: &Arc<Process>, status: u32, at: SystemTime) {
        if !p.set_exited(status, at) {
            return;
        }
        let is_init = p.exec_id.is_empty();
        // The container is not in the map yet when its init dies during Create; Create
        // saves its state itself then.
        let owner = lock(&self.containers).get(cid).cloned();
        if let Some(c) = &owner {
            if is_init {
                // Execs die with the init when it owns their pid namespace; with a shared one
                // they would linger, so make sure, as runc-v2 does.
                for e in c.execs() {
                    let snap = e.snapshot();
                    if snap.exit.is_none() && snap.status == Status::Running && snap.pid > 0 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(snap.pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            c.save();
        }
        let pid = u32::try_from(p.pid()).unwrap_or(0);
        self.publish(TaskExit {
            container_id: cid.to_string(),
            id: if is_init {
                cid.to_string()
            } else {
                p.exec_id.clone()
            },
            pid,
            exit_status: status,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        });
    }
}

const KILLED: u32 = crate::container::KILLED_STATUS;

impl Service {
    /// The service for `namespace`, publishing to containerd at `ttrpc_address`.
    pub fn new(namespace: &str, ttrpc_address: &str, exit: Arc<ExitSignal>) -> Service {
        let inner = Arc::new(Inner {
            namespace: namespace.to_string(),
            containers: Mutex::new(HashMap::new()),
            publisher: Publisher::new(ttrpc_address.to_string(), namespace.to_string()),
            exit,
            registry: Mutex::new(Registry::default()),
        });
        let looped = inner.clone();
        if let Err(e) = thread::Builder::new()
            .name("exits".into())
            .spawn(move || looped.exit_loop())
        {
            log::error!("cannot start the exit loop: {e}");
        }
        Service { inner }
    }

    fn do_create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        let inner = &self.inner;
        if lock(&inner.containers).contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(format!("container {}", req.id)));
        }
        let options = ShimOptions::from_any(req.options.as_ref())
            .map_err(|e| ShimError::InvalidArgument(e.to_string()))?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let spec = CreateSpec {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: req.rootfs.clone(),
            stdio,
            checkpoint: req.checkpoint.clone(),
            parent_checkpoint: req.parent_checkpoint.clone(),
            options,
        };
        let since = SystemTime::now();
        let cid = req.id.clone();
        let c = Container::create(&inner.namespace, spec, |p, pid| {
            inner.register(&cid, p, pid, since)
        })?;
        let pid = c.init.pid();
        lock(&inner.containers).insert(req.id.clone(), Arc::new(c));
        inner.publish(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        });
        Ok(api::CreateTaskResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        })
    }

    fn do_start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        let inner = &self.inner;
        let c = inner.container(&req.id)?;
        let since = SystemTime::now();
        let pid = if req.exec_id.is_empty() {
            let weak = Arc::downgrade(inner);
            let id = c.id.clone();
            let pid = c.start_init(
                |p, pid| inner.register(&c.id, p, pid, since),
                move || {
                    if let Some(i) = weak.upgrade() {
                        i.publish(TaskOOM {
                            container_id: id.clone(),
                            ..Default::default()
                        });
                    }
                },
            )?;
            inner.publish(TaskStart {
                container_id: c.id.clone(),
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            });
            pid
        } else {
            let pid = c.start_exec(&req.exec_id, |p, pid| inner.register(&c.id, p, pid, since))?;
            inner.publish(TaskExecStarted {
                container_id: c.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: u32::try_from(pid).unwrap_or(0),
                ..Default::default()
            });
            pid
        };
        Ok(api::StartResponse {
            pid: u32::try_from(pid).unwrap_or(0),
            ..Default::default()
        })
    }

    fn do_delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let inner = &self.inner;
        let c = inner.container(&req.id)?;
        let (pid, exit) = if req.exec_id.is_empty() {
            let r = c.delete()?;
            lock(&inner.containers).remove(&req.id);
            r
        } else {
            c.delete_exec(&req.exec_id)?
        };
        let pid = u32::try_from(pid).unwrap_or(0);
        inner.publish(TaskDelete {
            container_id: c.id.clone(),
            id: if req.exec_id.is_empty() {
                c.id.clone()
            } else {
                req.exec_id.clone()
            },
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        });
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn do_state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        let c = self.inner.container(&req.id)?;
        let p = c.process(&req.exec_id)?;
        let snap = p.snapshot();
        let mut r = api::StateResponse {
            id: if req.exec_id.is_empty() {
                c.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: u32::try_from(snap.pid).unwrap_or(0),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        r.status = task_status(snap.status).into();
        if let Some(e) = snap.exit {
            r.exit_status = e.status;
            r.exited_at = MessageField::some(timestamp(e.at));
        }
        Ok(r)
    }
}

/// Turns the service's results into ttrpc results, logging failures.
fn reply<T>(what: &str, r: Result<T>) -> TtrpcResult<T> {
    r.map_err(|e| {
        log::info!("{what}: {e}");
        e.into()
    })
}

impl Task for Service {
    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        reply("state", self.do_state(req))
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        log::info!("create {} bundle {}", req.id, req.bundle);
        reply("create", self.do_create(req))
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        reply("start", self.do_start(req))
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        reply("delete", self.do_delete(req))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        reply(
            "pids",
            self.inner.container(&req.id).and_then(|c| {
                Ok(api::PidsResponse {
                    processes: c.pids()?,
                    ..Default::default()
                })
            }),
        )
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let r = self.inner.container(&req.id).and_then(|c| {
            c.pause()?;
            self.inner.publish(TaskPaused {
                container_id: c.id.clone(),
                ..Default::default()
            });
            Ok(Empty::new())
        });
        reply("pause", r)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let r = self.inner.container(&req.id).and_then(|c| {
            c.resume()?;
            self.inner.publish(TaskResumed {
                container_id: c.id.clone(),
                ..Default::default()
            });
            Ok(Empty::new())
        });
        reply("resume", r)
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        let r = self.inner.container(&req.id).and_then(|c| {
            c.checkpoint(&req.path, req.options.as_ref())?;
            self.inner.publish(TaskCheckpointed {
                container_id: c.id.clone(),
                checkpoint: req.path.clone(),
                ..Default::default()
            });
            Ok(Empty::new())
        });
        reply("checkpoint", r)
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let r = self
            .inner
            .container(&req.id)
            .and_then(|c| c.kill(&req.exec_id, req.signal, req.all))
            .map(|()| Empty::new());
        reply("kill", r)
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let r = self.inner.container(&req.id).and_then(|c| {
            let spec = req
                .spec
                .as_ref()
                .ok_or_else(|| ShimError::InvalidArgument("exec without a process spec".into()))?;
            c.add_exec(
                &req.exec_id,
                StdioPaths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                spec,
            )?;
            self.inner.publish(TaskExecAdded {
                container_id: c.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            });
            Ok(Empty::new())
        });
        reply("exec", r)
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        let r = self
            .inner
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id))
            .and_then(|p| {
                p.with_io(|io| io.resize(req.width, req.height))
                    .transpose()
                    .map_err(ShimError::io("resizing the terminal"))
            })
            .map(|_| Empty::new());
        reply("resize_pty", r)
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let r = self
            .inner
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id))
            .map(|p| {
                if req.stdin {
                    p.with_io(|io| io.close_stdin());
                }
                Empty::new()
            });
        reply("close_io", r)
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let r = self.inner.container(&req.id).and_then(|c| {
            let res = req
                .resources
                .as_ref()
                .ok_or_else(|| ShimError::InvalidArgument("update without resources".into()))?;
            c.update(res)?;
            Ok(Empty::new())
        });
        reply("update", r)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let r = self
            .inner
            .container(&req.id)
            .and_then(|c| c.process(&req.exec_id))
            .map(|p| {
                let e = p.wait();
                api::WaitResponse {
                    exit_status: e.status,
                    exited_at: MessageField::some(timestamp(e.at)),
                    ..Default::default()
                }
            });
        reply("wait", r)
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let r = self.inner.container(&req.id).and_then(|c| {
            let pid = c.init.pid();
            if pid <= 0 || c.init.snapshot().exit.is_some() {
                return Err(ShimError::NotFound(format!(
                    "container {} is not running",
                    c.id
                )));
            }
            let any = crate::stats::collect(pid).map_err(ShimError::io("reading cgroup stats"))?;
            Ok(api::StatsResponse {
                stats: MessageField::some(any),
                ..Default::default()
            })
        });
        reply("stats", r)
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self
            .inner
            .container(&req.id)
            .map(|c| c.init.pid())
            .unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: u32::try_from(task_pid).unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        if !lock(&self.inner.containers).is_empty() {
            return Ok(Empty::new());
        }
        // Deliver TaskDelete and friends before the socket goes away.
        self.inner.publisher.flush(Duration::from_secs(2));
        self.inner.exit.signal();
        Ok(Empty::new())
    }
}
