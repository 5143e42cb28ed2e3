//! `husk-procview [--dir DIR] [--pid-file FILE]`: mounts the procview filesystem at DIR
//! (default /run/husk/procview), re-binds running containers' mounts of a dead predecessor
//! (`repair`, in a child process), serves until SIGTERM/SIGINT/SIGHUP, then unmounts.
//!
//! `husk-procview repair [--dir DIR]`: only the re-binding, against the server running at DIR.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fuser::{Config, MountOption, SessionACL};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::statfs::{statfs, FUSE_SUPER_MAGIC};

use husk_procview::cgroup::Sources;
use husk_procview::fs::ProcView;
use husk_procview::repair;

/// Worker threads: readers block only for a render of a few small files, so a handful keeps
/// many concurrent readers moving.
const THREADS: usize = 4;

struct Args {
    dir: PathBuf,
    pid_file: Option<PathBuf>,
    repair_only: bool,
    /// Set on the repair the server starts itself: say nothing when nothing was repaired.
    quiet: bool,
}

const USAGE: &str =
    "usage: husk-procview [--dir DIR] [--pid-file FILE]\n       husk-procview repair [--dir DIR]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        dir: PathBuf::from("/run/husk/procview"),
        pid_file: None,
        repair_only: false,
        quiet: false,
    };
    let mut it = std::env::args_os().skip(1).peekable();
    if it.peek().and_then(|a| a.to_str()) == Some("repair") {
        it.next();
        args.repair_only = true;
    }
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--dir") => args.dir = it.next().context("--dir needs a value")?.into(),
            Some("--pid-file") => {
                args.pid_file = Some(it.next().context("--pid-file needs a value")?.into())
            }
            Some("--quiet") if args.repair_only => args.quiet = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {arg:?}"),
        }
    }
    Ok(args)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("husk-procview: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    if args.repair_only {
        return run_repair(&args.dir, args.quiet);
    }
    // Blocked before any thread exists, so every worker inherits the mask and the signals wait
    // for the main thread's sigtimedwait.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("block signals")?;

    match statfs(&args.dir) {
        Ok(st) if st.filesystem_type() == FUSE_SUPER_MAGIC => {
            bail!(
                "{} is already a FUSE mount (a server is running)",
                args.dir.display()
            )
        }
        // A crashed server leaves its mount answering ENOTCONN: clear it so we can mount again.
        Err(nix::errno::Errno::ENOTCONN) => {
            nix::mount::umount2(&args.dir, nix::mount::MntFlags::MNT_DETACH)
                .with_context(|| format!("unmount stale {}", args.dir.display()))?;
        }
        _ => {}
    }
    // After the stale-mount check: mkdir -p of a dead mount fails with EEXIST.
    std::fs::create_dir_all(&args.dir).with_context(|| format!("mkdir {}", args.dir.display()))?;

    let src = Sources::host().context("read /proc/self/mountinfo")?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(repair::fsname(&args.dir)),
        MountOption::Subtype("procview".into()),
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoExec,
    ];
    // Containers read as any uid, including ones of user namespaces.
    config.acl = SessionACL::All;
    config.n_threads = Some(THREADS);
    let fs = ProcView::new(src);
    let notifier = fs.notifier_slot();
    let session = fuser::Session::new(fs, &args.dir, &config)
        .with_context(|| format!("mount FUSE at {}", args.dir.display()))?;
    // Set before the first request can arrive: the session only reads once spawned.
    let _ = notifier.set(session.notifier());
    let session = session
        .spawn()
        .with_context(|| format!("start serving {}", args.dir.display()))?;
    spawn_repair(&args.dir);
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("write {}", p.display()))?;
    }

    let timeout = nix::sys::time::TimeSpec::from_duration(Duration::from_secs(1));
    let unmounted_outside = loop {
        if session.guard.is_finished() {
            // Unmounted from outside (umount, fusermount -u): nothing left to serve.
            break true;
        }
        if sigtimedwait(&signals, &timeout).is_some() {
            break false;
        }
    };
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    if unmounted_outside {
        // The mount is gone already; unmounting again would fail with EINVAL.
        return session.join().context("FUSE session");
    }
    session
        .umount_and_join()
        .with_context(|| format!("unmount {}", args.dir.display()))
}

/// `husk-procview repair`: prints what it did; fails when a mount could not be repaired.
fn run_repair(dir: &std::path::Path, quiet: bool) -> Result<()> {
    match nix::sys::statfs::statfs(dir) {
        Ok(st) if st.filesystem_type() == FUSE_SUPER_MAGIC => {}
        _ => bail!(
            "no live husk-procview server is mounted at {}",
            dir.display()
        ),
    }
    let summary = repair::run(dir, &repair::fsname(dir));
    if quiet && summary.namespaces == 0 {
        return Ok(());
    }
    eprintln!(
        "husk-procview: repaired {} mount(s) in {} container(s)",
        summary.repaired, summary.namespaces
    );
    for f in &summary.failures {
        eprintln!("husk-procview: repair: {f}");
    }
    if !summary.failures.is_empty() {
        bail!("{} mount(s) not repaired", summary.failures.len());
    }
    Ok(())
}

/// Runs `husk-procview repair` against this server in a child process (setns needs a
/// single-threaded caller) and reaps it from a thread; its lines go to our stderr.
fn spawn_repair(dir: &std::path::Path) {
    let child = std::process::Command::new("/proc/self/exe")
        .arg("repair")
        .arg("--quiet")
        .arg("--dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .spawn();
    match child {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("husk-procview: start repair: {e}"),
    }
}

/// Waits up to `timeout` for one of `set`; the signal number, or None on timeout.
fn sigtimedwait(set: &SigSet, timeout: &nix::sys::time::TimeSpec) -> Option<i32> {
    // SAFETY: both pointers are to live values for the duration of the call; the siginfo
    // output is not wanted, which the call allows as NULL.
    let r = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), timeout.as_ref()) };
    (r > 0).then_some(r)
}
