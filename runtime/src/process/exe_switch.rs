//! Points this process's `/proc/self/exe`, and every mapping it has of its own binary, at
//! another file with the same contents (a read-only bind of the binary), without an exec.
//!
//! `prctl(PR_SET_MM_EXE_FILE)` replaces the exe link, but the kernel refuses (EBUSY) while any
//! mapping of the old file remains, and the running program is such a mapping. So first each
//! mapping of the binary is replaced: clean ones (code, read-only data) by the same pages of
//! the new file, mapped at the same address; ones the process has written (data, and the
//! RELRO part that the dynamic loader relocated before making it read-only) by an anonymous
//! copy of their current contents, moved over them atomically with mremap. The program keeps
//! running throughout: every address holds the same bytes before and after.
//!
//! The exe link is set with `PR_SET_MM_MAP`, which needs CAP_SYS_ADMIN or
//! CAP_CHECKPOINT_RESTORE (CRIU's way; `PR_SET_MM_EXE_FILE` would need CAP_SYS_RESOURCE, which
//! container hosts often drop) and every other field of the memory map restated, read from
//! /proc/self/stat. Callers fall back to a re-exec when it fails. Used by `cloned_binary.rs`
//! (CVE-2019-5736), where it saves a whole second start of husk.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// One mapping of the binary, from /proc/self/maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vma {
    start: usize,
    end: usize,
    prot: libc::c_int,
    offset: u64,
}

/// Makes `new` (a readable descriptor of a file identical to the running binary `old`) this
/// process's executable. On error some mappings may already come from `new`, which is
/// harmless: the contents are the same.
pub fn switch(old: &File, new: &File) -> io::Result<()> {
    let mut map = MmMap::current()?;
    // The permission is checked before the descriptor: a bad one tells, without touching
    // anything, whether the real call can work.
    map.exe_fd = u32::MAX - 1;
    match map.set() {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
        Err(e) => return Err(e),
        Ok(()) => return Err(io::Error::other("PR_SET_MM_MAP accepted a bad descriptor")),
    }
    let meta = old.metadata()?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let vmas = mappings_of(&maps, meta.dev(), meta.ino());
    if vmas.is_empty() {
        return Err(io::Error::other("no mapping of the running binary found"));
    }
    let relro = relro_range();
    for vma in vmas {
        let written = vma.prot & libc::PROT_WRITE != 0
            || relro.is_some_and(|(lo, hi)| vma.start < hi && lo < vma.end);
        if written && vma.prot & libc::PROT_READ != 0 {
            move_to_anonymous(vma)?;
        } else {
            remap_from(vma, new)?;
        }
    }
    map.exe_fd = u32::try_from(new.as_raw_fd()).map_err(io::Error::other)?;
    // SAFETY: brk(0) only reports the current break; nothing allocated since the stat read
    // could have moved it, but it is read again right before the call that restates it.
    map.brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    map.set()
}

/// The kernel's `struct prctl_mm_map` (linux/prctl.h).
#[repr(C)]
#[derive(Debug, Default)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

impl MmMap {
    /// This process's memory map as it is, with no exe change and the auxv left alone.
    fn current() -> io::Result<MmMap> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let map =
            parse_stat(&stat).ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))?;
        // SAFETY: brk(0) only reports the current break.
        let brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
        Ok(MmMap { brk, ..map })
    }

    /// prctl(PR_SET_MM, PR_SET_MM_MAP, self).
    fn set(&self) -> io::Result<()> {
        // SAFETY: the kernel reads exactly size_of::<MmMap>() bytes from a struct we own.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_MM,
                libc::PR_SET_MM_MAP,
                self as *const MmMap,
                std::mem::size_of::<MmMap>(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The memory-map fields of /proc/self/stat (proc(5): fields 26-28 and 45-51), exe_fd -1.
fn parse_stat(stat: &str) -> Option<MmMap> {
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .collect();
    // rest starts at field 3.
    let field = |n: usize| f.get(n - 3).copied();
    Some(MmMap {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
        exe_fd: u32::MAX,
        ..MmMap::default()
    })
}

/// The mappings in `maps` (/proc/self/maps) of the file with device `dev` and inode `ino`.
fn mappings_of(maps: &str, dev: u64, ino: u64) -> Vec<Vma> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, perms, offset, device, inode) =
                (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            if inode.parse::<u64>().ok()? != ino {
                return None;
            }
            let (major, minor) = device.split_once(':')?;
            let (major, minor) = (
                u32::from_str_radix(major, 16).ok()?,
                u32::from_str_radix(minor, 16).ok()?,
            );
            if libc::makedev(major, minor) != dev {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let perms = perms.as_bytes();
            let mut prot = libc::PROT_NONE;
            for (i, bit) in [libc::PROT_READ, libc::PROT_WRITE, libc::PROT_EXEC]
                .into_iter()
                .enumerate()
            {
                if perms.get(i).is_some_and(|c| *c != b'-') {
                    prot |= bit;
                }
            }
            Some(Vma {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
                prot,
                offset: u64::from_str_radix(offset, 16).ok()?,
            })
        })
        .collect()
}

/// The main program's PT_GNU_RELRO range in memory: written by the loader, then read-only.
fn relro_range() -> Option<(usize, usize)> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info for the main program first, and `data` is the
        // Option below, alive for the whole dl_iterate_phdr call.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Option<(usize, usize)>)) };
        for i in 0..usize::from(info.dlpi_phnum) {
            // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_GNU_RELRO {
                let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                *out = Some((start, start + ph.p_memsz as usize));
            }
        }
        1 // only the main program
    }
    let mut range: Option<(usize, usize)> = None;
    // SAFETY: the callback only reads the headers and writes `range`.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut range as *mut _ as *mut libc::c_void) };
    range
}

/// Maps the same pages of `file` over `vma`, with the same protection.
fn remap_from(vma: Vma, file: &File) -> io::Result<()> {
    // SAFETY: MAP_FIXED over a mapping of identical contents (the same file's pages), so
    // nothing that runs or reads there sees a change.
    let p = unsafe {
        libc::mmap(
            vma.start as *mut libc::c_void,
            vma.end - vma.start,
            vma.prot,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            file.as_raw_fd(),
            vma.offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces `vma` by an anonymous copy of its current contents, in one mremap.
fn move_to_anonymous(vma: Vma) -> io::Result<()> {
    let len = vma.end - vma.start;
    // SAFETY: a fresh private anonymous mapping of our own.
    let copy = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if copy == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both ranges are mapped and readable/writable for len bytes and do not overlap.
    // Nothing writes to the source between this copy and the mremap below (single-threaded,
    // no allocation or I/O in between).
    unsafe {
        std::ptr::copy_nonoverlapping(vma.start as *const u8, copy as *mut u8, len);
        if libc::mprotect(copy, len, vma.prot) < 0
            || libc::mremap(
                copy,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                vma.start as *mut libc::c_void,
            ) == libc::MAP_FAILED
        {
            let e = io::Error::last_os_error();
            libc::munmap(copy, len);
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_memory_map_from_stat() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    100 1000 200 18446744073709551615 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 \
                    1 0 0 0 0 0 12288 16384 20480 140100 140200 140300 140400 0";
        let m = parse_stat(stat).expect("parsed");
        assert_eq!(
            (m.start_code, m.end_code, m.start_stack),
            (4096, 8192, 140000)
        );
        assert_eq!(
            (m.start_data, m.end_data, m.start_brk),
            (12288, 16384, 20480)
        );
        assert_eq!((m.arg_start, m.arg_end), (140100, 140200));
        assert_eq!((m.env_start, m.env_end), (140300, 140400));
        assert_eq!(m.exe_fd, u32::MAX);
        assert_eq!(std::mem::size_of::<MmMap>(), 104);
    }

    #[test]
    fn finds_the_mappings_of_one_file() {
        let maps = "\
55d0c3a00000-55d0c3a7a000 r--p 00000000 fe:00 1234 /usr/sbin/husk
55d0c3a7a000-55d0c3d7c000 r-xp 0007a000 fe:00 1234 /usr/sbin/husk
55d0c3d7c000-55d0c3db2000 r--p 0037c000 fe:00 1234 /usr/sbin/husk
55d0c3db3000-55d0c3db4000 rw-p 003b2000 fe:00 1234 /usr/sbin/husk
55d0c3db4000-55d0c3db5000 rw-p 00000000 00:00 0
7f0000000000-7f0000010000 r-xp 00000000 fe:00 99 /usr/lib/libc.so.6
7f0000010000-7f0000020000 r-xp 00000000 fe:01 1234 /other/fs/same-inode
";
        let vmas = mappings_of(maps, libc::makedev(0xfe, 0), 1234);
        assert_eq!(vmas.len(), 4);
        assert_eq!(
            vmas[1],
            Vma {
                start: 0x55d0c3a7a000,
                end: 0x55d0c3d7c000,
                prot: libc::PROT_READ | libc::PROT_EXEC,
                offset: 0x7a000,
            }
        );
        assert_eq!(vmas[3].prot, libc::PROT_READ | libc::PROT_WRITE);
    }
}
