//! N create/delete cycles leave the host exactly as it was: its mount table, its cgroup
//! hierarchies, its processes and the `--root` directory.
//!
//! N is 1000 (the number) unless HUSK_CYCLES says otherwise. Each cycle creates a
//! container (its init waiting on the exec FIFO) and deletes it; every tenth is started first
//! and deleted with --force, every tenth after that is started, killed and deleted when stopped.
//!
//! The comparison leaves out only what the other tests running in parallel change: mounts under
//! their `husk-*` temp dirs and `ip netns` files named husk-test-*, and cgroups named husk-*
//! other than this test's own. Every runtime invocation carries a marker in its environment, so
//! any process it leaves (even one that left the cgroup) is found.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{exec_env, procs_with_marker, WAIT};
use husk_tests::{host, require_root, temp_dir, unique, Bundle, Output, Runtime};

/// The host's mounts, minus those other tests make and remove meanwhile.
fn host_mount_set() -> BTreeSet<String> {
    let tmp = std::env::temp_dir();
    host::host_mounts()
        .into_iter()
        .filter(|m| {
            let p = Path::new(&m.mount_point);
            let other_test = p
                .strip_prefix(&tmp)
                .ok()
                .and_then(|rest| rest.components().next())
                .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("husk-"));
            let netns = p.starts_with("/run/netns")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("husk-test-"));
            !other_test && !netns
        })
        .map(|m| {
            format!(
                "{} {} {} {} {} {}",
                m.mount_point, m.root, m.fstype, m.source, m.mount_opts, m.super_opts
            )
        })
        .collect()
}

/// The cgroups husk could leave behind or remove by mistake: every top-level directory of every
/// hierarchy (where a cgroupsPath or a default `/<id>` lands) and everything below ours, minus
/// the husk-* cgroups of other tests. Deeper host cgroups (the machine's own process
/// bookkeeping, e.g. memory/process_api/<job>) come and go with unrelated work and are not
/// compared.
fn cgroup_set(ours: &str) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, ours: &str, inside_ours: bool, out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("husk-") && name != ours {
                continue;
            }
            out.insert(e.path());
            if inside_ours || name == ours {
                walk(&e.path(), ours, true, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for m in host::cgroup_mounts() {
        walk(&m, ours, false, &mut out);
    }
    out
}

fn cycles() -> usize {
    std::env::var("HUSK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn create_delete_cycles_leave_the_host_as_it_was() {
    require_root!();
    let n = cycles();
    let rt = Runtime::husk("cycles");
    let b = Bundle::with_args(&["sleep", "1000"]);
    let cg = b.cgroups_path().expect("test cgroup path");
    let cg_name = cg.trim_start_matches('/').to_string();
    let marker = unique("cycles");
    let scratch = temp_dir("cycles-out");
    let bundle = b.path().to_string_lossy().into_owned();
    let env = [("HUSK_TEST_MARKER", marker.as_str())];
    let run = |args: &[&str]| -> Output { exec_env(&rt, &env, &[], args, scratch.path()) };

    let mounts_before = host_mount_set();
    let cgroups_before = cgroup_set(&cg_name);
    let started = Instant::now();
    for i in 0..n {
        let id = format!("cycle-{i}");
        rt.track_id(&id);
        run(&["create", "--bundle", &bundle, &id]).ok();
        match i % 10 {
            3 => {
                run(&["start", &id]).ok();
                run(&["delete", "--force", &id]).ok();
            }
            7 => {
                run(&["start", &id]).ok();
                run(&["kill", &id, "KILL"]).ok();
                rt.wait_status(&id, "stopped", WAIT);
                run(&["delete", &id]).ok();
            }
            _ => {
                run(&["delete", &id]).ok();
            }
        }
        assert!(
            rt.root_entries().is_empty(),
            "cycle {i}: --root holds {:?}",
            rt.root_entries()
        );
        if i % 100 == 0 {
            assert!(
                host::cgroup_dirs(&cg).is_empty(),
                "cycle {i}: cgroup left {:?}",
                host::cgroup_dirs(&cg)
            );
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{n} create/delete cycles in {elapsed:?} ({:?} each)",
        elapsed / n.max(1) as u32
    );

    // Processes: nothing any invocation started lives on.
    let deadline = Instant::now() + WAIT;
    let mut left = procs_with_marker(&format!("HUSK_TEST_MARKER={marker}"));
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = procs_with_marker(&format!("HUSK_TEST_MARKER={marker}"));
    }
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    assert_eq!(rt.list(&["-q"]).ok().stdout, "");

    // Mounts and cgroups: exactly as before.
    let mounts_after = host_mount_set();
    let added: Vec<_> = mounts_after.difference(&mounts_before).collect();
    let removed: Vec<_> = mounts_before.difference(&mounts_after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the mount table changed:\nadded {added:#?}\nremoved {removed:#?}"
    );
    let cgroups_after = cgroup_set(&cg_name);
    let added: Vec<_> = cgroups_after.difference(&cgroups_before).collect();
    let removed: Vec<_> = cgroups_before.difference(&cgroups_after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the cgroup hierarchies changed:\nadded {added:#?}\nremoved {removed:#?}"
    );
    rt.assert_host_clean(&[&b]);
    husk_tests::remove_temp_dir(scratch);
}
