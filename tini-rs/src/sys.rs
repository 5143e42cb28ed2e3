//! The syscall boundary: thin safe wrappers over the libc calls husk-init makes.
//!
//! Every `unsafe` block of the crate lives here, so the rest reads as plain Rust. Wrappers
//! return `Err(errno)` instead of `-1`, retry on `EINTR` where a retry is always right, and own
//! file descriptors through [`Fd`] so they are closed on every path.

use core::ffi::{c_char, c_int, CStr};
use core::mem::MaybeUninit;
use core::ptr;

/// An errno value.
pub type Errno = c_int;
/// The result of a wrapped call.
pub type Result<T> = core::result::Result<T, Errno>;

/// The calling thread's current errno.
pub fn errno() -> Errno {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Maps a libc `-1`-on-error return to `Err(errno)`.
fn check(ret: c_int) -> Result<c_int> {
    if ret == -1 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Maps a libc `-1`-on-error `ssize_t` return to `Err(errno)`.
fn check_size(ret: isize) -> Result<usize> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// Writes strerror's text for `e` into `buf` and returns the bytes written.
pub fn strerror(e: Errno, buf: &mut [u8]) -> &[u8] {
    if buf.is_empty() {
        return buf;
    }
    // SAFETY: buf is valid for buf.len() bytes; the XSI strerror_r writes at most that many
    // bytes including the terminating NUL.
    let ret = unsafe { libc::strerror_r(e, buf.as_mut_ptr().cast(), buf.len()) };
    if ret != 0 {
        return &[];
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..len]
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(c_int);

impl Fd {
    /// The raw descriptor number.
    pub fn raw(&self) -> c_int {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: self.0 is a descriptor this Fd owns; nothing else closes it.
        unsafe { libc::close(self.0) };
    }
}

/// Opens `path` with `flags` (O_CLOEXEC is always added) and creation `mode`.
pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> Result<Fd> {
    loop {
        // SAFETY: path is a valid NUL-terminated string.
        match check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) }) {
            Ok(fd) => return Ok(Fd(fd)),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Opens `name` relative to the directory `dir` (O_CLOEXEC always added).
pub fn openat(dir: c_int, name: &CStr, flags: c_int) -> Result<Fd> {
    // SAFETY: name is a valid NUL-terminated string; a bad dir fd only yields EBADF.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    Ok(Fd(fd))
}

/// Reads into `buf`, retrying on EINTR; returns the byte count (0 at end of file).
pub fn read(fd: c_int, buf: &mut [u8]) -> Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        match check_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }) {
            Err(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// Reads at `offset` into `buf`, retrying on EINTR.
pub fn pread(fd: c_int, buf: &mut [u8], offset: i64) -> Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let ret = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset) };
        match check_size(ret) {
            Err(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// Writes all of `data` at `offset` (or at the file position when `offset` is None).
pub fn write_all_at(fd: c_int, mut data: &[u8], mut offset: Option<i64>) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: data is valid for reads of data.len() bytes.
        let ret = unsafe {
            match offset {
                Some(off) => libc::pwrite(fd, data.as_ptr().cast(), data.len(), off),
                None => libc::write(fd, data.as_ptr().cast(), data.len()),
            }
        };
        match check_size(ret) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => {
                data = &data[n..];
                offset = offset.map(|off| off + n as i64);
            }
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `data` at the current file position.
pub fn write_all(fd: c_int, data: &[u8]) -> Result<()> {
    write_all_at(fd, data, None)
}

/// Truncates (or extends) the file to `len` bytes.
pub fn ftruncate(fd: c_int, len: i64) -> Result<()> {
    // SAFETY: plain syscall on an integer descriptor.
    check(unsafe { libc::ftruncate(fd, len) }).map(drop)
}

/// The file type bits (`S_IFMT` part of st_mode) of an open descriptor.
pub fn fstat_type(fd: c_int) -> Result<libc::mode_t> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is valid for writes of one struct stat.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised st.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// The file type bits of `path`, following symlinks.
pub fn stat_type(path: &CStr) -> Result<libc::mode_t> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated; st is valid for writes of one struct stat.
    check(unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: stat succeeded, so it initialised st.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// Removes a file name.
pub fn unlink(path: &CStr) -> Result<()> {
    // SAFETY: path is a valid NUL-terminated string.
    check(unsafe { libc::unlink(path.as_ptr()) }).map(drop)
}

/// Bind-mounts `source` over `target`.
pub fn mount_bind(source: &CStr, target: &CStr) -> Result<()> {
    // SAFETY: both paths are NUL-terminated; fstype and data may be NULL for MS_BIND.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            ptr::null(),
            libc::MS_BIND,
            ptr::null(),
        )
    };
    check(ret).map(drop)
}

/// The target of symlink `path`, read into `buf`.
pub fn readlink<'b>(path: &CStr, buf: &'b mut [u8]) -> Result<&'b [u8]> {
    // SAFETY: buf is valid for writes of buf.len() bytes; readlink writes no NUL.
    let n =
        check_size(unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(&buf[..n])
}

/// The value of environment variable `name`, if set.
pub fn getenv(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: name is NUL-terminated. husk-init never modifies its environment, so the
    // returned string stays valid for the life of the process.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        None
    } else {
        // SAFETY: getenv returned a NUL-terminated string that lives as long as the process.
        Some(unsafe { CStr::from_ptr(value) })
    }
}

/// The process id of the caller.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Registers the caller as a child subreaper (PR_SET_CHILD_SUBREAPER).
pub fn set_child_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) }).map(drop)
}

/// Whether the caller is registered as a child subreaper.
pub fn is_child_subreaper() -> Result<bool> {
    let mut bit: c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer, valid here.
    check(unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut bit as *mut c_int) })?;
    Ok(bit != 0)
}

/// Asks for `sig` when the parent dies (PR_SET_PDEATHSIG).
pub fn set_parent_death_signal(sig: c_int) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) }).map(drop)
}

/// The outcome of fork in the calling process.
pub enum Forked {
    /// We are the new child.
    Child,
    /// We are the parent; the child has this pid.
    Parent(libc::pid_t),
}

/// Forks the (single-threaded) process with the raw clone syscall.
///
/// Not glibc's fork(): the child only sets up its process group and terminal and then execs, so
/// fork's bookkeeping (atfork handlers, stdio and malloc locks, the cached thread id) buys
/// nothing, and in a static binary fork.o drags in all of stdio, about 25 kB. The child must
/// not rely on its thread id (pthread_kill, raise); husk-init's child code does not.
pub fn fork() -> Result<Forked> {
    // SAFETY: clone with only SIGCHLD and no new stack is fork(2): the child gets a copy of
    // this single-threaded process and returns here with 0.
    let ret = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    match ret {
        -1 => Err(errno()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// Moves process `pid` (0: the caller) into process group `pgid` (0: its own pid).
pub fn setpgid(pid: libc::pid_t, pgid: libc::pid_t) -> Result<()> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::setpgid(pid, pgid) }).map(drop)
}

/// Makes the caller's process group the foreground group of the terminal on stdin.
pub fn take_terminal_foreground() -> Result<()> {
    // SAFETY: plain calls with integer arguments.
    check(unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp()) }).map(drop)
}

/// Whether the caller's process group is the foreground group of the terminal on stdin.
pub fn owns_terminal_foreground() -> bool {
    // SAFETY: plain calls with integer arguments; tcgetpgrp fails (-1) without a terminal.
    unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() }
}

/// Replaces the process image with `argv[0]` searched in PATH; returns only on failure.
pub fn execvp(argv: &Argv, from: usize) -> Errno {
    if from >= argv.len {
        return libc::EINVAL;
    }
    // SAFETY: Argv guarantees argv[from..argc] are valid C strings followed by NULL, so
    // argv.add(from) is a NULL-terminated array as execvp expects.
    unsafe {
        let args = argv.ptr.add(from);
        libc::execvp(*args, args);
    }
    errno()
}

/// Ends the process at once with `code`, running no exit handlers.
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// What `waitpid(-1, WNOHANG)` found.
pub enum Waited {
    /// A child changed state: its pid and wait status.
    Child(libc::pid_t, c_int),
    /// Children exist but none has exited yet.
    Running,
    /// There are no children at all.
    NoChildren,
}

/// Reaps one exited child without blocking.
pub fn wait_any_nohang() -> Result<Waited> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: status is a valid int for waitpid to write.
        match check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
            Ok(0) => return Ok(Waited::Running),
            Ok(pid) => return Ok(Waited::Child(pid, status)),
            Err(libc::ECHILD) => return Ok(Waited::NoChildren),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends `sig` to `pid` (a negative pid names a process group).
pub fn kill(pid: libc::pid_t, sig: c_int) -> Result<()> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// A signal set.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// The set of all signals.
    pub fn full() -> SigSet {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the set it is given and cannot fail for a valid
        // pointer.
        unsafe {
            libc::sigfillset(set.as_mut_ptr());
            SigSet(set.assume_init())
        }
    }

    /// Removes `sig` from the set.
    pub fn remove(&mut self, sig: c_int) {
        // SAFETY: self.0 is an initialised set; an out-of-range sig only yields EINVAL.
        unsafe { libc::sigdelset(&mut self.0, sig) };
    }

    /// Replaces the caller's signal mask with this set and returns the previous mask.
    pub fn set_mask(&self) -> Result<SigSet> {
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: both pointers are valid; sigprocmask fills old on success.
        check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.0, old.as_mut_ptr()) })?;
        // SAFETY: sigprocmask succeeded, so old is initialised.
        Ok(SigSet(unsafe { old.assume_init() }))
    }

    /// Waits until one of the signals of this set (which must be blocked) is pending, takes
    /// it and returns it: sigwaitinfo(2). One syscall per signal, where a signalfd costs a
    /// poll and a read.
    pub fn wait(&self) -> Result<c_int> {
        loop {
            // SAFETY: self.0 is a valid set; a null info asks for the signal number only.
            match check(unsafe { libc::sigwaitinfo(&self.0, ptr::null_mut()) }) {
                Err(libc::EINTR) => continue,
                other => return other,
            }
        }
    }

    /// A non-blocking, close-on-exec signalfd that reports the signals of this set.
    pub fn signalfd(&self) -> Result<Fd> {
        // SAFETY: self.0 is a valid set; -1 asks for a new descriptor.
        let fd =
            check(unsafe { libc::signalfd(-1, &self.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        Ok(Fd(fd))
    }
}

/// A saved signal disposition.
pub struct SigAction(libc::sigaction);

/// Ignores `sig` and returns its previous disposition.
pub fn ignore_signal(sig: c_int) -> Result<SigAction> {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags); we then set SIG_IGN.
    let mut ign: libc::sigaction = unsafe { core::mem::zeroed() };
    ign.sa_sigaction = libc::SIG_IGN;
    let mut old = MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: both pointers are valid; sigaction fills old on success.
    check(unsafe { libc::sigaction(sig, &ign, old.as_mut_ptr()) })?;
    // SAFETY: sigaction succeeded, so old is initialised.
    Ok(SigAction(unsafe { old.assume_init() }))
}

/// Restores a disposition saved by [`ignore_signal`].
pub fn restore_signal(sig: c_int, action: &SigAction) -> Result<()> {
    // SAFETY: action.0 is a disposition the kernel gave us; NULL means no old value wanted.
    check(unsafe { libc::sigaction(sig, &action.0, ptr::null_mut()) }).map(drop)
}

/// Reads one signal number from a non-blocking signalfd; None when none is pending.
pub fn read_signal(fd: &Fd) -> Result<Option<c_int>> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = core::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: info is valid for writes of one signalfd_siginfo.
        match check_size(unsafe { libc::read(fd.0, info.as_mut_ptr().cast(), size) }) {
            // SAFETY: the kernel wrote a whole signalfd_siginfo.
            Ok(n) if n == size => {
                return Ok(Some(unsafe { info.assume_init() }.ssi_signo as c_int))
            }
            Ok(_) => return Err(libc::EIO),
            Err(libc::EAGAIN) => return Ok(None),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits for readiness on `fds` for at most `timeout_ms` (-1: forever); EINTR counts as 0.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: c_int) -> Result<usize> {
    // SAFETY: fds is a valid array of fds.len() pollfd structs.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }) {
        Ok(n) => Ok(n as usize),
        Err(libc::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// A non-blocking, close-on-exec inotify instance.
pub fn inotify() -> Result<Fd> {
    // SAFETY: plain syscall with flag arguments.
    let fd = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
    Ok(Fd(fd))
}

/// Adds (or updates) a watch on `path`; returns the watch descriptor.
pub fn inotify_watch(fd: &Fd, path: &CStr, mask: u32) -> Result<c_int> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::inotify_add_watch(fd.0, path.as_ptr(), mask) })
}

/// Milliseconds on the monotonic clock.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid for writes; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// An open directory stream.
pub struct Dir(ptr::NonNull<libc::DIR>);

impl Dir {
    /// Opens the directory at `path` for listing.
    pub fn open(path: &CStr) -> Result<Dir> {
        // SAFETY: path is NUL-terminated.
        let dir = unsafe { libc::opendir(path.as_ptr()) };
        ptr::NonNull::new(dir).map(Dir).ok_or_else(errno)
    }

    /// The descriptor under the stream, for `openat`.
    pub fn fd(&self) -> c_int {
        // SAFETY: self.0 is an open DIR stream.
        unsafe { libc::dirfd(self.0.as_ptr()) }
    }

    /// Calls `f` with the name of each entry (including `.` and `..`).
    pub fn for_each(&mut self, mut f: impl FnMut(&Dir, &CStr)) {
        loop {
            // SAFETY: self.0 is an open DIR stream.
            let entry = unsafe { libc::readdir(self.0.as_ptr()) };
            if entry.is_null() {
                return;
            }
            // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated; it
            // stays valid until the next readdir on this stream, after f returns.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            f(self, name);
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: self.0 is an open DIR stream owned by this Dir.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

/// The process arguments as the C runtime passed them to `main`.
pub struct Argv {
    ptr: *const *const c_char,
    len: usize,
}

impl Argv {
    /// Wraps `main`'s arguments.
    ///
    /// # Safety
    /// `argv` must point to `argc` valid NUL-terminated strings followed by a NULL pointer,
    /// all living for the whole process, as the C runtime guarantees for `main`.
    pub unsafe fn from_raw(argc: c_int, argv: *const *const c_char) -> Argv {
        Argv {
            ptr: argv,
            len: argc.max(0) as usize,
        }
    }

    /// The number of arguments, program name included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no arguments at all (not even a program name).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Argument `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&'static CStr> {
        if i >= self.len {
            return None;
        }
        // SAFETY: i < argc, and from_raw's contract makes argv[i] a valid C string that
        // lives for the whole process.
        Some(unsafe { CStr::from_ptr(*self.ptr.add(i)) })
    }
}

/// Sets the permission bits of an open file.
pub fn fchmod(fd: c_int, mode: libc::mode_t) -> Result<()> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::fchmod(fd, mode) }).map(drop)
}

/// Reads the whole of `fd` from offset 0.
pub fn read_to_end(fd: c_int) -> Result<alloc::vec::Vec<u8>> {
    let mut out = alloc::vec::Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = pread(fd, &mut chunk, out.len() as i64)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the whole file at `path`.
pub fn read_file(path: &CStr) -> Result<alloc::vec::Vec<u8>> {
    let fd = open(path, libc::O_RDONLY, 0)?;
    read_to_end(fd.raw())
}

/// Creates a new file from `template` (ending in `XXXXXX`, replaced in place) with mode 0600.
pub fn mkstemp(template: &mut CPath) -> Result<Fd> {
    // SAFETY: the buffer is NUL-terminated and writable; mkostemp only rewrites the six X's.
    let fd = check(unsafe { libc::mkostemp(template.0.as_mut_ptr().cast(), libc::O_CLOEXEC) })?;
    Ok(Fd(fd))
}

/// A path built at run time, kept NUL-terminated for the syscalls.
pub struct CPath(alloc::vec::Vec<u8>);

impl CPath {
    /// Concatenates `parts` into one path (cut at an embedded NUL, which no caller produces).
    pub fn new(parts: &[&[u8]]) -> CPath {
        let mut bytes = parts.concat();
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            bytes.truncate(nul);
        }
        bytes.push(0);
        CPath(bytes)
    }

    /// The path as a C string.
    pub fn as_cstr(&self) -> &CStr {
        // SAFETY: new() leaves exactly one NUL, at the end.
        unsafe { CStr::from_bytes_with_nul_unchecked(&self.0) }
    }

    /// The path bytes without the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        self.as_cstr().to_bytes()
    }
}

extern "C" {
    /// glibc's text-to-address parser; the libc crate does not declare it.
    fn inet_pton(af: c_int, src: *const c_char, dst: *mut core::ffi::c_void) -> c_int;
}

/// Whether `text` is an IPv4 or IPv6 address as the resolver reads them (inet_pton).
pub fn is_ip_address(text: &[u8]) -> bool {
    // inet_pton needs a C string; the longest IPv6 text form is 45 bytes.
    let mut buf = [0u8; 64];
    if text.is_empty() || text.len() >= buf.len() || text.contains(&0) {
        return false;
    }
    buf[..text.len()].copy_from_slice(text);
    let mut addr = [0u8; 16];
    [libc::AF_INET, libc::AF_INET6].into_iter().any(|family| {
        // SAFETY: buf is NUL-terminated; addr has room for an in6_addr (16 bytes).
        unsafe { inet_pton(family, buf.as_ptr().cast(), addr.as_mut_ptr().cast()) == 1 }
    })
}
