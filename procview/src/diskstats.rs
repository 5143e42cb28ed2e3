//! /proc/diskstats from the cgroup's block I/O: v1 blkio.throttle.io_serviced and
//! io_service_bytes, or v2 io.stat. Only devices the cgroup did I/O on are listed; time and
//! queue fields are zero (the cgroup does not account them).

use std::collections::HashMap;

use crate::cgroup::Cgroup;

/// Per-device I/O counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Io {
    /// Reads completed.
    pub rios: u64,
    /// Writes completed.
    pub wios: u64,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
}

/// "major:minor" -> the cgroup's I/O on that device.
pub fn gather(cg: &Cgroup) -> HashMap<String, Io> {
    let mut map: HashMap<String, Io> = HashMap::new();
    if cg.v1_dir("blkio").is_some() {
        for (file, bytes) in [
            ("blkio.throttle.io_serviced", false),
            ("blkio.throttle.io_service_bytes", true),
        ] {
            for line in cg.v1_read("blkio", file).unwrap_or_default().lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let [dev, op, v] = f[..] else { continue };
                let Ok(v) = v.parse::<u64>() else { continue };
                let io = map.entry(dev.to_string()).or_default();
                match (op, bytes) {
                    ("Read", false) => io.rios = v,
                    ("Write", false) => io.wios = v,
                    ("Read", true) => io.rbytes = v,
                    ("Write", true) => io.wbytes = v,
                    _ => {}
                }
            }
        }
    } else {
        for line in cg.v2_read("io.stat").unwrap_or_default().lines() {
            let mut f = line.split_whitespace();
            let Some(dev) = f.next() else { continue };
            let io = map.entry(dev.to_string()).or_default();
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rios" => io.rios = v,
                    "wios" => io.wios = v,
                    "rbytes" => io.rbytes = v,
                    "wbytes" => io.wbytes = v,
                    _ => {}
                }
            }
        }
    }
    map.retain(|_, io| *io != Io::default());
    map
}

/// The host's lines for the devices in `io`, with the cgroup's counts.
pub fn render(host: &str, io: &HashMap<String, Io>) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(major), Some(minor), Some(name)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        if let Some(d) = io.get(&format!("{major}:{minor}")) {
            out.push_str(&format!(
                "{major:>4} {minor:>7} {name} {} 0 {} 0 {} 0 {} 0 0 0 0\n",
                d.rios,
                d.rbytes / 512,
                d.wios,
                d.wbytes / 512
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    const HOST: &str =
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n   8       1 sda1 1 2 3 4 5 6 7 8 9 10 11\n";

    #[test]
    fn v1_blkio() {
        let (fx, cg) = Fixture::v1();
        fx.write(
            "blkio/blkio.throttle.io_serviced",
            "8:0 Read 3\n8:0 Write 4\nTotal 7\n",
        );
        fx.write(
            "blkio/blkio.throttle.io_service_bytes",
            "8:0 Read 1024\n8:0 Write 4096\nTotal 5120\n",
        );
        let out = render(HOST, &gather(&cg));
        assert_eq!(out, "   8       0 sda 3 0 2 0 4 0 8 0 0 0 0\n");
    }

    #[test]
    fn v2_io_stat() {
        let (fx, cg) = Fixture::v2();
        fx.write(
            "io.stat",
            "8:1 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        let out = render(HOST, &gather(&cg));
        assert_eq!(out, "   8       1 sda1 1 0 1 0 0 0 0 0 0 0 0\n");
    }
}
