//! /etc/hosts overrides, each test in a private mount namespace over its own base file.

mod common;

use common::{lines, scratch, wait_file, Start, HUSK_INIT};
use std::fs;
use std::path::Path;

const BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n172.17.0.2\tabc123\n10.9.9.9\tdb.example other\n";

const MARKER: &str = "# husk-init overrides (--add-host, --hosts-file, HUSK_INIT_HOSTS)\n";

/// Logs /etc/hosts at start and on every SIGHUP, and resolves a few names through libc.
const CHILD: &str = r#"
trap 'cat /etc/hosts > $D/seen.hup; echo HUP >> $D/got' HUP
trap 'exit 0' TERM
cat /etc/hosts > $D/seen
for n in db.example extra2 envhost v6 other; do getent hosts $n >> $D/getent || echo "$n missing" >> $D/getent; done
touch $D/ready
while :; do sleep 0.05; done
"#;

/// Bind-mounts the test's base file over /etc/hosts inside the namespace.
const SETUP: &str = "mount --bind \"$D/base\" /etc/hosts";

/// Runs husk-init without CAP_SYS_ADMIN (it cannot mount).
const NO_SYS_ADMIN: &str = "setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin";

fn prepare(dir: &Path) -> Vec<String> {
    fs::write(dir.join("base"), BASE).unwrap();
    fs::write(
        dir.join("extra"),
        "# extra names\n10.1.1.1 extra1 extra2\n127.0.0.1 localhost\n",
    )
    .unwrap();
    let extra = dir.join("extra");
    [
        "--add-host",
        "db.example:10.0.0.5",
        "--add-host=v6:[2001:db8::1]",
        "--hosts-file",
        extra.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        CHILD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn expected(extra_line: &str) -> String {
    [
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n172.17.0.2\tabc123\n",
        "10.9.9.9\tother\n",
        MARKER,
        extra_line,
        "10.2.2.2\tenvhost\n",
        "10.0.0.5\tdb.example\n",
        "2001:db8::1\tv6\n",
    ]
    .concat()
}

#[test]
fn overrides_are_bind_mounted_and_reapplied_on_sighup() {
    let dir = scratch();
    let d = dir.path();
    let args = prepare(d);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut start = Start::pid1(HUSK_INIT, d, &args)
        .env("HUSK_INIT_HOSTS", "envhost=10.2.2.2, db.example=10.3.3.3");
    start.setup = SETUP;
    let mut init = start.spawn();
    wait_file(&d.join("ready"), 10, |_| true);

    assert_eq!(
        fs::read_to_string(d.join("seen")).unwrap(),
        expected("10.1.1.1\textra1 extra2\n")
    );
    // The original file is untouched: the merged one is mounted over it.
    assert_eq!(fs::read_to_string(d.join("base")).unwrap(), BASE);
    let getent = fs::read_to_string(d.join("getent")).unwrap();
    for (ip, name) in [
        ("10.0.0.5", "db.example"),
        ("10.1.1.1", "extra2"),
        ("10.2.2.2", "envhost"),
        ("2001:db8::1", "v6"),
        ("10.9.9.9", "other"),
    ] {
        assert!(
            getent
                .lines()
                .any(|l| l.starts_with(ip) && l.contains(name)),
            "{name}: {getent}"
        );
    }

    // A changed hosts file and the original file are re-read on SIGHUP, before the child
    // gets the signal.
    fs::write(d.join("extra"), "10.1.1.7 extra1\n").unwrap();
    fs::write(d.join("base"), format!("{BASE}10.4.4.4\tlate\n")).unwrap();
    init.signal(libc::SIGHUP);
    wait_file(&d.join("got"), 10, |t| t.contains("HUP"));
    let seen = fs::read_to_string(d.join("seen.hup")).unwrap();
    assert!(seen.contains("10.4.4.4\tlate\n"), "{seen}");
    assert!(
        seen.contains("10.1.1.7\textra1\n") && !seen.contains("extra2"),
        "{seen}"
    );

    init.signal(libc::SIGTERM);
    assert_eq!(init.code(10), 0, "{}", init.stderr());
}

#[test]
fn without_cap_sys_admin_it_rewrites_in_place() {
    let dir = scratch();
    let d = dir.path();
    let args = prepare(d);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut start = Start::pid1(HUSK_INIT, d, &args).env("HUSK_INIT_HOSTS", "envhost=10.2.2.2");
    start.setup = SETUP;
    start.wrapper = NO_SYS_ADMIN;
    let mut init = start.spawn();
    wait_file(&d.join("ready"), 10, |_| true);
    // /etc/hosts is the base file here, so the rewrite shows in it directly.
    let want = expected("10.1.1.1\textra1 extra2\n");
    assert_eq!(fs::read_to_string(d.join("base")).unwrap(), want);
    assert_eq!(fs::read_to_string(d.join("seen")).unwrap(), want);

    // On reload the merge starts again from the original content, so dropped names go away.
    fs::write(d.join("extra"), "10.1.1.7 extra1\n").unwrap();
    init.signal(libc::SIGHUP);
    wait_file(&d.join("got"), 10, |t| t.contains("HUP"));
    assert_eq!(
        fs::read_to_string(d.join("base")).unwrap(),
        expected("10.1.1.7\textra1\n")
    );

    init.signal(libc::SIGTERM);
    assert_eq!(init.code(10), 0, "{}", init.stderr());
}

#[test]
fn read_only_hosts_without_cap_sys_admin_is_a_clear_error() {
    let dir = scratch();
    let d = dir.path();
    fs::write(d.join("base"), BASE).unwrap();
    let mut start = Start::pid1(
        HUSK_INIT,
        d,
        &[
            "--add-host",
            "db:10.0.0.5",
            "--",
            "sh",
            "-c",
            "touch $D/ran",
        ],
    );
    start.setup = "mount --bind \"$D/base\" /etc/hosts && mount -o remount,bind,ro /etc/hosts";
    start.wrapper = NO_SYS_ADMIN;
    let mut init = start.spawn();
    assert_eq!(init.code(10), 1);
    let stderr = init.stderr();
    assert!(
        stderr.contains(
            "cannot install /etc/hosts overrides: bind mount failed (Operation not permitted"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot be rewritten (Read-only file system)"),
        "{stderr}"
    );
    assert!(!d.join("ran").exists());
}

#[test]
fn bad_entries_fail_before_the_child_starts() {
    let cases: [(&[&str], Option<&str>, &str, &str); 5] = [
        (
            &["--add-host", "db:999.1.1.1"],
            None,
            "",
            "--add-host db:999.1.1.1: invalid IP address '999.1.1.1'",
        ),
        (
            &["--add-host", ":10.0.0.1"],
            None,
            "",
            "--add-host :10.0.0.1: empty host name",
        ),
        (
            &[],
            Some("a=10.0.0.1,=10.0.0.2"),
            "",
            "HUSK_INIT_HOSTS item '=10.0.0.2': empty host name",
        ),
        (
            &["--hosts-file"],
            None,
            "1.2.3.4 ok\n10.0.0.300 bad\n",
            "line 2: invalid IP address '10.0.0.300'",
        ),
        (
            &["--hosts-file", "/nonexistent/hosts"],
            None,
            "",
            "cannot read hosts file /nonexistent/hosts: No such file or directory",
        ),
    ];
    for (opts, env, file, message) in cases {
        let dir = scratch();
        let d = dir.path();
        fs::write(d.join("base"), BASE).unwrap();
        let file_path = d.join("file");
        let mut args: Vec<&str> = opts.to_vec();
        if opts == ["--hosts-file"] {
            fs::write(&file_path, file).unwrap();
            args.push(file_path.to_str().unwrap());
        }
        args.extend(["--", "sh", "-c", "touch $D/ran"]);
        let mut start = Start::pid1(HUSK_INIT, d, &args);
        if let Some(value) = env {
            start = start.env("HUSK_INIT_HOSTS", value);
        }
        start.setup = SETUP;
        let mut init = start.spawn();
        assert_eq!(init.code(10), 1, "{message}");
        assert!(
            init.stderr().contains(message),
            "want {message:?}, got {:?}",
            init.stderr()
        );
        assert!(!d.join("ran").exists(), "the child ran despite {message}");
        assert_eq!(fs::read_to_string(d.join("base")).unwrap(), BASE);
    }
}

#[test]
fn no_sources_leave_etc_hosts_alone() {
    let dir = scratch();
    let d = dir.path();
    fs::write(d.join("base"), BASE).unwrap();
    let mut start = Start::pid1(
        HUSK_INIT,
        d,
        &["--", "sh", "-c", "cat /etc/hosts > $D/seen"],
    );
    start.setup = SETUP;
    assert_eq!(start.spawn().code(10), 0);
    assert_eq!(lines(&d.join("seen")).join("\n") + "\n", BASE);
}
