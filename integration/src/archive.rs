//! A busybox image as a `docker save` archive (docker-archive format), built locally so Docker
//! and podman load it with `docker load` / `podman load` and never reach a registry. Docker
//! 20.10 (Debian 12) cannot load the OCI layout archive [`crate::image`] makes for ctr, which is
//! why this second format exists; the rootfs is the same (`husk-tests`' busybox bundle rootfs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use serde_json::json;

/// The name the image is loaded under (the same as the containerd tests' image).
pub const IMAGE: &str = crate::image::IMAGE;

/// `PATH` in the image config: Docker's usual default, which busybox's applet links satisfy.
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn sha256_hex(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .context("sha256sum printed nothing")
}

/// `tar -C dir -cf out .` with numeric owners, so uid 1000's home stays uid 1000.
fn tar_dir(dir: &Path, out: &Path) -> Result<()> {
    let status = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .stdin(Stdio::null())
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar of {} failed", dir.display());
    Ok(())
}

/// Builds the busybox rootfs in `work/rootfs-src/rootfs` and returns its path (for tests that
/// want to add files to an image of their own).
pub fn busybox_rootfs(work: &Path) -> Result<PathBuf> {
    let busybox = husk_tests::bundle::ensure_busybox()?;
    let src = work.join("rootfs-src");
    husk_tests::bundle::make_rootfs(&src, &busybox)?;
    Ok(src.join("rootfs"))
}

/// Writes `work/docker-image.tar`, a one-layer docker-archive of the busybox rootfs tagged
/// [`IMAGE`] with `Cmd ["sh"]`, and returns its path.
pub fn build(work: &Path) -> Result<PathBuf> {
    let rootfs = busybox_rootfs(work)?;
    let out = work.join("docker-image");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let layer = work.join("docker-layer.tar");
    tar_dir(&rootfs, &layer)?;
    let layer_hex = sha256_hex(&layer)?;
    let layer_dir = out.join(&layer_hex);
    fs::create_dir_all(&layer_dir)?;
    fs::rename(&layer, layer_dir.join("layer.tar")).context("moving the layer")?;
    fs::write(layer_dir.join("VERSION"), "1.0")?;

    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": { "Env": [IMAGE_PATH], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_hex}")] }
    }))?;
    let config_path = out.join("config.json.tmp");
    fs::write(&config_path, &config)?;
    let config_name = format!("{}.json", sha256_hex(&config_path)?);
    fs::rename(&config_path, out.join(&config_name))?;

    fs::write(
        out.join("manifest.json"),
        serde_json::to_vec(&json!([{
            "Config": config_name,
            "RepoTags": [IMAGE],
            "Layers": [format!("{layer_hex}/layer.tar")]
        }]))?,
    )?;
    let archive = work.join("docker-image.tar");
    tar_dir(&out, &archive)?;
    Ok(archive)
}
