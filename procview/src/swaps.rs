//! /proc/swaps: one virtual device of the cgroup's swap limit, as lxcfs shows it.

use crate::meminfo::MemStats;

/// With a swap limit and host swap: the header and one `none virtual` line of the limit (capped
/// at the host's swap) and the cgroup's swap usage, in kB. Without a limit: the host's file.
pub fn render(host: &str, mem: Option<&MemStats>, host_swap_kb: u64) -> String {
    let Some((limit, usage)) = mem.and_then(|m| Some((m.swap_limit?, m.swap_usage))) else {
        return host.to_string();
    };
    let header = host
        .lines()
        .next()
        .unwrap_or("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority");
    let mut out = format!("{header}\n");
    if host_swap_kb > 0 {
        let size = (limit / 1024).min(host_swap_kb);
        let used = (usage / 1024).min(size);
        out.push_str(&format!("none{:36}virtual\t\t{size}\t{used}\t0\n", ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str =
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swap file 2097148 0 -2\n";

    #[test]
    fn limited_swap_is_one_virtual_device() {
        let m = MemStats {
            swap_limit: Some(32 << 20),
            swap_usage: 1 << 20,
            ..MemStats::default()
        };
        let out = render(HOST, Some(&m), 2097148);
        assert!(out.ends_with("virtual\t\t32768\t1024\t0\n"), "{out}");
        assert_eq!(out.lines().count(), 2);
        assert_eq!(render(HOST, Some(&m), 0).lines().count(), 1);
        assert_eq!(render(HOST, None, 2097148), HOST);
    }
}
