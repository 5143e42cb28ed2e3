//! `--reload-on`: watch config files or directories with inotify and report when their content
//! changed, debounced.
//!
//! Each path is watched through its directory (for a file: the parent, and the directory a
//! symlinked file points into; for a directory: itself), so in-place writes, editors'
//! rename-over saves and Kubernetes ConfigMap updates (a new `..2024_...` directory, then an
//! atomic rename of the `..data` symlink) all produce events. Events only arm a timer; when it
//! expires the content is hashed, and only a different hash counts as a change, so touching a
//! file or writing an unrelated file nearby does not reload the program.
//!
//! A directory's hash covers its non-hidden entries that are regular files (symlinks followed,
//! not recursive): ConfigMap keys are visible symlinks into `..data`, the `..`-prefixed
//! bookkeeping entries are skipped.

use alloc::vec::Vec;
use core::ffi::{c_int, CStr};

use crate::log;
use crate::sys::{self, CPath, Fd};

/// Quiet time after the last event before content is compared.
pub const DEBOUNCE_MS: u64 = 200;

/// inotify events that can mean new content in a watched directory.
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// One watched path and the hash of its content when last compared.
struct Target<'a> {
    path: &'a CStr,
    hash: u64,
}

/// The reload watcher.
pub struct Watcher<'a> {
    fd: Fd,
    targets: Vec<Target<'a>>,
    /// When to compare content (monotonic ms), if events are waiting.
    due: Option<u64>,
}

impl<'a> Watcher<'a> {
    /// Starts watching `paths`; fails if a path's directory cannot be watched.
    pub fn new(paths: &[&'a CStr]) -> Result<Watcher<'a>, (sys::Errno, &'a CStr)> {
        let fd = sys::inotify().map_err(|e| (e, paths.first().copied().unwrap_or(c"")))?;
        let mut watcher = Watcher {
            fd,
            targets: Vec::new(),
            due: None,
        };
        for &path in paths {
            watcher.add_watches(path).map_err(|e| (e, path))?;
            watcher.targets.push(Target {
                path,
                hash: content_hash(path),
            });
        }
        Ok(watcher)
    }

    /// The inotify descriptor to poll.
    pub fn fd(&self) -> c_int {
        self.fd.raw()
    }

    /// Watches the directories through which `path`'s content can change: a directory itself
    /// (inotify follows a symlinked one), or a file's parent and, when the file is a symlink,
    /// its target's directory.
    fn add_watches(&self, path: &CStr) -> sys::Result<()> {
        if sys::stat_type(path) == Ok(libc::S_IFDIR) {
            return sys::inotify_watch(&self.fd, path, MASK).map(drop);
        }
        let dir = parent(path.to_bytes());
        sys::inotify_watch(&self.fd, CPath::new(&[dir]).as_cstr(), MASK)?;
        let mut buf = [0u8; 4096];
        if let Ok(target) = sys::readlink(path, &mut buf) {
            let target_dir = parent(target);
            let real = if target.first() == Some(&b'/') {
                CPath::new(&[target_dir])
            } else {
                CPath::new(&[dir, b"/", target_dir])
            };
            // Best effort: the directory may vanish in a later swap.
            let _ = sys::inotify_watch(&self.fd, real.as_cstr(), MASK);
        }
        Ok(())
    }

    /// Consumes pending inotify events and (re)arms the debounce timer.
    pub fn on_events(&mut self, now_ms: u64) {
        let mut buf = [0u8; 4096];
        // The events themselves do not matter, only that there were some.
        while let Ok(n) = sys::read(self.fd.raw(), &mut buf) {
            if n == 0 {
                break;
            }
        }
        self.due = Some(now_ms + DEBOUNCE_MS);
    }

    /// The poll timeout until the debounce timer expires, -1 when none is armed.
    pub fn timeout_ms(&self, now_ms: u64) -> c_int {
        match self.due {
            Some(due) => due.saturating_sub(now_ms).min(c_int::MAX as u64) as c_int,
            None => -1,
        }
    }

    /// When the timer has expired: whether any watched content changed since last compared.
    pub fn take_change(&mut self, now_ms: u64) -> bool {
        match self.due {
            Some(due) if due <= now_ms => self.due = None,
            _ => return false,
        }
        let mut changed = false;
        for i in 0..self.targets.len() {
            let path = self.targets[i].path;
            // A swap may have made new directories relevant (a new ConfigMap timestamp dir).
            let _ = self.add_watches(path);
            let hash = content_hash(path);
            if hash != self.targets[i].hash {
                log::info()
                    .s(b"Content of ")
                    .s(path.to_bytes())
                    .s(b" changed")
                    .emit();
                self.targets[i].hash = hash;
                changed = true;
            }
        }
        changed
    }
}

/// The directory part of `path` (`.` for a bare name, `/` for a top-level entry).
fn parent(path: &[u8]) -> &[u8] {
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(last) => &path[..=last],
        None => return b"/",
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(slash) => &trimmed[..slash],
        None => b".",
    }
}

/// FNV-1a, 64 bit: tiny and good enough to tell config contents apart.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Hash of what `path` holds now; 0 when it cannot be read (missing counts as a state too).
pub fn content_hash(path: &CStr) -> u64 {
    let Ok(fd) = sys::open(path, libc::O_RDONLY | libc::O_NONBLOCK, 0) else {
        return 0;
    };
    match sys::fstat_type(fd.raw()) {
        Ok(libc::S_IFREG) => {
            let mut h = Fnv::new();
            feed_file(&mut h, &fd);
            h.0 | 1
        }
        Ok(libc::S_IFDIR) => {
            drop(fd);
            dir_hash(path) | 1
        }
        _ => 0,
    }
}

/// Feeds the whole content of `fd` into `h`.
fn feed_file(h: &mut Fnv, fd: &Fd) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = sys::read(fd.raw(), &mut buf) {
        if n == 0 {
            break;
        }
        h.feed(&buf[..n]);
    }
}

/// Order-independent hash of the visible regular files in directory `path`.
fn dir_hash(path: &CStr) -> u64 {
    let Ok(mut dir) = sys::Dir::open(path) else {
        return 0;
    };
    let mut sum: u64 = 0;
    dir.for_each(|dir, name| {
        if name.to_bytes().first() == Some(&b'.') {
            return;
        }
        let Ok(fd) = sys::openat(dir.fd(), name, libc::O_RDONLY | libc::O_NONBLOCK) else {
            return;
        };
        if sys::fstat_type(fd.raw()) != Ok(libc::S_IFREG) {
            return;
        }
        let mut h = Fnv::new();
        h.feed(name.to_bytes_with_nul());
        feed_file(&mut h, &fd);
        // readdir order is arbitrary; a sum of per-entry hashes does not depend on it.
        sum = sum.wrapping_add(h.0);
    });
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent(b"/etc/app.conf"), b"/etc");
        assert_eq!(parent(b"/etc/app/"), b"/etc");
        assert_eq!(parent(b"/app.conf"), b"/");
        assert_eq!(parent(b"app.conf"), b".");
        assert_eq!(parent(b"a/b"), b"a");
        assert_eq!(parent(b"/"), b"/");
    }

    #[test]
    fn hashes_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.conf");
        let cpath =
            |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(content_hash(&cpath(&file)), 0);
        std::fs::write(&file, "one").unwrap();
        let one = content_hash(&cpath(&file));
        std::fs::write(&file, "two").unwrap();
        let two = content_hash(&cpath(&file));
        assert_ne!(one, 0);
        assert_ne!(one, two);
        std::fs::write(&file, "one").unwrap();
        assert_eq!(content_hash(&cpath(&file)), one);

        let d = content_hash(&cpath(dir.path()));
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        assert_eq!(content_hash(&cpath(dir.path())), d);
        std::fs::write(dir.path().join("b.conf"), "x").unwrap();
        assert_ne!(content_hash(&cpath(dir.path())), d);
    }
}
