//! checkpoint/restore through criu with the flags containerd's go-runc passes. Where the
//! machine's kernel or criu refuses (`criu check` fails), the tests prove that husk fails
//! clearly with criu's own message and leaves the container as it was; where criu works, a
//! running busybox container is checkpointed and restored with its process state.

mod ops_support;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use husk_tests::{require_root, temp_dir, which, Bundle, Runtime};
use ops_support::run_detached;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// `criu check`'s verdict: Ok when criu can dump on this machine, else its message.
fn criu_usable() -> Result<(), String> {
    let Some(criu) = which("criu") else {
        return Err("criu is not installed (apt-get install criu)".into());
    };
    let out = Command::new(criu)
        .arg("check")
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text.trim().to_string())
    }
}

fn counter() -> Bundle {
    Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"
        ]);
        c["root"]["readonly"] = json!(false);
    })
}

fn read_count(b: &Bundle) -> u64 {
    fs::read_to_string(b.rootfs().join("tmp/count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn checkpoint_with_go_runc_flags() {
    require_root!();
    let rt = Runtime::husk("ckpt");
    let b = counter();
    let (id, pid) = run_detached(&rt, &b);
    let dir = temp_dir("ckpt");
    let images = dir.path().join("images");
    let work = dir.path().join("work");
    let (i, w) = (
        images.to_str().expect("utf8").to_string(),
        work.to_str().expect("utf8").to_string(),
    );
    // go-runc's CheckpointOpts.args() with every option it has, plus --leave-running.
    let out = rt.exec(&[
        "checkpoint",
        "--image-path",
        &i,
        "--work-path",
        &w,
        "--tcp-established",
        "--ext-unix-sk",
        "--shell-job",
        "--file-locks",
        "--manage-cgroups-mode",
        "soft",
        "--empty-ns",
        "network",
        "--leave-running",
        &id,
    ]);
    match criu_usable() {
        Err(why) => {
            eprintln!("criu cannot checkpoint on this machine: {why}");
            // husk fails with criu's own reason and leaves the container running.
            if which("criu").is_none() {
                out.fails().stderr_has("criu package");
                rt.delete_force(&id).ok();
                return;
            }
            out.fails().stderr_has("criu dump failed");
            let first_error = why
                .lines()
                .find(|l| l.contains("Error") && !l.contains("exited, status="))
                .map(|l| l.split("): ").last().unwrap_or(l).trim().to_string());
            if let Some(e) = first_error {
                out.stderr_has(&e);
            }
            assert!(work.join("dump.log").exists(), "criu's log is kept");
            assert_eq!(rt.status(&id), "running");
            assert_eq!(rt.state_json(&id)["pid"], pid);
            // Without --leave-running a failed dump must not destroy the container either.
            rt.exec(&["checkpoint", "--image-path", &i, "--work-path", &w, &id])
                .fails();
            assert_eq!(rt.status(&id), "running");
        }
        Ok(()) => {
            out.ok();
            assert!(images.join("descriptors.json").exists());
            assert_eq!(rt.status(&id), "running", "--leave-running");
        }
    }
    // Flags are checked before criu runs.
    rt.exec(&[
        "checkpoint",
        "--manage-cgroups-mode",
        "loose",
        "--image-path",
        &i,
        &id,
    ])
    .fails()
    .stderr_has("manage-cgroups-mode");
    rt.exec(&["checkpoint", "--empty-ns", "pid", "--image-path", &i, &id])
        .fails()
        .stderr_has("network");
    // A created container cannot be checkpointed (runc: neither created nor stopped).
    let b2 = Bundle::with_args(&["sleep", "100"]);
    let id2 = rt.new_id();
    rt.create(&b2, &id2).ok();
    rt.exec(&["checkpoint", "--image-path", &i, &id2])
        .fails()
        .stderr_has("created");
    rt.delete_force(&id2).ok();
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b, &b2]);
}

#[test]
fn restore_failure_leaves_nothing_and_accepts_go_runc_flags() {
    require_root!();
    let rt = Runtime::husk("restore-fail");
    let b = counter();
    let id = rt.new_id();
    let dir = temp_dir("restore");
    let missing = dir.path().join("no-images");
    let bundle = b.path().to_str().expect("utf8").to_string();
    let pidf = dir.path().join("r.pid");
    // go-runc's RestoreOpts.args(): note the single-dash -no-subreaper.
    let out = rt.exec(&[
        "restore",
        "--image-path",
        missing.to_str().expect("utf8"),
        "--work-path",
        dir.path().to_str().expect("utf8"),
        "--tcp-established",
        "--ext-unix-sk",
        "--shell-job",
        "--file-locks",
        "--manage-cgroups-mode",
        "soft",
        "--detach",
        "--pid-file",
        pidf.to_str().expect("utf8"),
        "--no-pivot",
        "-no-subreaper",
        "--bundle",
        &bundle,
        &id,
    ]);
    out.fails().stderr_has("does not exist");
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    assert!(!pidf.exists());
    // Images that exist but criu cannot use: criu's error, nothing left behind.
    let empty = dir.path().join("empty-images");
    fs::create_dir(&empty).expect("mkdir");
    let out = rt.exec(&[
        "restore",
        "-d",
        "--image-path",
        empty.to_str().expect("utf8"),
        "-b",
        &bundle,
        &id,
    ]);
    out.fails().stderr_has(if which("criu").is_some() {
        "criu restore failed"
    } else {
        "criu package"
    });
    assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    // A terminal cannot be restored by husk: said before anything is made.
    let tb = Bundle::new(|c| c["process"]["terminal"] = json!(true));
    let out = rt.exec(&[
        "restore",
        "-d",
        "--image-path",
        empty.to_str().expect("utf8"),
        "--console-socket",
        "/nonexistent.sock",
        "-b",
        tb.path().to_str().expect("utf8"),
        &id,
    ]);
    out.fails().stderr_has("terminal");
    assert!(rt.root_entries().is_empty());
    rt.assert_host_clean(&[&b, &tb]);
}

#[test]
fn checkpoint_and_restore_round_trip() {
    require_root!();
    if let Err(why) = criu_usable() {
        eprintln!("SKIPPED checkpoint_and_restore_round_trip: criu check fails here: {why}");
        return;
    }
    let rt = Runtime::husk("ckpt-rt");
    let b = counter();
    let (id, _) = run_detached(&rt, &b);
    std::thread::sleep(Duration::from_millis(500));
    let dir = temp_dir("ckpt-rt");
    let images = dir.path().join("images");
    let i = images.to_str().expect("utf8").to_string();
    rt.exec(&["checkpoint", "--image-path", &i, &id]).ok();
    // A full checkpoint removes the container, as runc's does.
    rt.state(&id).fails().stderr_has("does not exist");
    let at_dump = read_count(&b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_count(&b), at_dump, "still counting after the dump");
    let bundle = b.path().to_str().expect("utf8").to_string();
    rt.exec(&[
        "restore",
        "-d",
        "--image-path",
        &i,
        "--bundle",
        &bundle,
        &id,
    ])
    .ok();
    assert_eq!(rt.status(&id), "running");
    let deadline = Instant::now() + WAIT;
    while read_count(&b) <= at_dump + 2 {
        assert!(
            Instant::now() < deadline,
            "the restored process does not go on counting"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.delete_force(&id).ok();
    rt.assert_host_clean(&[&b]);
}
