//! CPU lists ("0-3,8") and which CPUs a cgroup may use: its cpuset, cut down to as many CPUs as
//! its quota allows (quota / period, rounded up, as lxcfs does with `--enable-cfs`).

use crate::cgroup::{parse_u64, Cgroup};

/// The CPU numbers of a kernel CPU list such as "0-3,8"; malformed parts are skipped.
pub fn parse_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A kernel CPU list for `cpus` (sorted, deduplicated), e.g. [0,1,2,5] -> "0-2,5".
pub fn format_list(cpus: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// What limits a cgroup's CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuLimits {
    /// The cpuset's CPUs, when the cgroup has a cpuset.
    pub cpuset: Option<Vec<u32>>,
    /// CFS quota and period in microseconds, when a quota is set.
    pub quota: Option<(u64, u64)>,
}

impl CpuLimits {
    /// Reads the limits of `cg`: v1 cpuset + cpu controllers, else the unified cgroup.
    pub fn gather(cg: &Cgroup) -> CpuLimits {
        let cpuset = cg
            .v1_read("cpuset", "cpuset.effective_cpus")
            .or_else(|| cg.v1_read("cpuset", "cpuset.cpus"))
            .or_else(|| cg.v2_read("cpuset.cpus.effective"))
            .filter(|s| !s.is_empty())
            .map(|s| parse_list(&s));
        let v1_quota = cg.v1_read("cpu", "cpu.cfs_quota_us").and_then(|q| {
            let period = parse_u64(&cg.v1_read("cpu", "cpu.cfs_period_us")?)?;
            // -1 is "no quota" and does not parse as u64.
            Some((parse_u64(&q)?, period))
        });
        let quota = if cg.v1_dir("cpu").is_some() {
            v1_quota
        } else {
            cg.v2_read("cpu.max").and_then(|s| {
                let (q, p) = s.split_once(' ')?;
                Some((parse_u64(q)?, parse_u64(p)?))
            })
        };
        CpuLimits { cpuset, quota }
    }

    /// The host CPU numbers the cgroup may use, from the host's online CPUs: the cpuset's, then
    /// only the first ceil(quota / period) of them when a quota is set. Never empty.
    pub fn visible(&self, online: &[u32]) -> Vec<u32> {
        let mut cpus: Vec<u32> = match &self.cpuset {
            Some(set) => online.iter().copied().filter(|c| set.contains(c)).collect(),
            None => online.to_vec(),
        };
        if let Some((quota, period)) = self.quota.filter(|(_, p)| *p > 0) {
            let allowed = quota.div_ceil(period).max(1);
            cpus.truncate(usize::try_from(allowed).unwrap_or(usize::MAX));
        }
        if cpus.is_empty() {
            cpus = online.iter().copied().take(1).collect();
        }
        cpus
    }
}

/// /sys/devices/system/cpu/online for a reader that sees `n` CPUs: they are renumbered from 0,
/// as /proc/cpuinfo and /proc/stat number them.
pub fn render_online(n: usize) -> String {
    match n {
        0 | 1 => "0\n".to_string(),
        n => format!("0-{}\n", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        assert_eq!(parse_list("0-2,5,7-8\n"), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(format_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(parse_list(""), Vec::<u32>::new());
        assert_eq!(format_list(&[3]), "3");
    }

    #[test]
    fn cpuset_and_quota_cut_the_online_cpus() {
        let online: Vec<u32> = (0..8).collect();
        let only0 = CpuLimits {
            cpuset: Some(vec![0]),
            quota: None,
        };
        assert_eq!(only0.visible(&online), vec![0]);
        let quota = CpuLimits {
            cpuset: Some(vec![2, 3, 4, 5]),
            quota: Some((150_000, 100_000)),
        };
        assert_eq!(quota.visible(&online), vec![2, 3]);
        assert_eq!(CpuLimits::default().visible(&online), online);
        assert_eq!(render_online(1), "0\n");
        assert_eq!(render_online(2), "0-1\n");
    }
}
