//! `--reload-on`: the child gets the reload signal when watched content changes, once per
//! change, including a Kubernetes ConfigMap `..data` swap.

mod common;

use common::{lines, scratch, wait_file, Running, Start, HUSK_INIT};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

const CHILD: &str = r#"
trap 'echo HUP >> $D/got' HUP
trap 'echo USR2 >> $D/got' USR2
trap 'exit 0' TERM
touch $D/ready
while :; do sleep 0.05; done
"#;

/// Starts husk-init as PID 1 watching `watch` with extra `opts`.
fn start(dir: &Path, opts: &[&str], watch: &Path) -> Running {
    let mut args = opts.to_vec();
    args.extend([
        "--reload-on",
        watch.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        CHILD,
    ]);
    let init = Start::pid1(HUSK_INIT, dir, &args).spawn();
    wait_file(&dir.join("ready"), 10, |_| true);
    init
}

/// Waits for the `n`th reload and checks that no extra one follows.
fn expect_reloads(dir: &Path, n: usize, signal: &str) {
    wait_file(&dir.join("got"), 10, |t| t.lines().count() >= n);
    // Longer than the debounce: a duplicate would show up by now.
    sleep(Duration::from_millis(600));
    let got = lines(&dir.join("got"));
    assert_eq!(got.len(), n, "{got:?}");
    assert!(got.iter().all(|s| s == signal), "{got:?}");
}

fn stop(mut init: Running) {
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(10), 0, "{}", init.stderr());
}

#[test]
fn a_plain_file_edit_reloads_once_and_a_touch_does_not() {
    let dir = scratch();
    let d = dir.path();
    let conf = d.join("app.conf");
    fs::write(&conf, "v1\n").unwrap();
    let init = start(d, &[], &conf);

    fs::write(&conf, "v2\n").unwrap();
    expect_reloads(d, 1, "HUP");
    // Same content again: events, but no change.
    fs::write(&conf, "v2\n").unwrap();
    sleep(Duration::from_millis(600));
    assert_eq!(lines(&d.join("got")).len(), 1);
    // An editor's save: write a temporary file, rename it over.
    fs::write(d.join(".app.conf.swp"), "v3\n").unwrap();
    fs::rename(d.join(".app.conf.swp"), &conf).unwrap();
    expect_reloads(d, 2, "HUP");
    // Unrelated files in the same directory do not reload.
    fs::write(d.join("other.log"), "noise\n").unwrap();
    sleep(Duration::from_millis(600));
    assert_eq!(lines(&d.join("got")).len(), 2);
    stop(init);
}

#[test]
fn reload_signal_is_configurable() {
    let dir = scratch();
    let d = dir.path();
    let conf = d.join("app.conf");
    fs::write(&conf, "v1\n").unwrap();
    let init = start(d, &["--reload-signal", "SIGUSR2"], &conf);
    fs::write(&conf, "v2\n").unwrap();
    expect_reloads(d, 1, "USR2");
    stop(init);
}

/// Publishes `content` as ConfigMap version `version` the way the kubelet does: a new
/// timestamped directory, a `..data_tmp` symlink renamed over `..data`, the old one removed.
fn publish(cm: &Path, version: u32, content: &str) {
    let ts = format!("..2024_01_01_00_00_0{version}");
    fs::create_dir(cm.join(&ts)).unwrap();
    fs::write(cm.join(&ts).join("app.conf"), content).unwrap();
    symlink(&ts, cm.join("..data_tmp")).unwrap();
    fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    if version == 1 {
        symlink("..data/app.conf", cm.join("app.conf")).unwrap();
    } else {
        fs::remove_dir_all(cm.join(format!("..2024_01_01_00_00_0{}", version - 1))).unwrap();
    }
}

fn configmap_swap(watch_file: bool) {
    let dir = scratch();
    let d = dir.path();
    let cm = d.join("config");
    fs::create_dir(&cm).unwrap();
    publish(&cm, 1, "v1\n");
    let watched = if watch_file {
        cm.join("app.conf")
    } else {
        cm.clone()
    };
    let init = start(d, &[], &watched);
    publish(&cm, 2, "v2\n");
    expect_reloads(d, 1, "HUP");
    publish(&cm, 3, "v3\n");
    expect_reloads(d, 2, "HUP");
    stop(init);
}

#[test]
fn a_configmap_data_swap_reloads_a_watched_directory() {
    configmap_swap(false);
}

#[test]
fn a_configmap_data_swap_reloads_a_watched_file() {
    configmap_swap(true);
}

#[test]
fn an_unwatchable_path_is_an_error() {
    let dir = scratch();
    let mut init = Start::pid1(
        HUSK_INIT,
        dir.path(),
        &["--reload-on", "/nonexistent/dir/app.conf", "--", "true"],
    )
    .spawn();
    assert_eq!(init.code(10), 1);
    assert!(
        init.stderr()
            .contains("Cannot watch /nonexistent/dir/app.conf"),
        "{}",
        init.stderr()
    );
}
