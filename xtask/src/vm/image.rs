//! The VM's initramfs: busybox, husk, husk-init, the guest test program, the shared libraries
//! husk links, the kernel modules the checks load, a busybox bundle, and two init scripts.
//!
//! Layout of the archive:
//!
//! ```text
//! /init, /bin/busybox        stage 1: copy /stage into a tmpfs, switch_root to it
//! /stage/...                 the real root (below, as the guest sees it)
//!   /sbin/husk-init          PID 1 (it reaps the containers' orphans), running boot.sh
//!   /etc/husk-vm/boot.sh     stage 2: mounts, cgroup2, controllers, checks, poweroff
//!   /etc/husk-vm-guest       marker: husk-vmtests refuses to run without it
//!   /usr/bin/husk, /usr/bin/husk-vmtests, /bin/busybox (applets linked at boot)
//!   /lib*/...                husk's shared libraries, where ldd found them
//!   /lib/modules/husk-vm/    null_blk (+configfs), bfq; NAME.list = files in load order
//!   /bundle/config.json      `runc spec` (terminal false), the checks' template
//!   /bundle/config-rootless.json  `runc spec --rootless`, for the delegated-subtree check
//!   /bundle/rootfs/          busybox rootfs + /sbin/husk-init + /usr/bin/husk-vmtests
//! ```
//!
//! Why stage 1: pivot_root(2), which husk uses for every container, fails on the initramfs
//! itself (it is the root mount, which cannot be moved); a tmpfs mounted over it can.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use husk_tests::bundle;

use super::cpio;
use super::kernel::Kernel;

/// Modules the checks load: null_blk gives a block device for io.max/io.weight and the
/// device rules; bfq is the scheduler behind io.bfq.weight. The Debian kernel has both as
/// modules (null_blk needs configfs, which modules.dep brings along).
const MODULES: &[&str] = &["null_blk", "bfq"];

/// Stage 1, the initramfs's /init.
const STAGE1: &str = r#"#!/bin/busybox sh
# Stage 1 of the husk cgroup v2 VM (xtask/src/vm/image.rs): pivot_root cannot leave the
# initramfs, so the real root is a copy in a tmpfs.
/bin/busybox mkdir -p /newroot
if ! /bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot ||
   ! /bin/busybox cp -a /stage/. /newroot/; then
    echo "HUSK-VM-ERROR: stage 1 could not copy the root into a tmpfs"
    /bin/busybox poweroff -f
fi
exec /bin/busybox switch_root /newroot /sbin/husk-init -- /bin/sh /etc/husk-vm/boot.sh
"#;

/// Stage 2, run by husk-init as PID 1.
const STAGE2: &str = r#"#!/bin/sh
# Stage 2 of the husk cgroup v2 VM (xtask/src/vm/image.rs): a minimal host with only the
# unified hierarchy, every controller enabled at the root, then the checks.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# The options systemd mounts cgroup2 with, as on the hosts husk meets.
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup ||
    mount -t cgroup2 cgroup2 /sys/fs/cgroup ||
    echo "HUSK-VM-ERROR: cannot mount cgroup2 at /sys/fs/cgroup"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control ||
        echo "HUSK-VM-WARN: cannot enable controller $c at the root"
done
echo "HUSK-VM-BOOTED: kernel $(uname -r), $(nproc) CPUs, $(grep MemTotal /proc/meminfo | tr -s ' '), root controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
/usr/bin/husk-vmtests
echo "HUSK-VM-EXIT: $?"
# The serial port drains asynchronously: give the last lines time before the power goes.
sleep 1
poweroff -f
"#;

/// What goes into the image.
pub struct Inputs<'a> {
    /// The husk binary.
    pub husk: &'a Path,
    /// The husk-init binary (static).
    pub husk_init: &'a Path,
    /// The guest test program (static).
    pub vmtests: &'a Path,
    /// The host's static busybox.
    pub busybox: &'a Path,
    /// The guest kernel (for its modules).
    pub kernel: &'a Kernel,
}

/// Builds the initramfs in `work` and returns its path (`work/initramfs.cpio.gz`).
pub fn build(inputs: &Inputs, work: &Path) -> Result<PathBuf> {
    let tree = work.join("tree");
    let stage = tree.join("stage");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/husk-vm",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "lib/modules/husk-vm",
    ] {
        mkdir(&stage.join(d))?;
    }
    mkdir(&tree.join("bin"))?;
    copy_exec(inputs.busybox, &tree.join("bin/busybox"))?;
    write_exec(&tree.join("init"), STAGE1)?;

    copy_exec(inputs.busybox, &stage.join("bin/busybox"))?;
    // boot.sh runs before busybox --install has made the applet links.
    symlink("busybox", stage.join("bin/sh")).context("linking /bin/sh")?;
    strip_into(inputs.husk, &stage.join("usr/bin/husk"))?;
    strip_into(inputs.husk_init, &stage.join("sbin/husk-init"))?;
    strip_into(inputs.vmtests, &stage.join("usr/bin/husk-vmtests"))?;
    for bin in [inputs.husk, inputs.husk_init, inputs.vmtests] {
        copy_libraries(bin, &stage)?;
    }
    write_exec(&stage.join("etc/husk-vm/boot.sh"), STAGE2)?;
    fs::write(
        stage.join("etc/husk-vm-guest"),
        "this root is the husk cgroup v2 test VM (cargo xtask vm-test)\n",
    )
    .context("writing the guest marker")?;

    let mods = stage.join("lib/modules/husk-vm");
    for name in MODULES {
        let m = inputs.kernel.module(name)?;
        inputs.kernel.pack_module(&m, &mods)?;
    }

    let bundle_dir = stage.join("bundle");
    bundle::make_rootfs(&bundle_dir, inputs.busybox)?;
    bundle::write_config(&bundle_dir, &bundle::spec(&bundle::Options::default())?)?;
    // `runc spec --rootless` for the delegated-subtree check (which maps uid 1000 itself).
    let rootless = bundle::spec(&bundle::Options {
        rootless: true,
        ..Default::default()
    })?;
    let text = serde_json::to_string_pretty(&rootless).context("serializing the rootless spec")?;
    fs::write(bundle_dir.join("config-rootless.json"), text)
        .context("writing config-rootless.json")?;
    let rootfs = bundle_dir.join("rootfs");
    // Both are static, so they run in the busybox rootfs: husk-init for the OOM-message
    // check, husk-vmtests for the probes (`helper open`, `helper hugetlb`).
    fs::copy(stage.join("sbin/husk-init"), rootfs.join("sbin/husk-init"))
        .context("copying husk-init into the bundle")?;
    fs::copy(
        stage.join("usr/bin/husk-vmtests"),
        rootfs.join("usr/bin/husk-vmtests"),
    )
    .context("copying husk-vmtests into the bundle")?;

    let image = work.join("initramfs.cpio.gz");
    compress(&tree, &image)?;
    Ok(image)
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", dir.display()))
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", path.display()))
}

fn copy_exec(src: &Path, dst: &Path) -> Result<()> {
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", dst.display()))
}

/// Copies a binary without its debug info: debug builds are mostly DWARF (husk: 70 MB, 16 MB
/// without), and every byte is unpacked and copied under emulation at boot.
fn strip_into(src: &Path, dst: &Path) -> Result<()> {
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .status()
        .context("running objcopy (Debian's binutils)")?;
    ensure!(
        status.success(),
        "objcopy --strip-debug {} failed: {status}",
        src.display()
    );
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", dst.display()))
}

/// The shared libraries (and the dynamic loader) `bin` needs, as ldd resolves them; nothing
/// for a static binary.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    if bundle::is_static_elf(bin)? {
        return Ok(Vec::new());
    }
    let out = Command::new("ldd")
        .arg(bin)
        .stdin(Stdio::null())
        .output()
        .context("running ldd")?;
    ensure!(
        out.status.success(),
        "ldd {} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Absolute library paths from ldd's output (`libc.so.6 => /lib/.../libc.so.6 (0x...)` and
/// the loader's `/lib64/ld-linux-x86-64.so.2 (0x...)`); the vDSO has no file.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_libraries(bin: &Path, stage: &Path) -> Result<()> {
    for lib in libraries(bin)? {
        let rel = lib
            .strip_prefix("/")
            .with_context(|| format!("{} is not absolute", lib.display()))?;
        let dst = stage.join(rel);
        if dst.exists() {
            continue;
        }
        if let Some(parent) = dst.parent() {
            mkdir(parent)?;
        }
        // fs::copy follows symlinks (/lib64/ld-linux-x86-64.so.2 is one): the guest gets the
        // file itself at the path the binary asks for.
        fs::copy(&lib, &dst)
            .with_context(|| format!("copying {} to {}", lib.display(), dst.display()))?;
    }
    Ok(())
}

/// Archives `tree` as newc cpio, gzip-compressed (`gzip -1`: the kernel unpacks it under
/// emulation, where a higher level gains little).
fn compress(tree: &Path, image: &Path) -> Result<()> {
    let file = fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
    let mut gzip = Command::new("gzip")
        .args(["-1", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("running gzip")?;
    let res = {
        let stdin = gzip.stdin.as_mut().context("gzip has no stdin")?;
        let mut buf = std::io::BufWriter::new(stdin);
        cpio::write_tree(tree, &mut buf).and_then(|()| {
            use std::io::Write;
            buf.flush().context("writing to gzip")
        })
    };
    // Close gzip's stdin so it finishes, whatever happened above.
    drop(gzip.stdin.take());
    let status = gzip.wait().context("waiting for gzip")?;
    res?;
    ensure!(status.success(), "gzip failed: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
