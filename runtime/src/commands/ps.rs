//! `husk ps ID`: the container's processes, as host pids (JSON) or filtered `ps` output.

use anyhow::{bail, Context, Result};

use super::Global;
use crate::cgroups::ContainerCgroup;

/// Output forms of `ps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PsFormat {
    /// `ps` output restricted to the container's processes.
    Table,
    /// A JSON array of host pids (what containerd reads).
    Json,
}

/// Prints the processes of `id`.
pub fn ps(g: &Global, id: &str, format: PsFormat, ps_args: &[String]) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    let cg = ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?;
    let mut pids: Vec<i32> = cg.pids()?.into_iter().map(|p| p.as_raw()).collect();
    pids.sort_unstable();
    if format == PsFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    // containerd's Top passes its options as one argument, which may be empty.
    let given: Vec<String> = ps_args.iter().filter(|a| !a.is_empty()).cloned().collect();
    let args: Vec<String> = if given.is_empty() {
        vec!["-ef".into()]
    } else {
        given
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print!(
        "{}",
        filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)?
    );
    Ok(())
}

/// Keeps the header and the lines whose PID column is one of `pids`, as runc does.
fn filter_ps(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("couldn't find PID field in ps output")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_pid_column() {
        let ps = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep\nroot 43 1 sh\n";
        assert_eq!(
            filter_ps(ps, &[42]).expect("ok"),
            "UID PID PPID CMD\nroot 42 1 sleep\n"
        );
        assert!(filter_ps("UID CMD\n", &[1]).is_err());
    }
}
