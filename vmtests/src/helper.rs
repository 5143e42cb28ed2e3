//! `husk-vmtests helper ...`: small probes run inside containers (the binary is static, so it
//! runs in the busybox rootfs), for what busybox cannot do or cannot report precisely.
//!
//! - `open PATH`: open PATH read-only and read from it; prints `ok` or the exact errno.
//! - `openrw PATH`: the same, opened read-write (the device filter sees one rw request).
//! - `hugetlb N`: map and touch N 2 MiB huge pages; prints `ok` or why the mapping failed
//!   (a fault beyond the hugetlb limit kills the process with SIGBUS instead).

use std::io::Read;

/// Runs the helper named by `args[0]`; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    match args {
        [cmd, path] if cmd == "open" => open(path, false),
        [cmd, path] if cmd == "openrw" => open(path, true),
        [cmd, n] if cmd == "hugetlb" => match n.parse::<usize>() {
            Ok(n) => hugetlb(n),
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> i32 {
    eprintln!("usage: husk-vmtests helper open PATH | openrw PATH | hugetlb N");
    2
}

fn open(path: &str, write: bool) -> i32 {
    let mut buf = [0u8; 512];
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path);
    match file.and_then(|mut f| f.read(&mut buf)) {
        Ok(_) => {
            println!("ok");
            0
        }
        Err(e) => {
            println!("open {path}: {e}");
            1
        }
    }
}

fn hugetlb(pages: usize) -> i32 {
    const HUGE: usize = 2 << 20;
    let len = pages * HUGE;
    // SAFETY: an anonymous private mapping; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        println!(
            "mmap {pages} huge pages: {}",
            std::io::Error::last_os_error()
        );
        return 1;
    }
    for i in 0..pages {
        // SAFETY: inside the mapping just made; touching a page is what charges it.
        unsafe { p.cast::<u8>().add(i * HUGE).write_volatile(1) };
    }
    println!("ok");
    0
}
