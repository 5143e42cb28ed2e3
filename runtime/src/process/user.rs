//! `process.user`: supplementary groups, gid, uid and umask of the container process, and its
//! HOME, as runc's `setupUser` and `finalizeRootfs` set them.
//!
//! runc changes ids with PR_SET_KEEPCAPS set, so the permitted capability set survives the switch
//! to a non-root uid and `capabilities::apply` can still pick from it afterwards.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

/// The umask runc gives the container process when `process.user.umask` is absent.
pub const DEFAULT_UMASK: u32 = 0o022;

/// Why the container's user could not be set.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// PR_SET_KEEPCAPS could not be set or cleared.
    #[error("unable to {action} keep caps: {errno}")]
    KeepCaps {
        /// "set" or "clear".
        action: &'static str,
        /// Why.
        errno: Errno,
    },
    /// /proc/self/setgroups exists but cannot be read.
    #[error("read /proc/self/setgroups: {0}")]
    ReadSetgroups(std::io::Error),
    /// setgroups(2) refused `additionalGids`.
    #[error("setgroups {gids:?}: {errno}")]
    Setgroups {
        /// The supplementary groups asked for.
        gids: Vec<u32>,
        /// Why.
        errno: Errno,
    },
    /// setresgid(2) refused `gid`.
    #[error("setresgid {gid}: {errno}")]
    Setgid {
        /// The gid asked for.
        gid: u32,
        /// Why.
        errno: Errno,
    },
    /// setresuid(2) refused `uid`.
    #[error("setresuid {uid}: {errno}")]
    Setuid {
        /// The uid asked for.
        uid: u32,
        /// Why.
        errno: Errno,
    },
    /// A stdio descriptor could not be inspected or given to the container's user.
    #[error("fix stdio permissions: {op} {what}: {errno}")]
    Stdio {
        /// The call that failed: "stat", "fstat" or "fchown".
        op: &'static str,
        /// The path or descriptor.
        what: String,
        /// Why.
        errno: Errno,
    },
}

/// Switches to `user`: stdio ownership, groups, gid, uid and umask, keeping capabilities.
///
/// Runs in the container after pivot_root, after `capabilities::drop_bounding` and before
/// `capabilities::apply`.
pub fn apply(user: &User) -> Result<(), UserError> {
    set_ids(user)?;
    nix::sys::stat::umask(umask_mode(user.umask()));
    Ok(())
}

/// [`apply`] without the umask: stdio ownership, groups, gid and uid, keeping capabilities.
///
/// For an exec'd process: runc leaves it the umask it inherited unless the container's config
/// sets one.
pub fn set_ids(user: &User) -> Result<(), UserError> {
    let uid = user.uid();
    let gid = user.gid();
    // Before the switch, while we may still chown: the container's user must own its terminal.
    fix_stdio_permissions(uid)?;
    nix::sys::prctl::set_keepcaps(true).map_err(|errno| UserError::KeepCaps {
        action: "set",
        errno,
    })?;
    // An unprivileged user namespace (setgroups "deny") forbids setgroups(2). runc skips it
    // silently there: the groups cannot be set, and the user did not ask for /etc/group's.
    if setgroups_allowed()? {
        let gids = dedup_gids(user.additional_gids().as_deref().unwrap_or_default());
        let groups: Vec<Gid> = gids.iter().copied().map(Gid::from_raw).collect();
        // An empty list is still set: it clears the groups husk itself was started with.
        nix::unistd::setgroups(&groups).map_err(|errno| UserError::Setgroups { gids, errno })?;
    }
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(|errno| UserError::Setgid { gid, errno })?;
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(|errno| UserError::Setuid { uid, errno })?;
    nix::sys::prctl::set_keepcaps(false).map_err(|errno| UserError::KeepCaps {
        action: "clear",
        errno,
    })?;
    Ok(())
}

/// `additionalGids` without repeats, first occurrence kept: runc collects them in a set, and
/// the kernel would otherwise list a repeated group twice in getgroups(2).
fn dedup_gids(gids: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(gids.len());
    for g in gids {
        if !out.contains(g) {
            out.push(*g);
        }
    }
    out
}

/// The umask to set: `process.user.umask`, or runc's 0022 when it is absent.
pub fn umask_mode(umask: Option<u32>) -> Mode {
    // Bits outside 0777 mean nothing to umask(2); the kernel would drop them too.
    Mode::from_bits_truncate(umask.unwrap_or(DEFAULT_UMASK) & 0o777)
}

/// Whether setgroups(2) is allowed here: false when /proc/self/setgroups says "deny".
pub fn setgroups_allowed() -> Result<bool, UserError> {
    match std::fs::read_to_string("/proc/self/setgroups") {
        Ok(text) => Ok(text.trim() != "deny"),
        // Kernels before 3.19 have no such file, and no such restriction.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(UserError::ReadSetgroups(e)),
    }
}

/// Gives stdin, stdout and stderr to `uid` (keeping their group), as runc does before the switch.
///
/// Descriptors that are /dev/null or already owned by `uid` are left alone, and so are those the
/// kernel will not let us chown (EINVAL: unmapped in the user namespace, EPERM, EROFS).
pub fn fix_stdio_permissions(uid: u32) -> Result<(), UserError> {
    let null = std::fs::metadata("/dev/null").map_err(|e| UserError::Stdio {
        op: "stat",
        what: "/dev/null".into(),
        errno: io_errno(&e),
    })?;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    for (fd, borrowed) in [(0, stdin.as_fd()), (1, stdout.as_fd()), (2, stderr.as_fd())] {
        let st = nix::sys::stat::fstat(borrowed).map_err(|errno| UserError::Stdio {
            op: "fstat",
            what: format!("fd {fd}"),
            errno,
        })?;
        if st.st_uid == uid || st.st_rdev == null.rdev() {
            continue;
        }
        match nix::unistd::fchown(borrowed, Some(Uid::from_raw(uid)), None) {
            Ok(()) | Err(Errno::EINVAL | Errno::EPERM | Errno::EROFS) => {}
            Err(errno) => {
                return Err(UserError::Stdio {
                    op: "fchown",
                    what: format!("fd {fd}"),
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// The home directory of `uid` in /etc/passwd of the current root (call after pivot_root).
pub fn home_for(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    home_in_passwd(&passwd, uid)
}

/// The home directory of the first /etc/passwd entry with `uid`, if any.
pub fn home_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        // name:password:UID:GID:GECOS:directory:shell
        let mut fields = line.trim().split(':');
        let entry_uid = fields.nth(2)?.parse::<u32>().ok()?;
        let home = fields.nth(2)?;
        (entry_uid == uid).then(|| home.to_string())
    })
}

/// Adds `HOME` to `env` when it is missing or empty: the user's home from /etc/passwd, else "/".
pub fn ensure_home(env: &mut Vec<String>, uid: u32) {
    // The last HOME= entry wins, as it does when runc loads the list into its own environment.
    let current = env.iter().rev().find_map(|e| e.strip_prefix("HOME="));
    if current.is_some_and(|h| !h.is_empty()) {
        return;
    }
    env.retain(|e| !e.starts_with("HOME="));
    let home = home_for(uid).unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
}

/// The errno inside an io::Error, EIO when it carries none.
fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::{is_root, run, status_field};
    use oci_spec::runtime::UserBuilder;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          \n\
                          broken line\n\
                          daemon:x:notanumber:1::/bad:/bin/false\n\
                          u:x:1000:1000:A User:/home/u:/bin/sh\n\
                          dup:x:1000:1000::/home/dup:/bin/sh\n";

    #[test]
    fn finds_home_by_uid() {
        assert_eq!(home_in_passwd(PASSWD, 0).as_deref(), Some("/root"));
        assert_eq!(home_in_passwd(PASSWD, 1000).as_deref(), Some("/home/u"));
        assert_eq!(home_in_passwd(PASSWD, 1), None);
        assert_eq!(home_in_passwd(PASSWD, 4242), None);
    }

    #[test]
    fn home_is_kept_when_set() {
        let mut env = vec!["PATH=/bin".to_string(), "HOME=/srv".to_string()];
        ensure_home(&mut env, 4242);
        assert_eq!(env, vec!["PATH=/bin", "HOME=/srv"]);
    }

    #[test]
    fn empty_home_is_replaced() {
        let mut env = vec!["HOME=".to_string(), "PATH=/bin".to_string()];
        // uid 4242424 has no passwd entry on any test host we know: runc's fallback is "/".
        ensure_home(&mut env, 4_242_424);
        assert_eq!(env, vec!["PATH=/bin", "HOME=/"]);
    }

    #[test]
    fn umask_defaults_to_0022() {
        assert_eq!(umask_mode(None).bits(), 0o022);
        assert_eq!(umask_mode(Some(0o077)).bits(), 0o077);
        assert_eq!(umask_mode(Some(0o10777)).bits(), 0o777);
    }

    #[test]
    fn switches_user_in_a_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        run(|| {
            // Point stdio at /dev/null first: fix_stdio_permissions must not chown the test
            // harness's own terminal or pipes, which the child shares.
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| e.to_string())?;
            nix::unistd::dup2_stdin(&null).map_err(|e| e.to_string())?;
            nix::unistd::dup2_stdout(&null).map_err(|e| e.to_string())?;
            nix::unistd::dup2_stderr(&null).map_err(|e| e.to_string())?;
            let user = UserBuilder::default()
                .uid(1000u32)
                .gid(1001u32)
                .additional_gids(vec![10u32, 20])
                .umask(0o027u32)
                .build()
                .map_err(|e| e.to_string())?;
            apply(&user).map_err(|e| e.to_string())?;
            let want = [
                ("Uid", "1000\t1000\t1000\t1000"),
                ("Gid", "1001\t1001\t1001\t1001"),
                ("Groups", "10 20"),
                ("Umask", "0027"),
            ];
            for (key, value) in want {
                let got = status_field(key)?;
                if got != value {
                    return Err(format!("{key} is {got:?}, want {value:?}"));
                }
            }
            // Keepcaps held the permitted set across the switch, and is cleared again.
            if status_field("CapPrm")? == "0000000000000000" {
                return Err("permitted set lost across the uid change".into());
            }
            if nix::sys::prctl::get_keepcaps().map_err(|e| e.to_string())? {
                return Err("keepcaps still set".into());
            }
            Ok(())
        })
        .expect("user switched in the child");
    }

    #[test]
    fn repeated_groups_are_set_once() {
        assert_eq!(dedup_gids(&[0, 0, 5, 10, 5]), vec![0, 5, 10]);
        assert!(dedup_gids(&[]).is_empty());
    }
}
