//! Stats: the container's cgroup counters in the protobuf types containerd expects
//! (`io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`), read straight
//! from the cgroup files so `ctr task metrics` works with any runtime binary.

use std::path::Path;

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};

use crate::cgroup::{read_keyed, read_u64, Cgroup};

/// USER_HZ: cpuacct.stat counts in these ticks.
const USER_HZ: u64 = 100;

/// The metrics types' protobuf names, as constants: asking protobuf reflection
/// (`descriptor().full_name()`) builds descriptor tables that stay in the shim's heap.
const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

fn any_of<M: Message>(m: &M, type_url: &str) -> std::io::Result<Any> {
    let value = m
        .write_to_bytes()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    })
}

/// The metrics of the cgroup `pid` lives in, as an Any.
pub fn collect(pid: i32) -> std::io::Result<Any> {
    match Cgroup::of_pid(pid)? {
        Cgroup::V2(dir) => any_of(&metrics_v2(&dir), V2_METRICS),
        cg @ Cgroup::V1(_) => any_of(&metrics_v1(&cg), V1_METRICS),
    }
}

fn metrics_v1(cg: &Cgroup) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(d) = cg.dir("pids") {
        m.pids = MessageField::some(v1::PidsStat {
            current: read_u64(d, "pids.current"),
            limit: match read_u64(d, "pids.max") {
                u64::MAX => 0,
                n => n,
            },
            ..Default::default()
        });
    }
    let mut cpu = v1::CPUStat::new();
    if let Some(d) = cg.dir("cpuacct") {
        let stat = read_keyed(d, "cpuacct.stat");
        let per_cpu = std::fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let tick_ns = 1_000_000_000 / USER_HZ;
        cpu.usage = MessageField::some(v1::CPUUsage {
            total: read_u64(d, "cpuacct.usage"),
            user: stat.get("user").copied().unwrap_or(0) * tick_ns,
            kernel: stat.get("system").copied().unwrap_or(0) * tick_ns,
            per_cpu,
            ..Default::default()
        });
    }
    if let Some(d) = cg.dir("cpu") {
        let s = read_keyed(d, "cpu.stat");
        cpu.throttling = MessageField::some(v1::Throttle {
            periods: s.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: s.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: s.get("throttled_time").copied().unwrap_or(0),
            ..Default::default()
        });
    }
    m.cpu = MessageField::some(cpu);
    if let Some(d) = cg.dir("memory") {
        m.memory = MessageField::some(memory_v1(d));
        let oc = read_keyed(d, "memory.oom_control");
        m.memory_oom_control = MessageField::some(v1::MemoryOomControl {
            oom_kill_disable: oc.get("oom_kill_disable").copied().unwrap_or(0),
            under_oom: oc.get("under_oom").copied().unwrap_or(0),
            oom_kill: oc.get("oom_kill").copied().unwrap_or(0),
            ..Default::default()
        });
    }
    m
}

fn entry_v1(d: &Path, prefix: &str) -> v1::MemoryEntry {
    v1::MemoryEntry {
        usage: read_u64(d, &format!("{prefix}.usage_in_bytes")),
        limit: read_u64(d, &format!("{prefix}.limit_in_bytes")),
        max: read_u64(d, &format!("{prefix}.max_usage_in_bytes")),
        failcnt: read_u64(d, &format!("{prefix}.failcnt")),
        ..Default::default()
    }
}

fn memory_v1(d: &Path) -> v1::MemoryStat {
    let s = read_keyed(d, "memory.stat");
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    v1::MemoryStat {
        cache: g("cache"),
        rss: g("rss"),
        rss_huge: g("rss_huge"),
        mapped_file: g("mapped_file"),
        dirty: g("dirty"),
        writeback: g("writeback"),
        pg_pg_in: g("pgpgin"),
        pg_pg_out: g("pgpgout"),
        pg_fault: g("pgfault"),
        pg_maj_fault: g("pgmajfault"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit"),
        hierarchical_swap_limit: g("hierarchical_memsw_limit"),
        total_cache: g("total_cache"),
        total_rss: g("total_rss"),
        total_rss_huge: g("total_rss_huge"),
        total_mapped_file: g("total_mapped_file"),
        total_dirty: g("total_dirty"),
        total_writeback: g("total_writeback"),
        total_pg_pg_in: g("total_pgpgin"),
        total_pg_pg_out: g("total_pgpgout"),
        total_pg_fault: g("total_pgfault"),
        total_pg_maj_fault: g("total_pgmajfault"),
        total_inactive_anon: g("total_inactive_anon"),
        total_active_anon: g("total_active_anon"),
        total_inactive_file: g("total_inactive_file"),
        total_active_file: g("total_active_file"),
        total_unevictable: g("total_unevictable"),
        usage: MessageField::some(entry_v1(d, "memory")),
        swap: MessageField::some(entry_v1(d, "memory.memsw")),
        kernel: MessageField::some(entry_v1(d, "memory.kmem")),
        kernel_tcp: MessageField::some(entry_v1(d, "memory.kmem.tcp")),
        ..Default::default()
    }
}

fn metrics_v2(d: &Path) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    m.pids = MessageField::some(v2::PidsStat {
        current: read_u64(d, "pids.current"),
        limit: match read_u64(d, "pids.max") {
            u64::MAX => 0,
            n => n,
        },
        ..Default::default()
    });
    let c = read_keyed(d, "cpu.stat");
    let gc = |k: &str| c.get(k).copied().unwrap_or(0);
    m.cpu = MessageField::some(v2::CPUStat {
        usage_usec: gc("usage_usec"),
        user_usec: gc("user_usec"),
        system_usec: gc("system_usec"),
        nr_periods: gc("nr_periods"),
        nr_throttled: gc("nr_throttled"),
        throttled_usec: gc("throttled_usec"),
        nr_bursts: gc("nr_bursts"),
        burst_usec: gc("burst_usec"),
        ..Default::default()
    });
    let s = read_keyed(d, "memory.stat");
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    m.memory = MessageField::some(v2::MemoryStat {
        anon: g("anon"),
        file: g("file"),
        kernel_stack: g("kernel_stack"),
        slab: g("slab"),
        sock: g("sock"),
        shmem: g("shmem"),
        file_mapped: g("file_mapped"),
        file_dirty: g("file_dirty"),
        file_writeback: g("file_writeback"),
        anon_thp: g("anon_thp"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        pgfault: g("pgfault"),
        pgmajfault: g("pgmajfault"),
        workingset_refault: g("workingset_refault_anon") + g("workingset_refault_file"),
        workingset_activate: g("workingset_activate_anon") + g("workingset_activate_file"),
        workingset_nodereclaim: g("workingset_nodereclaim"),
        pgrefill: g("pgrefill"),
        pgscan: g("pgscan"),
        pgsteal: g("pgsteal"),
        pgactivate: g("pgactivate"),
        pgdeactivate: g("pgdeactivate"),
        pglazyfree: g("pglazyfree"),
        pglazyfreed: g("pglazyfreed"),
        thp_fault_alloc: g("thp_fault_alloc"),
        thp_collapse_alloc: g("thp_collapse_alloc"),
        usage: read_u64(d, "memory.current"),
        usage_limit: read_u64(d, "memory.max"),
        swap_usage: read_u64(d, "memory.swap.current"),
        swap_limit: read_u64(d, "memory.swap.max"),
        max_usage: read_u64(d, "memory.peak"),
        ..Default::default()
    });
    let e = read_keyed(d, "memory.events");
    let ge = |k: &str| e.get(k).copied().unwrap_or(0);
    m.memory_events = MessageField::some(v2::MemoryEvents {
        low: ge("low"),
        high: ge("high"),
        max: ge("max"),
        oom: ge("oom"),
        oom_kill: ge("oom_kill"),
        oom_group_kill: ge("oom_group_kill"),
        ..Default::default()
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn v2_files_map_to_fields() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join("pids.current"), "3\n").expect("w");
        fs::write(d.path().join("pids.max"), "max\n").expect("w");
        fs::write(d.path().join("memory.current"), "4096\n").expect("w");
        fs::write(d.path().join("cpu.stat"), "usage_usec 10\nuser_usec 6\n").expect("w");
        fs::write(d.path().join("memory.events"), "oom 1\noom_kill 2\n").expect("w");
        fs::write(d.path().join("memory.max"), "max\n").expect("w");
        fs::write(
            d.path().join("memory.stat"),
            "anon 100\nfile 200\nworkingset_refault_anon 1\nworkingset_refault_file 2\n",
        )
        .expect("w");
        let m = metrics_v2(d.path());
        assert_eq!((m.memory.anon, m.memory.file), (100, 200));
        assert_eq!(m.memory.workingset_refault, 3);
        assert_eq!(
            m.memory.usage_limit,
            u64::MAX,
            "memory.max \"max\" is no limit"
        );
        assert_eq!(m.memory.swap_usage, 0, "a missing file reads as 0");
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 0);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.cpu.usage_usec, 10);
        assert_eq!(m.memory_events.oom_kill, 2);
        let any = any_of(&m, V2_METRICS).expect("any");
        assert_eq!(v2::Metrics::parse_from_bytes(&any.value).expect("parse"), m);
        use containerd_shim::protos::protobuf::MessageFull;
        assert_eq!(V2_METRICS, v2::Metrics::descriptor().full_name());
        assert_eq!(V1_METRICS, v1::Metrics::descriptor().full_name());
    }
}
