//! /proc/uptime: time since the reader's container init started; idle is the visible CPUs'
//! time the cgroup did not use.

use std::path::Path;

/// The pid (host numbering) of the init of `pid`'s pid namespace: the furthest ancestor still
/// in the same pid namespace. A host process gets the host's pid 1.
pub fn namespace_init(proc_root: &Path, pid: u32) -> u32 {
    let ns = |p: u32| std::fs::read_link(proc_root.join(format!("{p}/ns/pid"))).ok();
    let Some(own) = ns(pid) else {
        return pid;
    };
    let mut current = pid;
    // Bounded: a pid chain is never this long, and a racing reparent cannot loop us.
    for _ in 0..4096 {
        match stat_field(proc_root, current, 4) {
            Some(ppid) if ppid > 0 && ns(ppid as u32).as_ref() == Some(&own) => {
                current = ppid as u32;
            }
            _ => break,
        }
    }
    current
}

/// Field `n` (1-based, as proc(5) numbers them) of /proc/PID/stat, for numeric fields after the
/// command name.
pub fn stat_field(proc_root: &Path, pid: u32, n: usize) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// "UPTIME IDLE\n": `host_uptime` seconds since boot, the init's start time in ticks since
/// boot, `cpu_secs` used by the cgroup over `ncpu` visible CPUs.
pub fn render(
    host_uptime: f64,
    init_start_ticks: u64,
    hz: u64,
    cpu_secs: f64,
    ncpu: usize,
) -> String {
    let up = (host_uptime - init_start_ticks as f64 / hz.max(1) as f64).max(0.0);
    let idle = (up * ncpu as f64 - cpu_secs).max(0.0);
    format!("{up:.2} {idle:.2}\n")
}

/// The first number of the host's /proc/uptime.
pub fn host_uptime(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_counts_from_init_start() {
        assert_eq!(render(1000.0, 90_000, 100, 10.0, 2), "100.00 190.00\n");
        assert_eq!(host_uptime("1234.56 999.0\n"), 1234.56);
    }

    #[test]
    fn stat_fields_after_odd_command_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("7")).expect("mkdir");
        std::fs::write(dir.path().join("7/stat"), "7 (a) b) S 3 7 7 0 -1").expect("write");
        assert_eq!(stat_field(dir.path(), 7, 4), Some(3));
        assert_eq!(namespace_init(dir.path(), 7), 7);
    }
}
