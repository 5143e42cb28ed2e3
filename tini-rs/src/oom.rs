//! Explaining a SIGKILL: was the child killed by the kernel's OOM killer, and at what limit?
//!
//! husk-init finds its memory cgroup from /proc/self/cgroup (cgroup v1 `memory` controller
//! first, else the v2 unified hierarchy) and reads the `oom_kill` counter (v1
//! `memory.oom_control`, v2 `memory.events`) before starting the child. When the child dies of
//! SIGKILL it reads the counter again: a rise means the OOM killer struck. Kernels whose v1
//! `memory.oom_control` lacks `oom_kill` (before 4.13) fall back to `memory.failcnt`.

use alloc::vec::Vec;

use crate::log;
use crate::sys::{self, CPath};

/// Which cgroup version the memory controller is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// cgroup v1 `memory` controller.
    V1,
    /// cgroup v2 unified hierarchy.
    V2,
}

/// The cgroup paths named in /proc/self/cgroup: the v1 memory one and the v2 one.
pub fn parse_proc_cgroup(content: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let mut v1 = None;
    let mut v2 = None;
    for line in content.split(|&b| b == b'\n') {
        // hierarchy-ID:controller-list:path
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(|&b| b == b',').any(|c| c == b"memory") {
            v1 = Some(path);
        }
    }
    (v1, v2)
}

/// The value of `key` in a `key value` per line file (memory.events, memory.oom_control).
pub fn parse_key(content: &[u8], key: &[u8]) -> Option<u64> {
    content.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(b" ")?;
        parse_u64(rest.trim_ascii())
    })
}

/// A memory limit from memory.max / memory.limit_in_bytes; None when unlimited.
pub fn parse_limit(content: &[u8]) -> Option<u64> {
    // v1 reports "no limit" as the largest page-aligned signed value (about 2^63).
    parse_u64(content.trim_ascii()).filter(|&v| v < 1 << 62)
}

/// Parses a plain decimal number.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// The memory cgroup husk-init (and so its child) runs in.
pub struct MemCgroup {
    dir: CPath,
    version: Version,
    /// oom_kill (or, failing that, failcnt) when the child started.
    baseline: u64,
    counts_kills: bool,
}

impl MemCgroup {
    /// Finds the memory cgroup and records the current OOM counter; None when there is none.
    pub fn locate() -> Option<MemCgroup> {
        let content = sys::read_file(c"/proc/self/cgroup").ok()?;
        let (version, root, path): (_, &[u8], _) = match parse_proc_cgroup(&content) {
            (Some(v1), _) => (Version::V1, b"/sys/fs/cgroup/memory", v1),
            (None, Some(v2)) => (Version::V2, b"/sys/fs/cgroup", v2),
            (None, None) => return None,
        };
        // The path in /proc/self/cgroup is relative to the hierarchy root; inside a container
        // without a cgroup namespace the mount shows the container's own cgroup at the mount
        // root, so try the full path first, then the root.
        for dir in [CPath::new(&[root, path]), CPath::new(&[root])] {
            let mut cg = MemCgroup {
                dir,
                version,
                baseline: 0,
                counts_kills: false,
            };
            if let Some(n) = cg.oom_count() {
                cg.baseline = n;
                log::debug()
                    .s(b"Memory cgroup: ")
                    .s(cg.dir.as_bytes())
                    .emit();
                return Some(cg);
            }
        }
        None
    }

    /// Reads one file of this cgroup.
    fn read(&self, name: &[u8]) -> Option<Vec<u8>> {
        sys::read_file(CPath::new(&[self.dir.as_bytes(), b"/", name]).as_cstr()).ok()
    }

    /// The OOM kill counter, or for old v1 kernels the limit-hit counter.
    fn oom_count(&mut self) -> Option<u64> {
        let (file, key): (&[u8], &[u8]) = match self.version {
            Version::V1 => (b"memory.oom_control", b"oom_kill"),
            Version::V2 => (b"memory.events", b"oom_kill"),
        };
        if let Some(n) = self.read(file).and_then(|c| parse_key(&c, key)) {
            self.counts_kills = true;
            return Some(n);
        }
        self.counts_kills = false;
        let failcnt = self.read(b"memory.failcnt")?;
        parse_u64(failcnt.trim_ascii())
    }

    /// The memory limit in bytes, None when unlimited or unreadable.
    fn limit(&self) -> Option<u64> {
        let file: &[u8] = match self.version {
            Version::V1 => b"memory.limit_in_bytes",
            Version::V2 => b"memory.max",
        };
        parse_limit(&self.read(file)?)
    }

    /// After the child died of SIGKILL: prints why, if the cgroup counters say it was the OOM
    /// killer. Returns whether it printed.
    pub fn explain_sigkill(&mut self, program: &[u8], pid: libc::pid_t) -> bool {
        let Some(now) = self.oom_count().filter(|&now| now > self.baseline) else {
            return false;
        };
        let mut msg = log::warn();
        msg.s(program).s(b" (pid ").n(pid as i64);
        if self.counts_kills {
            msg.s(b") was killed by the kernel OOM killer (exit 137): ");
        } else {
            msg.s(b") was killed by SIGKILL after hitting its memory limit, most likely by the OOM killer (exit 137): ");
        }
        match self.limit() {
            Some(limit) => {
                msg.s(b"memory limit ").n(limit as i64).s(b" bytes");
                if limit >= 1 << 20 {
                    msg.s(b" (").n((limit >> 20) as i64).s(b" MiB)");
                }
                msg.s(b" reached in cgroup ").s(self.dir.as_bytes());
            }
            None => {
                msg.s(b"no memory limit on cgroup ")
                    .s(self.dir.as_bytes())
                    .s(b", the host ran out of memory");
            }
        }
        msg.emit();
        self.baseline = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_hybrid_and_unified() {
        let hybrid = b"9:name=systemd:/\n4:memory:/process_api/a6db\n3:cpu,cpuacct:/x\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(hybrid),
            (Some(&b"/process_api/a6db"[..]), Some(&b"/"[..]))
        );
        assert_eq!(
            parse_proc_cgroup(b"0::/system.slice/x.scope\n"),
            (None, Some(&b"/system.slice/x.scope"[..]))
        );
        assert_eq!(
            parse_proc_cgroup(b"5:cpu,memory:/docker/abc\n"),
            (Some(&b"/docker/abc"[..]), None)
        );
        assert_eq!(parse_proc_cgroup(b""), (None, None));
    }

    #[test]
    fn counters() {
        let v1 = b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_key(v1, b"oom_kill"), Some(3));
        assert_eq!(parse_key(v1, b"under_oom"), Some(0));
        let v2 = b"low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_key(v2, b"oom_kill"), Some(1));
        assert_eq!(parse_key(v2, b"oom"), Some(2));
        assert_eq!(parse_key(b"oom_kill_disable 0\n", b"oom_kill"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(b"67108864\n"), Some(64 << 20));
        assert_eq!(parse_limit(b"max\n"), None);
        assert_eq!(parse_limit(b"9223372036854771712\n"), None);
        assert_eq!(parse_limit(b""), None);
    }
}
