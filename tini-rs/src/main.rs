//! husk-init's entry point: a `no_std` C `main` over glibc, a malloc-backed allocator, an
//! aborting panic handler and one libc override that keeps the static binary small. All logic
//! is in the library.

#![no_std]
#![no_main]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_char, c_int};

/// `alloc` over libc's malloc: no allocator of our own to carry in the binary.
struct Malloc;

/// malloc's guaranteed alignment on 64-bit glibc.
const MALLOC_ALIGN: usize = 16;

// SAFETY: malloc/free/realloc/aligned_alloc satisfy GlobalAlloc's contract when the alignment
// is honoured, which the branches below ensure.
unsafe impl GlobalAlloc for Malloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain libc allocation; a null return is how GlobalAlloc reports failure.
            unsafe { libc::malloc(layout.size()).cast() }
        } else {
            // SAFETY: the alignment is a power of two; aligned_alloc returns null on failure.
            unsafe { libc::aligned_alloc(layout.align(), layout.size()).cast() }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from malloc or aligned_alloc above.
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: ptr came from malloc; realloc keeps malloc's alignment.
            unsafe { libc::realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: fall back to allocate-copy-free for over-aligned blocks, which realloc
            // would not keep aligned.
            unsafe {
                let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !new.is_null() {
                    core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Malloc = Malloc;

/// Panics abort (profile panic = "abort"); there is nothing to unwind in PID 1.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort is always safe to call and does not return.
    unsafe { libc::abort() }
}

/// glibc's assertion failure handler, replaced: the original formats its message with
/// gettext and asprintf, which are otherwise unused and would add about 30 kB to the static
/// binary (libc's start-up code references it). Same contract: report, then abort.
///
/// # Safety
/// Called by glibc only, with NUL-terminated strings (or NULL).
#[no_mangle]
pub unsafe extern "C" fn __assert_fail(
    assertion: *const c_char,
    file: *const c_char,
    line: core::ffi::c_uint,
    _function: *const c_char,
) -> ! {
    let mut msg = husk_init::log::Msg::plain();
    msg.s(b"husk-init: glibc assertion failed: ");
    for text in [assertion, file] {
        if !text.is_null() {
            // SAFETY: glibc passes NUL-terminated strings (the assert macro's literals).
            msg.s(unsafe { core::ffi::CStr::from_ptr(text) }.to_bytes())
                .s(b" ");
        }
    }
    msg.s(b"line ").n(line as i64).emit();
    // SAFETY: abort is always safe to call and does not return.
    unsafe { libc::abort() }
}

/// Never called, since panics abort; debug builds of the precompiled `core` still refer to it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// The C entry point glibc's start-up code calls.
///
/// # Safety
/// Called by the C runtime only, with its `argc`/`argv`.
#[no_mangle]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // SAFETY: the C runtime passes argc valid strings followed by NULL, alive for the process.
    let argv = unsafe { husk_init::sys::Argv::from_raw(argc, argv) };
    husk_init::run(&argv)
}
