//! `process.oomScoreAdj`: written to /proc/self/oom_score_adj, as runc writes it for the init.

use std::io::Write;

/// The file the kernel reads the adjustment from.
const PATH: &str = "/proc/self/oom_score_adj";

/// Why the OOM score adjustment could not be set.
#[derive(Debug, thiserror::Error)]
pub enum OomScoreAdjError {
    /// Opening or writing /proc/self/oom_score_adj failed.
    #[error("write {adj} to /proc/self/oom_score_adj: {source}")]
    Write {
        /// The value asked for.
        adj: i32,
        /// Why (EINVAL outside -1000..=1000, EACCES when lowering without CAP_SYS_RESOURCE).
        source: std::io::Error,
    },
}

/// Sets the calling process's OOM score adjustment.
pub fn apply(adj: i32) -> Result<(), OomScoreAdjError> {
    let write = || -> std::io::Result<()> {
        // No O_CREAT or O_TRUNC: this is a procfs file that must already exist.
        let mut f = std::fs::OpenOptions::new().write(true).open(PATH)?;
        // One write: the kernel parses each write(2) on its own.
        f.write_all(adj.to_string().as_bytes())
    };
    write().map_err(|source| OomScoreAdjError::Write { adj, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::run;

    #[test]
    fn sets_adjustment_in_a_child() {
        run(|| {
            // Raising the score needs no privilege.
            apply(500).map_err(|e| e.to_string())?;
            let got = std::fs::read_to_string(PATH).map_err(|e| e.to_string())?;
            if got.trim() != "500" {
                return Err(format!("oom_score_adj is {got:?}"));
            }
            match apply(5000) {
                Err(e) if e.to_string().contains("5000") => Ok(()),
                other => Err(format!("expected an error naming 5000, got {other:?}")),
            }
        })
        .expect("oom_score_adj set in the child");
    }
}
