//! `husk state ID`: the runtime-spec state document of one container.

use anyhow::Result;

use super::Global;

/// Prints the state of `id` as indented JSON, as runc does.
pub fn state(g: &Global, id: &str) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    let status = dir.status(&state);
    println!("{}", serde_json::to_string_pretty(&state.to_oci(status))?);
    Ok(())
}
