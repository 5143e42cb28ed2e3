//! `mounts[].options`: fstab-style strings to mount flags, as runc's specconv parses them.

use libc::c_ulong;

use super::propagation;
use super::sys;

/// A mount's options after parsing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// MS_* flags to set.
    pub flags: c_ulong,
    /// MS_* flags the options explicitly clear ("rw", "suid", ...); they force a bind remount.
    pub cleared: c_ulong,
    /// Propagation changes, applied one by one after the mount, in option order.
    pub propagation: Vec<c_ulong>,
    /// Everything that is not a flag, joined with commas: the filesystem's data string.
    pub data: String,
    /// `r*` options (rro, rnosuid, ...), applied with mount_setattr(AT_RECURSIVE).
    pub rec_attr: Option<sys::MountAttr>,
    /// `tmpcopyup`: copy what the destination held into the new tmpfs.
    pub copy_up: bool,
    /// `idmap` / `ridmap` was asked for.
    pub idmap: bool,
}

/// Looks up a flag option: Some((clear, flag)).
fn mount_flag(option: &str) -> Option<(bool, c_ulong)> {
    // The same table as runc's specconv mountFlags; "acl" deliberately absent (runc #3738).
    let entry = match option {
        "async" => (true, libc::MS_SYNCHRONOUS),
        "atime" => (true, libc::MS_NOATIME),
        "bind" => (false, libc::MS_BIND),
        "defaults" => (false, 0),
        "dev" => (true, libc::MS_NODEV),
        "diratime" => (true, libc::MS_NODIRATIME),
        "dirsync" => (false, libc::MS_DIRSYNC),
        "exec" => (true, libc::MS_NOEXEC),
        "iversion" => (false, libc::MS_I_VERSION),
        "lazytime" => (false, libc::MS_LAZYTIME),
        "loud" => (true, libc::MS_SILENT),
        "mand" => (false, libc::MS_MANDLOCK),
        "noatime" => (false, libc::MS_NOATIME),
        "nodev" => (false, libc::MS_NODEV),
        "nodiratime" => (false, libc::MS_NODIRATIME),
        "noexec" => (false, libc::MS_NOEXEC),
        "noiversion" => (true, libc::MS_I_VERSION),
        "nolazytime" => (true, libc::MS_LAZYTIME),
        "nomand" => (true, libc::MS_MANDLOCK),
        "norelatime" => (true, libc::MS_RELATIME),
        "nostrictatime" => (true, libc::MS_STRICTATIME),
        "nosuid" => (false, libc::MS_NOSUID),
        "nosymfollow" => (false, sys::MS_NOSYMFOLLOW),
        "rbind" => (false, libc::MS_BIND | libc::MS_REC),
        "relatime" => (false, libc::MS_RELATIME),
        "remount" => (false, libc::MS_REMOUNT),
        "ro" => (false, libc::MS_RDONLY),
        "rw" => (true, libc::MS_RDONLY),
        "silent" => (false, libc::MS_SILENT),
        "strictatime" => (false, libc::MS_STRICTATIME),
        "suid" => (true, libc::MS_NOSUID),
        "sync" => (false, libc::MS_SYNCHRONOUS),
        "symfollow" => (true, sys::MS_NOSYMFOLLOW),
        _ => return None,
    };
    Some(entry)
}

/// Looks up a recursive attribute option: Some((clear, MOUNT_ATTR_*)).
fn rec_attr_flag(option: &str) -> Option<(bool, u64)> {
    let entry = match option {
        "rro" => (false, sys::MOUNT_ATTR_RDONLY),
        "rrw" => (true, sys::MOUNT_ATTR_RDONLY),
        "rnosuid" => (false, sys::MOUNT_ATTR_NOSUID),
        "rsuid" => (true, sys::MOUNT_ATTR_NOSUID),
        "rnodev" => (false, sys::MOUNT_ATTR_NODEV),
        "rdev" => (true, sys::MOUNT_ATTR_NODEV),
        "rnoexec" => (false, sys::MOUNT_ATTR_NOEXEC),
        "rexec" => (true, sys::MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (false, sys::MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (true, sys::MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (false, sys::MOUNT_ATTR_RELATIME),
        "rnorelatime" => (true, sys::MOUNT_ATTR_RELATIME),
        "rnoatime" => (false, sys::MOUNT_ATTR_NOATIME),
        "ratime" => (true, sys::MOUNT_ATTR_NOATIME),
        "rstrictatime" => (false, sys::MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (true, sys::MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (false, sys::MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (true, sys::MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    };
    Some(entry)
}

/// Parses a mount's option list; unknown options become filesystem data, as in runc.
pub(crate) fn parse(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    let (mut attr_set, mut attr_clr) = (0u64, 0u64);
    for option in options {
        let option = option.as_str();
        if let Some((clear, flag)) = mount_flag(option).filter(|(_, f)| *f != 0) {
            if clear {
                out.flags &= !flag;
                out.cleared |= flag;
            } else {
                out.flags |= flag;
                out.cleared &= !flag;
            }
        } else if let Some(flag) = propagation::parse(option) {
            out.propagation.push(flag);
        } else if let Some((clear, flag)) = rec_attr_flag(option) {
            if clear {
                attr_clr |= flag;
                attr_set &= !flag;
            } else {
                attr_set |= flag;
                attr_clr &= !flag;
                // mount_setattr(2): an atime mode in attr_set needs MOUNT_ATTR__ATIME in attr_clr.
                if flag & sys::MOUNT_ATTR_ATIME == flag {
                    attr_clr |= sys::MOUNT_ATTR_ATIME;
                }
            }
        } else if option == "tmpcopyup" {
            out.copy_up = true;
        } else if option == "idmap" || option == "ridmap" {
            out.idmap = true;
        } else if option != "defaults" {
            data.push(option);
        }
    }
    out.data = data.join(",");
    if attr_set != 0 || attr_clr != 0 {
        out.rec_attr = Some(sys::MountAttr {
            attr_set,
            attr_clr,
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let o = opts(&["ro", "nosuid", "nodev", "noexec", "relatime"]);
        assert_eq!(
            o.flags,
            libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC
                | libc::MS_RELATIME
        );
        assert_eq!(o.cleared, 0);
        assert!(o.data.is_empty());

        // A later option overrides an earlier one, and remembers that it cleared.
        let o = opts(&["ro", "rw", "suid", "nosuid"]);
        assert_eq!(o.flags, libc::MS_NOSUID);
        assert_eq!(o.cleared, libc::MS_RDONLY);
    }

    #[test]
    fn every_documented_option_maps() {
        let cases: &[(&str, c_ulong, c_ulong)] = &[
            ("bind", libc::MS_BIND, 0),
            ("rbind", libc::MS_BIND | libc::MS_REC, 0),
            ("strictatime", libc::MS_STRICTATIME, 0),
            ("nostrictatime", 0, libc::MS_STRICTATIME),
            ("noatime", libc::MS_NOATIME, 0),
            ("atime", 0, libc::MS_NOATIME),
            ("norelatime", 0, libc::MS_RELATIME),
            ("nodiratime", libc::MS_NODIRATIME, 0),
            ("diratime", 0, libc::MS_NODIRATIME),
            ("dev", 0, libc::MS_NODEV),
            ("exec", 0, libc::MS_NOEXEC),
            ("suid", 0, libc::MS_NOSUID),
            ("sync", libc::MS_SYNCHRONOUS, 0),
            ("async", 0, libc::MS_SYNCHRONOUS),
            ("dirsync", libc::MS_DIRSYNC, 0),
            ("mand", libc::MS_MANDLOCK, 0),
            ("nomand", 0, libc::MS_MANDLOCK),
            ("remount", libc::MS_REMOUNT, 0),
            ("nosymfollow", sys::MS_NOSYMFOLLOW, 0),
        ];
        for (name, set, clear) in cases {
            let o = opts(&[name]);
            assert_eq!((o.flags, o.cleared), (*set, *clear), "option {name}");
            assert!(o.data.is_empty(), "option {name} leaked into data");
        }
    }

    #[test]
    fn unknown_options_are_data_in_order() {
        let o = opts(&[
            "nosuid",
            "mode=755",
            "size=65536k",
            "defaults",
            "newinstance",
        ]);
        assert_eq!(o.flags, libc::MS_NOSUID);
        assert_eq!(o.data, "mode=755,size=65536k,newinstance");
    }

    #[test]
    fn propagation_options_are_kept_in_order() {
        let o = opts(&["rbind", "rslave", "private", "shared"]);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(
            o.propagation,
            vec![
                libc::MS_SLAVE | libc::MS_REC,
                libc::MS_PRIVATE,
                libc::MS_SHARED
            ]
        );
        assert!(o.data.is_empty());
    }

    #[test]
    fn recursive_attributes() {
        let o = opts(&["rro", "rnosuid", "rnoatime"]);
        let attr = o.rec_attr.expect("r* options give a mount_setattr change");
        assert_eq!(
            attr.attr_set,
            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOATIME
        );
        assert_eq!(attr.attr_clr, sys::MOUNT_ATTR_ATIME);
        let o = opts(&["rro", "rrw"]);
        let attr = o.rec_attr.expect("clearing is a change too");
        assert_eq!((attr.attr_set, attr.attr_clr), (0, sys::MOUNT_ATTR_RDONLY));
        assert_eq!(opts(&["ro"]).rec_attr, None);
    }

    #[test]
    fn extensions() {
        let o = opts(&["tmpcopyup", "idmap"]);
        assert!(o.copy_up && o.idmap);
        assert!(o.data.is_empty());
        assert!(opts(&["ridmap"]).idmap);
    }
}
