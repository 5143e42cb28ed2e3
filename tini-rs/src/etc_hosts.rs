//! Installing the merged hosts file over /etc/hosts, and re-installing it on reload.
//!
//! Preferred: write the merged file to a temporary file on a tmpfs, bind-mount it over
//! /etc/hosts and unlink it (the mount keeps it alive, nothing is left behind). The original
//! stays open underneath, so a reload merges with its current content. Without CAP_SYS_ADMIN
//! the mount fails and /etc/hosts is rewritten in place if writable, keeping the original
//! content in memory for later merges.

use alloc::vec::Vec;
use core::ffi::CStr;

use crate::args::Config;
use crate::hosts;
use crate::log::{self, Msg};
use crate::sys::{self, CPath, Fd};

/// The file being overridden.
const TARGET: &CStr = c"/etc/hosts";

/// Writable tmpfs directories tried for the file to bind-mount, in order.
const SCRATCH_DIRS: [&[u8]; 4] = [b"/dev/shm", b"/run", b"/tmp", b"/dev"];

/// Reads every override source of `cfg` and merges them into `base`; on a bad source,
/// describes it in `err` and returns None.
fn build(cfg: &Config, base: &[u8], err: &mut Msg) -> Option<Vec<u8>> {
    let mut contents = Vec::new();
    for path in &cfg.hosts_files {
        match sys::read_file(path) {
            Ok(content) => contents.push(content),
            Err(e) => {
                err.s(b"cannot read hosts file ")
                    .s(path.to_bytes())
                    .s(b": ")
                    .err(e);
                return None;
            }
        }
    }
    let mut lines = Vec::new();
    for (content, path) in contents.iter().zip(&cfg.hosts_files) {
        hosts::parse_file(content, path.to_bytes(), &mut lines, err)?;
    }
    if let Some(value) = cfg.hosts_env {
        hosts::parse_env(value, &mut lines, err)?;
    }
    for arg in &cfg.add_hosts {
        lines.push(hosts::parse_add_host(arg, err)?);
    }
    Some(hosts::merge(base, &lines))
}

/// How the overrides are installed.
enum Mode {
    /// A file is bind-mounted over /etc/hosts; the original file stays open beneath it.
    Mounted(Fd),
    /// /etc/hosts was rewritten in place; this was its original content.
    InPlace(Vec<u8>),
}

/// The installed overrides.
pub struct EtcHosts(Mode);

impl EtcHosts {
    /// Merges the overrides of `cfg` into /etc/hosts and installs the result; prints a fatal
    /// message and returns None when a source is bad or nothing can be installed.
    pub fn install(cfg: &Config) -> Option<EtcHosts> {
        let (original, base) = match sys::open(TARGET, libc::O_RDONLY, 0) {
            Ok(fd) => match sys::read_to_end(fd.raw()) {
                Ok(base) => (Some(fd), base),
                Err(e) => return failed(b"cannot read /etc/hosts: ", e),
            },
            Err(libc::ENOENT) => (None, Vec::new()),
            Err(e) => return failed(b"cannot open /etc/hosts: ", e),
        };
        let mut err = log::fatal();
        let Some(merged) = build(cfg, &base, &mut err) else {
            err.emit();
            return None;
        };
        let mount_err = match original {
            // Nothing to mount over when /etc/hosts does not exist: create it in place.
            None => libc::ENOENT,
            Some(fd) => match bind_over(&merged) {
                Ok(()) => {
                    log::info()
                        .s(b"Installed /etc/hosts overrides (bind mount)")
                        .emit();
                    return Some(EtcHosts(Mode::Mounted(fd)));
                }
                Err(e) => e,
            },
        };
        match write_in_place(&merged) {
            Ok(()) => {
                log::info()
                    .s(b"Installed /etc/hosts overrides (rewritten in place)")
                    .emit();
                Some(EtcHosts(Mode::InPlace(base)))
            }
            Err(e) => {
                log::fatal()
                    .s(b"cannot install /etc/hosts overrides: bind mount failed (")
                    .err(mount_err)
                    .s(b"; it needs CAP_SYS_ADMIN) and /etc/hosts cannot be rewritten (")
                    .err(e)
                    .s(b")")
                    .emit();
                None
            }
        }
    }

    /// Re-reads the sources and the original file and rewrites the installed file; on error
    /// warns and leaves the installed file as it was.
    pub fn reapply(&self, cfg: &Config) {
        let mut err = log::warn();
        let base = match &self.0 {
            Mode::Mounted(original) => match sys::read_to_end(original.raw()) {
                Ok(base) => base,
                Err(e) => {
                    err.s(b"cannot read the original /etc/hosts: ")
                        .err(e)
                        .emit();
                    return;
                }
            },
            Mode::InPlace(base) => base.clone(),
        };
        let Some(merged) = build(cfg, &base, &mut err) else {
            err.s(b" (keeping the previous /etc/hosts)").emit();
            return;
        };
        match write_in_place(&merged) {
            Ok(()) => log::info().s(b"Re-applied /etc/hosts overrides").emit(),
            Err(e) => err.s(b"cannot rewrite /etc/hosts: ").err(e).emit(),
        }
    }
}

/// Prints a fatal `what` + strerror(errno) and returns None.
fn failed<T>(what: &[u8], errno: sys::Errno) -> Option<T> {
    log::fatal().s(what).err(errno).emit();
    None
}

/// Replaces the content of /etc/hosts (whatever is mounted there) with `content`.
///
/// Writing over the old bytes and then truncating, rather than truncating first, means a
/// concurrent reader never sees an empty file.
fn write_in_place(content: &[u8]) -> sys::Result<()> {
    let fd = sys::open(TARGET, libc::O_WRONLY | libc::O_CREAT, 0o644)?;
    sys::write_all_at(fd.raw(), content, Some(0))?;
    sys::ftruncate(fd.raw(), content.len() as i64)
}

/// Writes `content` to a scratch file, bind-mounts it over /etc/hosts and unlinks it.
fn bind_over(content: &[u8]) -> sys::Result<()> {
    let mut last = libc::ENOENT;
    for dir in SCRATCH_DIRS {
        // A random name: several inits may share a /dev/shm, all of them PID 1.
        let mut path = CPath::new(&[dir, b"/.husk-init-hosts.XXXXXX"]);
        let file = match sys::mkstemp(&mut path) {
            Ok(file) => file,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let written = sys::fchmod(file.raw(), 0o644)
            .and_then(|()| sys::write_all(file.raw(), content))
            .and_then(|()| sys::mount_bind(path.as_cstr(), TARGET));
        // The mount (if any) holds the file; its name is no longer needed either way.
        let _ = sys::unlink(path.as_cstr());
        return written;
    }
    Err(last)
}
