//! Signal names: parsing `-p SIGKILL` / `--reload-signal HUP` and naming signals in messages.

use core::ffi::c_int;

use crate::text::eq_ignore_case;

/// The standard signals by name, without the `SIG` prefix (tini's table, plus the rest).
const NAMES: [(&[u8], c_int); 31] = [
    (b"HUP", libc::SIGHUP),
    (b"INT", libc::SIGINT),
    (b"QUIT", libc::SIGQUIT),
    (b"ILL", libc::SIGILL),
    (b"TRAP", libc::SIGTRAP),
    (b"ABRT", libc::SIGABRT),
    (b"BUS", libc::SIGBUS),
    (b"FPE", libc::SIGFPE),
    (b"KILL", libc::SIGKILL),
    (b"USR1", libc::SIGUSR1),
    (b"SEGV", libc::SIGSEGV),
    (b"USR2", libc::SIGUSR2),
    (b"PIPE", libc::SIGPIPE),
    (b"ALRM", libc::SIGALRM),
    (b"TERM", libc::SIGTERM),
    (b"STKFLT", libc::SIGSTKFLT),
    (b"CHLD", libc::SIGCHLD),
    (b"CONT", libc::SIGCONT),
    (b"STOP", libc::SIGSTOP),
    (b"TSTP", libc::SIGTSTP),
    (b"TTIN", libc::SIGTTIN),
    (b"TTOU", libc::SIGTTOU),
    (b"URG", libc::SIGURG),
    (b"XCPU", libc::SIGXCPU),
    (b"XFSZ", libc::SIGXFSZ),
    (b"VTALRM", libc::SIGVTALRM),
    (b"PROF", libc::SIGPROF),
    (b"WINCH", libc::SIGWINCH),
    (b"IO", libc::SIGIO),
    (b"PWR", libc::SIGPWR),
    (b"SYS", libc::SIGSYS),
];

/// Highest signal number Linux accepts (the last real-time signal).
const MAX_SIGNAL: c_int = 64;

/// Parses `SIGTERM`, `TERM` (any case) or a number from 1 to 64.
pub fn parse(text: &[u8]) -> Option<c_int> {
    if !text.is_empty() && text.iter().all(u8::is_ascii_digit) {
        let mut n: c_int = 0;
        for &d in text {
            n = n.checked_mul(10)?.checked_add((d - b'0') as c_int)?;
        }
        return (1..=MAX_SIGNAL).contains(&n).then_some(n);
    }
    let bare = match text.get(..3) {
        Some(p) if eq_ignore_case(p, b"SIG") => &text[3..],
        _ => text,
    };
    NAMES
        .iter()
        .find(|(name, _)| eq_ignore_case(name, bare))
        .map(|&(_, sig)| sig)
}

/// The name of `sig` without `SIG`, if it is a standard signal.
pub fn name(sig: c_int) -> Option<&'static [u8]> {
    NAMES.iter().find(|&&(_, s)| s == sig).map(|&(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse(b"SIGKILL"), Some(libc::SIGKILL));
        assert_eq!(parse(b"TERM"), Some(libc::SIGTERM));
        assert_eq!(parse(b"sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(parse(b"1"), Some(libc::SIGHUP));
        assert_eq!(parse(b"64"), Some(64));
        assert_eq!(parse(b"0"), None);
        assert_eq!(parse(b"65"), None);
        assert_eq!(parse(b"99999999999999"), None);
        assert_eq!(parse(b"SIG"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"SIGFOO"), None);
    }

    #[test]
    fn names_round_trip() {
        for &(n, sig) in NAMES.iter() {
            assert_eq!(name(sig), Some(n));
            assert_eq!(parse(n), Some(sig));
        }
        assert_eq!(name(40), None);
    }
}
