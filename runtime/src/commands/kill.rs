//! `husk kill ID [SIGNAL]`: signals the init, or with --all every process of the container.

use std::str::FromStr;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::Status;

/// Parses a signal like runc: a number, or a name with or without SIG, in any case. 0 is
/// kill(2)'s existence check and the empty string means SIGTERM, as in runc.
pub fn parse_signal(raw: &str) -> Result<i32> {
    if raw.is_empty() {
        return Ok(libc::SIGTERM);
    }
    if let Ok(n) = raw.parse::<i32>() {
        if n < 0 || n > libc::SIGRTMAX() {
            bail!("invalid signal {raw:?}");
        }
        return Ok(n);
    }
    let upper = raw.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {raw:?}"))
}

/// Sends `signal` to container `id`.
pub fn kill(g: &Global, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    let status = dir.status(&state);
    if status == Status::Stopped && !all {
        bail!("container not running");
    }
    if all {
        let cg = ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?;
        return signal_all(&cg, sig);
    }
    signal_pid(state.pid, sig).context("no such process")
}

/// Sends a raw signal number to one pid.
pub fn signal_pid(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    if unsafe { libc::kill(pid, sig) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            bail!("no such process");
        }
        return Err(e).with_context(|| format!("signal {sig} to pid {pid}"));
    }
    Ok(())
}

/// Signals every process in the container's cgroup, freezing it meanwhile so none can fork
/// away from the signal, as runc does for --all.
pub fn signal_all(cg: &ContainerCgroup, sig: i32) -> Result<()> {
    let frozen = cg.freeze().is_ok();
    let pids = cg.pids();
    let result = pids.map_err(anyhow::Error::from).map(|pids| {
        for pid in pids {
            // A process that exited meanwhile is fine.
            let _ = signal_pid(pid.as_raw(), sig);
        }
    });
    if frozen {
        cg.thaw()?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals_like_runc() {
        assert_eq!(parse_signal("9").expect("num"), 9);
        assert_eq!(parse_signal("KILL").expect("name"), 9);
        assert_eq!(parse_signal("SIGTERM").expect("sig name"), 15);
        assert_eq!(parse_signal("hup").expect("lower"), 1);
        assert!(parse_signal("NOPE").is_err());
        assert_eq!(parse_signal("0").expect("existence check"), 0);
        assert_eq!(parse_signal("").expect("default"), libc::SIGTERM);
        assert!(parse_signal("-1").is_err());
    }
}
