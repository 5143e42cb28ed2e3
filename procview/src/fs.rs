//! The FUSE filesystem: a static tree, and per-container copies of it (`inodes`), whose files are
//! rendered for the process that reads them.
//!
//! A read at offset 0 renders the file for the reading process and keeps the text with the open
//! file; reads further on are served from that text, so a reader sees one consistent file
//! whatever its read size, and a reader that keeps the file open and reads again from 0 (procps
//! `top`, `vmstat`, `free -s`) gets fresh figures, as with procfs. Files are opened with direct
//! I/O, so read(2) always reaches the server, and report size 0 like procfs.
//!
//! sendfile(2) and splice(2) do not honour direct I/O for FUSE (since the kernel's splice rework
//! in 6.5 they read through the page cache up to the inode's size, and a size-0 file reads
//! empty). So each open first grows the kernel's idea of the size to [`SPLICE_SIZE`] with a
//! FUSE_NOTIFY_STORE of one byte at its end; a splice then reads page by page through this open's
//! handle, and the short read at the real end of the text shrinks the size back to it. The
//! open drops the inode's cached pages (no FOPEN_KEEP_CACHE), and each container reads inodes
//! of its own, so one container's splice never serves another's text.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    Notifier, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};

use crate::cgroup::Sources;
use crate::files::{self, Kind, Node, CONTAINERS, ROOT};
use crate::inodes::{self, Keys};
use crate::loadavg::LoadTracker;
use crate::render::{self, View};

/// How long the kernel may cache names and attributes: the tree never changes.
const TTL: Duration = Duration::from_secs(60);

/// The size an open announces to the kernel for splice readers: beyond any rendering (a
/// 1024-CPU cpuinfo is ~1.5 MiB); a splice read stops at the real end of the text anyway.
pub const SPLICE_SIZE: u64 = 64 << 20;

/// One open file: what it shows and the text of its last read from offset 0.
struct Handle {
    view: View,
    text: Option<Arc<[u8]>>,
}

/// The procview filesystem.
pub struct ProcView {
    src: Sources,
    loads: LoadTracker,
    keys: Keys,
    open: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    started: SystemTime,
    notifier: Arc<OnceLock<Notifier>>,
}

impl ProcView {
    /// A filesystem rendering from `src`.
    pub fn new(src: Sources) -> ProcView {
        ProcView {
            src,
            loads: LoadTracker::default(),
            keys: Keys::default(),
            open: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            started: SystemTime::now(),
            notifier: Arc::new(OnceLock::new()),
        }
    }

    /// Where the session's notifier goes once the session exists (the filesystem is built
    /// first); without one, splice readers read empty files.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        Arc::clone(&self.notifier)
    }

    /// The static node an inode number stands for, if the inode is live.
    fn node(&self, ino: u64) -> Option<&'static Node> {
        let (set, local) = inodes::split(ino);
        if set != 0 && (local == CONTAINERS || !self.keys.exists(set)) {
            return None;
        }
        files::get(local)
    }

    fn attr(&self, ino: u64, node: &Node) -> FileAttr {
        let (kind, perm, nlink) = match node.kind {
            Kind::Dir => (FileType::Directory, 0o555, 2),
            Kind::File(_) => (FileType::RegularFile, 0o444, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
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

    /// Lets a splice reader of the file being opened read up to [`SPLICE_SIZE`] (module doc).
    /// The one stored byte lands in a page no reader reaches, and the open drops it again.
    fn grow_for_splice(&self, ino: u64) {
        if let Some(n) = self.notifier.get() {
            // A failure leaves the size at 0: splice readers read an empty file, as before.
            let _ = n.store(INodeNo(ino), SPLICE_SIZE - 1, b"\n");
        }
    }

    /// The text a read at `offset` of handle `fh` is served from, rendered for `pid` when the
    /// read starts at 0 or nothing was rendered yet.
    fn text(&self, fh: u64, offset: u64, pid: u32) -> Option<Arc<[u8]>> {
        let (view, text) = {
            let open = self.open.lock().ok()?;
            let h = open.get(&fh)?;
            (h.view, h.text.clone())
        };
        if let Some(text) = text.filter(|_| offset != 0) {
            return Some(text);
        }
        // Rendered without the lock: renders read files and must not serialise readers.
        let text: Arc<[u8]> =
            Arc::from(render::render(view, &self.src, &self.loads, pid).into_bytes());
        if let Some(h) = self.open.lock().ok()?.get_mut(&fh) {
            h.text = Some(Arc::clone(&text));
        }
        Some(text)
    }
}

impl Filesystem for ProcView {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        let (set, local) = inodes::split(parent.0);
        if set == 0 && local == CONTAINERS {
            // c/<key>: the key's own copy of the tree, made on first lookup.
            return match (self.keys.lookup(name), files::get(ROOT)) {
                (Some(set), Some(root)) => {
                    let ino = inodes::join(set, ROOT);
                    reply.entry(&TTL, &self.attr(ino, root), Generation(0))
                }
                _ => reply.error(Errno::ENOENT),
            };
        }
        let node = files::lookup(local, name).filter(|n| set == 0 || n.ino != CONTAINERS);
        match node {
            Some(node) if set == 0 || self.keys.looked_up(set) => {
                let ino = inodes::join(set, node.ino);
                reply.entry(&TTL, &self.attr(ino, node), Generation(0))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let (set, _) = inodes::split(ino.0);
        if set != 0 {
            self.keys.forget(set, nlookup);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino.0) {
            Some(node) => reply.attr(&TTL, &self.attr(ino.0, node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(Kind::File(view)) = self.node(ino.0).map(|n| n.kind) else {
            return reply.error(Errno::EISDIR);
        };
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EACCES);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        match self.open.lock() {
            Ok(mut open) => {
                open.insert(fh, Handle { view, text: None });
            }
            Err(_) => return reply.error(Errno::EIO),
        }
        self.grow_for_splice(ino.0);
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(data) = self.text(fh.0, offset, req.pid()) else {
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
        let (set, _) = inodes::split(ino.0);
        let Some(dir) = self.node(ino.0).filter(|n| n.kind == Kind::Dir) else {
            return reply.error(Errno::ENOTDIR);
        };
        let parent = if set != 0 && dir.ino == ROOT {
            CONTAINERS
        } else {
            inodes::join(set, dir.parent)
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, "."),
            (parent, FileType::Directory, ".."),
        ];
        entries.extend(
            files::children(dir.ino)
                .filter(|n| set == 0 || n.ino != CONTAINERS)
                .map(|n| {
                    let kind = match n.kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File(_) => FileType::RegularFile,
                    };
                    (inodes::join(set, n.ino), kind, n.name)
                }),
        );
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
