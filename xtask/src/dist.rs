//! `cargo xtask dist [--out DIR]`: release binaries, man pages and shell completions in one
//! directory, with an `install.sh` that puts each file where Debian's runc package puts its own
//! (`/usr/sbin/runc`, `/usr/share/man/man8/runc-*.8`, the Debian completion directories), so a
//! packager or an admin swapping runc for husk finds everything in the familiar places.
//!
//! Layout of DIR:
//!
//! ```text
//! sbin/husk
//! bin/husk-init  bin/containerd-shim-husk-v2  bin/husk-procview
//! man/man8/husk.8  man/man8/husk-create.8 ...
//! completions/bash/husk  completions/zsh/_husk  completions/fish/husk.fish
//! install.sh
//! ```

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use clap_complete::Shell;

/// Options of `cargo xtask dist`.
#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// Output directory (default: target/dist). Its previous content is replaced.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Package the debug build instead of building release binaries (a quick layout check).
    #[arg(long)]
    pub debug: bool,
}

/// A binary of the distribution: its cargo package, its name and where it goes in DIR (and, by
/// the same relative path, under /usr).
struct Binary {
    package: &'static str,
    name: &'static str,
    dir: &'static str,
}

/// Every binary `dist` ships. husk goes to sbin as runc does in Debian; the helpers to bin.
const BINARIES: &[Binary] = &[
    Binary {
        package: "husk",
        name: "husk",
        dir: "sbin",
    },
    Binary {
        package: "husk-init",
        name: "husk-init",
        dir: "bin",
    },
    Binary {
        package: "containerd-shim-husk-v2",
        name: "containerd-shim-husk-v2",
        dir: "bin",
    },
    Binary {
        package: "husk-procview",
        name: "husk-procview",
        dir: "bin",
    },
];

/// Runs `cargo xtask dist`.
pub fn cmd_dist(args: &DistArgs, root: &Path) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target").join("dist"));
    let profile = if args.debug { "debug" } else { "release" };
    build_binaries(root, args.debug)?;
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing old {}", out.display()))?;
    }
    let bin_dir = root.join("target").join(profile);
    for b in BINARIES {
        let src = bin_dir.join(b.name);
        let dst = out.join(b.dir).join(b.name);
        copy_file(&src, &dst)?;
    }
    // husk-init is copied into containers that have no libc of their own; a dynamic one would
    // fail there with a confusing "no such file or directory".
    let init = out.join("bin").join("husk-init");
    ensure!(
        is_static_elf(&init)?,
        "{} is dynamically linked; husk-init must be static (see tini-rs/build.rs)",
        init.display()
    );
    if let Some(desc) = file_description(&init) {
        println!("xtask: husk-init: {desc}");
    }
    let pages = write_man_pages(&out.join("man").join("man8"))?;
    write_completions(&out.join("completions"))?;
    write_install_script(&out, &pages)?;
    println!("xtask: distribution in {}", out.display());
    println!(
        "xtask: install with: sudo {}/install.sh  (DESTDIR=... PREFIX=... honoured)",
        out.display()
    );
    Ok(())
}

fn build_binaries(root: &Path, debug: bool) -> Result<()> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).arg("build").arg("--bins");
    if !debug {
        cmd.arg("--release");
    }
    for b in BINARIES {
        cmd.args(["-p", b.package]);
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

/// Whether an ELF file has no PT_INTERP program header, i.e. needs no dynamic loader. Read
/// directly so the check works where `file(1)` is not installed.
pub fn is_static_elf(path: &Path) -> Result<bool> {
    let mut data = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        data.len() >= 64 && data.starts_with(b"\x7fELF"),
        "{} is not an ELF file",
        path.display()
    );
    // Only 64-bit little-endian ELF is built here (x86-64, aarch64).
    ensure!(
        data[4] == 2 && data[5] == 1,
        "{}: not a 64-bit little-endian ELF",
        path.display()
    );
    let u16_at = |o: usize| -> Option<u16> {
        Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?))
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?))
    };
    let bad = || anyhow::anyhow!("{}: truncated ELF header", path.display());
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?)?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let p_type = data
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(bad)?;
        if p_type == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `file(1)`'s description, shown for the record when it is installed.
fn file_description(path: &Path) -> Option<String> {
    let out = Command::new("file").arg("-b").arg(path).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Renders husk.8 and one husk-CMD.8 per visible command (runc ships runc.8, runc-create.8, ...
/// in section 8). Returns the file names written.
pub fn write_man_pages(dir: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = man_command();
    // build() gives each subcommand its display name ("husk-create") for the page title.
    cmd.build();
    let mut pages = Vec::new();
    let mut all = vec![cmd.clone()];
    all.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for c in all {
        let man = clap_mangen::Man::new(c)
            .section("8")
            .manual("husk manual")
            .source(format!("husk {}", env!("CARGO_PKG_VERSION")));
        let path = man
            .generate_to(dir)
            .with_context(|| format!("writing a man page in {}", dir.display()))?;
        if let Some(name) = path.file_name() {
            pages.push(name.to_string_lossy().into_owned());
        }
    }
    Ok(pages)
}

/// husk's clap command with the version set, so man pages show it.
fn man_command() -> clap::Command {
    husk::cli::command().version(env!("CARGO_PKG_VERSION"))
}

/// bash, zsh and fish completions, named as those shells look them up.
pub fn write_completions(dir: &Path) -> Result<()> {
    // The file names bash-completion, zsh and fish look up for a command named husk.
    for (shell, sub, file) in [
        (Shell::Bash, "bash", "husk"),
        (Shell::Zsh, "zsh", "_husk"),
        (Shell::Fish, "fish", "husk.fish"),
    ] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let mut cmd = husk::cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "husk", &mut buf);
        let path = d.join(file);
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn write_install_script(out: &Path, pages: &[String]) -> Result<()> {
    let mut s = String::from(INSTALL_HEAD);
    for b in BINARIES {
        s.push_str(&format!(
            "install -D -m 0755 \"$here/{dir}/{name}\" \"$dest$prefix/{dir}/{name}\"\n",
            dir = b.dir,
            name = b.name
        ));
    }
    for p in pages {
        s.push_str(&format!(
            "install -D -m 0644 \"$here/man/man8/{p}\" \"$dest$prefix/share/man/man8/{p}\"\n"
        ));
    }
    s.push_str(INSTALL_TAIL);
    let path = out.join("install.sh");
    fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

const INSTALL_HEAD: &str = r#"#!/bin/sh
# Installs husk where Debian's runc package puts runc's files:
#   /usr/sbin/husk, /usr/bin/{husk-init,containerd-shim-husk-v2,husk-procview},
#   /usr/share/man/man8/husk*.8, and the Debian bash/zsh/fish completion directories.
# DESTDIR (staging root, for packagers) and PREFIX (default /usr) are honoured.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${DESTDIR:-}
prefix=${PREFIX:-/usr}
"#;

const INSTALL_TAIL: &str = r#"install -D -m 0644 "$here/completions/bash/husk" "$dest$prefix/share/bash-completion/completions/husk"
install -D -m 0644 "$here/completions/zsh/_husk" "$dest$prefix/share/zsh/vendor-completions/_husk"
install -D -m 0644 "$here/completions/fish/husk.fish" "$dest$prefix/share/fish/vendor_completions.d/husk.fish"
echo "husk installed under $dest$prefix"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_are_rendered_for_every_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = write_man_pages(dir.path()).expect("man pages");
        let main = fs::read_to_string(dir.path().join("husk.8")).expect("husk.8");
        assert!(main.contains(".TH husk 8"), "{main}");
        assert!(main.contains("create"));
        for cmd in ["create", "run", "exec", "checkpoint"] {
            let name = format!("husk-{cmd}.8");
            assert!(pages.contains(&name), "{name} missing from {pages:?}");
            let body = fs::read_to_string(dir.path().join(&name)).expect("page");
            assert!(!body.is_empty());
        }
    }

    #[test]
    fn completions_for_three_shells() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_completions(dir.path()).expect("completions");
        for f in ["bash/husk", "zsh/_husk", "fish/husk.fish"] {
            let body = fs::read_to_string(dir.path().join(f)).expect(f);
            assert!(body.contains("checkpoint"), "{f}");
        }
    }

    #[test]
    fn install_script_uses_debian_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_install_script(dir.path(), &["husk.8".into()]).expect("script");
        let s = fs::read_to_string(dir.path().join("install.sh")).expect("read");
        for want in [
            "$prefix/sbin/husk\"",
            "$prefix/bin/husk-init\"",
            "$prefix/share/man/man8/husk.8\"",
            "share/bash-completion/completions/husk\"",
            "share/zsh/vendor-completions/_husk\"",
            "share/fish/vendor_completions.d/husk.fish\"",
        ] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
    }

    #[test]
    fn static_check_tells_apart_dynamic_binaries() {
        // The test binary itself is dynamically linked on glibc.
        let me = std::env::current_exe().expect("exe");
        assert!(!is_static_elf(&me).expect("elf"));
    }
}
