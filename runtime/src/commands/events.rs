//! `husk events ID`: container statistics and OOM notifications as runc's JSON events.
//!
//! `--stats` prints one `{"type":"stats","id":...,"data":{...}}` line; without it husk prints
//! one stats event every `--interval` plus `{"type":"oom","id":...}` whenever the container's
//! memory limit made the kernel's OOM killer act. `data` has runc's shape field for field
//! (runc's `types.Stats`, with Go's omitempty rules), because tools decode it with runc's types.
//!
//! The stream is one poll(2) loop, no threads: on cgroup v1 an eventfd registered on
//! `memory.oom_control` through `cgroup.event_control` (what runc does), on v2 the `oom_kill`
//! counter of `memory.events`. Unlike runc, which loops forever, the stream ends (exit 0) once
//! the container has stopped, after reporting any OOM that stopped it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;

use super::Global;
use crate::cgroups::{ContainerCgroup, Stats};
use crate::container::Status;

/// The flags of `events`.
#[derive(Debug, Clone)]
pub struct EventsOpts {
    /// --stats: print one stats event and exit.
    pub stats: bool,
    /// --interval: time between stats events in the stream.
    pub interval: Duration,
}

/// One event line, as runc's `types.Event`.
#[derive(Debug, Serialize)]
pub struct Event<T: Serialize> {
    /// "stats" or "oom".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The container id.
    pub id: String,
    /// The statistics (absent for oom).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// Prints the events of `id`.
pub fn events(g: &Global, id: &str, opts: &EventsOpts) -> Result<()> {
    if opts.interval.is_zero() {
        bail!("duration interval must be greater than 0");
    }
    let (cgroup, _) = open_running(g, id)?;
    if opts.stats {
        let data = runc_stats(&cgroup)?;
        return emit(&Event {
            kind: "stats",
            id: id.to_string(),
            data: Some(data),
        });
    }
    let mut oom = OomWatch::new(&cgroup)?;
    let mut next_tick = Instant::now() + opts.interval;
    loop {
        let now = Instant::now();
        if now >= next_tick {
            match runc_stats(&cgroup) {
                Ok(data) => emit(&Event {
                    kind: "stats",
                    id: id.to_string(),
                    data: Some(data),
                })?,
                // runc logs a failed read and goes on with the next tick.
                Err(e) => crate::logging::warn(&format!("events: {e:#}")),
            }
            next_tick = now + opts.interval;
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        if oom.wait(wait.min(Duration::from_millis(250)))? {
            emit_oom(id)?;
        }
        if !still_running(g, id) {
            // An OOM kill that stopped the container is reported before the stream ends.
            if oom.wait(Duration::ZERO)? {
                emit_oom(id)?;
            }
            return Ok(());
        }
    }
}

fn emit_oom(id: &str) -> Result<()> {
    emit(&Event::<()> {
        kind: "oom",
        id: id.to_string(),
        data: None,
    })
}

/// The container's cgroup, refusing a stopped container as runc does.
fn open_running(g: &Global, id: &str) -> Result<(ContainerCgroup, Status)> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    let status = dir.status(&state);
    if status == Status::Stopped {
        bail!("container with id {id} is not running");
    }
    let cg = ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?;
    Ok((cg, status))
}

fn still_running(g: &Global, id: &str) -> bool {
    let Ok(dir) = g.store().open(id) else {
        return false;
    };
    let Ok(state) = dir.load() else {
        return false;
    };
    dir.status(&state) != Status::Stopped
}

fn emit<T: Serialize>(event: &T) -> Result<()> {
    let line = serde_json::to_string(event)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("write event")?;
    out.flush().context("write event")
}

/// Watches for OOM kills in the container's memory cgroup.
enum OomWatch {
    /// v1: an eventfd the kernel signals on every OOM in the cgroup.
    EventFd(OwnedFd, PathBuf),
    /// v2: the last seen `oom_kill` count of memory.events.
    Counter(PathBuf, u64),
    /// No memory controller: nothing to watch.
    None,
}

impl OomWatch {
    fn new(cg: &ContainerCgroup) -> Result<OomWatch> {
        let Some(dir) = cg.controller_dir("memory")? else {
            return Ok(OomWatch::None);
        };
        if ContainerCgroup::is_v2() {
            let file = dir.join("memory.events");
            let count = oom_kill_count(&file).unwrap_or(0);
            return Ok(OomWatch::Counter(file, count));
        }
        let control = dir.join("memory.oom_control");
        if !control.exists() {
            return Ok(OomWatch::None);
        }
        let efd = register_oom_eventfd(&dir)
            .with_context(|| format!("register for OOM events on {}", control.display()))?;
        Ok(OomWatch::EventFd(efd, control))
    }

    /// Waits up to `timeout` for an OOM; true if one (or more) happened.
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match self {
            OomWatch::EventFd(efd, control) => {
                let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(0) | Err(nix::Error::EINTR) => return Ok(false),
                    Ok(_) => {}
                    Err(e) => return Err(e).context("poll the OOM eventfd"),
                }
                let mut buf = [0u8; 8];
                let _ = nix::unistd::read(&*efd, &mut buf);
                // The kernel also signals the eventfd when the cgroup is removed: that is
                // no OOM, and nothing more will come.
                if !control.exists() {
                    *self = OomWatch::None;
                    return Ok(false);
                }
                Ok(true)
            }
            OomWatch::Counter(file, last) => {
                std::thread::sleep(timeout);
                let Some(now) = oom_kill_count(file) else {
                    return Ok(false);
                };
                let fired = now > *last;
                *last = now;
                Ok(fired)
            }
            OomWatch::None => {
                std::thread::sleep(timeout);
                Ok(false)
            }
        }
    }
}

/// `oom_kill N` from a v2 memory.events file.
fn oom_kill_count(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// Registers an eventfd for OOM notifications of a v1 memory cgroup (cgroup.event_control).
fn register_oom_eventfd(dir: &Path) -> Result<OwnedFd> {
    // SAFETY: eventfd takes an initial value and flags and returns a new descriptor.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("eventfd");
    }
    // SAFETY: raw is a fresh descriptor returned by the kernel; we own it.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let control = std::fs::File::open(dir.join("memory.oom_control"))?;
    let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    std::fs::write(dir.join("cgroup.event_control"), line)?;
    // The registration holds its own reference to memory.oom_control.
    drop(control);
    Ok(efd)
}

// ---- runc's types.Stats, with Go's omitempty rules ----

fn zero(v: &u64) -> bool {
    *v == 0
}

/// runc `types.Stats`.
#[derive(Debug, Default, Serialize)]
pub struct RuncStats {
    cpu: Cpu,
    cpuset: CpuSet,
    memory: Memory,
    pids: Pids,
    blkio: Blkio,
    hugetlb: BTreeMap<String, Hugetlb>,
    intel_rdt: IntelRdt,
    network_interfaces: Option<Vec<()>>,
}

#[derive(Debug, Default, Serialize)]
struct Cpu {
    usage: CpuUsage,
    throttling: Throttling,
}

#[derive(Debug, Default, Serialize)]
struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu_user: Vec<u64>,
    kernel: u64,
    user: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cpus: Vec<u16>,
    cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mems: Vec<u16>,
    mem_hardwall: u64,
    mem_exclusive: u64,
    memory_migrate: u64,
    memory_spread_page: u64,
    memory_spread_slab: u64,
    memory_pressure: u64,
    sched_load_balance: u64,
    sched_relax_domain_level: i64,
}

#[derive(Debug, Default, Serialize)]
struct MemoryEntry {
    limit: u64,
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
struct Memory {
    #[serde(skip_serializing_if = "zero")]
    cache: u64,
    usage: MemoryEntry,
    swap: MemoryEntry,
    kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
struct Pids {
    #[serde(skip_serializing_if = "zero")]
    current: u64,
    #[serde(skip_serializing_if = "zero")]
    limit: u64,
}

#[derive(Debug, Default, Serialize)]
struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    major: u64,
    #[serde(skip_serializing_if = "zero")]
    minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    op: String,
    #[serde(skip_serializing_if = "zero")]
    value: u64,
}

#[derive(Debug, Default, Serialize)]
struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    service_bytes: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    serviced: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    queued: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    service_time: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    wait_time: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    merged: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    time: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    sectors: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize)]
struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

/// husk reads no Intel RDT statistics; runc prints `{}` when there are none.
#[derive(Debug, Default, Serialize)]
struct IntelRdt {}

/// The container's statistics in runc's shape.
pub fn runc_stats(cg: &ContainerCgroup) -> Result<RuncStats> {
    let s = cg
        .stats()
        .map_err(|e| anyhow!(e))
        .context("read cgroup statistics")?;
    let v2 = ContainerCgroup::is_v2();
    let mut out = convert(&s, v2, clock_ticks());
    if !v2 {
        if let Some(dir) = cg.controller_dir("cpuset")? {
            out.cpuset = cpuset_v1(&dir);
        }
    }
    Ok(out)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// libcgroups' statistics in runc's shape. v1 reports user/kernel CPU time in clock ticks
/// and v2 in microseconds; runc reports nanoseconds for both.
fn convert(s: &Stats, v2: bool, ticks: u64) -> RuncStats {
    let to_ns = |v: u64| {
        if v2 {
            v.saturating_mul(1000)
        } else {
            v.saturating_mul(1_000_000_000) / ticks.max(1)
        }
    };
    // v2's cpu.stat counts usage and throttling in microseconds, runc reports nanoseconds;
    // v1's cpuacct.usage and throttled_time already are nanoseconds.
    let usec_to_ns = |v: u64| if v2 { v.saturating_mul(1000) } else { v };
    let u = &s.cpu.usage;
    let t = &s.cpu.throttling;
    let entry = |d: &libcgroups::stats::MemoryData| MemoryEntry {
        limit: d.limit,
        usage: d.usage,
        max: d.max_usage,
        failcnt: d.fail_count,
    };
    let blk = |v: &[libcgroups::stats::BlkioDeviceStat]| -> Vec<BlkioEntry> {
        v.iter()
            .map(|e| BlkioEntry {
                major: e.major,
                minor: e.minor,
                op: e.op_type.clone().unwrap_or_default(),
                value: e.value,
            })
            .collect()
    };
    let b = &s.blkio;
    RuncStats {
        cpu: Cpu {
            usage: CpuUsage {
                total: usec_to_ns(u.usage_total),
                percpu: u.per_core_usage_total.clone(),
                percpu_kernel: u.per_core_usage_kernel.clone(),
                percpu_user: u.per_core_usage_user.clone(),
                kernel: to_ns(u.usage_kernel),
                user: to_ns(u.usage_user),
            },
            throttling: Throttling {
                periods: t.periods,
                throttled_periods: t.throttled_periods,
                throttled_time: usec_to_ns(t.throttled_time),
            },
        },
        cpuset: CpuSet::default(),
        memory: Memory {
            cache: s.memory.cache,
            usage: entry(&s.memory.memory),
            swap: entry(&s.memory.memswap),
            kernel: entry(&s.memory.kernel),
            kernel_tcp: entry(&s.memory.kernel_tcp),
            raw: s
                .memory
                .stats
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        },
        pids: Pids {
            current: s.pids.current,
            limit: s.pids.limit,
        },
        blkio: Blkio {
            service_bytes: blk(&b.service_bytes),
            serviced: blk(&b.serviced),
            queued: blk(&b.queued),
            service_time: blk(&b.service_time),
            wait_time: blk(&b.wait_time),
            merged: blk(&b.merged),
            time: blk(&b.time),
            sectors: blk(&b.sectors),
        },
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(k, h)| {
                (
                    k.clone(),
                    Hugetlb {
                        usage: h.usage,
                        max: h.max_usage,
                        failcnt: h.fail_count,
                    },
                )
            })
            .collect(),
        intel_rdt: IntelRdt {},
        network_interfaces: None,
    }
}

/// runc's v1 cpuset statistics, read from the container's cpuset cgroup.
fn cpuset_v1(dir: &Path) -> CpuSet {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let num = |name: &str| read(name).trim().parse::<u64>().unwrap_or(0);
    CpuSet {
        cpus: parse_list(&read("cpuset.cpus")),
        cpu_exclusive: num("cpuset.cpu_exclusive"),
        mems: parse_list(&read("cpuset.mems")),
        mem_hardwall: num("cpuset.mem_hardwall"),
        mem_exclusive: num("cpuset.mem_exclusive"),
        memory_migrate: num("cpuset.memory_migrate"),
        memory_spread_page: num("cpuset.memory_spread_page"),
        memory_spread_slab: num("cpuset.memory_spread_slab"),
        memory_pressure: num("cpuset.memory_pressure"),
        sched_load_balance: num("cpuset.sched_load_balance"),
        sched_relax_domain_level: read("cpuset.sched_relax_domain_level")
            .trim()
            .parse()
            .unwrap_or(0),
    }
}

/// A kernel cpu/node list ("0-3,8") as numbers; malformed parts are skipped.
fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(n) = part.parse() {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Parses a Go duration ("5s", "1m30s", "250ms", "1h"), as runc's --interval takes.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = t;
    if rest.is_empty() {
        bail!("invalid duration {s:?}");
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| anyhow!("invalid duration {s:?}: missing unit"))?;
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| anyhow!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
        total += n * secs;
        rest = next;
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s").expect("5s"), Duration::from_secs(5));
        assert_eq!(
            parse_duration("1m30s").expect("1m30s"),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("0").expect("0"), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn lists_parse() {
        assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(parse_list(""), Vec::<u16>::new());
    }

    #[test]
    fn empty_stats_have_runc_keys() {
        let v = serde_json::to_value(convert(&Stats::default(), false, 100)).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "blkio",
                "cpu",
                "cpuset",
                "hugetlb",
                "intel_rdt",
                "memory",
                "network_interfaces",
                "pids"
            ]
        );
        assert_eq!(v["memory"]["kernelTCP"]["limit"], 0);
        assert_eq!(v["cpu"]["throttling"], serde_json::json!({}));
        assert_eq!(v["network_interfaces"], serde_json::Value::Null);
        assert_eq!(v["cpuset"]["sched_relax_domain_level"], 0);
    }

    #[test]
    fn cpu_times_become_nanoseconds() {
        let mut s = Stats::default();
        s.cpu.usage.usage_user = 3;
        s.cpu.usage.usage_kernel = 2;
        let v1 = convert(&s, false, 100);
        assert_eq!(
            (v1.cpu.usage.user, v1.cpu.usage.kernel),
            (30_000_000, 20_000_000)
        );
        let v2 = convert(&s, true, 100);
        assert_eq!((v2.cpu.usage.user, v2.cpu.usage.kernel), (3000, 2000));
    }
}
