//! husk-procview: lxcfs-like per-container views of /proc files, served over FUSE.
//!
//! Every read is answered for the process that reads: its cgroup (v1 or v2) is looked up from
//! its pid and the file is rendered from that cgroup's limits and statistics, so `free`, `nproc`,
//! `top` and language runtimes inside a container see the container, not the host. husk
//! bind-mounts the files over the container's /proc and /sys paths (docs/procview.md).
//!
//! | job                                   | module        |
//! |---------------------------------------|---------------|
//! | host files, cgroup mounts, reader's cgroup | `cgroup`  |
//! | CPU lists, the visible CPUs           | `cpus`        |
//! | /proc/meminfo                         | `meminfo`     |
//! | /proc/cpuinfo                         | `cpuinfo`     |
//! | /proc/stat                            | `stat`        |
//! | /proc/uptime                          | `uptime`      |
//! | /proc/loadavg                         | `loadavg`     |
//! | /proc/swaps                           | `swaps`       |
//! | /proc/diskstats                       | `diskstats`   |
//! | which file renders how                | `render`      |
//! | the tree of served files              | `files`       |
//! | per-container copies of the tree      | `inodes`      |
//! | the FUSE filesystem                   | `fs`          |
//! | re-binding after a server restart     | `repair`      |

pub mod cgroup;
pub mod cpuinfo;
pub mod cpus;
pub mod diskstats;
pub mod files;
pub mod fs;
pub mod inodes;
pub mod loadavg;
pub mod meminfo;
pub mod render;
pub mod repair;
pub mod stat;
pub mod swaps;
pub mod uptime;

#[cfg(test)]
mod fixture;
