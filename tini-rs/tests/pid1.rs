//! husk-init as PID 1 of a new PID namespace: exit codes, `-e`, signal forwarding, `-g`, `-p`.

mod common;

use common::{lines, scratch, wait_file, Start, FORWARDED, GROUP, HUSK_INIT, TRAPPER};
use std::thread::sleep;
use std::time::Duration;

/// Runs `sh -c script` under husk-init as PID 1 with `opts` and returns husk-init's exit code.
fn exit_code(opts: &[&str], script: &str) -> i32 {
    let dir = scratch();
    let mut args = opts.to_vec();
    args.extend(["--", "sh", "-c", script]);
    Start::pid1(HUSK_INIT, dir.path(), &args).spawn().code(20)
}

#[test]
fn exits_with_the_child_status() {
    assert_eq!(exit_code(&[], "exit 0"), 0);
    assert_eq!(exit_code(&[], "exit 3"), 3);
    assert_eq!(exit_code(&[], "exit 255"), 255);
}

#[test]
fn death_by_signal_is_128_plus_n() {
    assert_eq!(exit_code(&[], "kill -KILL $$"), 137);
    assert_eq!(exit_code(&[], "kill -TERM $$"), 143);
    assert_eq!(exit_code(&[], "kill -USR1 $$"), 128 + libc::SIGUSR1);
}

#[test]
fn e_remaps_listed_codes_to_zero() {
    assert_eq!(exit_code(&["-e", "3"], "exit 3"), 0);
    assert_eq!(exit_code(&["-e", "3", "-e143"], "kill -TERM $$"), 0);
    assert_eq!(exit_code(&["-e", "3", "-e", "143"], "exit 4"), 4);
}

#[test]
fn forwards_every_catchable_signal() {
    let dir = scratch();
    let got = dir.path().join("got");
    let mut init = Start::pid1(HUSK_INIT, dir.path(), &["--", "sh", "-c", TRAPPER]).spawn();
    wait_file(&dir.path().join("ready"), 10, |_| true);
    for (i, (name, sig)) in FORWARDED.iter().enumerate() {
        init.signal(*sig);
        let text = wait_file(&got, 10, |t| t.lines().count() > i);
        assert_eq!(text.lines().last(), Some(*name), "after {name}: {text}");
    }
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(10), 0, "stderr: {}", init.stderr());
    assert_eq!(lines(&got).last().map(String::as_str), Some("TERM"));
}

fn group_delivery(opts: &[&str], env: Option<(&str, &str)>) -> Vec<String> {
    let dir = scratch();
    let mut args = opts.to_vec();
    args.extend(["--", "sh", "-c", GROUP]);
    let mut start = Start::pid1(HUSK_INIT, dir.path(), &args);
    if let Some((k, v)) = env {
        start = start.env(k, v);
    }
    let mut init = start.spawn();
    wait_file(&dir.path().join("ready"), 10, |_| true);
    init.signal(libc::SIGUSR1);
    wait_file(&dir.path().join("got"), 10, |t| t.contains("main"));
    // Give a background delivery time to show up, or to not show up.
    sleep(Duration::from_millis(300));
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(10), 0);
    let mut got = lines(&dir.path().join("got"));
    got.sort();
    got
}

#[test]
fn g_signals_the_whole_process_group() {
    assert_eq!(group_delivery(&["-g"], None), ["bg", "main"]);
    assert_eq!(
        group_delivery(&[], Some(("TINI_KILL_PROCESS_GROUP", "1"))),
        ["bg", "main"]
    );
    assert_eq!(group_delivery(&[], None), ["main"]);
}

#[test]
fn p_sets_the_parent_death_signal() {
    // An inner husk-init -p SIGUSR1 whose parent (a subshell) exits: it gets SIGUSR1 and
    // forwards it to its child, which logs it and exits 0.
    let script = r#"
( "$HUSK_INIT" -p SIGUSR1 -- sh -c 'trap "echo usr1 > $D/pdeath; exit 0" USR1; touch $D/ready; while :; do sleep 0.05; done' &
  while [ ! -e $D/ready ]; do sleep 0.01; done )
while [ ! -e $D/pdeath ]; do sleep 0.01; done
"#;
    let dir = scratch();
    let mut init = Start::pid1(HUSK_INIT, dir.path(), &["--", "sh", "-c", script]).spawn();
    assert_eq!(init.code(20), 0);
    assert_eq!(lines(&dir.path().join("pdeath")), ["usr1"]);
}

#[test]
fn a_signal_the_child_ignores_changes_nothing() {
    // sleep ignores SIGWINCH by default: forwarding it must neither kill the child nor the init.
    let dir = scratch();
    let mut init = Start::pid1(
        HUSK_INIT,
        dir.path(),
        &["--", "sh", "-c", "touch $D/ready; exec sleep 0.3"],
    )
    .spawn();
    wait_file(&dir.path().join("ready"), 10, |_| true);
    init.signal(libc::SIGWINCH);
    assert_eq!(init.code(10), 0);
}
