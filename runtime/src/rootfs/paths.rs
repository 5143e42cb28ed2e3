//! Safe resolution of container paths relative to an fd of the rootfs.
//!
//! A path from the configuration is resolved as if the rootfs were `/`: absolute symlinks and
//! `..` stay inside it, so a hostile `a -> /etc` or `b -> ../../..` in the image can never lead
//! a mount or a device node onto the host. The kernel does this with openat2(RESOLVE_IN_ROOT);
//! where openat2 is missing (pre-5.6 kernels, seccomp) a component walk does the same in user
//! space. The result is an O_PATH fd, and callers act on `/proc/self/fd/N` so the kernel uses
//! exactly the inode that was checked, not a path that could be swapped in between (runc's
//! WithProcfd). As a last check the fd's real path must lie under the rootfs.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

use super::{ErrnoContext, RootfsError};

/// The kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// How many times openat2 is retried when it reports a concurrent rename (EAGAIN).
const OPENAT2_RETRIES: usize = 8;

/// What to do with a missing component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Nothing: a missing component is ENOENT.
    No,
    /// Create missing directories with this mode, the last one included.
    Dir(Mode),
    /// Create missing parent directories (0755) and the last component as an empty file.
    File(Mode),
}

/// An open handle on the rootfs that paths are resolved against.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    /// The rootfs's real path in the current mount namespace, for the containment check.
    path: PathBuf,
}

/// A path resolved inside the rootfs.
#[derive(Debug)]
pub(crate) struct Resolved {
    fd: OwnedFd,
    inner: PathBuf,
}

impl Resolved {
    /// The O_PATH fd of the resolved file.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `/proc/self/fd/N`: a path naming exactly this inode, for mount(2) and friends.
    pub fn proc_path(&self) -> PathBuf {
        proc_fd_path(self.fd.as_raw_fd())
    }

    /// Where the path ended up, relative to the rootfs (always absolute, e.g. "/etc/x").
    pub fn inner(&self) -> &Path {
        &self.inner
    }
}

fn proc_fd_path(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

impl Root {
    /// Opens the rootfs directory.
    pub fn open(path: &Path) -> Result<Root, RootfsError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx("open rootfs", path)?;
        let real = nix::fcntl::readlink(&proc_fd_path(fd.as_raw_fd()))
            .ctx("readlink rootfs fd of", path)?;
        Ok(Root {
            fd,
            path: PathBuf::from(real),
        })
    }

    /// The fd of the rootfs directory itself.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Resolves an existing path; the last component may be a symlink (it is followed).
    pub fn resolve(&self, path: &Path) -> Result<Resolved, RootfsError> {
        self.lookup(path, Create::No, "resolve in rootfs")
    }

    /// Resolves a directory, creating what is missing (mkdir -p inside the rootfs).
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<Resolved, RootfsError> {
        let resolved = self.lookup(path, Create::Dir(mode_bits(mode)), "mkdir in rootfs")?;
        let st = nix::sys::stat::fstat(resolved.fd()).ctx("stat in rootfs", path)?;
        if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFDIR {
            return Err(RootfsError::sys("mkdir in rootfs", path, Errno::ENOTDIR));
        }
        Ok(resolved)
    }

    /// Resolves a path, creating it as an empty file (and its parents) if it is missing.
    pub fn create_file(&self, path: &Path, mode: u32) -> Result<Resolved, RootfsError> {
        self.lookup(path, Create::File(mode_bits(mode)), "create in rootfs")
    }

    /// Splits `path` into its resolved parent directory (created if missing) and the last name,
    /// for operations that must not follow a symlink in the last component.
    pub fn parent_and_name(&self, path: &Path) -> Result<(Resolved, OsString), RootfsError> {
        let mut comps = components(path);
        let Some(name) = comps.pop_back() else {
            return Err(RootfsError::invalid(
                "split path",
                path,
                "the path has no last component",
            ));
        };
        if name == ".." {
            return Err(RootfsError::invalid(
                "split path",
                path,
                "the last component is \"..\"",
            ));
        }
        let parent: PathBuf = std::iter::once(OsString::from("/")).chain(comps).collect();
        Ok((self.mkdir_all(&parent, 0o755)?, name))
    }

    /// Opens `name` in `parent` without following a symlink there, as a [`Resolved`].
    pub fn child_nofollow(
        &self,
        parent: &Resolved,
        name: &OsStr,
        path: &Path,
    ) -> Result<Resolved, RootfsError> {
        let fd = open_nofollow(parent.fd(), name).ctx("open in rootfs", path)?;
        let inner = self.inner_path(&fd, path, "open in rootfs")?;
        Ok(Resolved { fd, inner })
    }

    fn lookup(&self, path: &Path, create: Create, op: &str) -> Result<Resolved, RootfsError> {
        let result = match open_in_root(self.fd(), path) {
            Err(Errno::ENOENT) if create != Create::No => walk(self.fd(), path, create),
            other => other,
        };
        let fd = result.map_err(|errno| match errno {
            Errno::EXDEV => RootfsError::Escape {
                op: op.to_string(),
                path: path.to_path_buf(),
                errno,
            },
            _ => RootfsError::sys(op, path, errno),
        })?;
        let inner = self.inner_path(&fd, path, op)?;
        Ok(Resolved { fd, inner })
    }

    /// The fd's path relative to the rootfs, or an Escape error if it is not under it.
    fn inner_path(&self, fd: &OwnedFd, path: &Path, op: &str) -> Result<PathBuf, RootfsError> {
        let real =
            nix::fcntl::readlink(&proc_fd_path(fd.as_raw_fd())).ctx("readlink fd of", path)?;
        match Path::new(&real).strip_prefix(&self.path) {
            Ok(rest) => Ok(Path::new("/").join(rest)),
            Err(_) => Err(RootfsError::Escape {
                op: op.to_string(),
                path: path.to_path_buf(),
                errno: Errno::EXDEV,
            }),
        }
    }
}

/// Lexically cleans a container path into an absolute one ("proc/../dev/" -> "/dev"), as
/// runc's CleanPath does for comparisons such as "is this /dev".
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in components(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

fn mode_bits(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode)
}

/// The path's components as names, without the root and `.`; `..` is kept.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// openat2(RESOLVE_IN_ROOT), falling back to [`walk`] where the kernel lacks it.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let rel: PathBuf = components(path).into_iter().collect();
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    for _ in 0..OPENAT2_RETRIES {
        match nix::fcntl::openat2(root, &rel, how) {
            // A rename raced the lookup; the kernel asks for a retry.
            Err(Errno::EAGAIN) => continue,
            // No openat2 (ENOSYS), a seccomp filter (EPERM) or an older open_how (E2BIG/EINVAL).
            Err(Errno::ENOSYS | Errno::EPERM | Errno::E2BIG | Errno::EINVAL) => break,
            other => return other,
        }
    }
    walk(root, path, Create::No)
}

/// Resolves `path` one component at a time with the semantics of RESOLVE_IN_ROOT: every
/// component is opened O_PATH|O_NOFOLLOW relative to the previous one, symlinks are read from
/// the opened fd (no window to swap them) and expanded, absolute targets restart at the root and
/// `..` never climbs above it. Missing components are created as `create` says.
pub(crate) fn walk(root: BorrowedFd<'_>, path: &Path, create: Create) -> Result<OwnedFd, Errno> {
    let start = root.try_clone_to_owned().map_err(io_errno)?;
    let mut stack: Vec<OwnedFd> = vec![start];
    let mut queue = components(path);
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let Some(cur) = stack.last() else {
            return Err(Errno::ENOENT);
        };
        let fd = match open_nofollow(cur.as_fd(), &name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => match create {
                Create::No => return Err(Errno::ENOENT),
                Create::File(mode) if queue.is_empty() => create_file_at(cur.as_fd(), &name, mode)?,
                Create::File(_) => mkdir_at(cur.as_fd(), &name, Mode::from_bits_truncate(0o755))?,
                Create::Dir(mode) => mkdir_at(cur.as_fd(), &name, mode)?,
            },
            Err(e) => return Err(e),
        };
        let st = nix::sys::stat::fstat(fd.as_fd())?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                // readlinkat with an empty path reads the link an O_PATH|O_NOFOLLOW fd points at.
                let target = nix::fcntl::readlinkat(fd.as_fd(), "")?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                let mut expanded = components(target);
                expanded.append(&mut queue);
                queue = expanded;
            }
            libc::S_IFDIR => stack.push(fd),
            _ if !queue.is_empty() => return Err(Errno::ENOTDIR),
            _ => stack.push(fd),
        }
    }
    stack.pop().ok_or(Errno::ENOENT)
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: Mode) -> Result<OwnedFd, Errno> {
    match nix::sys::stat::mkdirat(dir, name, mode) {
        // Someone created it meanwhile; whatever it is now gets checked by the caller's fstat.
        Ok(()) | Err(Errno::EEXIST) => open_nofollow(dir, name),
        Err(e) => Err(e),
    }
}

fn create_file_at(dir: BorrowedFd<'_>, name: &OsStr, mode: Mode) -> Result<OwnedFd, Errno> {
    let created = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        mode,
    );
    match created {
        Ok(fd) => drop(fd),
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_nofollow(dir, name)
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A rootfs with the usual hostile links, plus a marker outside it.
    fn hostile_root() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rootfs = tmp.path().join("deep/er/rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir etc");
        std::fs::create_dir_all(rootfs.join("real/dir")).expect("mkdir real/dir");
        std::fs::write(rootfs.join("real/file"), b"x").expect("write file");
        std::fs::create_dir_all(tmp.path().join("deep/er/outside")).expect("mkdir outside");
        symlink("/etc", rootfs.join("a")).expect("a");
        symlink("../../..", rootfs.join("b")).expect("b");
        symlink("b/outside", rootfs.join("c")).expect("c");
        symlink("/../../../../../../..", rootfs.join("real/up")).expect("up");
        symlink("loop2", rootfs.join("loop1")).expect("loop1");
        symlink("loop1", rootfs.join("loop2")).expect("loop2");
        symlink("/nonexistent/deeper", rootfs.join("dangling")).expect("dangling");
        symlink("file", rootfs.join("real/filelink")).expect("filelink");
        (tmp, rootfs)
    }

    fn inner_of(root: &Root, p: &str) -> Result<PathBuf, Errno> {
        root.resolve(Path::new(p))
            .map(|r| r.inner().to_path_buf())
            .map_err(|e| e.errno())
    }

    #[test]
    fn hostile_symlinks_stay_inside() {
        let (tmp, rootfs) = hostile_root();
        let root = Root::open(&rootfs).expect("open root");
        assert_eq!(inner_of(&root, "/a"), Ok(PathBuf::from("/etc")));
        assert_eq!(inner_of(&root, "a"), Ok(PathBuf::from("/etc")));
        assert_eq!(inner_of(&root, "/b"), Ok(PathBuf::from("/")));
        assert_eq!(inner_of(&root, "/../../.."), Ok(PathBuf::from("/")));
        assert_eq!(
            inner_of(&root, "/real/up/real/dir"),
            Ok(PathBuf::from("/real/dir"))
        );
        assert_eq!(inner_of(&root, "/b/real/../etc"), Ok(PathBuf::from("/etc")));
        assert_eq!(
            inner_of(&root, "/real/filelink"),
            Ok(PathBuf::from("/real/file"))
        );
        // "outside" exists next to the rootfs on the host, but not inside it.
        assert_eq!(inner_of(&root, "/c"), Err(Errno::ENOENT));
        assert_eq!(inner_of(&root, "/loop1"), Err(Errno::ELOOP));
        assert_eq!(inner_of(&root, "/real/file/x"), Err(Errno::ENOTDIR));
        drop(tmp);
    }

    #[test]
    fn walk_matches_openat2() {
        let (_tmp, rootfs) = hostile_root();
        let root = Root::open(&rootfs).expect("open root");
        for p in [
            "/a",
            "/b",
            "/c",
            "/../..",
            "/real/up/etc",
            "/real/filelink",
            "/loop1",
            "/real/file/x",
            "/",
            "/b/b/b/real/dir/../dir",
        ] {
            let kernel = nix::fcntl::openat2(
                root.fd(),
                p.trim_start_matches('/'),
                OpenHow::new()
                    .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_IN_ROOT),
            );
            let user = walk(root.fd(), Path::new(p), Create::No);
            let real = |r: Result<OwnedFd, Errno>| {
                r.map(|fd| nix::fcntl::readlink(&proc_fd_path(fd.as_raw_fd())).ok())
            };
            let (k, u) = (real(kernel), real(user));
            // An empty path means the root itself to the walk; openat2 wants ".".
            if p == "/" {
                assert!(u.is_ok(), "walk of /");
                continue;
            }
            assert_eq!(k, u, "openat2 and the walk disagree on {p}");
        }
    }

    #[test]
    fn creation_follows_links_inside_the_root() {
        let (tmp, rootfs) = hostile_root();
        let root = Root::open(&rootfs).expect("open root");

        // Through an absolute link: lands in <rootfs>/etc, never in the host's /etc.
        let r = root
            .mkdir_all(Path::new("/a/husk-test-dir/sub"), 0o755)
            .expect("mkdir via a");
        assert_eq!(r.inner(), Path::new("/etc/husk-test-dir/sub"));
        assert!(rootfs.join("etc/husk-test-dir/sub").is_dir());
        assert!(!Path::new("/etc/husk-test-dir").exists());

        // Through a relative link climbing out: lands at the root.
        let r = root
            .create_file(Path::new("/b/b/newfile"), 0o644)
            .expect("create via b");
        assert_eq!(r.inner(), Path::new("/newfile"));
        assert!(rootfs.join("newfile").is_file());
        assert!(!tmp.path().join("deep/newfile").exists());

        // A dangling absolute link: its target is created inside the root, as securejoin does.
        let r = root
            .mkdir_all(Path::new("/dangling/x"), 0o755)
            .expect("mkdir via dangling");
        assert_eq!(r.inner(), Path::new("/nonexistent/deeper/x"));
        assert!(!Path::new("/nonexistent").exists());

        // The user-space walk creates the same way.
        let fd = walk(
            root.fd(),
            Path::new("/real/up/walked/f"),
            Create::File(Mode::from_bits_truncate(0o600)),
        )
        .expect("walk create");
        drop(fd);
        assert!(rootfs.join("walked/f").is_file());

        // A file in the way of a directory is an error naming the path.
        let err = root
            .mkdir_all(Path::new("/real/file"), 0o755)
            .expect_err("file is not a dir");
        assert_eq!(err.errno(), Errno::ENOTDIR);
        assert!(err.to_string().contains("/real/file"));
    }

    #[test]
    fn lexical_clean() {
        assert_eq!(clean(Path::new("/dev/")), PathBuf::from("/dev"));
        assert_eq!(clean(Path::new("dev")), PathBuf::from("/dev"));
        assert_eq!(
            clean(Path::new("/proc/../dev/./pts")),
            PathBuf::from("/dev/pts")
        );
        assert_eq!(clean(Path::new("/../../x")), PathBuf::from("/x"));
        assert_eq!(clean(Path::new("/")), PathBuf::from("/"));
    }

    #[test]
    fn parent_and_name_splits_without_following_the_last_link() {
        let (_tmp, rootfs) = hostile_root();
        let root = Root::open(&rootfs).expect("open root");
        let (parent, name) = root.parent_and_name(Path::new("/a")).expect("split /a");
        assert_eq!(parent.inner(), Path::new("/"));
        assert_eq!(name, OsString::from("a"));
        let (parent, name) = root.parent_and_name(Path::new("/a/x")).expect("split /a/x");
        assert_eq!(parent.inner(), Path::new("/etc"));
        assert_eq!(name, OsString::from("x"));
        assert!(root.parent_and_name(Path::new("/")).is_err());
    }
}
