//! `linux.timeOffsets`: the monotonic and boottime offsets of a new time namespace.
//!
//! unshare(CLONE_NEWTIME) does not move the caller: it makes a namespace its *children* will
//! live in, whose offsets can be written to /proc/self/timens_offsets only until the first
//! process enters it. So [`write_offsets`] runs in the process that has just unshared, before
//! it forks the container's init.

use std::collections::HashMap;
use std::io::Write;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, LinuxTimeOffset};

/// The file the kernel takes a new time namespace's offsets from.
const PATH: &str = "/proc/self/timens_offsets";
/// Nanoseconds in a second: the kernel refuses a nanosecond offset of this or more.
const NSEC_PER_SEC: u32 = 1_000_000_000;

/// Why time namespace offsets could not be set.
#[derive(Debug, thiserror::Error)]
pub enum TimensError {
    /// Offsets without a new time namespace (runc's wording).
    #[error("time namespace offsets specified, but time namespace isn't enabled in the config")]
    NoTimeNamespace,
    /// Offsets for a time namespace that is joined by path: it is already in use.
    #[error("time namespace enabled, but both namespace path and time offset specified")]
    JoinedNamespace,
    /// A clock the kernel cannot offset (only monotonic and boottime can be).
    #[error(
        "unsupported time offset clock {0:?}: only \"monotonic\" and \"boottime\" can be offset"
    )]
    Clock(String),
    /// A nanosecond part of a second or more.
    #[error("time offset {clock}: nanosecs {nanosecs} is not below 1000000000")]
    Nanosecs {
        /// The clock.
        clock: String,
        /// The value given.
        nanosecs: u32,
    },
    /// Opening or writing /proc/self/timens_offsets failed.
    #[error("write {offsets:?} to /proc/self/timens_offsets: {source}")]
    Write {
        /// What was written.
        offsets: String,
        /// Why (EACCES once a process lives in the namespace, EPERM without CAP_SYS_TIME).
        source: std::io::Error,
    },
}

/// runc's checks: offsets need a new (not joined) time namespace, and each clock must be valid.
pub fn validate(
    offsets: &HashMap<String, LinuxTimeOffset>,
    namespaces: &[LinuxNamespace],
) -> Result<(), TimensError> {
    let time_ns = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Time);
    match time_ns {
        None => return Err(TimensError::NoTimeNamespace),
        Some(ns) if ns.path().is_some() && !offsets.is_empty() => {
            return Err(TimensError::JoinedNamespace)
        }
        Some(_) => {}
    }
    format_offsets(offsets).map(|_| ())
}

/// The text for /proc/self/timens_offsets: one "CLOCK SECS NANOS" line per clock, sorted.
pub fn format_offsets(offsets: &HashMap<String, LinuxTimeOffset>) -> Result<String, TimensError> {
    let mut clocks: Vec<&String> = offsets.keys().collect();
    clocks.sort();
    let mut text = String::new();
    for clock in clocks {
        // The kernel takes the names, or the clock ids CLOCK_MONOTONIC (1) and CLOCK_BOOTTIME (7).
        if !matches!(clock.as_str(), "monotonic" | "boottime" | "1" | "7") {
            return Err(TimensError::Clock(clock.clone()));
        }
        let offset = &offsets[clock];
        let secs = offset.secs().unwrap_or(0);
        let nanosecs = offset.nanosecs().unwrap_or(0);
        if nanosecs >= NSEC_PER_SEC {
            return Err(TimensError::Nanosecs {
                clock: clock.clone(),
                nanosecs,
            });
        }
        text.push_str(&format!("{clock} {secs} {nanosecs}\n"));
    }
    Ok(text)
}

/// Writes the offsets for the time namespace the caller's next children will live in.
pub fn write_offsets(offsets: &HashMap<String, LinuxTimeOffset>) -> Result<(), TimensError> {
    let text = format_offsets(offsets)?;
    if text.is_empty() {
        return Ok(());
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(PATH)?;
        // The kernel parses one write(2) at offset 0 and takes all lines of it at once.
        f.write_all(text.as_bytes())
    };
    write().map_err(|source| TimensError::Write {
        offsets: text.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::{is_root, run};
    use nix::sched::CloneFlags;
    use nix::time::{clock_gettime, ClockId};
    use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxTimeOffsetBuilder};

    fn offset(secs: i64, nanosecs: u32) -> LinuxTimeOffset {
        LinuxTimeOffsetBuilder::default()
            .secs(secs)
            .nanosecs(nanosecs)
            .build()
            .expect("valid")
    }

    fn map(entries: &[(&str, LinuxTimeOffset)]) -> HashMap<String, LinuxTimeOffset> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn lines_are_clock_secs_nanos() {
        let offsets = map(&[
            ("monotonic", offset(-5, 250)),
            ("boottime", offset(86_400, 0)),
        ]);
        assert_eq!(
            format_offsets(&offsets).expect("valid"),
            "boottime 86400 0\nmonotonic -5 250\n"
        );
        let empty = LinuxTimeOffsetBuilder::default().build().expect("valid");
        assert_eq!(
            format_offsets(&map(&[("monotonic", empty)])).expect("valid"),
            "monotonic 0 0\n"
        );
        assert_eq!(format_offsets(&HashMap::new()).expect("valid"), "");
    }

    #[test]
    fn bad_clocks_and_nanos_are_refused() {
        let err = format_offsets(&map(&[("realtime", offset(1, 0))])).expect_err("realtime");
        assert!(err.to_string().contains("realtime"), "{err}");
        let err =
            format_offsets(&map(&[("boottime", offset(1, NSEC_PER_SEC))])).expect_err("nanos");
        assert!(err.to_string().contains("1000000000"), "{err}");
    }

    #[test]
    fn offsets_need_a_new_time_namespace() {
        let offsets = map(&[("monotonic", offset(1, 0))]);
        let none: [LinuxNamespace; 0] = [];
        assert_eq!(
            validate(&offsets, &none).expect_err("no ns").to_string(),
            "time namespace offsets specified, but time namespace isn't enabled in the config"
        );
        let new = [LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Time)
            .build()
            .expect("valid")];
        validate(&offsets, &new).expect("new time ns");
        let joined = [LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Time)
            .path("/proc/1/ns/time")
            .build()
            .expect("valid")];
        assert!(matches!(
            validate(&offsets, &joined),
            Err(TimensError::JoinedNamespace)
        ));
    }

    #[test]
    fn children_see_the_offset() {
        if !is_root() || !std::path::Path::new(PATH).exists() {
            eprintln!("skipped: needs root and time namespaces");
            return;
        }
        const YEAR: i64 = 365 * 86_400;
        run(|| {
            // nix has no CLONE_NEWTIME constant; libc has the bit.
            nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
                .map_err(|e| e.to_string())?;
            write_offsets(&map(&[("monotonic", offset(YEAR, 0))])).map_err(|e| e.to_string())?;
            let outside = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(|e| e.to_string())?;
            // The grandchild is the first process of the new namespace.
            run(|| {
                let inside = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(|e| e.to_string())?;
                let diff = inside.tv_sec() - outside.tv_sec();
                if (YEAR..YEAR + 60).contains(&diff) {
                    Ok(())
                } else {
                    Err(format!("monotonic moved by {diff}s, want {YEAR}s"))
                }
            })?;
            // Once a process has lived in it, the namespace's offsets are frozen.
            match write_offsets(&map(&[("boottime", offset(1, 0))])) {
                Err(TimensError::Write { .. }) => Ok(()),
                other => Err(format!("expected a refused second write, got {other:?}")),
            }
        })
        .expect("time namespace offsets in the child");
    }
}
