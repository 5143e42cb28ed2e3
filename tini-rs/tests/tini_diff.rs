//! Differential tests: the same scenarios under husk-init and Debian's tini, as PID 1 of a new
//! namespace, must give the same exit codes and deliver the same signals.

mod common;

use common::{
    have_tini, lines, scratch, wait_file, Start, FORWARDED, GROUP, HUSK_INIT, TINI, TRAPPER,
};
use std::thread::sleep;
use std::time::Duration;

fn code(init: &str, opts: &[&str], script: &str) -> i32 {
    let dir = scratch();
    let mut args = opts.to_vec();
    args.extend(["--", "sh", "-c", script]);
    Start::pid1(init, dir.path(), &args).spawn().code(20)
}

#[test]
fn same_exit_codes_as_tini() {
    if !have_tini() {
        return;
    }
    let cases: [(&[&str], &str); 7] = [
        (&[], "exit 0"),
        (&[], "exit 3"),
        (&[], "kill -KILL $$"),
        (&[], "kill -TERM $$"),
        (&["-e", "3"], "exit 3"),
        (&["-e", "143"], "kill -TERM $$"),
        (&[], "exec /nonexistent"),
    ];
    for (opts, script) in cases {
        assert_eq!(
            code(HUSK_INIT, opts, script),
            code(TINI, opts, script),
            "{opts:?} {script}"
        );
    }
}

/// The signals the child logged after each of FORWARDED and a final TERM, and the exit code.
fn delivered(init: &str) -> (Vec<String>, i32) {
    let dir = scratch();
    let got = dir.path().join("got");
    let mut run = Start::pid1(init, dir.path(), &["--", "sh", "-c", TRAPPER]).spawn();
    wait_file(&dir.path().join("ready"), 10, |_| true);
    for (i, (_, sig)) in FORWARDED.iter().enumerate() {
        run.signal(*sig);
        wait_file(&got, 10, |t| t.lines().count() > i);
    }
    run.signal(libc::SIGTERM);
    let code = run.code(10);
    (lines(&got), code)
}

#[test]
fn same_signals_delivered_as_tini() {
    if !have_tini() {
        return;
    }
    assert_eq!(delivered(HUSK_INIT), delivered(TINI));
}

fn group(init: &str, opts: &[&str]) -> Vec<String> {
    let dir = scratch();
    let mut args = opts.to_vec();
    args.extend(["--", "sh", "-c", GROUP]);
    let mut run = Start::pid1(init, dir.path(), &args).spawn();
    wait_file(&dir.path().join("ready"), 10, |_| true);
    run.signal(libc::SIGUSR1);
    wait_file(&dir.path().join("got"), 10, |t| t.contains("main"));
    sleep(Duration::from_millis(300));
    run.signal(libc::SIGTERM);
    assert_eq!(run.code(10), 0);
    let mut got = lines(&dir.path().join("got"));
    got.sort();
    got
}

#[test]
fn same_process_group_behaviour_as_tini() {
    if !have_tini() {
        return;
    }
    assert_eq!(group(HUSK_INIT, &["-g"]), group(TINI, &["-g"]));
    assert_eq!(group(HUSK_INIT, &[]), group(TINI, &[]));
}
