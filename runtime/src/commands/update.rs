//! `husk update ID`: changes a running container's cgroup limits in place.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use super::Global;
use crate::cgroups::ContainerCgroup;
use crate::container::Status;

/// The flags of `update`, in runc's spelling (strings keep runc's unit suffixes).
#[derive(Debug, Clone, Default)]
pub struct UpdateOpts {
    /// --resources FILE, or `-` for stdin: a linux.resources JSON document.
    pub resources: Option<PathBuf>,
    /// --memory.
    pub memory: Option<String>,
    /// --memory-swap.
    pub memory_swap: Option<String>,
    /// --memory-reservation.
    pub memory_reservation: Option<String>,
    /// --cpu-shares.
    pub cpu_shares: Option<u64>,
    /// --cpu-quota.
    pub cpu_quota: Option<i64>,
    /// --cpu-period.
    pub cpu_period: Option<u64>,
    /// --cpu-rt-runtime.
    pub cpu_rt_runtime: Option<i64>,
    /// --cpu-rt-period.
    pub cpu_rt_period: Option<u64>,
    /// --cpuset-cpus.
    pub cpuset_cpus: Option<String>,
    /// --cpuset-mems.
    pub cpuset_mems: Option<String>,
    /// --pids-limit.
    pub pids_limit: Option<i64>,
    /// --blkio-weight.
    pub blkio_weight: Option<u16>,
}

/// Parses a size like Docker's RAMInBytes: digits with an optional b/k/m/g/t suffix (1024-based);
/// `-1` means unlimited.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&t);
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => bail!("invalid size {s:?}"),
    };
    Ok((n * mult) as i64)
}

/// Applies the new limits to `id` and records them in its saved config.
pub fn update(g: &Global, id: &str, opts: &UpdateOpts) -> Result<()> {
    let dir = g.store().open(id)?;
    let state = dir.load()?;
    if dir.status(&state) == Status::Stopped {
        bail!("container not running");
    }
    let config_path = dir.config_path();
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(&config_path).with_context(|| format!("read {}", config_path.display()))?,
    )
    .with_context(|| format!("parse {}", config_path.display()))?;
    let mut resources = config["linux"]["resources"].take();
    if !resources.is_object() {
        resources = json!({});
    }
    merge(&mut resources, changes(opts)?);

    // Device rules are not changed by update (runc skips them): rewriting them on a live
    // v1 cgroup would briefly deny devices the container is using.
    let mut live = resources.clone();
    if let Some(obj) = live.as_object_mut() {
        obj.remove("devices");
    }
    let live: LinuxResources =
        serde_json::from_value(live).context("the updated resources are not valid")?;
    let cg = ContainerCgroup::new(Some(&state.cgroup_path), id, state.systemd_cgroup)?;
    cg.apply(&live)?;

    config["linux"]["resources"] = resources;
    std::fs::write(&config_path, serde_json::to_vec(&config)?)
        .with_context(|| format!("write {}", config_path.display()))?;
    Ok(())
}

/// The requested changes as a linux.resources JSON fragment.
fn changes(opts: &UpdateOpts) -> Result<Value> {
    if let Some(path) = &opts.resources {
        let mut data = Vec::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_end(&mut data)
                .context("read resources from stdin")?;
        } else {
            data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        }
        let v: Value = serde_json::from_slice(&data).context("parse resources JSON")?;
        if !v.is_object() {
            bail!("resources JSON must be an object (a linux.resources document)");
        }
        // Validate the shape now, so a typo is an error rather than a silent no-op.
        serde_json::from_value::<LinuxResources>(v.clone())
            .context("resources JSON is not a linux.resources document")?;
        return Ok(v);
    }
    let mut v = json!({});
    let mut set = |path: &[&str], value: Value| {
        let mut cur = &mut v;
        for key in &path[..path.len() - 1] {
            cur = &mut cur[*key];
            if !cur.is_object() {
                *cur = json!({});
            }
        }
        cur[path[path.len() - 1]] = value;
    };
    if let Some(m) = &opts.memory {
        set(&["memory", "limit"], parse_bytes(m)?.into());
    }
    if let Some(m) = &opts.memory_swap {
        set(&["memory", "swap"], parse_bytes(m)?.into());
    }
    if let Some(m) = &opts.memory_reservation {
        set(&["memory", "reservation"], parse_bytes(m)?.into());
    }
    if let Some(x) = opts.cpu_shares {
        set(&["cpu", "shares"], x.into());
    }
    if let Some(x) = opts.cpu_quota {
        set(&["cpu", "quota"], x.into());
    }
    if let Some(x) = opts.cpu_period {
        set(&["cpu", "period"], x.into());
    }
    if let Some(x) = opts.cpu_rt_runtime {
        set(&["cpu", "realtimeRuntime"], x.into());
    }
    if let Some(x) = opts.cpu_rt_period {
        set(&["cpu", "realtimePeriod"], x.into());
    }
    if let Some(x) = &opts.cpuset_cpus {
        set(&["cpu", "cpus"], x.clone().into());
    }
    if let Some(x) = &opts.cpuset_mems {
        set(&["cpu", "mems"], x.clone().into());
    }
    if let Some(x) = opts.pids_limit {
        set(&["pids", "limit"], x.into());
    }
    if let Some(x) = opts.blkio_weight {
        set(&["blockIO", "weight"], x.into());
    }
    Ok(v)
}

/// Deep-merges `patch` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("64m").expect("m"), 64 << 20);
        assert_eq!(parse_bytes("1G").expect("g"), 1 << 30);
        assert_eq!(parse_bytes("512").expect("plain"), 512);
        assert_eq!(parse_bytes("10kb").expect("kb"), 10 << 10);
        assert_eq!(parse_bytes("-1").expect("unlimited"), -1);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn flags_merge_into_existing_resources() {
        let mut base = json!({"memory": {"limit": 1, "swap": 2}, "devices": [{"allow": false}]});
        let opts = UpdateOpts {
            memory: Some("64m".into()),
            pids_limit: Some(10),
            ..Default::default()
        };
        merge(&mut base, changes(&opts).expect("changes"));
        assert_eq!(base["memory"]["limit"], 64 << 20);
        assert_eq!(base["memory"]["swap"], 2);
        assert_eq!(base["pids"]["limit"], 10);
        assert_eq!(base["devices"][0]["allow"], false);
    }
}
