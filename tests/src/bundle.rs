//! Building busybox OCI bundles: `rootfs/` from Debian's busybox-static plus a `config.json`
//! exactly like `runc spec` makes. Used by the integration tests and by `cargo xtask bundle`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

/// `runc spec` output from Debian 12's runc 1.1.5 (see tests/fixtures/README.md).
pub const RUNC_SPEC: &str = include_str!("../fixtures/runc-spec.json");
/// `runc spec --rootless` output from the same runc.
pub const RUNC_SPEC_ROOTLESS: &str = include_str!("../fixtures/runc-spec-rootless.json");

/// Where Debian's busybox-static puts its binary.
const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// Start from `runc spec --rootless` (user namespace mapping the caller's euid/egid to root).
    pub rootless: bool,
    /// `process.args`.
    pub args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rootless: false,
            args: vec!["sh".to_string()],
        }
    }
}

/// The config.json `runc spec` (or `runc spec --rootless`) writes, with `process.terminal` false
/// (tests and CI have no tty) and the given args.
pub fn spec(opts: &Options) -> Result<Value> {
    let text = if opts.rootless {
        RUNC_SPEC_ROOTLESS
    } else {
        RUNC_SPEC
    };
    let mut cfg: Value = serde_json::from_str(text).context("parsing the runc spec fixture")?;
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(opts.args);
    if opts.rootless {
        // runc spec --rootless maps the uid/gid of whoever ran it; the fixture was made as root.
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    }
    Ok(cfg)
}

/// True when `path` is an ELF executable without a program interpreter (statically linked), so
/// it runs inside a rootfs that has no libc.
pub fn is_static_elf(path: &Path) -> Result<bool> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    // ELF64 little-endian only: the machines this runs on are x86_64/aarch64.
    if buf.len() < 64 || &buf[..4] != b"\x7fELF" || buf[4] != 2 || buf[5] != 1 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([buf[o], buf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let Some(off) = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .filter(|o| o.checked_add(4).is_some_and(|end| end <= buf.len()))
        else {
            return Ok(false);
        };
        // PT_INTERP = 3
        if u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The host's statically linked busybox, without installing anything.
pub fn find_busybox() -> Result<PathBuf> {
    for p in BUSYBOX_PATHS {
        let p = Path::new(p);
        if p.exists() && is_static_elf(p)? {
            return Ok(p.to_path_buf());
        }
    }
    bail!(
        "no statically linked busybox at {}: install Debian's busybox-static \
         (apt-get install -y busybox-static, or run `cargo xtask test` / `cargo xtask bundle` \
         as root, which install it)",
        BUSYBOX_PATHS.join(" or ")
    )
}

/// Runs `apt-get ARGS` non-interactively (CI has no stdin), failing on a non-zero exit.
pub fn apt_get(args: &[&str]) -> Result<()> {
    eprintln!("+ apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("running apt-get (is this Debian?)")?;
    ensure!(
        status.success(),
        "apt-get {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

/// `apt-get install -y PKGS`; when that fails (a fresh machine has no package lists), runs
/// `apt-get update` once and tries again.
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(pkgs);
    if apt_get(&args).is_ok() {
        return Ok(());
    }
    apt_get(&["update"])?;
    apt_get(&args)
}

/// The host's static busybox, installing busybox-static with apt-get when it is missing.
pub fn ensure_busybox() -> Result<PathBuf> {
    if let Ok(p) = find_busybox() {
        return Ok(p);
    }
    // SAFETY: geteuid cannot fail.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "busybox-static is not installed and installing it needs root: \
         apt-get install -y busybox-static"
    );
    apt_install(&["busybox-static"])?;
    find_busybox()
}

/// The applets `busybox --list-full` reports, as paths relative to the rootfs (`bin/sh`,
/// `usr/bin/env`, ...).
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    ensure!(
        out.status.success(),
        "{} --list-full failed: {}",
        busybox.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).context("busybox --list-full printed non-UTF-8")?;
    Ok(text
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.contains("..") && l != "bin/busybox")
        .collect())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn mkdir_mode(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Builds `dir/rootfs` from the busybox at `busybox`.
pub fn make_rootfs(dir: &Path, busybox: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    mkdir_mode(&rootfs, 0o755)?;
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "root",
        "home/user",
        "var",
        "run",
    ] {
        mkdir_mode(&rootfs.join(d), 0o755)?;
    }
    mkdir_mode(&rootfs.join("root"), 0o700)?;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let home = rootfs.join("home/user");
        std::os::unix::fs::chown(&home, Some(1000), Some(1000))
            .with_context(|| format!("chown 1000:1000 {}", home.display()))?;
    }
    mkdir_mode(&rootfs.join("tmp"), 0o1777)?;

    // A copy, never a hard link: a container with a writable rootfs must not be able to change
    // the host's busybox.
    let target = rootfs.join("bin/busybox");
    fs::copy(busybox, &target)
        .with_context(|| format!("copying {} to {}", busybox.display(), target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", target.display()))?;
    for applet in applets(busybox)? {
        let link = rootfs.join(&applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if link.symlink_metadata().is_ok() {
            continue;
        }
        symlink("/bin/busybox", &link)
            .with_context(|| format!("symlinking {} -> /bin/busybox", link.display()))?;
    }

    let etc = rootfs.join("etc");
    write(
        &etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         user:x:1000:1000:user:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    write(
        &etc.join("group"),
        "root:x:0:\n\
         tty:x:5:\n\
         user:x:1000:\n\
         nogroup:x:65534:\n\
         nobody:x:65534:\n",
    )?;
    write(
        &etc.join("hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )?;
    write(&etc.join("hostname"), "runc\n")?;
    Ok(())
}

/// Writes `dir/config.json`.
pub fn write_config(dir: &Path, cfg: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(cfg).context("serializing config.json")?;
    write(&dir.join("config.json"), &(text + "\n"))
}

/// Builds a complete bundle in `dir` (created when missing) from the host's static busybox,
/// which must already be installed (see [`ensure_busybox`]). Refuses to overwrite a bundle.
pub fn make_with(dir: &Path, opts: &Options) -> Result<()> {
    let busybox = find_busybox()?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for existing in ["rootfs", "config.json"] {
        ensure!(
            dir.join(existing).symlink_metadata().is_err(),
            "{} already exists: remove it first",
            dir.join(existing).display()
        );
    }
    make_rootfs(dir, &busybox)?;
    write_config(dir, &spec(opts)?)
}

/// [`make_with`] the default options: args `["sh"]`, not rootless.
pub fn make(dir: &Path) -> Result<()> {
    make_with(dir, &Options::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_fixture_is_runc_spec_with_terminal_off() {
        let cfg = spec(&Options::default()).expect("spec");
        assert_eq!(cfg["ociVersion"], "1.0.2-dev");
        assert_eq!(cfg["process"]["terminal"], false);
        assert_eq!(cfg["process"]["args"], json!(["sh"]));
        assert_eq!(cfg["root"]["path"], "rootfs");
        assert_eq!(cfg["hostname"], "runc");
    }

    #[test]
    fn rootless_spec_maps_the_caller() {
        let cfg = spec(&Options {
            rootless: true,
            args: vec!["true".into()],
        })
        .expect("spec");
        let uid = unsafe { libc::geteuid() };
        assert_eq!(cfg["linux"]["uidMappings"][0]["hostID"], json!(uid));
        let ns: Vec<&str> = cfg["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert!(ns.contains(&"user"), "{ns:?}");
    }

    #[test]
    fn fixtures_are_config_json() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for name in [
            "runc-spec.json",
            "runc-spec-rootless.json",
            "containerd-ctr-run-seccomp.json",
            "docker-run.json",
        ] {
            let text = fs::read_to_string(dir.join(name)).expect("fixture readable");
            let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
            assert!(
                v["ociVersion"].is_string() && v["process"].is_object(),
                "{name}"
            );
        }
        let seccomp = fs::read_to_string(dir.join("containerd-default.json")).expect("seccomp");
        let v: Value = serde_json::from_str(&seccomp).expect("seccomp is JSON");
        assert!(v["defaultAction"].is_string() && v["syscalls"].is_array());
    }

    #[test]
    fn static_elf_check() {
        // /proc/self/exe (this test binary) is dynamically linked on Debian.
        assert!(!is_static_elf(Path::new("/proc/self/exe")).expect("read exe"));
        assert!(!is_static_elf(Path::new("/etc/hostname")).unwrap_or(false));
    }
}
