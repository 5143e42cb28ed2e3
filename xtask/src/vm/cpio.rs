//! A cpio archive in the kernel's initramfs format ("newc": ASCII headers, 4-byte alignment),
//! written from a directory tree. Written here rather than with cpio(1) so the lane needs no
//! extra package and the archive is reproducible: owners and modes come from the files, but
//! every mtime is 0 and entries are sorted.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Writes every file, directory and symlink below `root` (not `root` itself) to `out`, with
/// paths relative to `root`, then the trailer.
pub fn write_tree(root: &Path, out: &mut impl Write) -> Result<()> {
    let mut w = Writer { out, ino: 1 };
    w.dir(root, "")?;
    w.entry("TRAILER!!!", 0, 0, 0, 1, &[])
        .context("writing the cpio trailer")
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
    ino: u32,
}

impl<W: Write> Writer<'_, W> {
    fn dir(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .collect::<io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("examining {}", path.display()))?;
            let ft = meta.file_type();
            // The type bits are in meta.mode(); permissions alone come from permissions().
            let perm = meta.permissions().mode() & 0o7777;
            let (kind, data, nlink) = if ft.is_dir() {
                (0o040000, Vec::new(), 2)
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("reading link {}", path.display()))?;
                (0o120000, target.as_os_str().as_encoded_bytes().to_vec(), 1)
            } else if ft.is_file() {
                let data =
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                (0o100000, data, 1)
            } else {
                anyhow::bail!(
                    "{} is neither a file, a directory nor a symlink",
                    path.display()
                );
            };
            self.entry(&name, kind | perm, meta.uid(), meta.gid(), nlink, &data)
                .with_context(|| format!("archiving {}", path.display()))?;
            if ft.is_dir() {
                self.dir(&path, &format!("{name}/"))?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let ino = self.ino;
        self.ino += 1;
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name} is larger than 4 GiB")))?;
        let namesize = name.len() + 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check: 6 + 13 * 8 = 110 bytes.
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{:08x}{size:08x}\
             {:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 0, 0, 0, 0
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        // Name and data are each padded so the next part starts on a 4-byte boundary.
        self.pad(110 + namesize)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> io::Result<()> {
        let n = (4 - len % 4) % 4;
        self.out.write_all(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        fs::create_dir(tmp.path().join("d"))?;
        fs::write(tmp.path().join("d/f"), b"hello")?;
        std::os::unix::fs::symlink("d/f", tmp.path().join("l"))?;
        let mut buf = Vec::new();
        write_tree(tmp.path(), &mut buf)?;
        // Every entry starts on a 4-byte boundary with the newc magic.
        let text = String::from_utf8_lossy(&buf);
        let starts: Vec<usize> = text.match_indices("070701").map(|(i, _)| i).collect();
        assert_eq!(starts.len(), 4, "d, d/f, l, trailer");
        assert!(starts.iter().all(|s| s % 4 == 0));
        assert_eq!(&buf[0..6], b"070701");
        // The first entry is the directory "d" (mode 040xxx), its name right after the header.
        assert_eq!(&buf[14..18], b"0000");
        assert_eq!(&buf[110..112], b"d\0");
        assert!(text.contains("d/f\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("l\0"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"));
        // Filesize of d/f is 5.
        let f = starts[1];
        assert_eq!(&buf[f + 54..f + 62], b"00000005");
        Ok(())
    }
}
