//! The containerd and Kubernetes snippets in docs/containerd.md, exercised as far as this
//! machine allows: containerd 1.6 loads its CRI plugin with them, the shim honours husk.toml,
//! and the RuntimeClass names a runtime the containerd config defines. (docker.md's and
//! podman.md's snippets are exercised by tests/docker.rs and tests/podman.rs.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use husk_integration::{containerd_bins, image, require_containerd, snippets, Containerd};

fn snippet(name: &str) -> String {
    snippets::snippet("containerd.md", name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A containerd child, stopped by pid when dropped.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: plain syscall on our own child, not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn containerd_cri_snippets_load() {
    require_containerd!();
    let (containerd, ctr) = containerd_bins().expect("containerd_bins after require_containerd");
    let tmp = tempfile::Builder::new()
        .prefix("husk-cri-")
        .tempdir_in("/tmp")
        .expect("creating a temp dir");
    let dir = tmp.path();
    for d in ["root", "state", "cni"] {
        fs::create_dir_all(dir.join(d)).expect("creating a dir");
    }
    let husk_toml = dir.join("husk.toml");
    fs::write(&husk_toml, snippet("husk.toml")).expect("writing husk.toml");
    let cri = snippet("containerd-cri").replace(
        "\"/etc/containerd/husk.toml\"",
        &format!("{:?}", husk_toml.display().to_string()),
    );
    let cri_runc = snippet("containerd-cri-runc-v2").replace(
        "\"/usr/sbin/husk\"",
        &format!("{:?}", husk_tests::husk_bin().display().to_string()),
    );
    let address = dir.join("c.sock").display().to_string();
    // What `containerd config default` has and the snippets assume (the runc runtime), with
    // the test's own paths; only the snapshotters this kernel lacks and the `opt` plugin (which
    // would write /opt/containerd) are off, since the CRI plugin needs the rest.
    let config = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt"]
[grpc]
  address = "{address}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
{cri}
{cri_runc}
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        cni = dir.join("cni").display(),
    );
    let config_path = dir.join("config.toml");
    fs::write(&config_path, &config).expect("writing config.toml");

    let dump = Command::new(&containerd)
        .arg("--config")
        .arg(&config_path)
        .args(["config", "dump"])
        .stdin(Stdio::null())
        .output()
        .expect("running containerd config dump");
    let dump = String::from_utf8_lossy(&dump.stdout);
    for want in [
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk]",
        "runtime_type = \"io.containerd.husk.v2\"",
        &format!("ConfigPath = {:?}", husk_toml.display().to_string()),
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.husk-runc]",
        &format!(
            "BinaryName = {:?}",
            husk_tests::husk_bin().display().to_string()
        ),
    ] {
        assert!(dump.contains(want), "config dump lacks {want:?}:\n{dump}");
    }

    let log = fs::File::create(dir.join("containerd.log")).expect("creating the log");
    let child = Command::new(&containerd)
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cloning the log fd"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("starting containerd");
    let daemon = Daemon(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    let plugins = loop {
        let out = Command::new(&ctr)
            .args(["--address", &address, "plugins", "ls"])
            .stdin(Stdio::null())
            .output()
            .expect("running ctr");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "containerd did not come up:\n{}",
            fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        );
        sleep(Duration::from_millis(100));
    };
    let cri = plugins
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cri"))
        .unwrap_or_default();
    assert!(
        cri.split_whitespace().last() == Some("ok"),
        "the CRI plugin did not load with the docs' config:\n{plugins}\n{}",
        fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
    );
    drop(daemon);
    husk_tests::remove_temp_dir(tmp);
}

#[test]
fn husk_toml_snippet_drives_the_shim() {
    require_containerd!();
    let c = Containerd::start().unwrap_or_else(|e| panic!("starting containerd: {e:#}"));
    // BinaryName = a wrapper that records its command lines and runs husk, so the test sees
    // the shim honoured the file.
    let wrapper = c.dir.join("bin/husk-from-toml");
    let calls = c.dir.join("toml-calls.log");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
            calls.display(),
            husk_tests::husk_bin().display()
        ),
    )
    .expect("writing the wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = snippet("husk.toml");
    assert!(text.contains("\"/usr/sbin/husk\""), "{text}");
    // Root: the harness's runtime root (cleaned up with it), not the host's /run.
    let toml = format!(
        "{}Root = {:?}\n",
        text.replace(
            "\"/usr/sbin/husk\"",
            &format!("{:?}", wrapper.display().to_string())
        ),
        c.dir.join("husk-root").display().to_string()
    );
    let path = c.dir.join("docs-husk.toml");
    fs::write(&path, toml).expect("writing husk.toml");
    let fifo = c.fifo_dir();
    let path = path.display().to_string();
    let out = c.ctr(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runtime",
        "io.containerd.husk.v2",
        "--runtime-config-path",
        &path,
        image::IMAGE,
        "toml1",
        "sh",
        "-c",
        "echo configured by husk.toml; exit 3",
    ]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stdout.contains("configured by husk.toml"), "{out}");
    let log = fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.split(' ').any(|w| w == "create")),
        "the shim did not run the husk.toml BinaryName:\n{log}"
    );
}

/// `key: value` of a top-level or nested YAML line (the snippets are plain maps).
fn yaml_value<'a>(yaml: &'a str, key: &str) -> Option<&'a str> {
    yaml.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

#[test]
fn runtimeclass_snippets_agree() {
    let rc = snippet("runtimeclass");
    assert_eq!(yaml_value(&rc, "apiVersion"), Some("node.k8s.io/v1"));
    assert_eq!(yaml_value(&rc, "kind"), Some("RuntimeClass"));
    let handler = yaml_value(&rc, "handler").expect("the RuntimeClass has a handler");
    let name = yaml_value(&rc, "name").expect("the RuntimeClass has a name");
    let cri = snippet("containerd-cri");
    assert!(
        cri.contains(&format!(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{handler}]"
        )),
        "handler {handler:?} is not a runtime the containerd snippet defines:\n{cri}"
    );
    let pod = snippet("pod");
    assert_eq!(yaml_value(&pod, "kind"), Some("Pod"));
    assert_eq!(yaml_value(&pod, "runtimeClassName"), Some(name));
}
