//! Build script: makes the `husk-init` binary a static, non-PIE executable and records the git
//! commit for `--version`.
//!
//! Why here and not in `.cargo/config.toml`: cargo ignores a nested config in a workspace build,
//! and `-C target-feature=+crt-static` can only be given as a rustflag. Instead the binary gets
//! linker arguments: `-static -no-pie`, plus a search directory holding linker scripts named
//! `libc.so`, `libm.so`, ... that point at the static archives, and an explicit static libc.
//! Without the `std` feature the libc crate asks for `-lc` after `-Wl,-Bdynamic` (dynamic unless
//! crt-static is on); without the scripts the linker would then pick glibc's shared library and
//! produce a broken half-static binary.
//! Only the binary gets these arguments; the library and the test harnesses link as usual.

use std::env;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HUSK_INIT_NO_STRIP");
    link_static()?;
    record_git_commit();
    Ok(())
}

/// Emits the linker arguments that make the binary static (see the module doc).
fn link_static() -> Result<(), Box<dyn Error>> {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        // Other libcs (musl) link statically by default; the binary still has to name libc,
        // since the libc crate with its "std" feature links nothing (see below).
        println!("cargo:rustc-link-arg-bins=-lc");
        return Ok(());
    }
    let out = PathBuf::from(env::var("OUT_DIR")?).join("static-libs");
    fs::create_dir_all(&out)?;
    // libgcc_eh: glibc's libc.a references __gcc_personality_v0, which gcc would add itself
    // for -static, but rustc links with -nodefaultlibs.
    let script =
        "/* husk-init: resolve -lX to static archives */\nGROUP ( libc.a libgcc.a libgcc_eh.a )\n";
    for lib in ["c", "m", "rt", "pthread", "util", "dl"] {
        fs::write(out.join(format!("lib{lib}.so")), script)?;
    }
    println!("cargo:rustc-link-arg-bins=-L{}", out.display());
    println!("cargo:rustc-link-arg-bins=-static");
    println!("cargo:rustc-link-arg-bins=-no-pie");
    // The lookup table for unwinding (10 kB): nothing in husk-init unwinds (panics abort, no
    // C++, no thread cancellation), and rustc's unwind tables cannot be disabled from a crate.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    // With its default "std" feature (unified across the workspace) the libc crate links no
    // library at all, expecting std to; a no_std binary has to name them itself.
    for arg in [
        "-Wl,--start-group",
        "-lc",
        "-lgcc",
        "-lgcc_eh",
        "-Wl,--end-group",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    if env::var("PROFILE").as_deref() == Ok("release") {
        // The root profile does not strip; symbols are a third of a small binary.
        // HUSK_INIT_NO_STRIP=1 keeps them, for size analysis with nm.
        if env::var_os("HUSK_INIT_NO_STRIP").is_none() {
            println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
        }
    }
    Ok(())
}

/// Sets `HUSK_INIT_GIT` to the short commit id (or `unknown`) for the `--version` line.
fn record_git_commit() {
    println!("cargo:rerun-if-env-changed=HUSK_INIT_GIT");
    let commit = env::var("HUSK_INIT_GIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=7", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HUSK_INIT_GIT={commit}");
    // Rebuild when HEAD moves, but only name files that exist: a missing rerun-if-changed path
    // makes cargo rerun the script on every build.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        let mut watch = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(git_dir.join(head_ref));
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Runs git in the crate directory and returns its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}
