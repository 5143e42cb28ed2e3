//! Security regression tests, each written as the attack it stops (runc's published CVE
//! classes), run against husk and, where it tells something, against runc as the oracle:
//!
//! - CVE-2019-5736: overwriting the runtime binary through /proc/PID/exe from inside;
//! - CVE-2024-21626: a host descriptor (or a cwd) leaking into the container;
//! - CVE-2021-30465: a mount destination that is, or races to become, a symlink out of the
//!   rootfs;
//! - masked and read-only paths being unmasked or remounted without CAP_SYS_ADMIN;
//! - the init being inspectable (/proc/1/exe, environ, mem) before it execs;
//! - malformed config.json through the CLI: a message, a non-zero exit, nothing left behind.
//!
//! The CVE-2019-5736 test attacks a copy of the runtime binary in a temp dir, never the binary
//! under test or /usr/sbin/runc.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{assert_same, install_probe, leftovers_after_failure, pair};
use husk_tests::{host, husk_bin, oracle_bin, require_root, temp_dir, Bundle, Runtime};
use serde_json::{json, Value};

const ATTACK: &str = include_str!("../fixtures/attack-probe.c");

/// Copies every shared library `bin` needs (per ldd) into the rootfs at the same paths, so the
/// runtime binary can run inside the container as it would in any glibc-based image.
fn copy_libraries(bin: &Path, rootfs: &Path) {
    let out = Command::new("ldd").arg(bin).output().expect("running ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        let Some(path) = path else { continue };
        let dest = rootfs.join(path.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(dest.parent().expect("parent")).expect("library dir");
        fs::copy(&path, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
    }
}

/// What the CVE-2019-5736 attack achieved against one runtime.
struct ExeAttack {
    /// The attacker's log (rootfs/attack.log).
    log: String,
    /// The runtime binary's bytes are unchanged.
    unchanged: bool,
}

/// The CVE-2019-5736 attack: the container's main process watches /proc for the runtime
/// binary; the "administrator" runs `exec` on a path that is a symlink to /proc/self/exe and
/// on a `#!/proc/self/exe` script, which makes the kernel run the runtime binary itself inside
/// the container; the attacker grabs /proc/PID/exe and writes through it once it is free.
fn exe_overwrite_attack(original: PathBuf, name: &str, test: &str) -> ExeAttack {
    let dir = temp_dir("cve-2019-5736");
    let bin = dir.path().join(name);
    fs::copy(&original, &bin).expect("copying the runtime binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = fs::read(&bin).expect("reading the copy");
    let meta = fs::metadata(&bin).expect("stat the copy");
    let rt = Runtime::with_bin(bin.clone(), test);

    let b = Bundle::new(|c| c["root"]["readonly"] = json!(false));
    let probe = install_probe(&b, "attack-probe", ATTACK);
    copy_libraries(&bin, &b.rootfs());
    symlink("/proc/self/exe", b.rootfs().join("entry")).expect("symlink");
    fs::write(b.rootfs().join("evil"), "#!/proc/self/exe\n").expect("script");
    fs::set_permissions(b.rootfs().join("evil"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let (dev, ino) = (meta.dev().to_string(), meta.ino().to_string());
    b.edit(|c| {
        c["process"]["args"] = json!([probe, "exe-overwrite", dev, ino, "12", "/attack.log"])
    });
    let log_path = b.rootfs().join("attack.log");
    let id = rt.new_id();
    rt.run_detached(&b, &id).ok();
    let changed = || fs::read(&bin).map(|now| now != before).unwrap_or(true);
    let deadline = Instant::now() + Duration::from_secs(8);
    'attempts: while Instant::now() < deadline {
        for target in ["/entry", "/evil"] {
            // Not through the harness: once the attack succeeds the binary no longer runs.
            if changed() {
                break 'attempts;
            }
            // Each run of the runtime binary inside lasts only until it rejects its arguments:
            // the attacker races for it, so try a few times.
            let mut cmd = rt.command();
            cmd.args(["exec", &id, target, "--version"]);
            run_briefly(cmd);
        }
        if fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("caught")
        {
            break;
        }
    }
    // Let the attacker finish: it writes as soon as no process runs the binary any more.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("overwrite") || log.contains("not caught") {
            break;
        }
        sleep(Duration::from_millis(50));
    }
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    let unchanged = !changed();
    if !unchanged {
        // Put the binary back so the harness can delete the container.
        fs::write(&bin, &before).expect("restoring the attacked copy");
    }
    rt.delete_force(&id);
    drop(rt);
    husk_tests::remove_temp_dir(dir);
    ExeAttack { log, unchanged }
}

/// Runs `cmd` with no stdio for at most 10 seconds; a spawn failure is ignored (the binary
/// may have just been overwritten).
fn run_briefly(mut cmd: Command) {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else { return };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn cve_2019_5736_runc_binary_stays_intact() {
    require_root!();
    // The oracle: runc re-executes itself from a sealed memfd, so the attacker never finds
    // the host binary.
    let r = exe_overwrite_attack(oracle_bin(), "runc", "cve-2019-5736-runc");
    assert!(r.unchanged, "runc's binary was overwritten:\n{}", r.log);
}

#[test]
fn cve_2019_5736_husk_binary_stays_intact() {
    require_root!();
    let r = exe_overwrite_attack(husk_bin(), "husk", "cve-2019-5736-husk");
    assert!(
        r.unchanged,
        "the container overwrote the husk binary on the host:\n{}",
        r.log
    );
}

/// Descriptors above 2 and the cwd, as the attack probe sees them.
fn fd_report(out: &str) -> String {
    out.lines()
        .filter(|l| l.starts_with("fd ") || l.starts_with("cwd "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cve_2024_21626_no_host_fd_reaches_the_container() {
    require_root!();
    let p = pair("cve-2024-21626");
    let b = Bundle::new(|c| c["process"]["args"] = json!(["sleep", "30"]));
    let probe = install_probe(&b, "attack-probe", ATTACK);
    let mut reports = Vec::new();
    for rt in p.both() {
        // The first process.
        b.edit(|c| c["process"]["args"] = json!([probe, "fds"]));
        let out = rt.run_new(&b);
        out.ok();
        let first = fd_report(&out.stdout);
        assert_eq!(
            first,
            "cwd -> /",
            "{}: first process:\n{out}",
            rt.bin.display()
        );
        // An exec'd one, with and without a terminal-less detached init.
        b.edit(|c| c["process"]["args"] = json!(["sleep", "30"]));
        let id = rt.new_id();
        rt.run_detached(&b, &id).ok();
        let out = rt.exec(&["exec", &id, &probe, "fds"]);
        out.ok();
        let exec = fd_report(&out.stdout);
        assert_eq!(
            exec,
            "cwd -> /",
            "{}: exec'd process:\n{out}",
            rt.bin.display()
        );
        // The attack itself: a cwd through a descriptor the runtime might still hold.
        for n in 3..=16 {
            let cwd = format!("/proc/self/fd/{n}");
            let out = rt.exec(&["exec", "--cwd", &cwd, &id, &probe, "fds"]);
            if out.success() {
                let cwd_line = fd_report(&out.stdout);
                assert!(
                    !cwd_line.contains("cwd -> /proc") && cwd_line.contains("cwd -> /"),
                    "{}: exec --cwd {cwd} escaped: {cwd_line}",
                    rt.bin.display()
                );
            }
        }
        rt.delete_force(&id);
        for n in 3..=16 {
            b.edit(|c| {
                c["process"]["args"] = json!([probe, "fds"]);
                c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
            });
            let out = rt.run_new(&b);
            if out.success() {
                let report = fd_report(&out.stdout);
                let cwd = report.lines().last().unwrap_or_default();
                assert!(
                    cwd.starts_with("cwd -> /") && !cwd.contains("(unreachable)"),
                    "{}: cwd /proc/self/fd/{n} escaped the container: {report}",
                    rt.bin.display()
                );
            }
        }
        b.edit(|c| c["process"]["cwd"] = json!("/"));
        reports.push((first, exec));
    }
    assert_eq!(reports[0], reports[1], "runc and husk differ");
}

#[test]
fn cve_2021_30465_symlinked_mount_destinations_stay_in_the_rootfs() {
    require_root!();
    let p = pair("cve-2021-30465");
    let target = temp_dir("symlink-target");
    let abs = target.path().to_path_buf();
    let b = Bundle::new(|c| {
        let mounts = c["mounts"].as_array_mut().expect("mounts");
        mounts.push(json!({"destination": "/abs", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/rel/sub", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(
            json!({"destination": "/bindme", "type": "bind", "source": "/etc",
                           "options": ["rbind", "ro"]}),
        );
    });
    // Absolute and relative symlinks out of the rootfs, to a host dir.
    symlink(&abs, b.rootfs().join("abs")).expect("symlink");
    let up = "../".repeat(20);
    let rel = format!("{up}{}", abs.display().to_string().trim_start_matches('/'));
    symlink(&rel, b.rootfs().join("rel")).expect("symlink");
    symlink(&abs, b.rootfs().join("bindme")).expect("symlink");
    b.set_sh("grep -E ' /(abs|rel|bindme|tmp)' /proc/self/mountinfo | cut -d' ' -f5 | sort");
    let (o, h) = p.run_ok(&b);
    assert_same("where symlinked destinations were mounted", &o, &h);
    assert!(
        host::mounts_under(&abs).is_empty(),
        "a mount landed on the host: {:?}",
        host::mounts_under(&abs)
    );
    let inside = b.rootfs().join(abs.strip_prefix("/").expect("absolute"));
    assert!(
        inside.is_dir(),
        "the destination was not made inside the rootfs"
    );
    husk_tests::remove_temp_dir(target);
}

#[test]
fn cve_2021_30465_racing_symlink_swap_never_mounts_outside() {
    require_root!();
    let h = Runtime::husk("cve-2021-30465-race");
    let target = temp_dir("race-target");
    let abs = target.path().to_path_buf();
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["true"]);
        c["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"destination": "/race/sub", "type": "tmpfs", "source": "tmpfs"}));
    });
    let race = b.rootfs().join("race");
    let parked = b.rootfs().join("race-dir");
    fs::create_dir_all(parked.join("sub")).expect("dir");
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, race, parked, abs) = (stop.clone(), race.clone(), parked.clone(), abs.clone());
        std::thread::spawn(move || {
            // Swap /race between a real directory and a symlink to the host dir, as fast as
            // possible, while the runtime resolves the destination.
            let link = race.with_file_name("race-link");
            let _ = symlink(&abs, &link);
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::remove_file(&race);
                let _ = fs::rename(&parked, &race);
                let _ = symlink(&abs, &link);
                let _ = fs::rename(&race, &parked);
                let _ = fs::rename(&link, &race);
                flips += 1;
            }
            flips
        })
    };
    let mut escaped = Vec::new();
    for _ in 0..25 {
        let id = h.new_id();
        let _ = h.run(&b, &id);
        escaped.extend(host::mounts_under(&abs).into_iter().map(|m| m.mount_point));
        h.delete_force(&id);
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().expect("flipper");
    host::detach_mounts_under(&abs);
    assert!(flips > 0);
    assert!(escaped.is_empty(), "mounts landed on the host: {escaped:?}");
    husk_tests::remove_temp_dir(target);
}

/// Every way a container process without CAP_SYS_ADMIN might undo masked and read-only paths.
const UNMASK_SCRIPT: &str = r#"
try() { if "$@" 2>/dev/null; then echo "$*: DONE"; else echo "$*: refused"; fi; }
for p in /proc/kcore /proc/keys /proc/timer_list /proc/acpi /proc/scsi /sys/firmware \
         /proc/sys /proc/sysrq-trigger /proc/bus /proc/fs /proc/irq; do
  try umount "$p"
  try umount -l "$p"
done
try mount -o remount,rw /proc/sys
try mount -o remount,rw,bind /proc/sys
try mount -o remount,rw /proc/sysrq-trigger
mkdir -p /dev/shm/p /dev/shm/s
try mount -t proc proc /dev/shm/p
try mount -t sysfs sysfs /dev/shm/s
try mount --bind /proc /dev/shm/p
try sh -c 'echo 1 > /proc/sys/vm/drop_caches'
try sh -c 'echo h > /proc/sysrq-trigger'
echo "kcore bytes: $(cat /proc/kcore 2>/dev/null | wc -c)"
echo "timer_list bytes: $(wc -c < /proc/timer_list)"
echo "firmware entries: $(ls /sys/firmware | wc -l)"
"#;

#[test]
fn masked_and_readonly_paths_cannot_be_undone() {
    require_root!();
    let p = pair("masked-paths");
    let b = Bundle::sh(UNMASK_SCRIPT);
    let (o, h) = p.run_ok(&b);
    assert_same("attempts to unmask /proc and /sys", &o, &h);
    assert!(!h.contains("DONE"), "{h}");
    assert!(h.contains("kcore bytes: 0"), "{h}");
    assert!(h.contains("firmware entries: 0"), "{h}");
}

/// husk's init runs husk's own code (forked, not re-executed from a sealed copy as runc's is)
/// until it execs the user's program, so it must stay non-dumpable until then: a process in
/// the container (same uid, no CAP_SYS_PTRACE) can neither follow /proc/1/exe to the host
/// binary nor read the init's memory or environment. runc 1.1's created init is readable
/// (its exe is a sealed memfd copy), so only the state after start is compared with runc.
#[test]
fn init_is_not_inspectable_before_it_execs() {
    require_root!();
    let p = pair("non-dumpable");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "30"]);
        c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "SECRET=in-the-init"]);
    });
    let probe = install_probe(&b, "attack-probe", ATTACK);
    let mut afters = Vec::new();
    for rt in p.both() {
        let id = rt.new_id();
        rt.create(&b, &id).ok();
        let before = rt.exec(&["exec", &id, &probe, "proc-access", "1"]);
        before.ok();
        rt.start(&id).ok();
        rt.wait_status(&id, "running", Duration::from_secs(10));
        // Once it has exec'd the user's program, ordinary rules apply again.
        let mut after = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = rt.exec(&["exec", &id, &probe, "proc-access", "1"]);
            out.ok();
            after = out.stdout;
            if after.contains("readlink-exe=ok") {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        rt.delete_force(&id);
        if rt.flavor == husk_tests::Flavor::Husk {
            assert_eq!(before.stdout.lines().count(), 5, "{before}");
            for line in before.stdout.lines() {
                assert!(line.contains("=errno:13"), "before start, {line}\n{before}");
            }
        }
        assert!(
            after.contains("readlink-exe=ok"),
            "{}: {after}",
            rt.bin.display()
        );
        afters.push(after);
    }
    assert_same("access to the init after start", &afters[0], &afters[1]);
}

/// A tiny deterministic generator (xorshift64*), so a failure names the seed and repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Replaces one random node of `v` with a hostile value.
fn mutate(v: &mut Value, rng: &mut Rng) {
    let hostile = [
        json!(null),
        json!(-1),
        json!(u64::MAX),
        json!(1.5),
        json!(""),
        json!("../../../../etc"),
        json!("\u{0}"),
        json!([]),
        json!({}),
        json!([{"nonsense": true}]),
        json!("SCMP_ACT_NOPE"),
        json!(true),
    ];
    let stop = rng.below(4) == 0;
    match v {
        Value::Object(m) if !m.is_empty() && !stop => {
            let k = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if rng.below(8) == 0 {
                m.remove(&k);
            } else if let Some(child) = m.get_mut(&k) {
                mutate(child, rng);
            }
        }
        Value::Array(a) if !a.is_empty() && !stop => {
            let i = rng.below(a.len());
            mutate(&mut a[i], rng);
        }
        _ => *v = hostile[rng.below(hostile.len())].clone(),
    }
}

/// Malformed config.json through the CLI: husk exits non-zero with a message (never a panic
/// or a signal) and leaves nothing behind; when it accepts a mutant, the container is deleted
/// cleanly.
#[test]
fn mutated_configs_through_the_cli_fail_cleanly() {
    require_root!();
    let h = Runtime::husk("cli-fuzz");
    let base = Bundle::new(|c| c["process"]["args"] = json!(["true"]));
    let original = base.config();
    let mut rng = Rng(0x05ee_d0f4_u64);
    let mut refused = 0;
    for round in 0..40 {
        let mut cfg = original.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut cfg, &mut rng);
        }
        if cfg["linux"].is_object() {
            cfg["linux"]["cgroupsPath"] = original["linux"]["cgroupsPath"].clone();
        }
        base.set_config(&cfg);
        let id = h.new_id();
        let out = h.create(&base, &id);
        assert!(
            out.code == 0 || out.code == 1,
            "round {round}: husk exited {} (a panic or a signal) on\n{cfg:#}\n{out}",
            out.code
        );
        if out.success() {
            h.delete_force(&id).ok();
            continue;
        }
        refused += 1;
        assert!(
            !out.stderr.trim().is_empty(),
            "round {round}: refused without a message\n{out}"
        );
        let left = leftovers_after_failure(&h, &base, &id);
        assert!(left.is_empty(), "round {round}: {left:#?}\n{cfg:#}");
    }
    assert!(refused > 0);
    // Not JSON at all, and empty.
    for text in ["{", "", "[]", "null", "{\"ociVersion\": 5}"] {
        fs::write(base.config_path(), text).expect("write config");
        let id = h.new_id();
        let out = h.create(&base, &id);
        out.fails();
        assert!(!out.stderr.trim().is_empty(), "{out}");
        assert!(h.root_entries().is_empty(), "{:?}", h.root_entries());
    }
}

/// --resources JSON that is not a linux.resources document is refused, and the running
/// container's limits stay as they were.
#[test]
fn malformed_update_resources_are_refused() {
    require_root!();
    let h = Runtime::husk("update-fuzz");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sleep", "30"]);
        c["linux"]["resources"] = json!({"pids": {"limit": 77}});
    });
    let id = h.new_id();
    h.run_detached(&b, &id).ok();
    let dir = temp_dir("resources");
    let cases = [
        "{",
        "{\"memory\": {\"limit\": \"lots\"}}",
        "{\"pids\": {\"limit\": \"x\"}}",
        "{\"cpu\": {\"shares\": -5}}",
        "{\"blockIO\": {\"weight\": 70000}}",
    ];
    for (i, text) in cases.iter().enumerate() {
        let f = dir.path().join(format!("r{i}.json"));
        fs::write(&f, text).expect("write resources");
        let out = h.exec(&["update", "--resources", &f.to_string_lossy(), &id]);
        assert!(out.code == 1, "{text}: {out}");
        assert!(!out.stderr.trim().is_empty(), "{text}: {out}");
    }
    let pids = h.exec(&["exec", &id, "cat", "/sys/fs/cgroup/pids.max"]);
    if pids.success() {
        assert_eq!(pids.stdout.trim(), "77");
    }
    h.delete_force(&id).ok();
    husk_tests::remove_temp_dir(dir);
}

/// runc refuses a --resources document that is not an object (serde alone would read a struct
/// from a sequence such as `[]` and save it as linux.resources).
#[test]
fn update_resources_must_be_an_object() {
    require_root!();
    let h = Runtime::husk("update-array");
    let b = Bundle::new(|c| c["process"]["args"] = json!(["sleep", "30"]));
    let id = h.new_id();
    h.run_detached(&b, &id).ok();
    let dir = temp_dir("resources");
    let f = dir.path().join("array.json");
    fs::write(&f, "[]").expect("write resources");
    let out = h.exec(&["update", "--resources", &f.to_string_lossy(), &id]);
    h.delete_force(&id).ok();
    husk_tests::remove_temp_dir(dir);
    assert_eq!(out.code, 1, "{out}");
}

/// A user made for one test process (`useradd`), removed on drop.
struct TestUser {
    name: String,
}

impl TestUser {
    fn create() -> Option<TestUser> {
        husk_tests::which("useradd")?;
        let name = format!("husk-rl-{}", std::process::id());
        // useradd fails while another process holds the passwd lock: retry a little.
        for _ in 0..50 {
            let ok = Command::new("useradd")
                .args(["-M", "-s", "/bin/sh", &name])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Some(TestUser { name });
            }
            sleep(Duration::from_millis(100));
        }
        None
    }

    /// The user's first subordinate id range from /etc/subuid, if useradd made one.
    fn subuid(&self) -> Option<(u32, u32)> {
        let text = fs::read_to_string("/etc/subuid").ok()?;
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == self.name).then_some(())?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
    }

    fn uid(&self) -> u32 {
        let out = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .expect("id -u");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a uid")
    }

    /// Runs `script` as this user with sh; returns (exit code, stdout+stderr).
    fn sh(&self, script: &str) -> (i32, String) {
        let out = Command::new("timeout")
            .args(["30", "su", "-s", "/bin/sh", &self.name, "-c", script])
            .output()
            .expect("running su");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("userdel")
                .arg(&self.name)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            sleep(Duration::from_millis(100));
        }
    }
}

/// Rootless, as a real unprivileged user: `spec --rootless`, then `run` with the single-id
/// mapping it writes (no --root: the state goes under $XDG_RUNTIME_DIR), then a 65536-id range
/// through newuidmap/newgidmap (Debian's uidmap) when installed. runc passes the single-id run
/// as the same user.
#[test]
fn rootless_as_an_unprivileged_user() {
    require_root!();
    let Some(user) = TestUser::create() else {
        eprintln!("SKIPPED: useradd is missing or failed");
        return;
    };
    let dir = temp_dir("rootless");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.path().join("husk");
    fs::copy(husk_bin(), &bin).expect("copy husk");
    let bundle = dir.path().join("bundle");
    husk_tests::bundle::make_with(&bundle, &husk_tests::bundle::Options::default())
        .expect("bundle");
    fs::remove_file(bundle.join("config.json")).expect("rm config");
    let xdg = dir.path().join("xdg");
    fs::create_dir(&xdg).expect("xdg");
    let chown = |p: &Path, owner: &str| {
        let ok = Command::new("chown")
            .args(["-R", owner])
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown {}", p.display());
    };
    chown(&bundle, &user.name);
    chown(&xdg, &user.name);
    let (code, out) = user.sh(&format!(
        "cd {} && {} spec --rootless",
        bundle.display(),
        bin.display()
    ));
    assert_eq!(code, 0, "spec --rootless: {out}");
    let mut cfg: Value =
        serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(cfg["linux"]["uidMappings"][0]["hostID"], json!(user.uid()));
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    husk_tests::bundle::write_config(&bundle, &cfg).expect("write config");
    chown(&bundle, &user.name);

    let id = format!("rl-{}", std::process::id());
    let run = |rt: &Path, extra: &str| {
        user.sh(&format!(
            "cd {} && XDG_RUNTIME_DIR={} {} {extra} run {id} 2>&1",
            bundle.display(),
            xdg.display(),
            rt.display()
        ))
    };
    let runc_root = dir.path().join("runc-root");
    fs::create_dir(&runc_root).expect("runc root");
    chown(&runc_root, &user.name);
    let (code, out) = run(&oracle_bin(), &format!("--root {}", runc_root.display()));
    assert_eq!(code, 0, "runc rootless: {out}");
    let (code, out) = run(&bin, "");
    assert_eq!(code, 0, "husk rootless: {out}");
    assert!(out.lines().any(|l| l == "0"), "{out}");
    // The other commands on a container without a cgroup: state, kill, delete.
    let (code, out) = user.sh(&format!(
        "cd {b} && export XDG_RUNTIME_DIR={x} && {h} create {id} && {h} state {id} && \
         {h} kill {id} KILL && {h} delete --force {id} && {h} list 2>&1",
        b = bundle.display(),
        x = xdg.display(),
        h = bin.display()
    ));
    assert_eq!(code, 0, "husk rootless create/state/kill/delete: {out}");
    assert!(out.contains("\"status\": \"created\""), "{out}");
    assert!(
        !out.lines()
            .skip_while(|l| !l.starts_with("ID"))
            .any(|l| l.starts_with(&id)),
        "{out}"
    );

    // Limits it cannot enforce without a cgroup fail clearly instead of silently not holding.
    let mut limited = cfg.clone();
    limited["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    husk_tests::bundle::write_config(&bundle, &limited).expect("write config");
    let (code, out) = run(&bin, "");
    assert_ne!(code, 0, "rootless with a memory limit and no cgroup: {out}");
    assert!(out.contains("cgroup limits"), "{out}");
    husk_tests::bundle::write_config(&bundle, &cfg).expect("write config");

    if let (Some(_), Some((start, count))) = (husk_tests::which("newuidmap"), user.subuid()) {
        let range = json!([{"containerID": 0, "hostID": start, "size": count.min(65536)}]);
        cfg["linux"]["uidMappings"] = range.clone();
        cfg["linux"]["gidMappings"] = range;
        husk_tests::bundle::write_config(&bundle, &cfg).expect("write config");
        chown(&bundle.join("rootfs"), &format!("{start}:{start}"));
        let (code, out) = run(&bin, "");
        assert_eq!(code, 0, "husk rootless with a range: {out}");
        // /proc/self/uid_map pads its columns with spaces: compare the fields.
        let want = format!("0 {start} {}", count.min(65536));
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == want),
            "{out}"
        );
    }
    // Whatever is left (a failed run as root can clean up): delete by id, then the files.
    let _ = Command::new(&bin)
        .args([
            "--root",
            &xdg.join("husk").to_string_lossy(),
            "delete",
            "--force",
            &id,
        ])
        .status();
    drop(user);
    husk_tests::remove_temp_dir(dir);
}
