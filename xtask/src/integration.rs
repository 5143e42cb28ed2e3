//! What the end-to-end tests in `integration/` need from the machine: Debian's containerd
//! (containerd, ctr and containerd-shim-runc-v2), installed with apt-get like the other test
//! packages, and the environment that tells the tests where they are.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use husk_tests::bundle;

/// Debian packages the end-to-end scenarios use: containerd (containerd.rs, docs_snippets.rs);
/// docker.io, dockerd 20.10 with its client (docker.rs); podman with conmon (podman.rs), plus
/// what apt's --no-install-recommends leaves out that rootless podman needs (newuidmap from
/// uidmap, catatonit for its pause process); tmux to drive `docker run -it` / `podman run -it`;
/// containernetworking-plugins (bridge, host-local) for the CRI test's pod network (cri.rs),
/// and protobuf-compiler, whose protoc the `k8s-cri` crate's build script runs to generate
/// that test's CRI client.
pub const PACKAGES: &[&str] = &[
    "containerd",
    "docker.io",
    "podman",
    "uidmap",
    "catatonit",
    "tmux",
    "containernetworking-plugins",
    "protobuf-compiler",
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the packages when missing (as root; otherwise the tests skip and say so).
/// Never starts or touches the system's containerd or docker service: the tests run their own.
pub fn install() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!(
            "xtask: integration packages present: {}",
            PACKAGES.join(" ")
        );
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "xtask: warning: not root, not installing {} (containerd, docker and podman tests will skip)",
            missing.join(" ")
        );
        return Ok(());
    }
    bundle::apt_install(&missing)?;
    stop_system_service();
    Ok(())
}

/// Debian's packages enable and start containerd.service and docker.service (and the docker
/// and podman sockets) where systemd runs; the tests need no system daemon, so leave none
/// running that the install started.
fn stop_system_service() {
    if std::path::Path::new("/run/systemd/system").exists() {
        // One unit at a time: a unit that does not exist must not stop the others.
        for unit in [
            "docker.socket",
            "docker.service",
            "podman.socket",
            "containerd.service",
        ] {
            let _ = Command::new("systemctl")
                .args(["disable", "--now", unit])
                .status();
        }
    }
}

/// Environment for `cargo test`: where containerd and ctr are (the tests also search PATH and
/// the sbin directories).
pub fn env() -> Vec<(&'static str, PathBuf)> {
    [("HUSK_CONTAINERD", "containerd"), ("HUSK_CTR", "ctr")]
        .into_iter()
        .filter_map(|(var, name)| husk_tests::which(name).map(|p| (var, p)))
        .collect()
}
