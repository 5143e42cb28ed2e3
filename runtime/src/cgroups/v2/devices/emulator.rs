//! What a list of device rules means, worked out the way runc does it before building the
//! eBPF program (runc's `devices_emulator.go`): the rules are replayed in order as the v1
//! devices controller would take them, which leaves a default (allow or deny everything) and
//! a set of exceptions to it. So a rule list means the same on v1 and v2:
//! - a type `a` rule resets everything: allow-all (`allow: true`) or deny-all, whatever its
//!   numbers and access say;
//! - in deny-all mode an allow rule adds an exception and a deny rule takes access back from
//!   the exception with exactly the same type and numbers (later rules win); in allow-all
//!   mode the other way round;
//! - taking access back that a wildcard exception of the same type grants (`c 1:3 r` out of
//!   `c *:* rwm`) is refused, as runc refuses it: cgroup v1 would silently ignore it.
//!
//! runc's default allow list (its specconv `AllowedDevices`) is appended after the spec's
//! rules, as runc appends it.

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// A device type a cgroup rule can name besides `a`. The order (block before char) is
/// runc's order of exceptions with equal numbers ('b' < 'c').
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::cgroups::v2) enum Kind {
    /// `b`.
    Block,
    /// `c`.
    Char,
}

impl Kind {
    /// The kernel's BPF_DEVCG_DEV_* value.
    pub(super) fn bpf(self) -> i32 {
        match self {
            Kind::Block => 1,
            Kind::Char => 2,
        }
    }
}

/// A set of access modes, as the kernel's BPF_DEVCG_ACC_* bits (mknod 1, read 2, write 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::cgroups::v2) struct Access(u8);

impl Access {
    /// mknod.
    pub(super) const MKNOD: Access = Access(1);
    /// read.
    pub(super) const READ: Access = Access(2);
    /// write.
    pub(super) const WRITE: Access = Access(4);
    /// `rwm`.
    pub(super) const ALL: Access = Access(7);

    /// Parses a spec `access` string; no access at all means every access (husk's reading,
    /// see `cgroups::prepare`).
    fn parse(access: Option<&str>) -> Result<Access, char> {
        let text = access.filter(|a| !a.is_empty()).unwrap_or("rwm");
        text.chars().try_fold(Access(0), |acc, c| match c {
            'r' => Ok(acc.union(Access::READ)),
            'w' => Ok(acc.union(Access::WRITE)),
            'm' => Ok(acc.union(Access::MKNOD)),
            other => Err(other),
        })
    }

    /// The BPF_DEVCG_ACC_* bits.
    pub(super) fn bits(self) -> i32 {
        i32::from(self.0)
    }

    fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    fn without(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    fn overlaps(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.overlaps(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Which devices an exception matches; `None` is the wildcard. Field order is the order
/// runc emits exceptions in: by major, then minor (wildcard first), then type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::cgroups::v2) struct Match {
    /// Major number, or any.
    pub(super) major: Option<u32>,
    /// Minor number, or any.
    pub(super) minor: Option<u32>,
    /// Block or char.
    pub(super) kind: Kind,
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        write!(f, "{kind} {}:{}", num(self.major), num(self.minor))
    }
}

/// The outcome of a rule list: a default and the exceptions that flip it, in runc's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ruleset {
    /// Whether a device no exception matches is allowed.
    pub(super) default_allow: bool,
    /// (devices, the access modes for which the default is reversed).
    pub(super) exceptions: Vec<(Match, Access)>,
}

/// A device rule that cannot be turned into a filter.
#[derive(Debug, thiserror::Error)]
pub(in crate::cgroups::v2) enum RuleError {
    /// Type `u` or `p`: not something the devices controller knows.
    #[error(
        "linux.resources.devices[{index}]: type {typ:?} is not a cgroup device type (a, b or c)"
    )]
    Type {
        /// Position in linux.resources.devices.
        index: usize,
        /// The type given.
        typ: LinuxDeviceType,
    },
    /// A letter other than r, w, m in `access`.
    #[error("linux.resources.devices[{index}]: unknown access {letter:?} (expected r, w or m)")]
    Access {
        /// Position in linux.resources.devices.
        index: usize,
        /// The offending letter.
        letter: char,
    },
    /// A major or minor number beyond 32 bits.
    #[error("linux.resources.devices[{index}]: {which} number {value} does not fit in 32 bits")]
    Number {
        /// Position in linux.resources.devices.
        index: usize,
        /// "major" or "minor".
        which: &'static str,
        /// The number given.
        value: i64,
    },
    /// Taking part of a wildcard exception back.
    #[error(
        "device rule {rule} {access} cannot be applied: it would punch a hole in the wildcard \
         rule {wildcard} {granted} (cgroup v1 cannot, and runc refuses it on v2 too); list the \
         devices one by one instead of the wildcard"
    )]
    Hole {
        /// The rule, `c 1:3`.
        rule: Match,
        /// Its access.
        access: Access,
        /// The wildcard exception it collides with.
        wildcard: Match,
        /// What that exception holds.
        granted: Access,
    },
}

/// One parsed rule: `None` match for type `a`.
struct Rule {
    target: Option<Match>,
    access: Access,
    allow: bool,
}

/// runc's default allow list (specconv `AllowedDevices`, runc ≥ 1.0: without the host
/// console 5:1): mknod of any node, then null, random, full, tty, zero, urandom, /dev/pts/*,
/// ptmx and net/tun.
const DEFAULT_ALLOWED: &[(Kind, Option<u32>, Option<u32>, Access)] = &[
    (Kind::Char, None, None, Access::MKNOD),
    (Kind::Block, None, None, Access::MKNOD),
    (Kind::Char, Some(1), Some(3), Access::ALL),
    (Kind::Char, Some(1), Some(8), Access::ALL),
    (Kind::Char, Some(1), Some(7), Access::ALL),
    (Kind::Char, Some(5), Some(0), Access::ALL),
    (Kind::Char, Some(1), Some(5), Access::ALL),
    (Kind::Char, Some(1), Some(9), Access::ALL),
    (Kind::Char, Some(136), None, Access::ALL),
    (Kind::Char, Some(5), Some(2), Access::ALL),
    (Kind::Char, Some(10), Some(200), Access::ALL),
];

/// The spec's rules followed by runc's default allow list, replayed from deny-all.
pub(super) fn effective(spec: &[LinuxDeviceCgroup]) -> Result<Ruleset, RuleError> {
    let defaults = DEFAULT_ALLOWED
        .iter()
        .map(|&(kind, major, minor, access)| Rule {
            target: Some(Match { major, minor, kind }),
            access,
            allow: true,
        });
    let mut rules = Vec::with_capacity(spec.len() + DEFAULT_ALLOWED.len());
    for (index, rule) in spec.iter().enumerate() {
        rules.push(parse(index, rule)?);
    }
    replay(rules.into_iter().chain(defaults))
}

/// Just the given rules, without the default list: what runc's devicefilter_test feeds its
/// generator.
#[cfg(test)]
pub(super) fn effective_exactly(spec: &[LinuxDeviceCgroup]) -> Result<Ruleset, RuleError> {
    let rules = spec
        .iter()
        .enumerate()
        .map(|(index, rule)| parse(index, rule))
        .collect::<Result<Vec<_>, _>>()?;
    replay(rules.into_iter())
}

fn parse(index: usize, rule: &LinuxDeviceCgroup) -> Result<Rule, RuleError> {
    let access = Access::parse(rule.access().as_deref())
        .map_err(|letter| RuleError::Access { index, letter })?;
    let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(Kind::Block),
        LinuxDeviceType::C => Some(Kind::Char),
        typ => return Err(RuleError::Type { index, typ }),
    };
    // Absent or negative (runc's -1) is the wildcard.
    let number = |which, value: Option<i64>| match value {
        None => Ok(None),
        Some(v) if v < 0 => Ok(None),
        Some(v) => u32::try_from(v).map(Some).map_err(|_| RuleError::Number {
            index,
            which,
            value: v,
        }),
    };
    let major = number("major", rule.major())?;
    let minor = number("minor", rule.minor())?;
    Ok(Rule {
        target: kind.map(|kind| Match { major, minor, kind }),
        access,
        allow: rule.allow(),
    })
}

/// runc's emulator: starts deny-all, then applies each rule.
fn replay(rules: impl Iterator<Item = Rule>) -> Result<Ruleset, RuleError> {
    let mut default_allow = false;
    let mut exceptions: BTreeMap<Match, Access> = BTreeMap::new();
    for rule in rules {
        let Some(target) = rule.target else {
            default_allow = rule.allow;
            exceptions.clear();
            continue;
        };
        if rule.allow != default_allow {
            let held = exceptions.entry(target).or_default();
            *held = held.union(rule.access);
        } else {
            take_back(&mut exceptions, target, rule.access)?;
        }
    }
    Ok(Ruleset {
        default_allow,
        exceptions: exceptions.into_iter().collect(),
    })
}

/// Removes `access` from the exception for exactly `target`, refusing when a wildcard
/// exception of the same type also grants some of it (the removal would not hold).
fn take_back(
    exceptions: &mut BTreeMap<Match, Access>,
    target: Match,
    access: Access,
) -> Result<(), RuleError> {
    let wildcards = [
        Match {
            major: None,
            ..target
        },
        Match {
            minor: None,
            ..target
        },
        Match {
            major: None,
            minor: None,
            ..target
        },
    ];
    for wildcard in wildcards {
        if wildcard == target {
            continue;
        }
        if let Some(&granted) = exceptions.get(&wildcard) {
            if granted.overlaps(access) {
                return Err(RuleError::Hole {
                    rule: target,
                    access,
                    wildcard,
                    granted,
                });
            }
        }
    }
    if let Some(held) = exceptions.get(&target).copied() {
        let left = held.without(access);
        if left.is_empty() {
            exceptions.remove(&target);
        } else {
            exceptions.insert(target, left);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A spec rule with every field given.
    pub(in crate::cgroups::v2::devices) fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(Some(major));
        r.set_minor(Some(minor));
        r.set_access(Some(access.to_string()));
        r
    }

    fn m(kind: Kind, major: Option<u32>, minor: Option<u32>) -> Match {
        Match { major, minor, kind }
    }

    #[test]
    fn deny_all_then_allow_adds_exceptions_in_runc_order() {
        use LinuxDeviceType::*;
        let rules = [
            rule(false, A, -1, -1, "rwm"),
            rule(true, B, 251, 0, "rw"),
            rule(true, C, 10, -1, "r"),
            rule(true, B, 8, 0, "m"),
        ];
        let set = effective_exactly(&rules).unwrap();
        assert!(!set.default_allow);
        assert_eq!(
            set.exceptions,
            vec![
                (m(Kind::Block, Some(8), Some(0)), Access::MKNOD),
                (m(Kind::Char, Some(10), None), Access::READ),
                (
                    m(Kind::Block, Some(251), Some(0)),
                    Access::READ.union(Access::WRITE)
                ),
            ]
        );
    }

    #[test]
    fn later_rules_win_and_wildcard_type_resets() {
        use LinuxDeviceType::*;
        // allow then deny the same device: the deny takes the access back.
        let set = effective_exactly(&[
            rule(false, A, -1, -1, "rwm"),
            rule(true, B, 8, 0, "rwm"),
            rule(false, B, 8, 0, "w"),
        ])
        .unwrap();
        assert_eq!(
            set.exceptions,
            vec![(
                m(Kind::Block, Some(8), Some(0)),
                Access::READ.union(Access::MKNOD)
            )]
        );
        // An `a` rule forgets everything before it, whatever its numbers.
        let set = effective_exactly(&[
            rule(true, B, 8, 0, "rwm"),
            rule(true, A, 5, 5, "r"),
            rule(false, C, 1, 3, "rwm"),
        ])
        .unwrap();
        assert!(set.default_allow);
        assert_eq!(
            set.exceptions,
            vec![(m(Kind::Char, Some(1), Some(3)), Access::ALL)]
        );
    }

    #[test]
    fn the_default_list_follows_the_spec_rules() {
        use LinuxDeviceType::*;
        // runc spec's deny-all: only the defaults remain, /dev/console (5:1) not among them.
        let set = effective(&[rule(false, A, -1, -1, "rwm")]).unwrap();
        assert!(!set.default_allow);
        assert_eq!(set.exceptions.len(), DEFAULT_ALLOWED.len());
        assert!(!set
            .exceptions
            .iter()
            .any(|(d, _)| *d == m(Kind::Char, Some(5), Some(1))));
        // A spec denying /dev/null is overridden by the default list appended after it.
        let set = effective(&[rule(true, A, -1, -1, "rwm"), rule(false, C, 1, 3, "rwm")]).unwrap();
        assert!(set.default_allow);
        assert!(set.exceptions.is_empty());
    }

    #[test]
    fn punching_a_hole_in_a_wildcard_is_refused() {
        use LinuxDeviceType::*;
        let err = effective_exactly(&[
            rule(false, A, -1, -1, "rwm"),
            rule(true, C, -1, -1, "rwm"),
            rule(false, C, 1, 3, "r"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("c 1:3 r") && err.to_string().contains("c *:* rwm"),
            "{err}"
        );
        // Taking back what the wildcard does not grant is fine.
        effective_exactly(&[
            rule(false, A, -1, -1, "rwm"),
            rule(true, C, -1, -1, "m"),
            rule(false, C, 1, 3, "rw"),
        ])
        .unwrap();
    }

    #[test]
    fn bad_rules_name_their_position() {
        use LinuxDeviceType::*;
        let err = effective(&[rule(true, A, -1, -1, "rwm"), rule(true, P, 1, 1, "r")]).unwrap_err();
        assert!(err.to_string().contains("devices[1]"), "{err}");
        let err = effective(&[rule(true, C, 1, 1, "rx")]).unwrap_err();
        assert!(err.to_string().contains("'x'"), "{err}");
        let err = effective(&[rule(true, C, 1 << 33, 1, "r")]).unwrap_err();
        assert!(err.to_string().contains("major number 8589934592"), "{err}");
    }
}
