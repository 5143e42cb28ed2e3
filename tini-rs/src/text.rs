//! Byte-string helpers shared by the parsers and the message writer.
//!
//! Hand-written on purpose: core's versions are tuned for speed on long inputs and cost several
//! times the code, which a binary this size notices.

/// ASCII case-insensitive equality.
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// Writes `value` in decimal at the end of `buf` and returns the digits.
pub fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive() {
        assert!(eq_ignore_case(b"LocalHost", b"localhost"));
        assert!(!eq_ignore_case(b"localhost", b"localhost."));
        assert!(eq_ignore_case(b"", b""));
    }

    #[test]
    fn decimals() {
        let mut buf = [0; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
