//! /proc/stat: per-CPU lines for the visible CPUs from the cgroup's CPU usage, the aggregate
//! `cpu` line as their sum, procs_running/procs_blocked from the cgroup's tasks; the rest
//! (intr, ctxt, btime, processes, softirq) is the host's.

use crate::cgroup::{parse_kv, Cgroup};

/// The cgroup's CPU time in nanoseconds: per host CPU when the kernel says (v1 cpuacct), else
/// only in total (v2), which is then spread evenly over the visible CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// (user, system) per host CPU number.
    pub per_cpu: Option<Vec<(u64, u64)>>,
    /// (user, system) in total.
    pub total: (u64, u64),
}

impl CpuUsage {
    /// Reads cpuacct.usage_percpu_{user,sys} (v1) or cpu.stat (v2).
    pub fn gather(cg: &Cgroup) -> CpuUsage {
        let percpu = |f: &str| -> Option<Vec<u64>> {
            let s = cg.v1_read("cpuacct", f)?;
            Some(
                s.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect(),
            )
        };
        if let (Some(user), Some(sys)) = (
            percpu("cpuacct.usage_percpu_user"),
            percpu("cpuacct.usage_percpu_sys"),
        ) {
            let per: Vec<(u64, u64)> = user.into_iter().zip(sys).collect();
            let total = per.iter().fold((0, 0), |(u, s), (pu, ps)| (u + pu, s + ps));
            return CpuUsage {
                per_cpu: Some(per),
                total,
            };
        }
        let stat = parse_kv(&cg.v2_read("cpu.stat").unwrap_or_default());
        let usec = |k: &str| stat.get(k).copied().unwrap_or(0) * 1000;
        CpuUsage {
            per_cpu: None,
            total: (usec("user_usec"), usec("system_usec")),
        }
    }

    /// (user, system) nanoseconds of host CPU `cpu`, given `n` visible CPUs.
    fn of(&self, cpu: u32, n: u64) -> (u64, u64) {
        match &self.per_cpu {
            Some(per) => per.get(cpu as usize).copied().unwrap_or((0, 0)),
            None => (self.total.0 / n.max(1), self.total.1 / n.max(1)),
        }
    }
}

/// Renders /proc/stat. `hz` is USER_HZ; `running` and `blocked` are the cgroup's R and D tasks.
pub fn render(
    host: &str,
    visible: &[u32],
    usage: &CpuUsage,
    hz: u64,
    running: u64,
    blocked: u64,
) -> String {
    let ticks = |ns: u64| ns.saturating_mul(hz) / 1_000_000_000;
    let mut lines = Vec::new();
    let mut sum = [0u64; 10];
    for (i, cpu) in visible.iter().enumerate() {
        let host_fields = host_cpu_fields(host, *cpu);
        let host_total: u64 = host_fields.iter().sum();
        let (user_ns, sys_ns) = usage.of(*cpu, visible.len() as u64);
        let (user, system) = (ticks(user_ns), ticks(sys_ns));
        let mut f = [0u64; 10];
        f[0] = user;
        f[2] = system;
        // What the container did not use of that CPU's time is idle from its point of view.
        f[3] = host_total.saturating_sub(user + system);
        for (s, v) in sum.iter_mut().zip(f) {
            *s += v;
        }
        lines.push(format!("cpu{i} {}", join(&f)));
    }
    let mut out = format!("cpu  {}\n", join(&sum));
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    for line in host.lines().filter(|l| !l.starts_with("cpu")) {
        if line.starts_with("procs_running ") {
            out.push_str(&format!("procs_running {running}\n"));
        } else if line.starts_with("procs_blocked ") {
            out.push_str(&format!("procs_blocked {blocked}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn host_cpu_fields(host: &str, cpu: u32) -> Vec<u64> {
    let prefix = format!("cpu{cpu} ");
    host.lines()
        .find(|l| l.starts_with(&prefix))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn join(f: &[u64]) -> String {
    f.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    const HOST: &str = "cpu  300 0 300 3000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0 0 0\n\
cpu1 100 0 100 1000 0 0 0 0 0 0\ncpu2 100 0 100 1000 0 0 0 0 0 0\nintr 5\nctxt 9\n\
procs_running 7\nprocs_blocked 1\n";

    #[test]
    fn v1_per_cpu_usage_on_visible_cpus() {
        let (fx, cg) = Fixture::v1();
        fx.write("cpuacct/cpuacct.usage_percpu_user", "0 500000000 0\n");
        fx.write("cpuacct/cpuacct.usage_percpu_sys", "0 100000000 0\n");
        let usage = CpuUsage::gather(&cg);
        let out = render(HOST, &[1], &usage, 100, 1, 0);
        assert!(
            out.starts_with("cpu  50 0 10 1140 0 0 0 0 0 0\ncpu0 50 0 10 1140"),
            "{out}"
        );
        assert!(!out.contains("cpu1"), "{out}");
        assert!(out.contains("procs_running 1\nprocs_blocked 0\n"), "{out}");
        assert!(out.contains("ctxt 9\n"), "{out}");
    }

    #[test]
    fn v2_total_is_spread() {
        let (fx, cg) = Fixture::v2();
        fx.write(
            "cpu.stat",
            "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n",
        );
        let out = render(HOST, &[0, 1], &CpuUsage::gather(&cg), 100, 0, 0);
        assert!(out.contains("cpu0 100 0 50 1050"), "{out}");
        assert!(out.contains("cpu1 100 0 50 1050"), "{out}");
    }
}
