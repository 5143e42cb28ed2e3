//! The guest kernel: Debian's linux-image-amd64 as installed in /boot, and the few modules the
//! checks need from its /lib/modules tree (with their dependencies, from modules.dep; none
//! when the kernel has them built in, from modules.builtin).

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

/// A kernel image and its module tree.
#[derive(Debug)]
pub struct Kernel {
    /// The bzImage (`/boot/vmlinuz-VERSION`).
    pub image: PathBuf,
    /// `VERSION` (`uname -r` in the guest).
    pub version: String,
    /// `/lib/modules/VERSION`.
    pub modules: PathBuf,
}

/// The kernel to boot: `HUSK_VM_KERNEL` (a vmlinuz path whose version has a module tree), else
/// the newest /boot/vmlinuz-* with a module tree.
pub fn find() -> Result<Kernel> {
    if let Some(image) = std::env::var_os("HUSK_VM_KERNEL").filter(|v| !v.is_empty()) {
        let image = PathBuf::from(image);
        let version = image
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .with_context(|| {
                format!(
                    "HUSK_VM_KERNEL={} is not named vmlinuz-VERSION",
                    image.display()
                )
            })?
            .to_string();
        return kernel(image, version);
    }
    let boot = Path::new("/boot");
    let mut versions: Vec<String> = fs::read_dir(boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(String::from)
        })
        .filter(|v| {
            Path::new("/lib/modules")
                .join(v)
                .join("modules.dep")
                .is_file()
        })
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    let Some(version) = versions.pop() else {
        bail!(
            "no kernel to boot: /boot has no vmlinuz-VERSION with a /lib/modules/VERSION tree \
             (apt-get install linux-image-amd64, or set HUSK_VM_KERNEL)"
        );
    };
    kernel(boot.join(format!("vmlinuz-{version}")), version)
}

fn kernel(image: PathBuf, version: String) -> Result<Kernel> {
    let modules = Path::new("/lib/modules").join(&version);
    fs::File::open(&image)
        .with_context(|| format!("cannot read the kernel {}", image.display()))?;
    ensure!(
        modules.join("modules.dep").is_file(),
        "kernel {} has no module tree at {}",
        image.display(),
        modules.display()
    );
    Ok(Kernel {
        image,
        version,
        modules,
    })
}

/// Compares kernel versions by their numeric runs (6.1.0-9 < 6.1.0-10).
fn version_cmp(a: &str, b: &str) -> Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    nums(a).cmp(&nums(b)).then_with(|| a.cmp(b))
}

/// A module to pack: the files to insmod, dependencies first (empty when built in).
#[derive(Debug, PartialEq, Eq)]
pub struct Module {
    /// The module's name (`null_blk`).
    pub name: String,
    /// Paths relative to the module tree, in load order.
    pub files: Vec<String>,
}

impl Kernel {
    /// Resolves `name` against modules.builtin and modules.dep.
    pub fn module(&self, name: &str) -> Result<Module> {
        let builtin = fs::read_to_string(self.modules.join("modules.builtin")).unwrap_or_default();
        let dep_path = self.modules.join("modules.dep");
        let deps = fs::read_to_string(&dep_path)
            .with_context(|| format!("reading {}", dep_path.display()))?;
        resolve(name, &builtin, &deps).with_context(|| {
            format!(
                "kernel {}: module {name} is neither built in nor in {}",
                self.version,
                dep_path.display()
            )
        })
    }

    /// Copies a module's files into `dir` (flat, decompressed: busybox's insmod takes plain
    /// `.ko` files) and writes `dir/NAME.list`, the file names in load order.
    pub fn pack_module(&self, m: &Module, dir: &Path) -> Result<()> {
        let mut list = String::new();
        for rel in &m.files {
            let src = self.modules.join(rel);
            let base = Path::new(rel)
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("module path {rel} has no file name"))?;
            let (plain, tool) = match base.rsplit_once(".ko.") {
                Some((stem, "xz")) => (format!("{stem}.ko"), Some("xz")),
                Some((stem, "zst")) => (format!("{stem}.ko"), Some("zstd")),
                Some((stem, "gz")) => (format!("{stem}.ko"), Some("gzip")),
                Some((_, other)) => bail!("{rel}: unknown module compression .{other}"),
                None => (base.to_string(), None),
            };
            let dst = dir.join(&plain);
            match tool {
                None => {
                    fs::copy(&src, &dst).with_context(|| {
                        format!("copying {} to {}", src.display(), dst.display())
                    })?;
                }
                Some(tool) => {
                    let out = Command::new(tool)
                        .arg("-dc")
                        .arg(&src)
                        .output()
                        .with_context(|| format!("running {tool} -dc {}", src.display()))?;
                    ensure!(
                        out.status.success(),
                        "{tool} -dc {} failed: {}",
                        src.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    fs::write(&dst, out.stdout)
                        .with_context(|| format!("writing {}", dst.display()))?;
                }
            }
            list.push_str(&plain);
            list.push('\n');
        }
        let path = dir.join(format!("{}.list", m.name));
        fs::write(&path, list).with_context(|| format!("writing {}", path.display()))
    }
}

/// The module's files in load order from modules.builtin / modules.dep text; None when the
/// kernel has no such module. A dependency's own dependencies come before it.
fn resolve(name: &str, builtin: &str, deps: &str) -> Option<Module> {
    let file_is = |path: &str| {
        let base = path.rsplit('/').next().unwrap_or(path);
        let stem = base.split(".ko").next().unwrap_or(base);
        // Module names treat '-' and '_' alike (null_blk.ko, nf-conntrack...).
        stem.replace('-', "_") == name.replace('-', "_")
    };
    if builtin.lines().any(|l| file_is(l.trim())) {
        return Some(Module {
            name: name.to_string(),
            files: Vec::new(),
        });
    }
    let table: Vec<(&str, Vec<&str>)> = deps
        .lines()
        .filter_map(|l| {
            let (m, d) = l.split_once(':')?;
            Some((m.trim(), d.split_whitespace().collect()))
        })
        .collect();
    let (file, _) = table.iter().find(|(m, _)| file_is(m))?;
    let mut order = Vec::new();
    visit(file, &table, &mut order, 0);
    Some(Module {
        name: name.to_string(),
        files: order,
    })
}

fn visit(file: &str, table: &[(&str, Vec<&str>)], order: &mut Vec<String>, depth: usize) {
    // modules.dep has no cycles; the depth limit only guards against a corrupt file.
    if depth > 32 || order.iter().any(|f| f == file) {
        return;
    }
    if let Some((_, deps)) = table.iter().find(|(m, _)| *m == file) {
        for d in deps {
            visit(d, table, order, depth + 1);
        }
    }
    order.push(file.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/configfs/configfs.ko:\n\
        kernel/drivers/block/null_blk/null_blk.ko: kernel/fs/configfs/configfs.ko\n\
        kernel/block/bfq.ko:\n\
        kernel/x/a.ko.xz: kernel/x/b.ko.xz kernel/x/c.ko.xz\n\
        kernel/x/b.ko.xz: kernel/x/c.ko.xz\n\
        kernel/x/c.ko.xz:\n";

    #[test]
    fn dependencies_first() {
        let m = resolve("null_blk", "", DEP).expect("found");
        assert_eq!(
            m.files,
            [
                "kernel/fs/configfs/configfs.ko",
                "kernel/drivers/block/null_blk/null_blk.ko"
            ]
        );
        let a = resolve("a", "", DEP).expect("found");
        assert_eq!(
            a.files,
            ["kernel/x/c.ko.xz", "kernel/x/b.ko.xz", "kernel/x/a.ko.xz"]
        );
    }

    #[test]
    fn builtin_and_missing() {
        let m = resolve("configfs", "kernel/fs/configfs/configfs.ko\n", DEP).expect("found");
        assert!(m.files.is_empty());
        assert!(resolve("overlay", "", DEP).is_none());
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["6.1.0-10-amd64", "6.1.0-9-amd64", "6.12.1-amd64"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.12.1-amd64"]);
    }
}
