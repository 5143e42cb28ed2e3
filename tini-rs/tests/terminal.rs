//! With a terminal: the child gets the foreground process group, husk-init survives writing
//! while in the background (SIGTTOU ignored), and the caller gets its terminal back.

mod common;

use common::{scratch, Start, HUSK_INIT};

#[test]
fn child_is_in_the_foreground_and_the_terminal_comes_back() {
    let dir = scratch();
    // `script` runs the command on a fresh pseudo-terminal. With tostop, a background process
    // that writes to the terminal gets SIGTTOU: husk-init's own -v messages after the child
    // took the foreground must not stop it, and the shell's final echo needs the foreground
    // back.
    let child =
        r#"read -r _ _ _ _ pgrp _ _ tpgid _ < /proc/$$/stat; echo "child pgrp=$pgrp tpgid=$tpgid""#;
    let command = format!("stty tostop; {HUSK_INIT} -s -v -- sh -c '{child}'; echo rc=$?");
    let mut run = Start::direct(
        "/usr/bin/script",
        dir.path(),
        &["-qec", &command, "/dev/null"],
    )
    .spawn();
    assert_eq!(run.code(20), 0, "{}", run.stdout());
    let out = run.stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("child pgrp="))
        .expect("the child ran");
    let (pgrp, tpgid) = line["child pgrp=".len()..].split_once(" tpgid=").unwrap();
    assert_eq!(
        pgrp,
        tpgid.trim(),
        "the child is not the foreground group: {out}"
    );
    assert!(out.contains("Main child exited normally"), "{out}");
    assert!(out.contains("rc=0"), "{out}");
}
