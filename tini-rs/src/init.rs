//! The supervisor: parse, set up, spawn, then loop forwarding signals, reloading and reaping
//! until the main child exits. tini.c's `main`, in Rust.

use alloc::vec::Vec;
use core::ffi::{c_int, CStr};

use crate::args::{self, Action, ArgError, Config};
use crate::etc_hosts::EtcHosts;
use crate::log::{self, Msg};
use crate::oom::MemCgroup;
use crate::reap::reap;
use crate::signals::{self, Signals};
use crate::spawn::spawn;
use crate::status;
use crate::sys::{self, Argv};
use crate::watch::Watcher;

/// Runs husk-init with the process arguments; returns the exit code.
pub fn run(argv: &Argv) -> c_int {
    let list: Vec<&'static CStr> = (0..argv.len()).filter_map(|i| argv.get(i)).collect();
    match args::parse(&list, sys::getenv) {
        Ok(Action::Version) => {
            Msg::plain()
                .s(crate::VERSION.as_bytes())
                .emit_to(libc::STDOUT_FILENO);
            0
        }
        Ok(Action::Help) => {
            usage(libc::STDOUT_FILENO);
            0
        }
        Ok(Action::Run(cfg)) => supervise(&cfg, argv),
        Ok(Action::Pause(cfg)) => crate::pause::pause(&cfg),
        Err(err) => {
            log::set_verbosity(1);
            match err {
                ArgError::Invalid(opt, value) => {
                    log::fatal()
                        .s(b"Not a valid option for ")
                        .s(opt.as_bytes())
                        .s(b": ")
                        .s(value)
                        .emit();
                }
                ArgError::MissingValue(opt) => {
                    log::fatal()
                        .s(b"Option ")
                        .s(opt.as_bytes())
                        .s(b" needs a value")
                        .emit();
                }
                ArgError::Unknown(opt) => {
                    log::fatal().s(b"Unknown option: ").s(opt).emit();
                    usage(libc::STDERR_FILENO);
                }
                ArgError::NoProgram => usage(libc::STDERR_FILENO),
                ArgError::ProgramWithPause(program) => {
                    log::fatal()
                        .s(b"--pause runs no program, but got: ")
                        .s(program)
                        .emit();
                }
            }
            1
        }
    }
}

/// Prints the usage text to `fd`.
fn usage(fd: c_int) {
    Msg::plain()
        .s(b"husk-init (")
        .s(crate::VERSION.as_bytes())
        .s(b")")
        .emit_to(fd);
    let _ = sys::write_all(fd, args::USAGE);
}

/// Prints a fatal error about `what` failing with `errno` and returns exit code 1.
fn fatal(what: &[u8], errno: sys::Errno) -> c_int {
    log::fatal().s(what).s(b" failed: ").err(errno).emit();
    1
}

/// Supervises the program named by `cfg`; returns husk-init's exit code.
fn supervise(cfg: &Config, argv: &Argv) -> c_int {
    log::set_verbosity(cfg.verbosity);

    let signals = match Signals::configure() {
        Ok(s) => s,
        Err((what, e)) => return fatal(what, e),
    };
    if cfg.parent_death_signal != 0 {
        if let Err(e) = sys::set_parent_death_signal(cfg.parent_death_signal) {
            return fatal(b"Setting the parent death signal", e);
        }
    }
    if cfg.subreaper {
        if let Err(e) = sys::set_child_subreaper() {
            return fatal(b"Registering as child subreaper", e);
        }
    }
    reaper_check();

    // Before the child starts; bad entries end husk-init here with a clear message.
    let etc_hosts = if cfg.has_hosts() {
        match EtcHosts::install(cfg) {
            Some(h) => Some(h),
            None => return 1,
        }
    } else {
        None
    };
    let mut cgroup = MemCgroup::locate();
    let watcher = if cfg.reload_on.is_empty() {
        None
    } else {
        match Watcher::new(&cfg.reload_on) {
            Ok(w) => Some(w),
            Err((e, path)) => {
                log::fatal()
                    .s(b"Cannot watch ")
                    .s(path.to_bytes())
                    .s(b": ")
                    .err(e)
                    .emit();
                return 1;
            }
        }
    };
    // The child takes the terminal's foreground; hand it back at the end if it was ours, so a
    // shell that ran husk-init as a foreground command can use its terminal again.
    let had_terminal = sys::owns_terminal_foreground();
    let child = match spawn(&signals, argv, cfg.program) {
        Ok(pid) => pid,
        Err(e) => return fatal(b"fork", e),
    };
    let Some(mut watcher) = watcher else {
        return signals_only(
            cfg,
            argv,
            &signals,
            child,
            etc_hosts.as_ref(),
            had_terminal,
            cgroup,
        );
    };
    let sfd = match signals.signalfd() {
        Ok(fd) => fd,
        Err(e) => return fatal(b"signalfd", e),
    };

    let mut fds = [
        libc::pollfd {
            fd: sfd.raw(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: watcher.fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        let timeout = watcher.timeout_ms(sys::monotonic_ms());
        fds[0].revents = 0;
        fds[1].revents = 0;
        if let Err(e) = sys::poll(&mut fds, timeout) {
            return fatal(b"poll", e);
        }

        if fds[0].revents != 0 {
            loop {
                let sig = match sys::read_signal(&sfd) {
                    Ok(Some(sig)) => sig,
                    Ok(None) => break,
                    Err(e) => return fatal(b"Reading signals", e),
                };
                if sig == libc::SIGCHLD {
                    log::debug().s(b"Received SIGCHLD").emit();
                    continue;
                }
                if sig == cfg.reload_signal {
                    reload_hosts(cfg, etc_hosts.as_ref());
                }
                if let Err(e) = signals::forward(child, sig, cfg.kill_group) {
                    return fatal(b"Forwarding a signal", e);
                }
            }
        }

        {
            let w = &mut watcher;
            let now = sys::monotonic_ms();
            if fds[1].revents != 0 {
                w.on_events(now);
            }
            if w.take_change(now) {
                reload_hosts(cfg, etc_hosts.as_ref());
                let mut msg = log::info();
                msg.s(b"Watched content changed, sending ");
                signals::describe(&mut msg, cfg.reload_signal);
                msg.emit();
                if let Err(e) = signals::forward(child, cfg.reload_signal, cfg.kill_group) {
                    return fatal(b"Sending the reload signal", e);
                }
            }
        }

        if let Some(code) = reap_and_finish(cfg, argv, child, had_terminal, &mut cgroup) {
            return code;
        }
    }
}

/// The main loop without files to watch: sigwaitinfo alone, as tini and dumb-init wait, so a
/// signal is forwarded after one syscall instead of a poll wake-up and a signalfd read.
fn signals_only(
    cfg: &Config,
    argv: &Argv,
    signals: &Signals,
    child: libc::pid_t,
    etc_hosts: Option<&EtcHosts>,
    had_terminal: bool,
    mut cgroup: Option<MemCgroup>,
) -> c_int {
    loop {
        let sig = match signals.wait() {
            Ok(sig) => sig,
            Err(e) => return fatal(b"Waiting for signals", e),
        };
        if sig != libc::SIGCHLD {
            if sig == cfg.reload_signal {
                reload_hosts(cfg, etc_hosts);
            }
            if let Err(e) = signals::forward(child, sig, cfg.kill_group) {
                return fatal(b"Forwarding a signal", e);
            }
            // Only an exit makes a zombie, and every exit queues a SIGCHLD: nothing to reap
            // now. Going straight back to waiting also leaves the CPU to the child the signal
            // just woke.
            continue;
        }
        log::debug().s(b"Received SIGCHLD").emit();
        if let Some(code) = reap_and_finish(cfg, argv, child, had_terminal, &mut cgroup) {
            return code;
        }
    }
}

/// Reaps every exited child; once the main child is among them, hands the terminal back and
/// returns husk-init's exit code (also when waiting itself failed).
fn reap_and_finish(
    cfg: &Config,
    argv: &Argv,
    child: libc::pid_t,
    had_terminal: bool,
    cgroup: &mut Option<MemCgroup>,
) -> Option<c_int> {
    match reap(child, cfg.warn_on_reap) {
        Err(e) => Some(fatal(b"waitpid", e)),
        Ok(None) => None,
        Ok(Some(status)) => {
            if had_terminal {
                // SIGTTOU is ignored, so a background husk-init may do this.
                let _ = sys::take_terminal_foreground();
            }
            Some(child_exited(cfg, argv, child, status, cgroup.as_mut()))
        }
    }
}

/// Reports the main child's end and computes husk-init's exit code from it.
fn child_exited(
    cfg: &Config,
    argv: &Argv,
    child: libc::pid_t,
    status: c_int,
    cgroup: Option<&mut MemCgroup>,
) -> c_int {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let mut msg = log::info();
        msg.s(b"Main child exited with signal ");
        signals::describe(&mut msg, sig);
        msg.emit();
        if sig == libc::SIGKILL {
            let name = argv.get(cfg.program).map_or(&b""[..], |p| p.to_bytes());
            if let Some(cg) = cgroup {
                cg.explain_sigkill(name, child);
            }
        }
    } else {
        log::info()
            .s(b"Main child exited normally (with status '")
            .n(libc::WEXITSTATUS(status) as i64)
            .s(b"')")
            .emit();
    }
    match status::exit_code(status, &cfg.remap) {
        Some(code) => code as c_int,
        None => {
            log::fatal()
                .s(b"Main child exited for unknown reason")
                .emit();
            1
        }
    }
}

/// Re-reads the hosts sources and re-installs /etc/hosts; on error keeps the old file.
fn reload_hosts(cfg: &Config, etc_hosts: Option<&EtcHosts>) {
    if let Some(installed) = etc_hosts {
        installed.reapply(cfg);
    }
}

/// Warns when orphans will not be re-parented to husk-init (neither PID 1 nor subreaper).
pub(crate) fn reaper_check() {
    if sys::getpid() == 1 {
        return;
    }
    match sys::is_child_subreaper() {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => log::debug()
            .s(b"Failed to read child subreaper attribute: ")
            .err(e)
            .emit(),
    }
    log::warn()
        .s(b"husk-init is not running as PID 1 and isn't registered as a child subreaper.\n")
        .s(b"Zombie processes will not be re-parented to husk-init, so zombie reaping won't work.\n")
        .s(b"To fix the problem, use the -s option or set the environment variable TINI_SUBREAPER ")
        .s(b"to register husk-init as a child subreaper, or run husk-init as PID 1.")
        .emit();
}
