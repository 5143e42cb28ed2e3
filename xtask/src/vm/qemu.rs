//! Booting the VM under qemu (software emulation: KVM is not usable on the machines this
//! runs on) with its serial console on qemu's stdout, a hard time limit, and the verdict read
//! from the console.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What the guest's test program printed last: its counts.
pub const RESULT_PREFIX: &str = "HUSK-VM-RESULT:";

/// What to boot and how.
pub struct Boot<'a> {
    /// The bzImage.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initrd: &'a Path,
    /// The kernel command line.
    pub append: &'a str,
    /// Hard limit: the VM is killed after it.
    pub timeout: Duration,
    /// Every console line goes here too (kept for post-mortems).
    pub log: &'a Path,
    /// qemu's own stderr (bad options, a kernel it cannot load).
    pub qemu_stderr: &'a Path,
}

/// How the run ended.
pub struct Run {
    /// Every console line, without line ends.
    pub lines: Vec<String>,
    /// qemu's exit status; None when it was killed on timeout.
    pub status: Option<ExitStatus>,
    /// How long qemu ran.
    pub elapsed: Duration,
}

/// Kills qemu (by its pid, through the Child) unless it has exited: on timeout, on an error,
/// on a panic.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Boots the VM and collects its console until qemu exits or the time is up; each line is
/// echoed on stderr as `vm| LINE`.
pub fn boot(b: &Boot) -> Result<Run> {
    let mut log = File::create(b.log).with_context(|| format!("creating {}", b.log.display()))?;
    let stderr = File::create(b.qemu_stderr)
        .with_context(|| format!("creating {}", b.qemu_stderr.display()))?;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        // TCG explicitly: never try KVM, which is present but unusable here.
        "-accel",
        "tcg",
        "-cpu",
        "max",
        // Two CPUs for the cpuset check; 1 GiB is plenty for busybox containers with
        // 16-128 MiB limits and 8 huge pages.
        "-smp",
        "2",
        "-m",
        "1024",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        // A kernel panic (panic=-1 reboots at once) ends qemu instead of looping.
        "-no-reboot",
        "-kernel",
    ])
    .arg(b.kernel)
    .arg("-initrd")
    .arg(b.initrd)
    .arg("-append")
    .arg(b.append)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(stderr);
    // If xtask itself is killed (CI's timeout, ^C), qemu must not live on: the guest has no
    // deadline of its own. PR_SET_PDEATHSIG kills it when the thread that spawned it ends,
    // and this (main) thread outlives the run.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    eprintln!("+ {}", crate::show(&cmd));
    let start = Instant::now();
    let mut guard = Guard(
        cmd.spawn()
            .context("starting qemu-system-x86_64 (Debian's qemu-system-x86)")?,
    );
    let stdout = guard.0.stdout.take().context("qemu has no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        // Console bytes need not be UTF-8 (a garbled boot); lossy lines are fine for a log.
        while let Ok(n) = r.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            buf.clear();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = start + b.timeout;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                eprintln!("vm| {line}");
                let _ = writeln!(log, "{line}");
                lines.push(line);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
        }
    }
    let status = if timed_out {
        let _ = guard.0.kill();
        let _ = guard.0.wait();
        None
    } else {
        Some(guard.0.wait().context("waiting for qemu")?)
    };
    let elapsed = start.elapsed();
    // qemu is gone, so its stdout is closed and the reader ends.
    let _ = reader.join();
    Ok(Run {
        lines,
        status,
        elapsed,
    })
}

/// The guest's counts: passed, failed, known gaps.
#[derive(Debug, PartialEq, Eq)]
pub struct Counts {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
    /// Known gaps that showed up as documented.
    pub gaps: u32,
}

/// Parses `HUSK-VM-RESULT: N passed, M failed, K known-gap` (the line may carry console
/// noise before the prefix).
pub fn parse_result(line: &str) -> Option<Counts> {
    let rest = &line[line.find(RESULT_PREFIX)? + RESULT_PREFIX.len()..];
    let mut counts = Counts {
        passed: 0,
        failed: 0,
        gaps: 0,
    };
    let mut seen = 0;
    for part in rest.split(',') {
        let (n, what) = part.trim().split_once(' ')?;
        let n: u32 = n.parse().ok()?;
        match what.trim() {
            "passed" => counts.passed = n,
            "failed" => counts.failed = n,
            "known-gap" => counts.gaps = n,
            _ => return None,
        }
        seen += 1;
    }
    (seen == 3).then_some(counts)
}

/// The last `n` lines, indented, for error messages.
pub fn tail(lines: &[String], n: usize) -> String {
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Turns a run into the lane's verdict: the counts when the guest reported and nothing
/// failed; otherwise an error that says whether the kernel did not boot, the guest program
/// died, the run timed out, or checks failed (naming them).
pub fn verdict(run: &Run, timeout: Duration, qemu_stderr: &str) -> Result<Counts> {
    let result = run.lines.iter().rev().find_map(|l| parse_result(l));
    let failed: Vec<&str> = run
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| l.split(" (").next().unwrap_or(l))
        .collect();
    let reached = |marker: &str| run.lines.iter().any(|l| l.contains(marker));
    match (result, run.status) {
        (Some(c), _) if c.failed > 0 || !failed.is_empty() => bail!(
            "{} of {} cgroup v2 checks failed in the VM: {}",
            c.failed.max(failed.len() as u32),
            c.passed + c.failed + c.gaps,
            failed.join(", ")
        ),
        (Some(c), _) => Ok(c),
        (None, None) => bail!(
            "the VM did not finish within {}s (killed){}; last console lines:\n{}",
            timeout.as_secs(),
            if reached("HUSK-VM-BEGIN") {
                ", the checks were running"
            } else if reached("HUSK-VM-BOOTED") {
                ", booted but the checks never started"
            } else {
                ", it never got to its init script (boot hung?)"
            },
            tail(&run.lines, 30)
        ),
        (None, Some(status)) => {
            let why = if let Some(e) = run.lines.iter().find(|l| l.contains("HUSK-VM-ERROR")) {
                format!("the guest reported: {e}")
            } else if reached("HUSK-VM-BEGIN") {
                "the guest test program died before printing its result".to_string()
            } else if reached("HUSK-VM-BOOTED") {
                "the guest booted but the test program did not start".to_string()
            } else if reached("Kernel panic") {
                "the guest kernel panicked".to_string()
            } else if run.lines.is_empty() {
                "the guest printed nothing: the kernel did not boot (or qemu failed)".to_string()
            } else {
                "the kernel did not reach the VM's init script (boot failure)".to_string()
            };
            bail!(
                "{why}; qemu exited {status}{}; last console lines:\n{}",
                if qemu_stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(", qemu said: {}", qemu_stderr.trim())
                },
                tail(&run.lines, 30)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn run(lines: &[&str], status: Option<i32>) -> Run {
        Run {
            lines: lines.iter().map(|s| s.to_string()).collect(),
            status: status.map(ExitStatus::from_raw),
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn result_line() {
        assert_eq!(
            parse_result("HUSK-VM-RESULT: 20 passed, 1 failed, 1 known-gap"),
            Some(Counts {
                passed: 20,
                failed: 1,
                gaps: 1
            })
        );
        assert_eq!(
            parse_result("[  9.1] x HUSK-VM-RESULT: 3 passed, 0 failed, 0 known-gap"),
            Some(Counts {
                passed: 3,
                failed: 0,
                gaps: 0
            })
        );
        assert_eq!(parse_result("HUSK-VM-RESULT: 3 passed"), None);
        assert_eq!(parse_result("3 passed, 0 failed, 0 known-gap"), None);
    }

    #[test]
    fn verdicts() {
        let t = Duration::from_secs(5);
        let ok = run(
            &[
                "HUSK-VM-BEGIN: 2 checks",
                "PASS a (1.0s)",
                "HUSK-VM-RESULT: 2 passed, 0 failed, 0 known-gap",
            ],
            Some(0),
        );
        assert!(verdict(&ok, t, "").is_ok());
        let bad = run(
            &[
                "PASS a (1.0s)",
                "FAIL b (2.0s): x",
                "HUSK-VM-RESULT: 1 passed, 1 failed, 0 known-gap",
            ],
            Some(0),
        );
        let e = verdict(&bad, t, "").unwrap_err().to_string();
        assert!(e.contains("1 of 2") && e.contains(": b"), "{e}");
        let hung = run(&["Linux version 6.1"], None);
        let e = verdict(&hung, t, "").unwrap_err().to_string();
        assert!(
            e.contains("did not finish within 5s") && e.contains("never got to"),
            "{e}"
        );
        let silent = run(&[], Some(1 << 8));
        let e = verdict(&silent, t, "could not load kernel")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel did not boot") && e.contains("could not load kernel"),
            "{e}"
        );
        let panic = run(
            &["Kernel panic - not syncing: No working init found"],
            Some(0),
        );
        let e = verdict(&panic, t, "").unwrap_err().to_string();
        assert!(e.contains("panicked"), "{e}");
        let died = run(
            &[
                "HUSK-VM-BOOTED: x",
                "HUSK-VM-BEGIN: 3 checks",
                "HUSK-VM-EXIT: 134",
            ],
            Some(0),
        );
        let e = verdict(&died, t, "").unwrap_err().to_string();
        assert!(e.contains("died before printing"), "{e}");
    }
}
