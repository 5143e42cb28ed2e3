//! `husk spec`: writes runc's default config.json into the bundle directory.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Writes `BUNDLE/config.json`, refusing to overwrite one, like runc.
pub fn spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    std::fs::write(&path, crate::spec::default_json(rootless))
        .with_context(|| format!("write {}", path.display()))
}
