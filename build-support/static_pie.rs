//! Shared by the build scripts of `husk` and `containerd-shim-husk-v2`: link the binary as a
//! static PIE (ASLR kept) against glibc's static archives.
//!
//! Why: `husk` is a new process for every command, and the dynamic loader's work (mapping libc,
//! libm and libgcc_s, resolving symbols, relocating) was a third of its start; the shim lives
//! once per container, and the shared libraries' mapped pages were a third of its RSS. As in
//! tini-rs/build.rs, crt-static cannot be set for one package, so the binary gets linker
//! arguments instead: `-static-pie`, plus a search directory holding linker scripts named
//! `libc.so`, `libgcc_s.so`, ... that point at the static archives (rustc asks for the shared
//! libraries with `-Bdynamic`). Only the binaries get them; libraries and test harnesses link
//! as usual. Setting the environment variable named by `opt_out` at build time links
//! dynamically.

/// Emits the linker arguments for a static PIE, unless the target is not linux-gnu or
/// `opt_out` is set in the build environment.
pub fn link_static_pie(opt_out: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed={opt_out}");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !gnu_linux || std::env::var_os(opt_out).is_some() {
        return Ok(());
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("static-libs");
    std::fs::create_dir_all(&out)?;
    // libgcc_eh: unwinding support that libc.a and std reference; libgcc_s is its shared
    // form, which std names.
    let script =
        "/* husk: resolve -lX to static archives */\nGROUP ( libc.a libm.a libgcc.a libgcc_eh.a )\n";
    for lib in ["c", "m", "rt", "pthread", "util", "dl", "gcc_s"] {
        std::fs::write(out.join(format!("lib{lib}.so")), script)?;
    }
    println!("cargo:rustc-link-arg-bins=-L{}", out.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
    Ok(())
}
