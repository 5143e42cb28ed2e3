//! The shim binary's three lives: the `start` action (spawn the daemon detached from
//! containerd, or reuse the daemon already serving this container's group), the daemon
//! (the ttrpc Task service), and the `delete` action (clean up after a daemon that died).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, ExitSignal, Flags, Shim, StartOpts};

use crate::container::{unmount_all, KILLED_STATUS};
use crate::options::ShimOptions;
use crate::persist::ContainerRecord;
use crate::process::unix_parts;
use crate::runtime::Runtime;
use crate::service::Service;

/// Annotations that put containers in one shim (a pod's sandbox id), as runc-v2 reads them.
const GROUP_LABELS: &[&str] = &[
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The shim: what the command line said.
pub struct HuskShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

fn other(msg: impl Into<String>) -> Error {
    Error::Other(msg.into())
}

/// The group this container's shim serves: the sandbox id from the bundle's config.json
/// annotations, else the container's own id.
fn grouping(bundle: &Path, id: &str) -> String {
    let Ok(text) = std::fs::read_to_string(bundle.join("config.json")) else {
        return id.to_string();
    };
    let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) else {
        return id.to_string();
    };
    GROUP_LABELS
        .iter()
        .find_map(|l| cfg["annotations"][*l].as_str().filter(|s| !s.is_empty()))
        .unwrap_or(id)
        .to_string()
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn can_connect(address: &str) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(address)).is_ok()
}

fn write_address(bundle: &Path, address: &str) -> Result<(), Error> {
    crate::persist::write_atomic(&bundle.join("address"), address.as_bytes()).map_err(|e| {
        Error::IoError {
            context: "writing the address file".into(),
            err: e,
        }
    })
}

impl HuskShim {
    /// The Task service, publishing to containerd's `TTRPC_ADDRESS` with a queue that
    /// survives containerd restarts (containerd-shim's publisher cannot reconnect).
    pub fn service(&self) -> Service {
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        Service::new(&self.namespace, &address, self.exit.clone())
    }

    /// Spawns the daemon: same binary, no action, `-socket ADDRESS`, in a new session so
    /// neither containerd's process group signals nor its session's hangup reach it.
    fn spawn_daemon(&self, opts: &StartOpts, address: &str) -> Result<u32, Error> {
        let exe = std::env::current_exe().map_err(|e| Error::IoError {
            context: "finding the shim binary".into(),
            err: e,
        })?;
        let mut cmd = Command::new(exe);
        cmd.current_dir(&self.bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .args(["-namespace", &opts.namespace, "-id", &opts.id])
            .args(["-address", &opts.address]);
        if !opts.publish_binary.is_empty() {
            cmd.args(["-publish-binary", &opts.publish_binary]);
        }
        cmd.args(["-socket", address]);
        if opts.debug {
            cmd.arg("-debug");
        }
        if !opts.ttrpc_address.is_empty() {
            cmd.env("TTRPC_ADDRESS", &opts.ttrpc_address);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|e| Error::IoError {
            context: "spawning the shim daemon".into(),
            err: e,
        })?;
        // The daemon closes its stdout once its ttrpc server listens (or it dies): EOF is
        // the "ready" signal.
        if let Some(mut out) = child.stdout.take() {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !can_connect(address) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(other(format!("the shim daemon exited at start: {status}")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(other("the shim daemon did not listen within 10s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(child.id())
    }
}

impl Shim for HuskShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
        } else {
            PathBuf::from(&args.bundle)
        };
        HuskShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let group = grouping(&self.bundle, &opts.id);
        let address = opts.socket_address(&group);
        if can_connect(&address) {
            // A shim already serves this group (a pod's sandbox): share it.
            write_address(&self.bundle, &address)?;
            return Ok(address);
        }
        // A socket nobody answers on is left from a shim that died.
        let _ = std::fs::remove_file(socket_path(&address));
        if let Some(dir) = Path::new(socket_path(&address)).parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::IoError {
                context: format!("creating {}", dir.display()),
                err: e,
            })?;
        }
        let pid = self.spawn_daemon(&opts, &address)?;
        write_address(&self.bundle, &address)?;
        let shim_cgroup = opts
            .extension::<RuncOptions>()
            .ok()
            .flatten()
            .map(|o| o.shim_cgroup)
            .unwrap_or_default();
        let res = if shim_cgroup.is_empty() {
            containerd_shim::cgroup::adjust_oom_score(pid)
        } else {
            containerd_shim::cgroup::set_cgroup_and_oom_score(pid, &shim_cgroup)
        };
        if let Err(e) = res {
            log::warn!("shim cgroup / oom score: {e}");
        }
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let options = ShimOptions::read(&self.bundle).unwrap_or_default();
        let runtime = Runtime {
            binary: options.resolve_binary(),
            root: options.runtime_root(&self.namespace),
            log: self.bundle.join("log.json"),
            systemd_cgroup: options.systemd_cgroup,
            criu: (!options.criu_path.is_empty()).then(|| PathBuf::from(&options.criu_path)),
        };
        if let Err(e) = runtime.delete(&self.id, true) {
            log::warn!("delete action: {e}");
        }
        unmount_all(&self.bundle.join("rootfs"));
        // The dead shim's socket stays behind (it was killed, not shut down); remove it unless
        // a live shim answers there (a pod's shim serving other containers).
        if let Ok(address) = std::fs::read_to_string(self.bundle.join("address")) {
            let address = address.trim();
            if !address.is_empty() && !can_connect(address) {
                let _ = std::fs::remove_file(socket_path(address));
            }
        }
        let record = ContainerRecord::load(&self.bundle).ok().flatten();
        ContainerRecord::remove(&self.bundle);
        let pid = record
            .as_ref()
            .map(|r| u32::try_from(r.init.pid).unwrap_or(0))
            .unwrap_or(0);
        // The status the shim recorded, when the container exited before its shim died;
        // otherwise it was killed just now.
        let exit = record.and_then(|r| r.init.exit());
        let (status, at) = match exit {
            Some(e) => (e.status, e.at),
            None => (KILLED_STATUS, SystemTime::now()),
        };
        let (seconds, nanos) = unix_parts(at);
        Ok(DeleteResponse {
            pid,
            exit_status: status,
            exited_at: MessageField::some(
                containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp {
                    seconds,
                    nanos,
                    ..Default::default()
                },
            ),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        // Not used (daemon.rs builds the server), but the trait wants it.
        drop(publisher);
        self.service()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_uses_the_sandbox_id() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(grouping(d.path(), "c1"), "c1");
        std::fs::write(
            d.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .expect("write");
        assert_eq!(grouping(d.path(), "c1"), "pod1");
    }
}
