//! Tiny programs the benchmark runs inside containers and under inits, built into xtask itself
//! (`cargo xtask __bench-probe NAME ...`) so they need nothing beyond the toolchain.
//!
//! - `floor ROOTFS`: the kernel's floor for a container: new mount/pid/uts/ipc/net namespaces,
//!   pivot_root into ROOTFS, mount /proc, exec /bin/true.
//! - `orphans N`: makes N orphaned grandchildren and waits until the init has reaped them all.
//! - `sigchild`: prints CLOCK_MONOTONIC (ns) each time SIGUSR1 arrives, for forwarding latency.

use std::ffi::CString;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Runs one probe by name.
pub fn run(name: &str, args: &[String]) -> Result<i32> {
    match name {
        "floor" => floor(Path::new(args.first().context("floor needs ROOTFS")?)),
        "orphans" => orphans(args.first().map_or(Ok(10_000), |n| n.parse())?),
        "sigchild" => sigchild(),
        other => bail!("unknown probe {other:?}"),
    }
}

/// Monotonic clock in nanoseconds (the clock is shared by every process on the machine).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn check(r: libc::c_int, what: &str) -> Result<()> {
    if r < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn floor(rootfs: &Path) -> Result<i32> {
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    // SAFETY: unshare changes only this process's namespaces.
    check(unsafe { libc::unshare(flags) }, "unshare")?;
    let root = CString::new(rootfs.as_os_str().as_encoded_bytes())?;
    // SAFETY: single-threaded; the child only makes syscalls and execs or exits.
    let pid = unsafe { libc::fork() };
    check(pid, "fork")?;
    if pid == 0 {
        let code = match floor_child(&root) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("floor: {e:#}");
                1
            }
        };
        // SAFETY: leave the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    check(unsafe { libc::waitpid(pid, &mut status, 0) }, "waitpid")?;
    Ok(libc::WEXITSTATUS(status))
}

fn floor_child(root: &CString) -> Result<()> {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let (none, slash, dot, proc_, true_) = (c("none"), c("/"), c("."), c("/proc"), c("/bin/true"));
    // SAFETY: mount/chdir/pivot_root/umount2/execv with NUL-terminated strings we own.
    unsafe {
        check(
            libc::mount(
                none.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "make / private",
        )?;
        check(
            libc::mount(
                root.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ),
            "bind rootfs",
        )?;
        check(libc::chdir(root.as_ptr()), "chdir rootfs")?;
        check(
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int,
            "pivot_root",
        )?;
        check(
            libc::umount2(dot.as_ptr(), libc::MNT_DETACH),
            "detach old root",
        )?;
        check(libc::chdir(slash.as_ptr()), "chdir /")?;
        check(
            libc::mount(
                proc_.as_ptr(),
                proc_.as_ptr(),
                c("proc").as_ptr(),
                0,
                std::ptr::null(),
            ),
            "mount proc",
        )?;
        let argv = [true_.as_ptr(), std::ptr::null()];
        libc::execv(true_.as_ptr(), argv.as_ptr());
    }
    bail!("exec /bin/true: {}", std::io::Error::last_os_error())
}

fn orphans(n: usize) -> Result<i32> {
    for _ in 0..n {
        // SAFETY: the child forks once more and exits at once; no Rust state is touched.
        let pid = unsafe { libc::fork() };
        check(pid, "fork")?;
        if pid == 0 {
            // SAFETY: as above; the grandchild exits immediately and becomes the init's zombie.
            unsafe {
                if libc::fork() == 0 {
                    libc::_exit(0);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: reaps our own child; its child is now an orphan for the init to reap.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    // Done when no zombie is left for the init to reap.
    loop {
        let zombies = std::fs::read_dir("/proc")?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
                    .unwrap_or(false)
            })
            .count();
        if zombies == 0 {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

fn sigchild() -> Result<i32> {
    // SAFETY: signal-mask calls on sigset_t values we own.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    loop {
        let mut sig = 0;
        // SAFETY: sigwait on the blocked set we own.
        unsafe { libc::sigwait(&set, &mut sig) };
        if sig == libc::SIGTERM {
            return Ok(0);
        }
        writeln!(out, "{}", monotonic_ns())?;
        out.flush()?;
    }
}
