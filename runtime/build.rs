//! Records the git commit and compiler for `husk --version`, in runc's layout, and links the
//! `husk` binary statically.
//!
//! Static PIE: why and how in build-support/static_pie.rs.

use std::process::Command;

#[path = "../build-support/static_pie.rs"]
mod static_pie;

fn main() {
    println!("cargo:rerun-if-changed=../build-support/static_pie.rs");
    if let Err(e) = static_pie::link_static_pie("HUSK_DYNAMIC") {
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
