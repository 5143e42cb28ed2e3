//! Link-time settings of the shim binary (one per container, so its footprint counts).

use std::process::Command;

#[path = "../build-support/static_pie.rs"]
mod static_pie;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build-support/static_pie.rs");
    // Static PIE: no shared libc/libm/libgcc_s mappings per shim (build-support/static_pie.rs).
    if let Err(e) = static_pie::link_static_pie("HUSK_SHIM_DYNAMIC") {
        println!("cargo:warning=the shim will be linked dynamically: {e}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    // DT_RELR packs the ~180 kB of relative relocations of a PIE into a few kB; the dynamic
    // loader reads all of them at start, so every shim mapped them (docs/shim-design.md,
    // "Memory"). Needs binutils >= 2.38 to link and glibc >= 2.36 to run: used only when the
    // linker knows the option (a build machine's glibc is then new enough too).
    if target.ends_with("linux-gnu") && ld_supports("pack-relative-relocs") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn ld_supports(option: &str) -> bool {
    Command::new("ld")
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(option))
        .unwrap_or(false)
}
