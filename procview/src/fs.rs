//! The FUSE filesystem: a static tree whose files are rendered at open for the opening process.
//!
//! Rendering at open and serving reads from that snapshot gives a reader one consistent file
//! however small its reads, as procfs does. Files are opened with direct I/O so nothing is
//! cached by the kernel between readers (each sees its own cgroup) and report size 0 like procfs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};

use crate::cgroup::Sources;
use crate::files::{self, Kind, Node};
use crate::loadavg::LoadTracker;
use crate::render;

/// How long the kernel may cache names and attributes: the tree never changes.
const TTL: Duration = Duration::from_secs(60);

/// The procview filesystem.
pub struct ProcView {
    src: Sources,
    loads: LoadTracker,
    open: Mutex<HashMap<u64, Arc<[u8]>>>,
    next_fh: AtomicU64,
    started: SystemTime,
}

impl ProcView {
    /// A filesystem rendering from `src`.
    pub fn new(src: Sources) -> ProcView {
        ProcView {
            src,
            loads: LoadTracker::default(),
            open: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            started: SystemTime::now(),
        }
    }

    fn attr(&self, node: &Node) -> FileAttr {
        let (kind, perm, nlink) = match node.kind {
            Kind::Dir => (FileType::Directory, 0o555, 2),
            Kind::File(_) => (FileType::RegularFile, 0o444, 1),
        };
        FileAttr {
            ino: INodeNo(node.ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for ProcView {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match name.to_str().and_then(|n| files::lookup(parent.0, n)) {
            Some(node) => reply.entry(&TTL, &self.attr(node), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match files::get(ino.0) {
            Some(node) => reply.attr(&TTL, &self.attr(node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(Kind::File(view)) = files::get(ino.0).map(|n| n.kind) else {
            return reply.error(Errno::EISDIR);
        };
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EACCES);
        }
        let text = render::render(view, &self.src, &self.loads, req.pid());
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        match self.open.lock() {
            Ok(mut open) => {
                open.insert(fh, Arc::from(text.into_bytes()));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = match self.open.lock() {
            Ok(open) => open.get(&fh.0).cloned(),
            Err(_) => None,
        };
        let Some(data) = data else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&fh.0);
        }
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(dir) = files::get(ino.0).filter(|n| n.kind == Kind::Dir) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut entries = vec![
            (dir.ino, FileType::Directory, "."),
            (dir.parent, FileType::Directory, ".."),
        ];
        entries.extend(files::children(dir.ino).map(|n| {
            let kind = match n.kind {
                Kind::Dir => FileType::Directory,
                Kind::File(_) => FileType::RegularFile,
            };
            (n.ino, kind, n.name)
        }));
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
