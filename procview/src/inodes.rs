//! Per-container copies of the tree: `c/<key>/proc/meminfo` and so on, each `<key>` with inodes
//! of its own.
//!
//! Why: a sendfile/splice reader (busybox `cat`, GNU `cat` ≥ 9.5) reads a FUSE file through the
//! kernel's page cache, which belongs to the inode, not to the open file. husk binds the files of
//! its own key into each container, so whatever one container's splice leaves in the cache is
//! never what another container reads (docs/procview.md, "sendfile and splice readers").
//!
//! An inode number is `set << SHIFT | local`: `local` is the inode of the static tree
//! (`files::NODES`), `set` 0 is the static tree itself, and `set` ≥ 1 one key. A key's set lives
//! while the kernel holds a lookup of any of its inodes, and is dropped when the last is
//! forgotten.

use std::collections::HashMap;
use std::sync::Mutex;

/// Bits of an inode number that hold the local (static-tree) inode.
pub const SHIFT: u32 = 8;

/// Every static inode is below this.
pub const LOCAL_LIMIT: u64 = 1 << SHIFT;

/// Longest key accepted, as a file name.
const MAX_KEY: usize = 128;

/// (set, local inode) of an inode number.
pub fn split(ino: u64) -> (u64, u64) {
    (ino >> SHIFT, ino & (LOCAL_LIMIT - 1))
}

/// The inode number of `local` in `set`.
pub fn join(set: u64, local: u64) -> u64 {
    set << SHIFT | local
}

/// Whether `name` can be a key: a container id or a pid (letters, digits, `._-+`), not `.`/`..`.
pub fn valid_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

#[derive(Debug)]
struct Set {
    name: String,
    /// Lookups the kernel holds on the set's inodes (FUSE's nlookup, summed).
    lookups: u64,
}

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<String, u64>,
    sets: HashMap<u64, Set>,
    next: u64,
}

/// The live keys and their sets.
#[derive(Debug, Default)]
pub struct Keys {
    inner: Mutex<Inner>,
}

impl Keys {
    /// The set of key `name`, created if new, with one more lookup counted (the caller replies
    /// with an entry). None for an invalid name.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        if !valid_key(name) {
            return None;
        }
        let mut inner = self.inner.lock().ok()?;
        let set = match inner.by_name.get(name) {
            Some(set) => *set,
            None => {
                inner.next += 1;
                let set = inner.next;
                // Beyond 2^56 sets inode numbers would overflow: refuse rather than wrap.
                if set >= 1 << (64 - SHIFT) {
                    return None;
                }
                inner.by_name.insert(name.to_string(), set);
                inner.sets.insert(
                    set,
                    Set {
                        name: name.to_string(),
                        lookups: 0,
                    },
                );
                set
            }
        };
        inner.sets.get_mut(&set)?.lookups += 1;
        Some(set)
    }

    /// Counts one more lookup of an inode of `set`; false when the set is gone.
    pub fn looked_up(&self, set: u64) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        match inner.sets.get_mut(&set) {
            Some(s) => {
                s.lookups += 1;
                true
            }
            None => false,
        }
    }

    /// Whether `set` is live.
    pub fn exists(&self, set: u64) -> bool {
        self.inner
            .lock()
            .map(|inner| inner.sets.contains_key(&set))
            .unwrap_or(false)
    }

    /// The kernel dropped `n` lookups of an inode of `set`; the set goes with its last one.
    pub fn forget(&self, set: u64, n: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(s) = inner.sets.get_mut(&set) else {
            return;
        };
        s.lookups = s.lookups.saturating_sub(n);
        if s.lookups == 0 {
            if let Some(s) = inner.sets.remove(&set) {
                inner.by_name.remove(&s.name);
            }
        }
    }

    /// How many keys are live.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.sets.len()).unwrap_or(0)
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        assert_eq!(split(join(3, 10)), (3, 10));
        assert_eq!(split(10), (0, 10));
    }

    #[test]
    fn keys_are_names_of_ids_and_pids() {
        assert!(valid_key("1234"));
        assert!(valid_key("my-container_1.2"));
        assert!(!valid_key(""));
        assert!(!valid_key(".."));
        assert!(!valid_key("a/b"));
        assert!(!valid_key(&"x".repeat(200)));
    }

    #[test]
    fn a_set_lives_until_its_last_lookup_is_forgotten() {
        let keys = Keys::default();
        let a = keys.lookup("a").expect("set");
        assert_eq!(keys.lookup("a"), Some(a));
        let b = keys.lookup("b").expect("set");
        assert_ne!(a, b);
        assert!(keys.looked_up(a));
        keys.forget(a, 2);
        assert!(keys.exists(a));
        keys.forget(a, 1);
        assert!(!keys.exists(a));
        assert!(!keys.looked_up(a));
        assert_eq!(keys.len(), 1);
        // The name is free again and gets a new set (new inodes).
        let again = keys.lookup("a").expect("set");
        assert_ne!(again, a);
    }
}
