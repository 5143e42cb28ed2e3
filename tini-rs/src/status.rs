//! The exit code husk-init reports for its child's wait status, with `-e` remapping.

use core::ffi::c_int;

/// The set of exit codes that `-e` remaps to 0.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ExitRemap([u32; 8]);

impl ExitRemap {
    /// Adds `code` to the set.
    pub fn insert(&mut self, code: u8) {
        self.0[(code / 32) as usize] |= 1 << (code % 32);
    }

    /// Whether `code` is remapped to 0.
    pub fn contains(&self, code: u8) -> bool {
        self.0[(code / 32) as usize] & (1 << (code % 32)) != 0
    }
}

/// The exit code for a child wait `status`, as tini computes it: the exit status, or 128+N for
/// death by signal N, modulo 256, then remapped to 0 when listed with `-e`. None when the status
/// is neither an exit nor a death by signal.
pub fn exit_code(status: c_int, remap: &ExitRemap) -> Option<u8> {
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        return None;
    };
    let code = (code % 256) as u8;
    Some(if remap.contains(code) { 0 } else { code })
}

/// Parses an `-e` argument: a decimal number from 0 to 255.
pub fn parse_code(text: &[u8]) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = text.iter().fold(0u32, |n, &d| n * 10 + (d - b'0') as u32);
    u8::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: c_int) -> c_int {
        (code & 0xff) << 8
    }

    #[test]
    fn maps_exit_and_signal() {
        let none = ExitRemap::default();
        assert_eq!(exit_code(exited(0), &none), Some(0));
        assert_eq!(exit_code(exited(3), &none), Some(3));
        assert_eq!(exit_code(libc::SIGKILL, &none), Some(137));
        assert_eq!(exit_code(libc::SIGTERM, &none), Some(143));
        // 128 + 64 still fits; stopped status (0x7f) is not an exit.
        assert_eq!(exit_code(64, &none), Some(192));
        assert_eq!(exit_code(0x137f, &none), None);
    }

    #[test]
    fn remaps_listed_codes() {
        let mut remap = ExitRemap::default();
        remap.insert(143);
        remap.insert(3);
        remap.insert(255);
        assert_eq!(exit_code(libc::SIGTERM, &remap), Some(0));
        assert_eq!(exit_code(exited(3), &remap), Some(0));
        assert_eq!(exit_code(exited(4), &remap), Some(4));
        assert!(remap.contains(255));
        assert!(!remap.contains(0));
    }

    #[test]
    fn parses_codes() {
        assert_eq!(parse_code(b"0"), Some(0));
        assert_eq!(parse_code(b"143"), Some(143));
        assert_eq!(parse_code(b"255"), Some(255));
        assert_eq!(parse_code(b"256"), None);
        assert_eq!(parse_code(b"-1"), None);
        assert_eq!(parse_code(b"1x"), None);
        assert_eq!(parse_code(b""), None);
        assert_eq!(parse_code(b"0001"), None);
    }
}
