//! Messages on stderr, tini-style (`[WARN  husk-init (PID)] text`), filtered by verbosity.
//!
//! Formatting is hand-rolled into a fixed stack buffer: `core::fmt` would cost kilobytes in a
//! binary whose point is to be small, and the signal loop must not allocate.

use core::sync::atomic::{AtomicI32, Ordering};

use crate::sys;

/// Verbosity in force: 0 fatal only, 1 warnings (the default, as tini), 2 info, 3 debug.
static VERBOSITY: AtomicI32 = AtomicI32::new(1);

/// Sets the verbosity for the rest of the run.
pub fn set_verbosity(level: i32) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

/// How important a message is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    /// Always printed: husk-init is about to give up.
    Fatal,
    /// Printed at verbosity 1 and up.
    Warn,
    /// Printed at verbosity 2 and up.
    Info,
    /// Printed at verbosity 3 and up.
    Debug,
}

impl Level {
    fn threshold(self) -> i32 {
        match self {
            Level::Fatal => i32::MIN,
            Level::Warn => 1,
            Level::Info => 2,
            Level::Debug => 3,
        }
    }

    fn tag(self) -> &'static [u8] {
        match self {
            Level::Fatal => b"[FATAL husk-init (",
            Level::Warn => b"[WARN  husk-init (",
            Level::Info => b"[INFO  husk-init (",
            Level::Debug => b"[DEBUG husk-init (",
        }
    }
}

/// Capacity of one message; longer text is cut.
const CAPACITY: usize = 1024;

/// One message being built; written to stderr by [`Msg::emit`].
pub struct Msg {
    buf: [u8; CAPACITY],
    len: usize,
    enabled: bool,
}

impl Msg {
    /// An empty message without prefix, always printed (usage text, version).
    pub fn plain() -> Msg {
        Msg {
            buf: [0; CAPACITY],
            len: 0,
            enabled: true,
        }
    }

    /// A message at `level`, prefixed like tini's; a no-op when verbosity is too low.
    pub fn at(level: Level) -> Msg {
        let mut msg = Msg::plain();
        msg.enabled = VERBOSITY.load(Ordering::Relaxed) >= level.threshold();
        if msg.enabled {
            msg.s(level.tag()).n(sys::getpid() as i64).s(b")] ");
        }
        msg
    }

    /// Appends bytes.
    pub fn s(&mut self, text: &[u8]) -> &mut Msg {
        let room = CAPACITY - self.len;
        let n = text.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&text[..n]);
        self.len += n;
        self
    }

    /// Appends a decimal integer.
    pub fn n(&mut self, value: i64) -> &mut Msg {
        if value < 0 {
            self.s(b"-");
        }
        let mut digits = [0u8; 20];
        self.s(crate::text::decimal(value.unsigned_abs(), &mut digits))
    }

    /// Appends strerror's text for `errno`.
    pub fn err(&mut self, errno: sys::Errno) -> &mut Msg {
        let mut text = [0u8; 128];
        let text = sys::strerror(errno, &mut text);
        if text.is_empty() {
            self.s(b"errno ").n(errno as i64)
        } else {
            self.s(text)
        }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the message and a newline to `fd` (unless filtered out).
    pub fn emit_to(&mut self, fd: i32) {
        if !self.enabled {
            return;
        }
        if self.len == CAPACITY {
            self.len -= 1;
        }
        self.s(b"\n");
        // Nothing useful can be done when stderr itself fails.
        let _ = sys::write_all(fd, self.as_bytes());
    }

    /// Writes the message and a newline to stderr (unless filtered out).
    pub fn emit(&mut self) {
        self.emit_to(libc::STDERR_FILENO);
    }
}

/// Starts a fatal message.
pub fn fatal() -> Msg {
    Msg::at(Level::Fatal)
}

/// Starts a warning.
pub fn warn() -> Msg {
    Msg::at(Level::Warn)
}

/// Starts an informational message.
pub fn info() -> Msg {
    Msg::at(Level::Info)
}

/// Starts a debug message.
pub fn debug() -> Msg {
    Msg::at(Level::Debug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_and_text() {
        let mut m = Msg::plain();
        m.s(b"a=").n(0).s(b" b=").n(-42).s(b" c=").n(i64::MIN);
        assert_eq!(m.as_bytes(), b"a=0 b=-42 c=-9223372036854775808");
    }

    #[test]
    fn cuts_long_text() {
        let mut m = Msg::plain();
        for _ in 0..100 {
            m.s(b"0123456789abcdef");
        }
        assert_eq!(m.as_bytes().len(), CAPACITY);
    }

    #[test]
    fn strerror_text() {
        let mut m = Msg::plain();
        m.err(libc::ENOENT);
        assert_eq!(m.as_bytes(), b"No such file or directory");
    }
}
