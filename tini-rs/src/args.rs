//! Command line and environment: tini's options plus husk-init's own, parsed by hand.
//!
//! Parsing stops at `--` or at the first argument that is not an option, so
//! `husk-init sh -c 'exit 3'` works without `--`. Short options group (`-sg`) and take their
//! value attached or separate (`-e143`, `-e 143`); long options take `--opt VALUE` or
//! `--opt=VALUE`.

use alloc::vec::Vec;
use core::ffi::{c_int, CStr};

use crate::signame;
use crate::status::{self, ExitRemap};

/// What the command line asks for.
#[derive(Debug)]
pub enum Action<'a> {
    /// Supervise a program.
    Run(Config<'a>),
    /// Print the version line.
    Version,
    /// Print the usage text.
    Help,
    /// Hold the pod's namespaces: sleep and reap, no program (`--pause`).
    Pause(Config<'a>),
}

/// Everything that shapes a run.
#[derive(Debug)]
pub struct Config<'a> {
    /// Register as a child subreaper (`-s`, `TINI_SUBREAPER`).
    pub subreaper: bool,
    /// Warn about every reaped zombie (`-w`).
    pub warn_on_reap: bool,
    /// Signal the child's whole process group (`-g`, `TINI_KILL_PROCESS_GROUP`).
    pub kill_group: bool,
    /// Signal to get when husk-init's parent dies (`-p`), 0 for none.
    pub parent_death_signal: c_int,
    /// Exit codes remapped to 0 (`-e`).
    pub remap: ExitRemap,
    /// Message verbosity (`TINI_VERBOSITY`, then one more per `-v`).
    pub verbosity: i32,
    /// Files or directories whose content changes trigger a reload (`--reload-on`).
    pub reload_on: Vec<&'a CStr>,
    /// The signal that means "reload" (`--reload-signal`, default SIGHUP).
    pub reload_signal: c_int,
    /// `--add-host NAME:IP` values, in order.
    pub add_hosts: Vec<&'a [u8]>,
    /// `--hosts-file PATH` values, in order.
    pub hosts_files: Vec<&'a CStr>,
    /// The `HUSK_INIT_HOSTS` value, if set.
    pub hosts_env: Option<&'a [u8]>,
    /// Index in argv of the program to run; its arguments follow it.
    pub program: usize,
    /// Pause mode: no program, sleep and reap until SIGTERM/SIGINT (`--pause`).
    pub pause: bool,
}

impl Config<'_> {
    /// Whether any /etc/hosts override source was given.
    pub fn has_hosts(&self) -> bool {
        !self.add_hosts.is_empty()
            || !self.hosts_files.is_empty()
            || self.hosts_env.is_some_and(|v| !v.is_empty())
    }
}

/// Why the command line was rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum ArgError<'a> {
    /// An option husk-init does not know.
    Unknown(&'a [u8]),
    /// An option that needs a value came last.
    MissingValue(&'static str),
    /// An option value that does not parse.
    Invalid(&'static str, &'a [u8]),
    /// No program to run was given.
    NoProgram,
    /// `--pause` runs no program, but one was given.
    ProgramWithPause(&'a [u8]),
}

/// The environment variables husk-init reads.
pub mod env {
    use core::ffi::CStr;

    /// Presence registers husk-init as a subreaper, as tini.
    pub const SUBREAPER: &CStr = c"TINI_SUBREAPER";
    /// Presence signals the whole process group, as tini.
    pub const KILL_PROCESS_GROUP: &CStr = c"TINI_KILL_PROCESS_GROUP";
    /// Base verbosity, as tini.
    pub const VERBOSITY: &CStr = c"TINI_VERBOSITY";
    /// `name=ip,name=ip` /etc/hosts overrides.
    pub const HOSTS: &CStr = c"HUSK_INIT_HOSTS";
}

/// Parses `argv` (program name first); `getenv` looks up environment variables.
pub fn parse<'a>(
    argv: &[&'a CStr],
    getenv: impl Fn(&CStr) -> Option<&'a CStr>,
) -> Result<Action<'a>, ArgError<'a>> {
    let mut cfg = Config {
        subreaper: getenv(env::SUBREAPER).is_some(),
        warn_on_reap: false,
        kill_group: getenv(env::KILL_PROCESS_GROUP).is_some(),
        parent_death_signal: 0,
        remap: ExitRemap::default(),
        verbosity: getenv(env::VERBOSITY).map_or(1, |v| atoi(v.to_bytes())),
        reload_on: Vec::new(),
        reload_signal: libc::SIGHUP,
        add_hosts: Vec::new(),
        hosts_files: Vec::new(),
        hosts_env: getenv(env::HOSTS).map(CStr::to_bytes),
        program: argv.len(),
        pause: false,
    };

    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i];
        let bytes = arg.to_bytes();
        if bytes == b"--" {
            i += 1;
            break;
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                // The value is a suffix of a C string, so it keeps its NUL terminator.
                Some(eq) => (&long[..eq], Some(suffix(arg, 2 + eq + 1))),
                None => (long, None),
            };
            match name {
                b"version" => return Ok(Action::Version),
                b"help" => return Ok(Action::Help),
                b"pause" if inline.is_none() => {
                    cfg.pause = true;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let opt: &'static str = match name {
                b"reload-on" => "--reload-on",
                b"reload-signal" => "--reload-signal",
                b"add-host" => "--add-host",
                b"hosts-file" => "--hosts-file",
                _ => return Err(ArgError::Unknown(bytes)),
            };
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    *argv.get(i).ok_or(ArgError::MissingValue(opt))?
                }
            };
            match opt {
                "--reload-on" => cfg.reload_on.push(value),
                "--reload-signal" => {
                    cfg.reload_signal = signame::parse(value.to_bytes())
                        .ok_or(ArgError::Invalid(opt, value.to_bytes()))?;
                }
                "--add-host" => cfg.add_hosts.push(value.to_bytes()),
                _ => cfg.hosts_files.push(value),
            }
            i += 1;
            continue;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            break;
        }
        let mut j = 1;
        while j < bytes.len() {
            let flag = bytes[j];
            j += 1;
            match flag {
                b's' => cfg.subreaper = true,
                b'w' => cfg.warn_on_reap = true,
                b'g' => cfg.kill_group = true,
                b'v' => cfg.verbosity += 1,
                b'h' => return Ok(Action::Help),
                b'p' | b'e' => {
                    let opt = if flag == b'p' { "-p" } else { "-e" };
                    let value = if j < bytes.len() {
                        &bytes[j..]
                    } else {
                        i += 1;
                        argv.get(i).ok_or(ArgError::MissingValue(opt))?.to_bytes()
                    };
                    j = bytes.len();
                    if flag == b'p' {
                        cfg.parent_death_signal =
                            signame::parse(value).ok_or(ArgError::Invalid(opt, value))?;
                    } else {
                        let code =
                            status::parse_code(value).ok_or(ArgError::Invalid(opt, value))?;
                        cfg.remap.insert(code);
                    }
                }
                _ => return Err(ArgError::Unknown(bytes)),
            }
        }
        i += 1;
    }

    if cfg.pause {
        return match argv.get(i) {
            Some(program) => Err(ArgError::ProgramWithPause(program.to_bytes())),
            None => Ok(Action::Pause(cfg)),
        };
    }
    if i >= argv.len() {
        return Err(ArgError::NoProgram);
    }
    cfg.program = i;
    Ok(Action::Run(cfg))
}

/// The tail of C string `s` from byte `start` on (still NUL-terminated).
fn suffix(s: &CStr, start: usize) -> &CStr {
    let with_nul = s.to_bytes_with_nul();
    // A suffix of a NUL-terminated byte string with no interior NUL is one too; fall back to
    // the empty string only if start were past the end, which callers never ask for.
    CStr::from_bytes_with_nul(&with_nul[start.min(with_nul.len() - 1)..]).unwrap_or(c"")
}

/// C's atoi: optional sign and leading digits; anything else gives 0.
fn atoi(text: &[u8]) -> i32 {
    let text = text.trim_ascii_start();
    let (neg, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut n: i32 = 0;
    for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add((d - b'0') as i32);
    }
    if neg {
        -n
    } else {
        n
    }
}

/// The usage text, tini's layout with husk-init's additions.
pub const USAGE: &[u8] = b"Usage: husk-init [OPTIONS] [--] PROGRAM [ARGS] | --pause | --version

Execute a program under the supervision of a valid init process (husk-init)

Command line options:

  --version: Show version and exit.
  --pause: Run no program: hold a pod's namespaces, reap zombies, exit 0 on SIGTERM/SIGINT
      (the Kubernetes pause process).
  -h: Show this help message and exit.
  -s: Register as a process subreaper (requires Linux >= 3.4).
  -p SIGNAL: Trigger SIGNAL when parent dies, e.g. \"-p SIGKILL\".
  -v: Generate more verbose output. Repeat up to 3 times.
  -w: Print a warning when processes are getting reaped.
  -g: Send signals to the child's process group.
  -e EXIT_CODE: Remap EXIT_CODE (from 0 to 255) to 0 (can be repeated).
  --reload-on PATH: Send the reload signal to the child when the content of file or
      directory PATH changes (can be repeated; handles Kubernetes ConfigMap volumes).
  --reload-signal SIGNAL: The reload signal (default: SIGHUP).
  --add-host NAME:IP: Make NAME resolve to IP through /etc/hosts (can be repeated).
  --hosts-file PATH: Add the entries of hosts(5) file PATH to /etc/hosts (can be repeated).

Environment variables:

  TINI_SUBREAPER: Register as a process subreaper (requires Linux >= 3.4).
  TINI_VERBOSITY: Set the verbosity level (default: 1).
  TINI_KILL_PROCESS_GROUP: Send signals to the child's process group.
  HUSK_INIT_HOSTS: /etc/hosts overrides as name=ip,name=ip.

";

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn owned(args: &[&str]) -> Vec<CString> {
        args.iter().map(|a| CString::new(*a).unwrap()).collect()
    }

    fn run<'a>(
        args: &'a [CString],
        env: &'a [(&CStr, &'a CStr)],
    ) -> Result<Action<'a>, ArgError<'a>> {
        let argv: Vec<&CStr> = args.iter().map(|a| a.as_c_str()).collect();
        parse(&argv, |name| {
            env.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        })
    }

    fn config<'a>(args: &'a [CString], env: &'a [(&CStr, &'a CStr)]) -> Config<'a> {
        match run(args, env) {
            Ok(Action::Run(cfg)) => cfg,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn tini_flags() {
        let args = owned(&[
            "husk-init",
            "-s",
            "-wg",
            "-vv",
            "-p",
            "SIGKILL",
            "-e143",
            "-e",
            "3",
            "--",
            "sh",
            "-c",
            "x",
        ]);
        let cfg = config(&args, &[]);
        assert!(cfg.subreaper && cfg.warn_on_reap && cfg.kill_group);
        assert_eq!(cfg.verbosity, 3);
        assert_eq!(cfg.parent_death_signal, libc::SIGKILL);
        assert!(cfg.remap.contains(143) && cfg.remap.contains(3) && !cfg.remap.contains(0));
        assert_eq!(cfg.program, 10);
    }

    #[test]
    fn stops_at_first_non_option() {
        let args = owned(&["husk-init", "-s", "sh", "-c", "-v"]);
        let cfg = config(&args, &[]);
        assert_eq!(cfg.program, 2);
        assert_eq!(cfg.verbosity, 1);
    }

    #[test]
    fn long_options() {
        let args = owned(&[
            "husk-init",
            "--reload-on",
            "/etc/app",
            "--reload-on=/etc/b.conf",
            "--reload-signal=USR2",
            "--add-host",
            "db:10.0.0.5",
            "--add-host=x=::1",
            "--hosts-file",
            "/h",
            "prog",
        ]);
        let cfg = config(&args, &[]);
        assert_eq!(cfg.reload_on, [c"/etc/app", c"/etc/b.conf"]);
        assert_eq!(cfg.reload_signal, libc::SIGUSR2);
        assert_eq!(cfg.add_hosts, [&b"db:10.0.0.5"[..], b"x=::1"]);
        assert_eq!(cfg.hosts_files, [c"/h"]);
        assert!(cfg.has_hosts());
        assert_eq!(cfg.program, 10);
    }

    #[test]
    fn environment() {
        let args = owned(&["husk-init", "-v", "prog"]);
        let env = [
            (env::SUBREAPER, c""),
            (env::KILL_PROCESS_GROUP, c"1"),
            (env::VERBOSITY, c"0"),
            (env::HOSTS, c"a=1.2.3.4"),
        ];
        let cfg = config(&args, &env);
        assert!(cfg.subreaper && cfg.kill_group);
        assert_eq!(cfg.verbosity, 1);
        assert_eq!(cfg.hosts_env, Some(&b"a=1.2.3.4"[..]));
        assert!(cfg.has_hosts());
        let none = config(&args, &[]);
        assert!(!none.subreaper && !none.kill_group && !none.has_hosts());
        assert_eq!(none.verbosity, 2);
    }

    #[test]
    fn version_help_and_errors() {
        assert!(matches!(
            run(&owned(&["husk-init", "--version"]), &[]),
            Ok(Action::Version)
        ));
        assert!(matches!(
            run(&owned(&["husk-init", "-h"]), &[]),
            Ok(Action::Help)
        ));
        assert!(matches!(
            run(&owned(&["husk-init", "-s", "--help"]), &[]),
            Ok(Action::Help)
        ));
        assert_eq!(
            run(&owned(&["husk-init"]), &[]).unwrap_err(),
            ArgError::NoProgram
        );
        assert_eq!(
            run(&owned(&["husk-init", "-s", "--"]), &[]).unwrap_err(),
            ArgError::NoProgram
        );
        assert_eq!(
            run(&owned(&["husk-init", "-x", "p"]), &[]).unwrap_err(),
            ArgError::Unknown(b"-x")
        );
        assert_eq!(
            run(&owned(&["husk-init", "--nope", "p"]), &[]).unwrap_err(),
            ArgError::Unknown(b"--nope")
        );
        assert_eq!(
            run(&owned(&["husk-init", "-p"]), &[]).unwrap_err(),
            ArgError::MissingValue("-p")
        );
        assert_eq!(
            run(&owned(&["husk-init", "--add-host"]), &[]).unwrap_err(),
            ArgError::MissingValue("--add-host")
        );
        assert_eq!(
            run(&owned(&["husk-init", "-p", "SIGNOPE", "x"]), &[]).unwrap_err(),
            ArgError::Invalid("-p", b"SIGNOPE")
        );
        assert_eq!(
            run(&owned(&["husk-init", "-e", "256", "x"]), &[]).unwrap_err(),
            ArgError::Invalid("-e", b"256")
        );
    }

    #[test]
    fn pause_mode() {
        let args = owned(&["husk-init", "--pause"]);
        match run(&args, &[]) {
            Ok(Action::Pause(cfg)) => assert!(cfg.pause && !cfg.subreaper),
            other => panic!("expected pause mode, got {other:?}"),
        }
        let args = owned(&["husk-init", "-s", "-v", "--pause"]);
        match run(&args, &[]) {
            Ok(Action::Pause(cfg)) => {
                assert!(cfg.subreaper);
                assert_eq!(cfg.verbosity, 2);
            }
            other => panic!("expected pause mode, got {other:?}"),
        }
        assert_eq!(
            run(&owned(&["husk-init", "--pause", "sleep", "1"]), &[]).unwrap_err(),
            ArgError::ProgramWithPause(b"sleep")
        );
        assert_eq!(
            run(&owned(&["husk-init", "--pause", "--", "x"]), &[]).unwrap_err(),
            ArgError::ProgramWithPause(b"x")
        );
        assert_eq!(
            run(&owned(&["husk-init", "--pause=1"]), &[]).unwrap_err(),
            ArgError::Unknown(b"--pause=1")
        );
        // Without --pause a program is still required.
        assert!(config(&owned(&["husk-init", "prog"]), &[]).pause.eq(&false));
    }

    #[test]
    fn atoi_like_c() {
        assert_eq!(atoi(b"3"), 3);
        assert_eq!(atoi(b" -2x"), -2);
        assert_eq!(atoi(b"x"), 0);
        assert_eq!(atoi(b"99999999999"), i32::MAX);
    }
}
