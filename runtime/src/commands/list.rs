//! `husk list`: every container under --root, as runc's table, JSON, or ids only.

use anyhow::Result;

use super::Global;
use crate::container::state::OciState;

/// Output forms of `list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// runc's tabwriter table.
    Table,
    /// A JSON array of state documents.
    Json,
}

/// Prints the containers.
pub fn list(g: &Global, format: ListFormat, quiet: bool) -> Result<()> {
    let store = g.store();
    let mut states: Vec<OciState> = Vec::new();
    for id in store.ids()? {
        // A container deleted while we list is simply not listed.
        let Ok(dir) = store.open(&id) else { continue };
        let Ok(state) = dir.load() else { continue };
        let status = dir.status(&state);
        let mut oci = state.to_oci(status);
        // runc's list names the owner of the state dir; its state leaves the field empty.
        oci.owner = owner_name(dir.path());
        states.push(oci);
    }
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            // runc prints `null` for no containers (a nil Go slice).
            if states.is_empty() {
                println!("null");
            } else {
                println!("{}", serde_json::to_string(&states)?);
            }
        }
        ListFormat::Table => print!("{}", table(&states)),
    }
    Ok(())
}

/// The user name owning `path` (from the host's /etc/passwd), or its uid as a string.
///
/// /etc/passwd is read directly, as runc's own user package does, not through NSS: husk is a
/// static binary, and glibc's NSS would need shared libraries of the exact glibc it was built
/// with at run time.
fn owner_name(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(path).map(|m| m.uid()) else {
        return String::new();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| name_in_passwd(&passwd, uid))
        .unwrap_or_else(|| uid.to_string())
}

/// The name of the first /etc/passwd entry with `uid`, if any.
fn name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        // name:password:UID:GID:GECOS:directory:shell
        let mut fields = line.trim().split(':');
        let name = fields.next()?;
        let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// runc's table: Go's tabwriter with minwidth 12, padding 3.
fn table(states: &[OciState]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for s in states {
        rows.push([
            s.id.clone(),
            s.pid.to_string(),
            s.status.clone(),
            s.bundle.display().to_string(),
            s.created.clone(),
            s.owner.clone(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.len() + 3).max(12);
        }
    }
    let mut out = String::new();
    for row in &rows {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n# comment\nu:x:1000:1000::/home/u:/bin/sh\n";
        assert_eq!(name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(passwd, 1000).as_deref(), Some("u"));
        assert_eq!(name_in_passwd(passwd, 7), None);
    }

    #[test]
    fn table_has_runc_header() {
        let t = table(&[]);
        assert_eq!(
            t,
            "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        );
    }
}
