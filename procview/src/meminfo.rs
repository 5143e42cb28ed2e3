//! /proc/meminfo from the reader's memory cgroup: the limit as MemTotal, usage and memory.stat
//! for the rest; lines the cgroup says nothing about keep the host's values.

use std::collections::HashMap;

use crate::cgroup::{parse_kv, parse_u64, Cgroup};

/// A v1 "no limit" is PAGE_COUNTER_MAX rounded to pages (9223372036854771712); anything this
/// large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// The memory figures of one cgroup, in bytes, with v1 and v2 names already unified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStats {
    /// memory.limit_in_bytes / memory.max; None when unlimited.
    pub limit: Option<u64>,
    /// The swap the cgroup may use on top of memory; None when unlimited.
    pub swap_limit: Option<u64>,
    /// memory.usage_in_bytes / memory.current.
    pub usage: u64,
    /// Swap in use by the cgroup.
    pub swap_usage: u64,
    /// memory.stat under v2's names: file, anon, shmem, file_mapped, file_dirty,
    /// file_writeback, active_anon, inactive_anon, active_file, inactive_file, unevictable, and
    /// (v2 only: v1 does not account them) slab, slab_reclaimable, slab_unreclaimable.
    pub stat: HashMap<String, u64>,
}

impl MemStats {
    /// Reads the memory controller of `cg` (v1 if mounted, else v2); None when it has none.
    pub fn gather(cg: &Cgroup) -> Option<MemStats> {
        if cg.v1_dir("memory").is_some() {
            Some(Self::gather_v1(cg))
        } else {
            cg.unified.as_ref()?;
            Some(Self::gather_v2(cg))
        }
    }

    fn gather_v1(cg: &Cgroup) -> MemStats {
        let read = |f: &str| cg.v1_read("memory", f).and_then(|s| parse_u64(&s));
        let limit = read("memory.limit_in_bytes").filter(|l| *l < V1_UNLIMITED);
        let memsw = read("memory.memsw.limit_in_bytes").filter(|l| *l < V1_UNLIMITED);
        let usage = read("memory.usage_in_bytes").unwrap_or(0);
        let memsw_usage = read("memory.memsw.usage_in_bytes").unwrap_or(usage);
        let raw = parse_kv(&cg.v1_read("memory", "memory.stat").unwrap_or_default());
        // Hierarchical totals when the kernel gives them, as the container's children count.
        let get = |k: &str| raw.get(&format!("total_{k}")).or(raw.get(k)).copied();
        let mut stat = HashMap::new();
        for (v2, v1) in [
            ("file", "cache"),
            ("anon", "rss"),
            ("shmem", "shmem"),
            ("file_mapped", "mapped_file"),
            ("file_dirty", "dirty"),
            ("file_writeback", "writeback"),
            ("active_anon", "active_anon"),
            ("inactive_anon", "inactive_anon"),
            ("active_file", "active_file"),
            ("inactive_file", "inactive_file"),
            ("unevictable", "unevictable"),
        ] {
            if let Some(v) = get(v1) {
                stat.insert(v2.to_string(), v);
            }
        }
        MemStats {
            limit,
            swap_limit: match (memsw, limit) {
                (Some(sw), Some(l)) => Some(sw.saturating_sub(l)),
                _ => None,
            },
            usage,
            swap_usage: memsw_usage.saturating_sub(usage),
            stat,
        }
    }

    fn gather_v2(cg: &Cgroup) -> MemStats {
        let read = |f: &str| cg.v2_read(f).and_then(|s| parse_u64(&s));
        MemStats {
            limit: read("memory.max"),
            swap_limit: read("memory.swap.max"),
            usage: read("memory.current").unwrap_or(0),
            swap_usage: read("memory.swap.current").unwrap_or(0),
            stat: parse_kv(&cg.v2_read("memory.stat").unwrap_or_default()),
        }
    }

    fn stat(&self, key: &str) -> u64 {
        self.stat.get(key).copied().unwrap_or(0)
    }
}

/// The value (kB) of `key` in a meminfo text.
pub fn host_kb(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The host's meminfo with the cgroup's figures in place of the host's.
pub fn render(host: &str, m: &MemStats) -> String {
    let kb = |b: u64| b / 1024;
    let host_total = host_kb(host, "MemTotal").unwrap_or(0);
    let total = m.limit.map_or(host_total, |l| kb(l).min(host_total.max(1)));
    let free = total.saturating_sub(kb(m.usage));
    let reclaimable = kb(m.stat("active_file") + m.stat("inactive_file"));
    let mut values: Vec<(&str, u64)> = vec![
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", (free + reclaimable).min(total)),
        ("Buffers", 0),
        ("Cached", kb(m.stat("file"))),
        ("SwapCached", 0),
        ("Active", kb(m.stat("active_anon") + m.stat("active_file"))),
        (
            "Inactive",
            kb(m.stat("inactive_anon") + m.stat("inactive_file")),
        ),
        ("Active(anon)", kb(m.stat("active_anon"))),
        ("Inactive(anon)", kb(m.stat("inactive_anon"))),
        ("Active(file)", kb(m.stat("active_file"))),
        ("Inactive(file)", kb(m.stat("inactive_file"))),
        ("Unevictable", kb(m.stat("unevictable"))),
        ("AnonPages", kb(m.stat("anon"))),
        ("Mapped", kb(m.stat("file_mapped"))),
        ("Shmem", kb(m.stat("shmem"))),
        // The host's figures would exceed the container's total; v1 has no slab figures, so
        // they are 0 there (as lxcfs shows them).
        ("Dirty", kb(m.stat("file_dirty"))),
        ("Writeback", kb(m.stat("file_writeback"))),
        ("Slab", kb(m.stat("slab"))),
        ("SReclaimable", kb(m.stat("slab_reclaimable"))),
        ("SUnreclaim", kb(m.stat("slab_unreclaimable"))),
        ("KReclaimable", kb(m.stat("slab_reclaimable"))),
    ];
    if let Some(swap) = m.swap_limit {
        let host_swap = host_kb(host, "SwapTotal").unwrap_or(0);
        let swap_total = kb(swap).min(host_swap);
        values.push(("SwapTotal", swap_total));
        values.push(("SwapFree", swap_total.saturating_sub(kb(m.swap_usage))));
    }
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        let key = line.split(':').next().unwrap_or_default();
        match values.iter().find(|(k, _)| *k == key) {
            Some((k, v)) => out.push_str(&line_kb(k, *v)),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One line as the kernel prints it: the name and colon padded to 16, the value to 8.
fn line_kb(key: &str, kb: u64) -> String {
    format!("{:<16}{kb:>8} kB", format!("{key}:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    const HOST: &str = "\
MemTotal:       16318532 kB
MemFree:         1000000 kB
MemAvailable:    9000000 kB
Buffers:          100000 kB
Cached:          5000000 kB
SwapCached:            0 kB
Active:          4000000 kB
Inactive:        3000000 kB
Shmem:            200000 kB
Dirty:             90000 kB
Slab:             600000 kB
SwapTotal:       2097148 kB
SwapFree:        2097148 kB
HugePages_Total:       0
";

    #[test]
    fn v1_limit_becomes_memtotal() {
        let (fx, cg) = Fixture::v1();
        fx.write("memory/memory.limit_in_bytes", "67108864\n");
        fx.write("memory/memory.memsw.limit_in_bytes", "100663296\n");
        fx.write("memory/memory.usage_in_bytes", "16777216\n");
        fx.write("memory/memory.memsw.usage_in_bytes", "17825792\n");
        fx.write(
            "memory/memory.stat",
            "cache 1\ntotal_cache 4194304\ntotal_rss 8388608\ntotal_shmem 1048576\n\
             total_active_file 2097152\ntotal_inactive_file 1048576\ntotal_active_anon 4194304\n\
             total_inactive_anon 4194304\ntotal_dirty 8192\n",
        );
        let m = MemStats::gather(&cg).expect("memory cgroup");
        assert_eq!(m.limit, Some(64 << 20));
        assert_eq!(m.swap_limit, Some(32 << 20));
        let out = render(HOST, &m);
        assert!(out.contains("MemTotal:          65536 kB\n"), "{out}");
        assert_eq!(host_kb(&out, "MemFree"), Some(65536 - 16384));
        assert_eq!(host_kb(&out, "MemAvailable"), Some(65536 - 16384 + 3072));
        assert_eq!(host_kb(&out, "Cached"), Some(4096));
        assert_eq!(host_kb(&out, "Shmem"), Some(1024));
        assert_eq!(host_kb(&out, "Active"), Some(4096 + 2048));
        assert_eq!(host_kb(&out, "Inactive"), Some(4096 + 1024));
        assert_eq!(host_kb(&out, "Dirty"), Some(8));
        assert_eq!(host_kb(&out, "Slab"), Some(0));
        assert_eq!(host_kb(&out, "SwapTotal"), Some(32768));
        assert_eq!(host_kb(&out, "SwapFree"), Some(32768 - 1024));
        assert!(out.contains("HugePages_Total:       0\n"), "{out}");
    }

    #[test]
    fn unlimited_v1_keeps_host_total() {
        let (fx, cg) = Fixture::v1();
        fx.write("memory/memory.limit_in_bytes", "9223372036854771712\n");
        fx.write("memory/memory.usage_in_bytes", "1048576\n");
        let m = MemStats::gather(&cg).expect("memory cgroup");
        assert_eq!(m.limit, None);
        let out = render(HOST, &m);
        assert_eq!(host_kb(&out, "MemTotal"), Some(16318532));
        assert_eq!(host_kb(&out, "SwapTotal"), Some(2097148));
    }

    #[test]
    fn v2_names() {
        let (fx, cg) = Fixture::v2();
        fx.write("memory.max", "268435456\n");
        fx.write("memory.swap.max", "max\n");
        fx.write("memory.current", "134217728\n");
        fx.write(
            "memory.stat",
            "anon 1\nfile 2097152\nshmem 0\nslab 1048576\nslab_reclaimable 524288\n",
        );
        let m = MemStats::gather(&cg).expect("memory cgroup");
        let out = render(HOST, &m);
        assert_eq!(host_kb(&out, "MemTotal"), Some(262144));
        assert_eq!(host_kb(&out, "MemFree"), Some(131072));
        assert_eq!(host_kb(&out, "Cached"), Some(2048));
        assert_eq!(host_kb(&out, "Slab"), Some(1024));
        assert_eq!(host_kb(&out, "Dirty"), Some(0));
    }
}
