//! A busybox OCI image tarball built locally (no registry): the rootfs `husk-tests` makes for
//! bundles, as one uncompressed layer, with an index naming it for `ctr images import`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use serde_json::json;

/// The name the image is imported under.
pub const IMAGE: &str = "docker.io/husk/busybox:test";

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .map(str::to_string)
        .context("sha256sum printed nothing")
}

fn tar(dir: &Path, out: &Path) -> Result<()> {
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

/// Stores `path` as a blob; returns (digest, size).
fn blob(blobs: &Path, path: &Path) -> Result<(String, u64)> {
    let digest = sha256(path)?;
    let size = fs::metadata(path)?.len();
    fs::copy(path, blobs.join(&digest)).context("copying a blob")?;
    Ok((format!("sha256:{digest}"), size))
}

/// Builds `work/image.tar` (an OCI image layout archive) and returns its path.
pub fn build(work: &Path) -> Result<std::path::PathBuf> {
    let busybox = husk_tests::bundle::ensure_busybox()?;
    let root = work.join("image-src");
    husk_tests::bundle::make_rootfs(&root, &busybox)?;
    build_from(
        work,
        &root.join("rootfs"),
        IMAGE,
        json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"]
        }),
    )
}

/// Builds `work/image.tar`, an OCI image layout archive of `rootfs` as one layer named `name`
/// with image config `config` (Env, Entrypoint, Cmd...), and returns its path.
pub fn build_from(
    work: &Path,
    rootfs: &Path,
    name: &str,
    image_config: serde_json::Value,
) -> Result<std::path::PathBuf> {
    let layout = work.join("oci");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layer = work.join("layer.tar");
    tar(rootfs, &layer)?;
    let (layer_digest, layer_size) = blob(&blobs, &layer)?;
    let config = work.join("config.json");
    fs::write(
        &config,
        serde_json::to_vec(&json!({
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
        }))?,
    )?;
    let (config_digest, config_size) = blob(&blobs, &config)?;
    let manifest = work.join("manifest.json");
    fs::write(
        &manifest,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config_size
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest, "size": layer_size
            }]
        }))?,
    )?;
    let (manifest_digest, manifest_size) = blob(&blobs, &manifest)?;
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")
                }
            }]
        }))?,
    )?;
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let archive = work.join("image.tar");
    tar(&layout, &archive)?;
    Ok(archive)
}
