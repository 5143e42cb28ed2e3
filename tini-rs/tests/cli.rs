//! The command line: --version in the format Docker parses, -h, and argument errors.

mod common;

use common::HUSK_INIT;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(HUSK_INIT)
        .args(args)
        .env_remove("TINI_SUBREAPER")
        .env_remove("TINI_VERBOSITY")
        .output()
        .expect("run husk-init")
}

/// Docker's parseInitVersion (daemon/info_unix.go): the commit from ` - git.<id>` and the
/// version after `tini version `; an error only when both are missing.
fn docker_parse(output: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = output.split(" - ").collect();
    let mut commit = String::new();
    if parts.len() >= 2 {
        let git: Vec<&str> = parts[1].trim().split('.').collect();
        if git.len() == 2 && git[0] == "git" {
            commit = git[1].to_string();
        }
    }
    let version = parts[0]
        .trim()
        .strip_prefix("tini version ")
        .unwrap_or("")
        .to_string();
    if version.is_empty() && commit.is_empty() {
        return Err(format!("unknown output format: {output}"));
    }
    Ok((version, commit))
}

#[test]
fn version_line_is_tini_shaped_and_docker_reads_the_commit() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'));
    let rest = line
        .strip_prefix("husk-init version ")
        .expect("husk-init version prefix");
    let (version, git) = rest
        .split_once(" - git.")
        .expect("tini's ' - git.' separator");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(
        !git.is_empty() && git.chars().all(|c| c.is_ascii_alphanumeric()),
        "{git}"
    );
    let (_, commit) = docker_parse(&text).expect("docker parses it");
    assert_eq!(commit, git);
    // The oracle: Debian's tini output parses the same way.
    if common::have_tini() {
        let tini = Command::new(common::TINI)
            .arg("--version")
            .output()
            .unwrap();
        assert!(docker_parse(&String::from_utf8(tini.stdout).unwrap()).is_ok());
    }
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    for flag in ["-h", "--help"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("husk-init (husk-init version "), "{text}");
        for option in [
            "-s:",
            "-p SIGNAL",
            "-e EXIT_CODE",
            "--reload-on",
            "--add-host",
            "TINI_SUBREAPER",
        ] {
            assert!(text.contains(option), "usage lacks {option}");
        }
    }
}

#[test]
fn missing_program_prints_usage_and_exits_1() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: husk-init"));
    let out = run(&["-s", "--"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_option_values_are_reported() {
    let out = run(&["-e", "256", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not a valid option for -e: 256"));
    let out = run(&["-p", "SIGNOPE", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not a valid option for -p: SIGNOPE"));
    let out = run(&["-x", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown option: -x"));
    let out = run(&["--reload-on"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn exec_failures_use_shell_codes() {
    let out = run(&["-s", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exec /nonexistent/program failed: No such file or directory"),
        "{stderr}"
    );
    let dir = common::scratch();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let out = run(&["-s", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn warns_when_it_cannot_reap() {
    let out = run(&["true"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not running as PID 1 and isn't registered as a child subreaper"),
        "{stderr}"
    );
    assert!(run(&["-s", "true"]).stderr.is_empty());
    let quiet = Command::new(HUSK_INIT)
        .arg("true")
        .env("TINI_VERBOSITY", "0")
        .output()
        .unwrap();
    assert!(quiet.stderr.is_empty());
}
