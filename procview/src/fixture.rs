//! Fixture cgroup trees for the renderers' tests: a temp dir laid out like a v1 hybrid host.

use std::path::Path;

use crate::cgroup::Cgroup;

/// A temp dir with one directory per controller; files are written with [`Fixture::write`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A v1 cgroup with memory, cpuset, cpu, cpuacct and blkio directories.
    pub fn v1() -> (Fixture, Cgroup) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cg = Cgroup::default();
        for c in ["memory", "cpuset", "cpu", "cpuacct", "blkio", "pids"] {
            let d = dir.path().join(c);
            std::fs::create_dir_all(&d).expect("mkdir");
            cg.v1.insert(c.to_string(), d);
        }
        (Fixture { dir }, cg)
    }

    /// A v2 cgroup: one directory.
    pub fn v2() -> (Fixture, Cgroup) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cg = Cgroup {
            unified: Some(dir.path().to_path_buf()),
            ..Cgroup::default()
        };
        (Fixture { dir }, cg)
    }

    /// Writes `rel` (e.g. "memory/memory.stat", or "memory.max" for v2) under the fixture.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write fixture");
    }

    /// The fixture's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
