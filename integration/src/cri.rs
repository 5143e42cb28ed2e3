//! Harness for the Kubernetes CRI path: a private containerd with its CRI plugin on (the
//! configuration of docs/kubernetes.md, with the test's paths), a pause image made of the
//! static husk-init, a busybox image, both imported into the `k8s.io` namespace, a CNI bridge
//! network of its own, and a blocking CRI v1 client (k8s-cri over tonic on the unix socket)
//! that plays the kubelet. Dropping a [`CriContainerd`] removes everything it made: pods,
//! containers, shims, mounts, network namespaces, the bridge, cgroups and the daemon.

use std::fs;
use std::future::Future;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde_json::json;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::snippets::snippet;
use crate::{containerd_bins, image, pids_with_cmdline, spawn_daemon, terminate};

/// The containerd namespace the CRI plugin works in.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The name the husk-init pause image is imported under (`sandbox_image`).
pub const PAUSE_IMAGE: &str = "docker.io/husk/pause:test";
/// The doc whose snippets configure the test's containerd.
pub const DOC: &str = "kubernetes.md";
/// How long one CRI call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Debian's containernetworking-plugins directory.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// A CNI bridge network of the test's own: its bridge and subnet.
#[derive(Debug, Clone)]
pub struct CniNet {
    /// The bridge interface name (at most 15 bytes).
    pub bridge: String,
    /// The IPv4 /24 subnet, like "10.22.0.0/24".
    pub subnet: String,
}

impl CniNet {
    /// Whether `ip` is an address inside the /24 subnet.
    pub fn contains(&self, ip: &str) -> bool {
        let Some(prefix) = self.subnet.strip_suffix("0/24") else {
            return false;
        };
        ip.strip_prefix(prefix)
            .is_some_and(|host| host.parse::<u8>().is_ok())
    }
}

/// Replaces the one occurrence of `from` in `text`, failing when there is not exactly one
/// (a doc edit that the test's substitutions no longer match must fail loudly).
fn substitute(text: &str, from: &str, to: &str) -> Result<String> {
    let n = text.matches(from).count();
    ensure!(
        n == 1,
        "expected `{from}` once in the docs/{DOC} snippet, found it {n} times:\n{text}"
    );
    Ok(text.replacen(from, to, 1))
}

/// The CRI section of containerd's config: docs/kubernetes.md's snippet with the test's
/// paths, plus the two settings that keep everything in `dir`.
pub fn cri_config(dir: &Path, net_conf_dir: &Path) -> Result<String> {
    let text = snippet(DOC, "k8s-containerd")?;
    let text = substitute(
        &text,
        "sandbox_image = \"registry.k8s.io/pause:3.6\"",
        &format!(
            "sandbox_image = \"{PAUSE_IMAGE}\"\n  stream_server_port = \"0\"\n  netns_mounts_under_state_dir = true"
        ),
    )?;
    let text = substitute(
        &text,
        "\"/etc/containerd/husk.toml\"",
        &format!("{:?}", dir.join("husk.toml").display().to_string()),
    )?;
    let text = substitute(
        &text,
        "\"/etc/cni/net.d\"",
        &format!("{:?}", net_conf_dir.display().to_string()),
    )?;
    // runc keeps its state in the test dir too (the snippet's runc runtime has no options).
    Ok(format!(
        "{text}    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n      Root = {:?}\n",
        dir.join("runc-root").display().to_string()
    ))
}

/// husk.toml: the doc's, with the husk under test and a root in `dir`.
pub fn husk_toml(dir: &Path, husk: &Path) -> Result<String> {
    let text = snippet(DOC, "k8s-husk.toml")?;
    let text = substitute(
        &text,
        "\"/usr/sbin/husk\"",
        &format!("{:?}", husk.display().to_string()),
    )?;
    Ok(format!(
        "{text}Root = {:?}\n",
        dir.join("husk-root").display().to_string()
    ))
}

/// The CNI network config: the doc's, with the test's bridge, subnet and IPAM data dir.
pub fn cni_config(net: &CniNet, ipam_dir: &Path) -> Result<String> {
    let text = snippet(DOC, "k8s-cni")?;
    let text = substitute(&text, "\"husk-cri0\"", &format!("{:?}", net.bridge))?;
    let text = substitute(&text, "\"10.22.0.0/24\"", &format!("{:?}", net.subnet))?;
    let text = substitute(
        &text,
        "\"/var/lib/cni/networks\"",
        &format!("{:?}", ipam_dir.display().to_string()),
    )?;
    serde_json::from_str::<serde_json::Value>(&text).context("the CNI snippet is not JSON")?;
    Ok(text)
}

/// The pause image: the static husk-init as `/pause`, entrypoint `/pause --pause`. Returns
/// the OCI layout archive for `ctr images import`.
pub fn pause_image(work: &Path) -> Result<PathBuf> {
    let husk_init = husk_tests::husk_init_bin();
    ensure!(
        husk_tests::bundle::is_static_elf(&husk_init)?,
        "{} is not a static binary: it could not run alone in the pause image",
        husk_init.display()
    );
    let rootfs = work.join("rootfs");
    fs::create_dir_all(&rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    fs::copy(&husk_init, rootfs.join("pause"))
        .with_context(|| format!("copying {} into the pause image", husk_init.display()))?;
    image::build_from(
        work,
        &rootfs,
        PAUSE_IMAGE,
        json!({ "Entrypoint": ["/pause", "--pause"] }),
    )
}

/// The `pid` in a verbose CRI status's `info["info"]` JSON (containerd's CRI plugin puts the
/// task's pid there).
pub fn info_pid(info: &std::collections::HashMap<String, String>) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

/// A private containerd with the CRI plugin, and a CRI client to it.
pub struct CriContainerd {
    tmp: Option<TempDir>,
    /// The temp dir holding everything.
    pub dir: PathBuf,
    /// containerd's gRPC socket (CRI is served on it too).
    pub address: String,
    /// The pods' network.
    pub net: CniNet,
    /// The cgroup every pod's cgroup parent is under (like the kubelet's `/kubepods`).
    pub cgroup_root: String,
    containerd: PathBuf,
    ctr: PathBuf,
    husk: PathBuf,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    client: Option<RuntimeServiceClient<Channel>>,
}

impl CriContainerd {
    /// Sets up and starts containerd with the CRI plugin, imports the pause and busybox images
    /// into `k8s.io`, and connects the client. `net` must be unique among concurrent tests.
    pub fn start(net: CniNet) -> Result<CriContainerd> {
        let (containerd, ctr) = containerd_bins().context("containerd is not installed")?;
        let husk = husk_tests::husk_bin();
        let shim = husk_tests::husk_shim_bin();
        ensure!(
            Path::new(CNI_BIN_DIR).join("bridge").is_file(),
            "{CNI_BIN_DIR}/bridge is missing: install containernetworking-plugins"
        );
        // Short: unix socket paths must fit 108 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("husk-cri-")
            .tempdir_in("/tmp")
            .context("creating a temp dir")?;
        let dir = tmp.path().to_path_buf();
        for d in [
            "bin",
            "root",
            "state",
            "husk-root",
            "runc-root",
            "cni",
            "ipam",
            "pods",
            "pause",
        ] {
            fs::create_dir_all(dir.join(d))
                .with_context(|| format!("creating {}", dir.join(d).display()))?;
        }
        symlink(&shim, dir.join("bin/containerd-shim-husk-v2"))
            .context("linking the shim into the PATH dir")?;
        fs::write(dir.join("husk.toml"), husk_toml(&dir, &husk)?)?;
        fs::write(
            dir.join("cni/10-husk-cri.conflist"),
            cni_config(&net, &dir.join("ipam"))?,
        )?;
        let address = dir.join("c.sock").to_string_lossy().into_owned();
        fs::write(
            dir.join("config.toml"),
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{address}"
[debug]
  level = "debug"
{cri}"#,
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                cri = cri_config(&dir, &dir.join("cni"))?,
            ),
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
        let mut c = CriContainerd {
            tmp: Some(tmp),
            cgroup_root: format!("/{}", husk_tests::unique("husk-test-cri")),
            dir,
            address,
            net,
            containerd,
            ctr,
            husk,
            child: None,
            rt,
            client: None,
        };
        c.spawn()?;
        let busybox = image::build(&c.dir)?;
        c.import(&busybox)?;
        let pause = pause_image(&c.dir.join("pause"))?;
        c.import(&pause)?;
        Ok(c)
    }

    fn import(&self, archive: &Path) -> Result<()> {
        let archive = archive.to_string_lossy();
        let out = self.ctr(&["images", "import", &archive]);
        ensure!(out.success(), "importing {archive} failed:\n{out}");
        Ok(())
    }

    /// Runs `ctr --address A --namespace k8s.io ARGS`.
    pub fn ctr(&self, args: &[&str]) -> husk_tests::Output {
        let mut cmd = Command::new(&self.ctr);
        cmd.args(["--address", &self.address, "--namespace", K8S_NAMESPACE])
            .args(args);
        husk_tests::capture(cmd, &self.dir, crate::CTR_TIMEOUT)
    }

    fn spawn(&mut self) -> Result<()> {
        let path = format!(
            "{}:{}:/usr/local/sbin:/usr/sbin:/sbin",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.containerd);
        cmd.arg("--config").arg(self.dir.join("config.toml"));
        let child = spawn_daemon(cmd, &self.dir.join("containerd.log"), &path)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = self.connect() {
                let mut probe = client.clone();
                let ok = self.block(async move {
                    probe
                        .version(cri::VersionRequest::default())
                        .await
                        .map_err(anyhow::Error::from)
                });
                if ok.is_ok() {
                    self.client = Some(client);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd's CRI plugin did not come up on {}:\n{}",
                    self.address,
                    self.log()
                );
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!("containerd exited with {status}:\n{}", self.log());
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn connect(&self) -> Result<RuntimeServiceClient<Channel>> {
        let socket = PathBuf::from(&self.address);
        let channel = self.rt.block_on(async move {
            // The URI is ignored: the connector always dials the unix socket.
            Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(socket).await?,
                        ))
                    }
                }))
                .await
        })?;
        Ok(RuntimeServiceClient::new(channel))
    }

    /// Runs a future on the harness's runtime, failing after [`CALL_TIMEOUT`].
    pub fn block<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        self.rt.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, fut)
                .await
                .context("the CRI call timed out")?
        })
    }

    /// A CRI runtime service client (cheap to clone; move it into the call's future).
    pub fn client(&self) -> Result<RuntimeServiceClient<Channel>> {
        self.client
            .clone()
            .context("containerd is not running (no CRI client)")
    }

    /// CRI Version.
    pub fn version(&self) -> Result<cri::VersionResponse> {
        let mut c = self.client()?;
        self.block(async move {
            Ok(c.version(cri::VersionRequest::default())
                .await
                .context("Version")?
                .into_inner())
        })
    }

    /// RunPodSandbox with `handler`; returns the pod sandbox id.
    pub fn run_pod(&self, config: cri::PodSandboxConfig, handler: &str) -> Result<String> {
        let mut c = self.client()?;
        let req = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.to_string(),
        };
        self.block(async move {
            Ok(c.run_pod_sandbox(req)
                .await
                .with_context(|| format!("RunPodSandbox (handler {})", handler))?
                .into_inner()
                .pod_sandbox_id)
        })
    }

    /// PodSandboxStatus (verbose: `info` holds the sandbox's pid).
    pub fn pod_status(&self, id: &str) -> Result<cri::PodSandboxStatusResponse> {
        let mut c = self.client()?;
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        self.block(async move {
            Ok(c.pod_sandbox_status(req)
                .await
                .with_context(|| format!("PodSandboxStatus {id}"))?
                .into_inner())
        })
    }

    /// CreateContainer in pod `pod` (created with `pod_config`); returns the container id.
    pub fn create_container(
        &self,
        pod: &str,
        config: cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.client()?;
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        };
        self.block(async move {
            Ok(c.create_container(req)
                .await
                .with_context(|| format!("CreateContainer in pod {pod}"))?
                .into_inner()
                .container_id)
        })
    }

    /// StartContainer.
    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.client()?;
        let req = cri::StartContainerRequest {
            container_id: id.to_string(),
        };
        self.block(async move {
            c.start_container(req)
                .await
                .with_context(|| format!("StartContainer {id}"))?;
            Ok(())
        })
    }

    /// ExecSync `cmd` in container `id`: (exit code, stdout, stderr).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> Result<(i32, String, String)> {
        let mut c = self.client()?;
        let req = cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        };
        self.block(async move {
            let r = c
                .exec_sync(req)
                .await
                .with_context(|| format!("ExecSync {cmd:?} in {id}"))?
                .into_inner();
            Ok((
                r.exit_code,
                String::from_utf8_lossy(&r.stdout).into_owned(),
                String::from_utf8_lossy(&r.stderr).into_owned(),
            ))
        })
    }

    /// ContainerStatus (verbose: `info` holds the container's pid).
    pub fn container_status(&self, id: &str) -> Result<cri::ContainerStatusResponse> {
        let mut c = self.client()?;
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        self.block(async move {
            Ok(c.container_status(req)
                .await
                .with_context(|| format!("ContainerStatus {id}"))?
                .into_inner())
        })
    }

    /// The host pid of a running container, from ContainerStatus's verbose info.
    pub fn container_pid(&self, id: &str) -> Result<i32> {
        let status = self.container_status(id)?;
        info_pid(&status.info).with_context(|| format!("ContainerStatus {id} has no pid"))
    }

    /// The host pid of a pod's sandbox (pause) process.
    pub fn pod_pid(&self, id: &str) -> Result<i32> {
        let status = self.pod_status(id)?;
        info_pid(&status.info).with_context(|| format!("PodSandboxStatus {id} has no pid"))
    }

    /// ContainerStats.
    pub fn container_stats(&self, id: &str) -> Result<cri::ContainerStats> {
        let mut c = self.client()?;
        let req = cri::ContainerStatsRequest {
            container_id: id.to_string(),
        };
        self.block(async move {
            c.container_stats(req)
                .await
                .with_context(|| format!("ContainerStats {id}"))?
                .into_inner()
                .stats
                .with_context(|| format!("ContainerStats {id}: no stats"))
        })
    }

    /// UpdateContainerResources.
    pub fn update_resources(&self, id: &str, linux: cri::LinuxContainerResources) -> Result<()> {
        let mut c = self.client()?;
        let req = cri::UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(linux),
            ..Default::default()
        };
        self.block(async move {
            c.update_container_resources(req)
                .await
                .with_context(|| format!("UpdateContainerResources {id}"))?;
            Ok(())
        })
    }

    /// StopContainer with a grace period of `timeout` seconds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let mut c = self.client()?;
        let req = cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        };
        self.block(async move {
            c.stop_container(req)
                .await
                .with_context(|| format!("StopContainer {id}"))?;
            Ok(())
        })
    }

    /// RemoveContainer.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.client()?;
        let req = cri::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.block(async move {
            c.remove_container(req)
                .await
                .with_context(|| format!("RemoveContainer {id}"))?;
            Ok(())
        })
    }

    /// StopPodSandbox.
    pub fn stop_pod(&self, id: &str) -> Result<()> {
        let mut c = self.client()?;
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.block(async move {
            c.stop_pod_sandbox(req)
                .await
                .with_context(|| format!("StopPodSandbox {id}"))?;
            Ok(())
        })
    }

    /// RemovePodSandbox.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let mut c = self.client()?;
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.block(async move {
            c.remove_pod_sandbox(req)
                .await
                .with_context(|| format!("RemovePodSandbox {id}"))?;
            Ok(())
        })
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10s). Shims, pods and containers stay.
    pub fn stop(&mut self) {
        self.client = None;
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(10));
        }
    }

    /// Stops containerd and starts it again with the same config and state, as a node's
    /// containerd upgrade or crash does.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Pids of the shims serving this containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        pids_with_cmdline(&self.address)
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains("containerd-shim"))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// The log directory a pod named `name` gets (the kubelet's /var/log/pods/...).
    pub fn pod_log_dir(&self, name: &str) -> PathBuf {
        self.dir.join("pods").join(name)
    }

    /// Network namespaces the CRI plugin made (it keeps them under its state dir here).
    pub fn netns_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for base in ["state/io.containerd.grpc.v1.cri/netns", "state/netns"] {
            if let Ok(rd) = fs::read_dir(self.dir.join(base)) {
                v.extend(rd.flatten().map(|e| e.path()));
            }
        }
        v
    }

    /// Interfaces attached to the test's bridge (the pods' veths).
    pub fn bridge_ports(&self) -> Vec<String> {
        fs::read_dir(format!("/sys/class/net/{}/brif", self.net.bridge))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the test's bridge exists.
    pub fn bridge_exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.net.bridge).exists()
    }

    /// Deletes the test's bridge (the CNI bridge plugin never removes it, by design).
    pub fn remove_bridge(&self) {
        if self.bridge_exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.net.bridge])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Removes the pods' cgroups as the kubelet's cgroupfs driver does once a pod is gone.
    /// Returns the directories it found.
    pub fn remove_pod_cgroups(&self) -> Vec<PathBuf> {
        husk_tests::host::remove_cgroup(&self.cgroup_root)
    }

    /// What is left on the host of this containerd's pods: shims, mounts under the temp
    /// dir, network namespaces, veths on the bridge, the bridge, the pods' cgroups.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        for pid in self.shim_pids() {
            v.push(format!("shim left running: pid {pid}"));
        }
        for m in husk_tests::host::mounts_under(&self.dir) {
            v.push(format!("mount left: {} ({})", m.mount_point, m.fstype));
        }
        for ns in self.netns_files() {
            v.push(format!("network namespace left: {}", ns.display()));
        }
        for port in self.bridge_ports() {
            v.push(format!("veth left on {}: {port}", self.net.bridge));
        }
        if self.bridge_exists() {
            v.push(format!("bridge left: {}", self.net.bridge));
        }
        for d in husk_tests::host::cgroup_dirs(&self.cgroup_root) {
            v.push(format!("cgroup left: {}", d.display()));
        }
        v
    }

    /// Stops and removes every pod (and so every container) through CRI.
    pub fn remove_all_pods(&self) -> Result<()> {
        let mut client = self.client()?;
        self.block(async move {
            let pods = client
                .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await?
                .into_inner()
                .items;
            for pod in pods {
                let id = pod.id;
                client
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                    .with_context(|| format!("StopPodSandbox {id}"))?;
                client
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                    .with_context(|| format!("RemovePodSandbox {id}"))?;
            }
            Ok(())
        })
    }

    fn cleanup(&mut self) {
        if self.client.is_some() {
            if let Err(e) = self.remove_all_pods() {
                eprintln!("cleanup: removing the pods through CRI failed: {e:#}");
            }
        }
        self.stop();
        for pid in self.shim_pids() {
            // SAFETY: plain syscall; these are shims this containerd started for the test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let root = self.dir.join("husk-root").join(K8S_NAMESPACE);
        if let Ok(rd) = fs::read_dir(&root) {
            for e in rd.flatten() {
                let _ = Command::new(&self.husk)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(runc) = husk_tests::which("runc") {
            let root = self.dir.join("runc-root").join(K8S_NAMESPACE);
            if let Ok(rd) = fs::read_dir(&root) {
                for e in rd.flatten() {
                    let _ = Command::new(&runc)
                        .arg("--root")
                        .arg(&root)
                        .args(["delete", "--force"])
                        .arg(e.file_name())
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        husk_tests::host::remove_cgroup(&self.cgroup_root);
        self.remove_bridge();
        husk_tests::host::detach_mounts_under(&self.dir);
        if let Some(tmp) = self.tmp.take() {
            husk_tests::remove_temp_dir(tmp);
        }
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}
