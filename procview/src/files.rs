//! The tree procview serves: `proc/<file>` and `sys/devices/system/cpu/online`, laid out like
//! the paths they replace so a bind source reads like its destination, and `c/`, under which
//! every name is a copy of that tree with inodes of its own (see `inodes`).

use crate::render::View;

/// The root directory's inode (FUSE's fixed root).
pub const ROOT: u64 = 1;

/// `c/`: the directory of per-container copies of the tree.
pub const CONTAINERS: u64 = 7;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A rendered file.
    File(View),
}

/// One inode of the static tree.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// Inode number.
    pub ino: u64,
    /// The parent directory's inode (the root is its own parent).
    pub parent: u64,
    /// The name in the parent.
    pub name: &'static str,
    /// Directory or file.
    pub kind: Kind,
}

/// Every inode.
pub const NODES: &[Node] = &[
    node(ROOT, ROOT, "", Kind::Dir),
    node(2, ROOT, "proc", Kind::Dir),
    node(3, ROOT, "sys", Kind::Dir),
    node(4, 3, "devices", Kind::Dir),
    node(5, 4, "system", Kind::Dir),
    node(6, 5, "cpu", Kind::Dir),
    node(CONTAINERS, ROOT, "c", Kind::Dir),
    node(10, 2, "meminfo", Kind::File(View::Meminfo)),
    node(11, 2, "cpuinfo", Kind::File(View::Cpuinfo)),
    node(12, 2, "stat", Kind::File(View::Stat)),
    node(13, 2, "uptime", Kind::File(View::Uptime)),
    node(14, 2, "loadavg", Kind::File(View::Loadavg)),
    node(15, 2, "swaps", Kind::File(View::Swaps)),
    node(16, 2, "diskstats", Kind::File(View::Diskstats)),
    node(17, 6, "online", Kind::File(View::CpuOnline)),
];

const fn node(ino: u64, parent: u64, name: &'static str, kind: Kind) -> Node {
    Node {
        ino,
        parent,
        name,
        kind,
    }
}

/// The inode `ino`.
pub fn get(ino: u64) -> Option<&'static Node> {
    NODES.iter().find(|n| n.ino == ino)
}

/// The child `name` of directory `parent`.
pub fn lookup(parent: u64, name: &str) -> Option<&'static Node> {
    NODES
        .iter()
        .find(|n| n.parent == parent && n.name == name && n.ino != ROOT)
}

/// The children of directory `parent`, in a stable order.
pub fn children(parent: u64) -> impl Iterator<Item = &'static Node> {
    NODES
        .iter()
        .filter(move |n| n.parent == parent && n.ino != ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve() {
        let proc = lookup(ROOT, "proc").expect("proc");
        assert_eq!(
            lookup(proc.ino, "meminfo").map(|n| n.kind),
            Some(Kind::File(View::Meminfo))
        );
        let cpu = ["sys", "devices", "system", "cpu"]
            .iter()
            .try_fold(ROOT, |dir, name| lookup(dir, name).map(|n| n.ino))
            .expect("sys/devices/system/cpu");
        assert!(lookup(cpu, "online").is_some());
        assert_eq!(children(ROOT).count(), 3);
        assert!(NODES.iter().all(|n| n.ino < crate::inodes::LOCAL_LIMIT));
    }
}
