//! Which file renders how: gathers the reader's cgroup figures and calls the file's renderer.

use std::time::Instant;

use crate::cgroup::{Cgroup, Sources};
use crate::cpus::{parse_list, render_online, CpuLimits};
use crate::loadavg::{LoadTracker, Tasks};
use crate::meminfo::{host_kb, MemStats};
use crate::stat::CpuUsage;
use crate::{cpuinfo, diskstats, loadavg, meminfo, stat, swaps, uptime};

/// The files procview serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// /proc/meminfo
    Meminfo,
    /// /proc/cpuinfo
    Cpuinfo,
    /// /proc/stat
    Stat,
    /// /proc/uptime
    Uptime,
    /// /proc/loadavg
    Loadavg,
    /// /proc/swaps
    Swaps,
    /// /proc/diskstats
    Diskstats,
    /// /sys/devices/system/cpu/online
    CpuOnline,
}

impl View {
    /// The host file this view replaces, relative to /proc (or /sys for `CpuOnline`).
    fn host_file(self) -> &'static str {
        match self {
            View::Meminfo => "meminfo",
            View::Cpuinfo => "cpuinfo",
            View::Stat => "stat",
            View::Uptime => "uptime",
            View::Loadavg => "loadavg",
            View::Swaps => "swaps",
            View::Diskstats => "diskstats",
            View::CpuOnline => "devices/system/cpu/online",
        }
    }
}

/// Renders `view` for the process `pid` (host numbering). A reader whose cgroup cannot be found
/// (pid 0 from another pid namespace, or already gone) gets the host's file.
pub fn render(view: View, src: &Sources, loads: &LoadTracker, pid: u32) -> String {
    let host = match view {
        View::CpuOnline => {
            std::fs::read_to_string(src.sys_root.join(view.host_file())).unwrap_or_default()
        }
        _ => src.read_proc(view.host_file()),
    };
    let Some(cg) = (pid != 0).then(|| src.cgroup_of(pid)).flatten() else {
        return host;
    };
    let visible = || visible_cpus(src, &cg);
    let hz = clock_ticks();
    match view {
        View::Meminfo => match MemStats::gather(&cg) {
            Some(m) => meminfo::render(&host, &m),
            None => host,
        },
        View::Cpuinfo => cpuinfo::render(&host, &visible()),
        View::CpuOnline => render_online(visible().len()),
        View::Stat => {
            let tasks = Tasks::gather(&cg, &src.proc_root);
            stat::render(
                &host,
                &visible(),
                &CpuUsage::gather(&cg),
                hz,
                tasks.running,
                tasks.blocked,
            )
        }
        View::Uptime => {
            let init = uptime::namespace_init(&src.proc_root, pid);
            let start = uptime::stat_field(&src.proc_root, init, 22).unwrap_or(0);
            let usage = CpuUsage::gather(&cg).total;
            let cpu_secs = (usage.0 + usage.1) as f64 / 1e9;
            let host_up = uptime::host_uptime(&src.read_proc("uptime"));
            uptime::render(host_up, start, hz, cpu_secs, visible().len())
        }
        View::Loadavg => {
            let tasks = Tasks::gather(&cg, &src.proc_root);
            let key = cg
                .v1
                .get("cpu")
                .or(cg.unified.as_ref())
                .cloned()
                .unwrap_or_default();
            let avgs = loads.update(&key, tasks.running, Instant::now());
            loadavg::render(avgs, tasks, &host)
        }
        View::Swaps => {
            let host_swap = host_kb(&src.read_proc("meminfo"), "SwapTotal").unwrap_or(0);
            swaps::render(&host, MemStats::gather(&cg).as_ref(), host_swap)
        }
        View::Diskstats => diskstats::render(&host, &diskstats::gather(&cg)),
    }
}

fn visible_cpus(src: &Sources, cg: &Cgroup) -> Vec<u32> {
    let online = std::fs::read_to_string(src.sys_root.join("devices/system/cpu/online"))
        .map(|s| parse_list(&s))
        .unwrap_or_default();
    CpuLimits::gather(cg).visible(&online)
}

/// USER_HZ, the unit of /proc/stat and of start times in /proc/PID/stat.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    /// A fake host: /proc with one reader (pid 42) in the fixture's cgroups, /sys with 4 CPUs.
    #[test]
    fn reader_pid_selects_the_cgroup() {
        let (fx, _) = Fixture::v1();
        let root = fx.path();
        fx.write(
            "proc/meminfo",
            "MemTotal:       16318532 kB\nMemFree:         1000 kB\n",
        );
        fx.write(
            "proc/cpuinfo",
            "processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n\n",
        );
        fx.write("sys/devices/system/cpu/online", "0-3\n");
        fx.write("proc/42/cgroup", "4:memory:/c\n3:cpuset:/c\n2:cpu:/c\n");
        fx.write("memory/c/memory.limit_in_bytes", "67108864\n");
        fx.write("memory/c/memory.usage_in_bytes", "0\n");
        fx.write("cpuset/c/cpuset.cpus", "0\n");
        fx.write("cpu/c/cpu.cfs_quota_us", "-1\n");
        fx.write("cpu/c/cpu.cfs_period_us", "100000\n");
        let mounts = ["memory", "cpuset", "cpu"]
            .iter()
            .map(|c| crate::cgroup::CgroupMount {
                controllers: vec![c.to_string()],
                unified: false,
                path: root.join(c),
                root: "/".into(),
            })
            .collect();
        let src = Sources {
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
            mounts,
        };
        let loads = LoadTracker::default();
        let mem = render(View::Meminfo, &src, &loads, 42);
        assert!(mem.starts_with("MemTotal:          65536 kB\n"), "{mem}");
        let cpu = render(View::Cpuinfo, &src, &loads, 42);
        assert_eq!(cpu.matches("processor").count(), 1, "{cpu}");
        assert_eq!(render(View::CpuOnline, &src, &loads, 42), "0\n");
        // An unknown reader sees the host.
        assert_eq!(render(View::CpuOnline, &src, &loads, 0), "0-3\n");
        assert!(render(View::Meminfo, &src, &loads, 7).contains("16318532"));
    }
}
