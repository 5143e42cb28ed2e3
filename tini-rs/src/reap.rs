//! Reaping: collect every exited child, keeping the main child's status.

use core::ffi::c_int;

use crate::log;
use crate::sys::{self, Waited};

/// Reaps all children that have exited; returns the main child's wait status if it was among
/// them. Zombies are collected until none is left, so a burst of orphans (one SIGCHLD for many
/// exits) is cleared in one call, and the main child's status cannot be lost among them.
pub fn reap(main: libc::pid_t, warn_each: bool) -> sys::Result<Option<c_int>> {
    let mut main_status = None;
    loop {
        match sys::wait_any_nohang()? {
            Waited::Child(pid, status) if pid == main => {
                log::debug()
                    .s(b"Reaped main child with pid '")
                    .n(pid as i64)
                    .s(b"'")
                    .emit();
                main_status = Some(status);
            }
            Waited::Child(pid, _) => {
                if warn_each {
                    log::warn()
                        .s(b"Reaped zombie process with pid=")
                        .n(pid as i64)
                        .emit();
                } else {
                    log::debug()
                        .s(b"Reaped child with pid: '")
                        .n(pid as i64)
                        .s(b"'")
                        .emit();
                }
            }
            Waited::Running | Waited::NoChildren => return Ok(main_status),
        }
    }
}
