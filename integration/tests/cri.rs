//! The Kubernetes node path: a CRI client plays the kubelet against containerd's CRI plugin
//! (husk_integration::cri), with handler `husk` (containerd-shim-husk-v2 driving husk, the
//! pause process being husk-init --pause) and, as the control, handler `runc`. Plus husk-init's
//! pause mode on its own, as a PID namespace's init.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use husk_integration::cri::{self as harness, CniNet, CriContainerd};
use husk_integration::{image, require_containerd};
use k8s_cri::v1 as cri;

const MIB: i64 = 1024 * 1024;
/// The app: its SIGTERM trap leaves a marker in the host-mounted /out and exits 0.
const APP: &str = "trap 'echo got-term > /out/term-marker; exit 0' TERM; \
                   echo started > /out/started; while true; do sleep 0.2; done";
/// A container without a SIGTERM handler: as its PID namespace's init it ignores SIGTERM, so
/// only the grace period's SIGKILL ends it.
const SIDECAR: &str = "while true; do sleep 0.2; done";

/// Namespaces as the kubelet sets them: PID per container, IPC per pod, network per pod or the
/// node's.
fn namespaces(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A pod as the kubelet (cgroupfs driver) describes it: cgroup parent `<root>/pod<uid>`, an
/// empty hostname on the host network.
fn pod_config(c: &CriContainerd, name: &str, host_network: bool) -> cri::PodSandboxConfig {
    let uid = husk_tests::unique("uid");
    let log_dir = c.pod_log_dir(name);
    fs::create_dir_all(&log_dir).unwrap();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: if host_network {
            String::new()
        } else {
            name.into()
        },
        log_directory: log_dir.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod{uid}", c.cgroup_root),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A busybox container running `sh -c script`, with `/out` bound to `out`.
fn container_config(
    name: &str,
    script: &str,
    out: &Path,
    host_network: bool,
    resources: cri::LinuxContainerResources,
) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image::IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        mounts: vec![cri::Mount {
            container_path: "/out".into(),
            host_path: out.display().to_string(),
            ..Default::default()
        }],
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(host_network)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(100));
    }
}

fn container_state(c: &CriContainerd, id: &str) -> (i32, i32) {
    let s = c
        .container_status(id)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .status
        .expect("ContainerStatus without status");
    (s.state, s.exit_code)
}

fn assert_running(c: &CriContainerd, id: &str) {
    let (state, _) = container_state(c, id);
    assert_eq!(
        state,
        cri::ContainerState::ContainerRunning as i32,
        "container {id} is not running"
    );
}

fn assert_pod_ready(c: &CriContainerd, pod: &str) {
    let st = c.pod_status(pod).unwrap_or_else(|e| panic!("{e:#}"));
    let status = st.status.expect("PodSandboxStatus without status");
    assert_eq!(
        status.state,
        cri::PodSandboxState::SandboxReady as i32,
        "pod {pod} is not ready: {status:?}"
    );
}

/// The namespace inode `kind` (net, ipc, uts, pid) of `pid` (a number or "self").
fn ns_inode(pid: impl std::fmt::Display, kind: &str) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
        .ino()
}

/// The cgroup path of `controller` in /proc/PID/cgroup (v1), or the v2 path ("0::") when no v1
/// hierarchy has it.
fn cgroup_of(pid: i32, controller: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

fn read_cgroup_file(dir: &str, path: &str, file: &str) -> String {
    let p = format!("/sys/fs/cgroup/{dir}{path}/{file}");
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {p}: {e}"))
        .trim()
        .to_string()
}

/// A container's live limits as the host's cgroup files hold them.
#[derive(Debug, PartialEq, Eq)]
struct Limits {
    memory: i64,
    cpu_quota: i64,
    /// cpu.shares on v1; on v2 the cpu.weight the runtime converted the shares to.
    cpu_weight: i64,
}

impl Limits {
    /// What a runtime writes for CRI resources: on v2, shares become a weight with runc's
    /// formula.
    fn expected(r: &cri::LinuxContainerResources, v2: bool) -> Limits {
        Limits {
            memory: r.memory_limit_in_bytes,
            cpu_quota: r.cpu_quota,
            cpu_weight: if v2 {
                1 + ((r.cpu_shares - 2) * 9999) / 262_142
            } else {
                r.cpu_shares
            },
        }
    }

    /// Reads `pid`'s limits (v1 files, or v2 on a host without v1 memory/cpu hierarchies);
    /// returns them with the memory cgroup path and whether it is v2.
    fn live(pid: i32) -> (Limits, String, bool) {
        let num = |s: String| {
            s.parse::<i64>()
                .unwrap_or_else(|_| panic!("not a number: {s}"))
        };
        if let (Some(mem), Some(cpu)) = (cgroup_of(pid, "memory"), cgroup_of(pid, "cpu")) {
            let limits = Limits {
                memory: num(read_cgroup_file("memory", &mem, "memory.limit_in_bytes")),
                cpu_quota: num(read_cgroup_file("cpu", &cpu, "cpu.cfs_quota_us")),
                cpu_weight: num(read_cgroup_file("cpu", &cpu, "cpu.shares")),
            };
            return (limits, mem, false);
        }
        let path = cgroup_of(pid, "").unwrap_or_else(|| panic!("no cgroup for pid {pid}"));
        let cpu_max = read_cgroup_file("", &path, "cpu.max");
        let limits = Limits {
            memory: num(read_cgroup_file("", &path, "memory.max")),
            cpu_quota: num(cpu_max.split_whitespace().next().unwrap_or("").to_string()),
            cpu_weight: num(read_cgroup_file("", &path, "cpu.weight")),
        };
        (limits, path, true)
    }
}

/// The kubelet's sequence on one host-network pod: two containers, exec, stats, live
/// resource updates, a containerd restart, graceful stops, removal.
fn host_network_pod(c: &mut CriContainerd, handler: &str) {
    let cfg = pod_config(c, &format!("host-{handler}"), true);
    let pod = c.run_pod(cfg.clone(), handler).unwrap_or_else(|e| {
        panic!("{e:#}\ncontainerd log:\n{}", c.log());
    });
    assert_pod_ready(c, &pod);
    let pause_pid = c.pod_pid(&pod).unwrap_or_else(|e| panic!("{e:#}"));
    // The sandbox runs husk-init --pause from the image built here (once the runtime's init
    // has exec'd it: `runc start` returns before that).
    let cmdline = || fs::read(format!("/proc/{pause_pid}/cmdline")).unwrap_or_default();
    let entrypoint = b"/pause\0--pause\0";
    let deadline = Instant::now() + Duration::from_secs(5);
    while cmdline() != entrypoint && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
    }
    assert_eq!(
        String::from_utf8_lossy(&cmdline()),
        String::from_utf8_lossy(entrypoint),
        "the sandbox is not the pause image's entrypoint"
    );

    let out = c.dir.join(format!("out-{handler}"));
    fs::create_dir_all(&out).unwrap();
    let limits = cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 * MIB,
        ..Default::default()
    };
    let app = c
        .create_container(
            &pod,
            container_config("app", APP, &out, true, limits.clone()),
            &cfg,
        )
        .unwrap_or_else(|e| panic!("{e:#}\ncontainerd log:\n{}", c.log()));
    c.start_container(&app)
        .unwrap_or_else(|e| panic!("{e:#}\ncontainerd log:\n{}", c.log()));
    assert_running(c, &app);
    wait_for("the app's start marker", Duration::from_secs(10), || {
        out.join("started").exists()
    });

    // ExecSync: output, exit code, and the container's own PID namespace (pid CONTAINER).
    let (code, stdout, stderr) = c
        .exec_sync(
            &app,
            &["sh", "-c", "echo out-$((6*7)); echo err-line >&2; exit 3"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(code, 3, "stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(stdout, "out-42\n");
    assert!(stderr.contains("err-line"), "{stderr:?}");
    let (code, stdout, _) = c
        .exec_sync(&app, &["cat", "/proc/1/cmdline"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("sh\0-c\0trap"),
        "PID 1 of the container's PID namespace is not the app: {stdout:?}"
    );

    // The container's cgroup is <pod cgroup parent>/<id> with the limits asked for.
    let app_pid = c.container_pid(&app).unwrap_or_else(|e| panic!("{e:#}"));
    let parent = cfg.linux.as_ref().unwrap().cgroup_parent.clone();
    let (live, path, v2) = Limits::live(app_pid);
    assert_eq!(path, format!("{parent}/{app}"));
    assert_eq!(live, Limits::expected(&limits, v2));

    // ContainerStats: memory and CPU figures from the live cgroup.
    let stats = c.container_stats(&app).unwrap_or_else(|e| panic!("{e:#}"));
    let mem = stats.memory.expect("no memory stats");
    assert!(
        mem.working_set_bytes.is_some_and(|v| v.value > 0),
        "working set: {mem:?}"
    );
    let cpu = stats.cpu.expect("no cpu stats");
    assert!(
        cpu.usage_core_nano_seconds.is_some_and(|v| v.value > 0),
        "cpu: {cpu:?}"
    );

    // UpdateContainerResources: the live cgroup files change.
    let updated = cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 25_000,
        cpu_shares: 256,
        memory_limit_in_bytes: 96 * MIB,
        ..Default::default()
    };
    c.update_resources(&app, updated.clone())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(Limits::live(app_pid).0, Limits::expected(&updated, v2));

    // A second container joins the pod's namespaces; the pod keeps one shim.
    let side = c
        .create_container(
            &pod,
            container_config("side", SIDECAR, &out, true, limits),
            &cfg,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    c.start_container(&side).unwrap_or_else(|e| panic!("{e:#}"));
    assert_running(c, &side);
    let side_pid = c.container_pid(&side).unwrap_or_else(|e| panic!("{e:#}"));
    for kind in ["net", "ipc", "uts"] {
        let pod_ns = ns_inode(pause_pid, kind);
        assert_eq!(ns_inode(app_pid, kind), pod_ns, "app's {kind} namespace");
        assert_eq!(ns_inode(side_pid, kind), pod_ns, "side's {kind} namespace");
    }
    // Host network: the pod's network namespace is the node's (this test's).
    assert_eq!(ns_inode(pause_pid, "net"), ns_inode("self", "net"));
    let pids = [pause_pid, app_pid, side_pid].map(|p| ns_inode(p, "pid"));
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2],
        "pid CONTAINER: each container has its own PID namespace: {pids:?}"
    );
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim per pod, found {shims:?}");
    // The handler's shim and runtime serve the pod: the shim binary, and the runtime's state
    // under the root its options name.
    let shim_cmd = fs::read(format!("/proc/{}/cmdline", shims[0])).unwrap();
    let shim_bin = if handler == "husk" {
        "containerd-shim-husk-v2"
    } else {
        "containerd-shim-runc-v2"
    };
    assert!(
        String::from_utf8_lossy(&shim_cmd).contains(shim_bin),
        "the pod's shim is not {shim_bin}: {:?}",
        String::from_utf8_lossy(&shim_cmd)
    );
    for id in [&pod, &app, &side] {
        let state = c.dir.join(format!("{handler}-root/k8s.io/{id}"));
        assert!(state.is_dir(), "{} is missing", state.display());
    }

    // containerd restarts; the pod and its containers run on and are managed again.
    c.restart()
        .unwrap_or_else(|e| panic!("restarting containerd: {e:#}"));
    assert_pod_ready(c, &pod);
    assert_running(c, &app);
    assert_running(c, &side);
    assert_eq!(
        c.shim_pids(),
        shims,
        "the pod's shim changed across the restart"
    );
    let (code, stdout, _) = c
        .exec_sync(&side, &["sh", "-c", "echo after-restart"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((code, stdout.as_str()), (0, "after-restart\n"));

    // StopContainer with a grace period: the app's SIGTERM trap runs and it exits 0 at once.
    let t = Instant::now();
    c.stop_container(&app, 10)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "the app took {:?} to stop: SIGTERM did not reach its trap",
        t.elapsed()
    );
    assert_eq!(
        fs::read_to_string(out.join("term-marker")).unwrap_or_default(),
        "got-term\n",
        "the app's SIGTERM trap did not run"
    );
    assert_eq!(
        container_state(c, &app),
        (cri::ContainerState::ContainerExited as i32, 0)
    );
    c.remove_container(&app).unwrap_or_else(|e| panic!("{e:#}"));
    // The sidecar ignores SIGTERM (PID 1, no handler): killed when the grace period ends.
    let t = Instant::now();
    c.stop_container(&side, 2)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "the sidecar stopped after {:?}, before its grace period ended",
        t.elapsed()
    );
    assert_eq!(
        container_state(c, &side),
        (cri::ContainerState::ContainerExited as i32, 137)
    );
    c.remove_container(&side)
        .unwrap_or_else(|e| panic!("{e:#}"));
    for id in [&app, &side] {
        assert!(
            husk_tests::host::cgroup_dirs(&format!("{parent}/{id}")).is_empty(),
            "container {id}'s cgroup is left after RemoveContainer"
        );
    }
    c.stop_pod(&pod).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        !husk_tests::host::alive(pause_pid),
        "the pause process {pause_pid} outlived StopPodSandbox"
    );
    c.remove_pod(&pod).unwrap_or_else(|e| panic!("{e:#}"));
}

/// A pod on the CNI bridge network: it gets an address in the test's subnet, seen from inside.
fn pod_network_pod(c: &CriContainerd, handler: &str) {
    let name = format!("net-{handler}");
    let cfg = pod_config(c, &name, false);
    let pod = c
        .run_pod(cfg.clone(), handler)
        .unwrap_or_else(|e| panic!("{e:#}\ncontainerd log:\n{}", c.log()));
    let status = c.pod_status(&pod).unwrap_or_else(|e| panic!("{e:#}"));
    let ip = status
        .status
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    assert!(
        c.net.contains(&ip),
        "pod IP {ip:?} is not in {}",
        c.net.subnet
    );
    assert_eq!(
        c.bridge_ports().len(),
        1,
        "the pod's veth is not on the bridge"
    );
    let out = c.dir.join(format!("out-{name}"));
    fs::create_dir_all(&out).unwrap();
    let probe = c
        .create_container(
            &pod,
            container_config("probe", SIDECAR, &out, false, Default::default()),
            &cfg,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    c.start_container(&probe)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (code, stdout, stderr) = c
        .exec_sync(&probe, &["sh", "-c", "ip -4 addr show eth0; hostname"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("inet {ip}/24")),
        "eth0 inside the pod lacks {ip}:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == name),
        "the pod's hostname is not {name}:\n{stdout}"
    );
    // The pod's own network, IPC and UTS namespaces, made by the sandbox and joined by the
    // container.
    let pause_pid = c.pod_pid(&pod).unwrap_or_else(|e| panic!("{e:#}"));
    let probe_pid = c.container_pid(&probe).unwrap_or_else(|e| panic!("{e:#}"));
    for kind in ["net", "ipc", "uts"] {
        let pod_ns = ns_inode(pause_pid, kind);
        assert_eq!(
            ns_inode(probe_pid, kind),
            pod_ns,
            "probe's {kind} namespace"
        );
        assert_ne!(
            pod_ns,
            ns_inode("self", kind),
            "the pod's {kind} is the host's"
        );
    }
    c.stop_container(&probe, 1)
        .unwrap_or_else(|e| panic!("{e:#}"));
    c.remove_container(&probe)
        .unwrap_or_else(|e| panic!("{e:#}"));
    c.stop_pod(&pod).unwrap_or_else(|e| panic!("{e:#}"));
    c.remove_pod(&pod).unwrap_or_else(|e| panic!("{e:#}"));
}

/// The whole kubelet sequence with `handler`, then the check that nothing is left.
fn kubelet_sequence(handler: &str, net: CniNet) {
    let started = Instant::now();
    let mut c = CriContainerd::start(net).unwrap_or_else(|e| panic!("starting containerd: {e:#}"));
    let v = c.version().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");

    host_network_pod(&mut c, handler);
    pod_network_pod(&c, handler);

    // The shims exit once their pod is removed.
    wait_for("the shims to exit", Duration::from_secs(10), || {
        c.shim_pids().is_empty()
    });
    // The kubelet removes the pod cgroups it made; the runtime removed the containers' ones
    // (checked above). The bridge is the test's, which the CNI plugin leaves by design.
    let pod_cgroups = c.remove_pod_cgroups();
    assert!(
        !pod_cgroups.is_empty(),
        "no cgroup under {}: the pods' cgroup parent was not used",
        c.cgroup_root
    );
    assert!(
        c.bridge_ports().is_empty(),
        "veths left: {:?}",
        c.bridge_ports()
    );
    c.remove_bridge();
    let left = c.leftovers();
    assert!(left.is_empty(), "left on the host: {left:#?}");
    let errors: Vec<String> = c
        .log()
        .lines()
        .filter(|l| l.contains("level=error"))
        .map(str::to_string)
        .collect();
    if !errors.is_empty() {
        eprintln!("containerd logged errors (not failures of the test):");
        for e in errors {
            eprintln!("  {e}");
        }
    }
    eprintln!(
        "cri sequence with handler {handler}: {:?}",
        started.elapsed()
    );
}

#[test]
fn cri_kubelet_sequence_husk() {
    require_containerd!();
    kubelet_sequence(
        "husk",
        CniNet {
            bridge: format!("huskcri{}", std::process::id() % 10_000),
            subnet: format!("10.213.{}.0/24", std::process::id() % 250),
        },
    );
}

#[test]
fn cri_kubelet_sequence_runc() {
    require_containerd!();
    if husk_tests::which("runc").is_none() {
        eprintln!("SKIPPED cri_kubelet_sequence_runc: runc not installed");
        return;
    }
    kubelet_sequence(
        "runc",
        CniNet {
            bridge: format!("runccri{}", std::process::id() % 10_000),
            subnet: format!("10.214.{}.0/24", std::process::id() % 250),
        },
    );
}

/// The children of `pid` (from /proc/PID/task/PID/children).
fn children(pid: u32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Starts `husk-init --pause` as init of a new PID namespace (`unshare --pid --fork`);
/// returns unshare's child handle and husk-init's pid.
fn start_pause(unshare: &Path) -> (std::process::Child, i32) {
    let outer = Command::new(unshare)
        .args(["--pid", "--fork", "--kill-child"])
        .arg(husk_tests::husk_init_bin())
        .arg("--pause")
        .stdin(Stdio::null())
        .spawn()
        .expect("starting unshare");
    let outer_pid = outer.id();
    let mut pause = 0;
    // Until husk-init blocks SIGTERM (to read it from its signalfd), a signal to it would be
    // dropped: a namespace's init gets no default-action signals.
    wait_for(
        "husk-init --pause to block its signals",
        Duration::from_secs(10),
        || {
            pause = children(outer_pid).first().copied().unwrap_or(0);
            pause > 0 && blocks(pause, libc::SIGTERM)
        },
    );
    (outer, pause)
}

/// Whether `pid` has `sig` in its blocked mask (SigBlk in /proc/PID/status).
fn blocks(pid: i32, sig: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

/// Sends `sig` to the pause process and returns unshare's exit code (husk-init's).
fn stop_pause(outer: &mut std::process::Child, pause: i32, sig: i32) -> Option<i32> {
    // SAFETY: plain syscall on the process this test started.
    unsafe { libc::kill(pause, sig) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(s) = outer.try_wait().unwrap() {
            return s.code();
        }
        assert!(
            Instant::now() < deadline,
            "pause did not exit on signal {sig}"
        );
        sleep(Duration::from_millis(50));
    }
}

/// `husk-init --pause` as a PID namespace's init: ignores SIGHUP, adopts and reaps an orphan,
/// exits 0 on SIGTERM and on SIGINT.
#[test]
fn husk_init_pause_reaps_and_exits_0_on_sigterm() {
    husk_tests::require_root!();
    let (Some(unshare), Some(_)) = (husk_tests::which("unshare"), husk_tests::which("nsenter"))
    else {
        eprintln!("SKIPPED husk_init_pause_reaps_and_exits_0_on_sigterm: no unshare/nsenter");
        return;
    };
    let (mut outer, pause) = start_pause(&unshare);
    let guard = scopeguard_kill(pause);

    // SIGHUP is ignored.
    // SAFETY: plain syscall on the process this test started.
    unsafe { libc::kill(pause, libc::SIGHUP) };
    sleep(Duration::from_millis(200));
    assert!(outer.try_wait().unwrap().is_none(), "SIGHUP ended pause");

    // An orphan in its PID namespace is adopted, then reaped when it exits.
    let st = Command::new("nsenter")
        .args(["--target", &pause.to_string(), "--pid", "--"])
        .args(["sh", "-c", "sleep 1 & exit 0"])
        .status()
        .expect("running nsenter");
    assert!(st.success());
    wait_for("the orphan to be adopted", Duration::from_secs(5), || {
        !children(pause as u32).is_empty()
    });
    wait_for("the orphan to be reaped", Duration::from_secs(5), || {
        children(pause as u32).is_empty()
    });
    assert_eq!(stop_pause(&mut outer, pause, libc::SIGTERM), Some(0));
    drop(guard);

    let (mut outer, pause) = start_pause(&unshare);
    let guard = scopeguard_kill(pause);
    assert_eq!(stop_pause(&mut outer, pause, libc::SIGINT), Some(0));
    drop(guard);
}

/// Kills `pid` with SIGKILL when dropped unless it is already gone (a failed assertion must
/// not leave the pause process running).
fn scopeguard_kill(pid: i32) -> impl Drop {
    struct Kill(i32, Option<u64>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(start) = self.1 {
                husk_tests::host::kill_if_same(self.0, start);
            }
        }
    }
    Kill(pid, husk_tests::host::proc_starttime(pid))
}

/// The value of the first `key: value` line of a YAML snippet.
fn yaml_value<'a>(yaml: &'a str, key: &str) -> Option<&'a str> {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

/// docs/kubernetes.md agrees with itself and with what the CRI test runs (no root needed):
/// the test's substitutions all apply, the RuntimeClass's handler is the runtime the
/// containerd snippet defines with husk's runtime type, and the Pod names the RuntimeClass.
#[test]
fn kubernetes_doc_snippets_agree() {
    let dir = Path::new("/tmp/husk-cri-doc-check");
    let config = harness::cri_config(dir, &dir.join("cni")).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(config.contains(&format!("sandbox_image = \"{}\"", harness::PAUSE_IMAGE)));
    harness::husk_toml(dir, Path::new("/x/husk")).unwrap_or_else(|e| panic!("{e:#}"));
    let net = CniNet {
        bridge: "b0".into(),
        subnet: "10.1.2.0/24".into(),
    };
    let cni = harness::cni_config(&net, dir).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(cni.contains("\"b0\"") && cni.contains("10.1.2.0/24"));
    assert!(net.contains("10.1.2.7") && !net.contains("10.1.20.7") && !net.contains("10.1.3.7"));

    let rc = husk_integration::snippets::snippet(harness::DOC, "k8s-runtimeclass").unwrap();
    assert_eq!(yaml_value(&rc, "kind"), Some("RuntimeClass"));
    let handler = yaml_value(&rc, "handler").expect("the RuntimeClass has no handler");
    let name = yaml_value(&rc, "name").expect("the RuntimeClass has no name");
    let runtime = format!("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{handler}]");
    let section = config
        .split(&runtime)
        .nth(1)
        .unwrap_or_else(|| panic!("handler {handler:?} is not a runtime in the config:\n{config}"));
    assert!(
        section
            .lines()
            .nth(1)
            .is_some_and(|l| l.trim() == "runtime_type = \"io.containerd.husk.v2\""),
        "runtime {handler} is not husk's:\n{section}"
    );
    let pod = husk_integration::snippets::snippet(harness::DOC, "k8s-pod").unwrap();
    assert_eq!(yaml_value(&pod, "kind"), Some("Pod"));
    assert_eq!(yaml_value(&pod, "runtimeClassName"), Some(name));
}
