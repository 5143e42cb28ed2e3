//! Reaping: a storm of orphans under husk-init as PID 1, and subreaper mode.

mod common;

use common::{lines, scratch, Start, HUSK_INIT};

/// Orphans `N` processes that exit at once, then waits until no process but husk-init and
/// this shell is left in the namespace and writes how many remain (0 unless reaping failed).
/// Waiting for "no zombie" alone is not enough: an orphan that has not run yet is no zombie,
/// and when the shell exits first, PID 1's exit kills it before it can be reaped.
const STORM: &str = r#"
i=0
while [ $i -lt $N ]; do ( : & ); i=$((i+1)); done
tries=0
while :; do
  n=0
  for f in /proc/[0-9]*/stat; do
    read -r pid _ 2>/dev/null < "$f" || continue
    if [ "$pid" != 1 ] && [ "$pid" != $$ ]; then n=$((n+1)); fi
  done
  if [ $n -eq 0 ] || [ $tries -ge 500 ]; then break; fi
  tries=$((tries+1)); sleep 0.02
done
echo $n > $D/zombies
"#;

#[test]
fn a_storm_of_10000_orphans_leaves_no_zombie() {
    let dir = scratch();
    // -w logs each reaped orphan, which proves they went through husk-init.
    let mut init = Start::pid1(HUSK_INIT, dir.path(), &["-w", "--", "sh", "-c", STORM])
        .env("N", "10000")
        .spawn();
    assert_eq!(
        init.code(300),
        0,
        "stderr tail: {:?}",
        init.stderr().lines().last()
    );
    assert_eq!(lines(&dir.path().join("zombies")), ["0"]);
    let reaped = init
        .stderr()
        .matches("Reaped zombie process with pid=")
        .count();
    assert!(
        reaped >= 10000,
        "only {reaped} orphans were reaped by husk-init"
    );
}

/// Orphans one short-lived process and records who adopted it and whether it was reaped.
const ORPHAN: &str = r#"
( sleep 0.3 & echo $! > $D/orphan )
read -r orphan < $D/orphan
read -r _ _ _ ppid _ < /proc/$orphan/stat
echo $ppid > $D/adopter
sleep 0.8
if [ -e /proc/$orphan ]; then echo present; else echo reaped; fi > $D/after
"#;

fn adopt(opts: &[&str], env: Option<(&str, &str)>) -> (i32, i32, String, String) {
    let dir = scratch();
    let mut args = opts.to_vec();
    args.extend(["--", "sh", "-c", ORPHAN]);
    let mut start = Start::direct(HUSK_INIT, dir.path(), &args);
    if let Some((k, v)) = env {
        start = start.env(k, v);
    }
    let mut init = start.spawn();
    let pid = init.init_pid();
    assert_eq!(init.code(20), 0);
    let adopter = lines(&dir.path().join("adopter"))[0].parse().unwrap();
    let after = lines(&dir.path().join("after")).concat();
    (pid, adopter, after, init.stderr())
}

#[test]
fn s_makes_it_a_subreaper_that_reaps_orphans() {
    let (pid, adopter, after, stderr) = adopt(&["-s"], None);
    assert_eq!(
        adopter, pid,
        "the orphan should be re-parented to husk-init"
    );
    assert_eq!(after, "reaped");
    assert!(stderr.is_empty(), "{stderr}");
    let (pid, adopter, after, _) = adopt(&[], Some(("TINI_SUBREAPER", "")));
    assert_eq!(adopter, pid);
    assert_eq!(after, "reaped");
}

#[test]
fn without_s_orphans_go_elsewhere_and_it_warns() {
    let (pid, adopter, _, stderr) = adopt(&[], None);
    assert_ne!(adopter, pid);
    assert!(
        stderr.contains("isn't registered as a child subreaper"),
        "{stderr}"
    );
}
