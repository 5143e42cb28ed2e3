//! Records the git commit and compiler for `husk --version`, in runc's layout, and links the
//! `husk` binary statically.
//!
//! Static (a static PIE, so ASLR stays): every `husk` command is a new process, and the
//! dynamic loader's work (mapping libc, libm and libgcc_s, resolving symbols, relocating) was
//! a third of the start of one, which `create`, `start`, `state` and `kill` all pay. As in
//! tini-rs/build.rs, crt-static cannot be set for one package, so the binary gets linker
//! arguments instead: `-static-pie`, plus a search directory holding linker scripts named
//! `libc.so`, `libgcc_s.so`, ... that point at the static archives (rustc asks for the shared
//! libraries with `-Bdynamic`). Only the binary gets them; the library and the test harnesses
//! link as usual.

use std::process::Command;

fn main() {
    if let Err(e) = link_static() {
        println!("cargo:warning=husk will be linked dynamically: {e}");
    }
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let commit =
        out("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = out(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HUSK_COMMIT={commit}");
    println!("cargo:rustc-env=HUSK_RUSTC={version}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs");
}

/// Emits the linker arguments that make the binary a static PIE (see the module doc).
fn link_static() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=HUSK_DYNAMIC");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !gnu_linux || std::env::var_os("HUSK_DYNAMIC").is_some() {
        return Ok(());
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("static-libs");
    std::fs::create_dir_all(&out)?;
    // libgcc_eh: unwinding tables support that libc.a and std reference; libgcc_s is its
    // shared form, which std names.
    let script = "/* husk: resolve -lX to static archives */\nGROUP ( libc.a libm.a libgcc.a libgcc_eh.a )\n";
    for lib in ["c", "m", "rt", "pthread", "util", "dl", "gcc_s"] {
        std::fs::write(out.join(format!("lib{lib}.so")), script)?;
    }
    println!("cargo:rustc-link-arg-bins=-L{}", out.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
    Ok(())
}
