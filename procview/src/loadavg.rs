//! /proc/loadavg from the cgroup's tasks: "R/T" are its runnable and total tasks, and the three
//! averages start at 0 (as a booting kernel's do) and move towards the runnable count with the
//! kernel's 1, 5 and 15 minute constants, updated whenever someone reads (no sampling thread, so
//! a cgroup nobody reads costs nothing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::cgroup::Cgroup;

/// Task counts of one cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tasks {
    /// In state R.
    pub running: u64,
    /// In state D (uninterruptible).
    pub blocked: u64,
    /// All threads.
    pub total: u64,
}

impl Tasks {
    /// Counts the threads of `cg` (v1 `tasks` of cpu/pids/memory/cpuset, else v2
    /// `cgroup.threads`) by their state in /proc.
    pub fn gather(cg: &Cgroup, proc_root: &Path) -> Tasks {
        let list = ["cpu", "pids", "memory", "cpuset"]
            .iter()
            .find_map(|c| cg.v1_read(c, "tasks"))
            .or_else(|| cg.v2_read("cgroup.threads"))
            .unwrap_or_default();
        let mut t = Tasks::default();
        for tid in list.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            t.total += 1;
            match task_state(proc_root, tid) {
                Some('R') => t.running += 1,
                Some('D') => t.blocked += 1,
                _ => {}
            }
        }
        t
    }
}

fn task_state(proc_root: &Path, tid: u32) -> Option<char> {
    // The state is field 3: the first after the command name's closing ')'.
    let text = std::fs::read_to_string(proc_root.join(format!("{tid}/stat"))).ok()?;
    text[text.rfind(')')? + 1..].trim_start().chars().next()
}

/// Per-cgroup load averages, kept between reads.
#[derive(Debug, Default)]
pub struct LoadTracker {
    state: Mutex<HashMap<PathBuf, ([f64; 3], Instant)>>,
}

const PERIODS: [f64; 3] = [60.0, 300.0, 900.0];

impl LoadTracker {
    /// Folds the current runnable count of cgroup `key` into its averages and returns them.
    /// The first reading of a cgroup starts its averages at 0.
    pub fn update(&self, key: &Path, running: u64, now: Instant) -> [f64; 3] {
        let Ok(mut map) = self.state.lock() else {
            return [0.0; 3];
        };
        let n = running as f64;
        let entry = map.entry(key.to_path_buf()).or_insert(([0.0; 3], now));
        let dt = now.saturating_duration_since(entry.1).as_secs_f64();
        for (avg, period) in entry.0.iter_mut().zip(PERIODS) {
            let e = (-dt / period).exp();
            *avg = *avg * e + n * (1.0 - e);
        }
        entry.1 = now;
        entry.0
    }
}

/// "L1 L5 L15 R/T LASTPID\n"; LASTPID is the host's (it is a host-wide counter).
pub fn render(avgs: [f64; 3], tasks: Tasks, host_loadavg: &str) -> String {
    let last_pid = host_loadavg.split_whitespace().nth(4).unwrap_or("0");
    format!(
        "{:.2} {:.2} {:.2} {}/{} {last_pid}\n",
        avgs[0], avgs[1], avgs[2], tasks.running, tasks.total
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn averages_decay_towards_the_running_count() {
        let t = LoadTracker::default();
        let start = Instant::now();
        assert_eq!(t.update(Path::new("/a"), 2, start), [0.0; 3]);
        let later = t.update(Path::new("/a"), 2, start + Duration::from_secs(60));
        assert!(
            later[0] > later[1] && later[1] > later[2] && later[2] > 0.0 && later[0] < 2.0,
            "{later:?}"
        );
        let tasks = Tasks {
            running: 1,
            blocked: 0,
            total: 3,
        };
        assert_eq!(
            render([1.0, 0.5, 0.25], tasks, "0.1 0.2 0.3 4/500 12345\n"),
            "1.00 0.50 0.25 1/3 12345\n"
        );
    }

    #[test]
    fn counts_tasks_by_state() {
        let (fx, cg) = crate::fixture::Fixture::v1();
        fx.write("pids/tasks", "10\n11\n12\n");
        fx.write("proc/10/stat", "10 (sh) R 1");
        fx.write("proc/11/stat", "11 (sleep) S 10");
        fx.write("proc/12/stat", "12 (dd) D 10");
        let t = Tasks::gather(&cg, &fx.path().join("proc"));
        assert_eq!(
            t,
            Tasks {
                running: 1,
                blocked: 1,
                total: 3
            }
        );
    }
}
