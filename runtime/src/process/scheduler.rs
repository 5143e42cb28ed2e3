//! `process.scheduler`: the scheduling policy and attributes of the container process, set with
//! sched_setattr(2) as runc's `setupScheduler` does (policy numbers and flag bits from
//! runc's `configs.ToSchedAttr`).

use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxSchedulerFlag, LinuxSchedulerPolicy, Scheduler};

/// Why the scheduler could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The policy name is not one the runtime spec defines.
    #[error("invalid scheduler policy: {0}")]
    Policy(String),
    /// The flag name is not one the runtime spec defines.
    #[error("invalid scheduler flag: {0}")]
    Flag(String),
    /// The attributes break a rule runc's validator enforces.
    #[error("{0}")]
    Invalid(String),
    /// sched_setattr(2) refused the attributes.
    #[error("error setting scheduler (policy {policy}): {errno}")]
    Set {
        /// The policy asked for.
        policy: String,
        /// Why.
        errno: Errno,
    },
}

/// `struct sched_attr` of sched_setattr(2), in the size runc passes (with the util clamps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of this structure.
    pub size: u32,
    /// SCHED_* policy number.
    pub policy: u32,
    /// SCHED_FLAG_* bits.
    pub flags: u64,
    /// Nice value (SCHED_OTHER, SCHED_BATCH).
    pub nice: i32,
    /// Static priority (SCHED_FIFO, SCHED_RR).
    pub priority: u32,
    /// SCHED_DEADLINE runtime, in nanoseconds.
    pub runtime: u64,
    /// SCHED_DEADLINE deadline, in nanoseconds.
    pub deadline: u64,
    /// SCHED_DEADLINE period, in nanoseconds.
    pub period: u64,
    /// Utilization clamp minimum.
    pub util_min: u32,
    /// Utilization clamp maximum.
    pub util_max: u32,
}

/// The kernel number of a scheduling policy.
pub fn policy_number(policy: LinuxSchedulerPolicy) -> u32 {
    match policy {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        // Linux has no SCHED_ISO; runc passes 4 anyway and the kernel answers EINVAL.
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

/// The SCHED_FLAG_* bit of a scheduler flag.
pub fn flag_bit(flag: LinuxSchedulerFlag) -> u64 {
    match flag {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// The policy a config.json name (e.g. "SCHED_FIFO") stands for.
pub fn policy_from_name(name: &str) -> Result<LinuxSchedulerPolicy, SchedulerError> {
    LinuxSchedulerPolicy::from_str(name).map_err(|_| SchedulerError::Policy(name.to_string()))
}

/// The flag a config.json name (e.g. "SCHED_FLAG_RECLAIM") stands for.
pub fn flag_from_name(name: &str) -> Result<LinuxSchedulerFlag, SchedulerError> {
    // The runtime spec spells the first flag SCHED_FLAG_RESET_ON_FORK; oci-spec's own name for
    // it is SCHED_RESET_ON_FORK. Accept both.
    if name == "SCHED_FLAG_RESET_ON_FORK" {
        return Ok(LinuxSchedulerFlag::SchedResetOnFork);
    }
    LinuxSchedulerFlag::from_str(name).map_err(|_| SchedulerError::Flag(name.to_string()))
}

/// runc's checks on `process.scheduler` (validate.scheduler), with its messages.
pub fn validate(s: &Scheduler) -> Result<(), SchedulerError> {
    let policy = *s.policy();
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(SchedulerError::Invalid(format!(
            "invalid scheduler.nice: {nice}"
        )));
    }
    let realtime = matches!(
        policy,
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    if s.priority().unwrap_or(0) != 0 && !realtime {
        return Err(SchedulerError::Invalid(
            "scheduler.priority can only be specified for SchedFIFO or SchedRR policy".into(),
        ));
    }
    let has_deadline_fields = s.runtime().unwrap_or(0) != 0
        || s.deadline().unwrap_or(0) != 0
        || s.period().unwrap_or(0) != 0;
    if policy != LinuxSchedulerPolicy::SchedDeadline && has_deadline_fields {
        return Err(SchedulerError::Invalid(
            "scheduler runtime/deadline/period can only be specified for SchedDeadline policy"
                .into(),
        ));
    }
    Ok(())
}

/// The sched_attr for a config's scheduler (absent numbers are 0, as in runc).
pub fn to_attr(s: &Scheduler) -> SchedAttr {
    let flags = s
        .flags()
        .iter()
        .flatten()
        .fold(0, |acc, f| acc | flag_bit(*f));
    SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number(*s.policy()),
        flags,
        nice: s.nice().unwrap_or(0),
        // A negative priority would be refused by the kernel either way; runc converts it with
        // uint32(), which wraps the same.
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        util_min: 0,
        util_max: 0,
    }
}

/// Sets the calling process's scheduling policy and attributes.
pub fn apply(s: &Scheduler) -> Result<(), SchedulerError> {
    validate(s)?;
    let attr = to_attr(s);
    // SAFETY: sched_setattr(2) reads `attr.size` bytes from a live, properly laid out
    // `struct sched_attr`; pid 0 is the calling thread, flags must be 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    Errno::result(r)
        .map(|_| ())
        .map_err(|errno| SchedulerError::Set {
            policy: s.policy().to_string(),
            errno,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::run;
    use oci_spec::runtime::SchedulerBuilder;

    #[test]
    fn policy_names_parse() {
        let cases = [
            ("SCHED_OTHER", 0),
            ("SCHED_FIFO", 1),
            ("SCHED_RR", 2),
            ("SCHED_BATCH", 3),
            ("SCHED_ISO", 4),
            ("SCHED_IDLE", 5),
            ("SCHED_DEADLINE", 6),
        ];
        for (name, number) in cases {
            let p = policy_from_name(name).expect(name);
            assert_eq!(policy_number(p), number, "{name}");
        }
        let err = policy_from_name("SCHED_FAST").expect_err("unknown");
        assert_eq!(err.to_string(), "invalid scheduler policy: SCHED_FAST");
    }

    #[test]
    fn flag_names_parse() {
        let all = [
            "SCHED_FLAG_RESET_ON_FORK",
            "SCHED_FLAG_RECLAIM",
            "SCHED_FLAG_DL_OVERRUN",
            "SCHED_FLAG_KEEP_POLICY",
            "SCHED_FLAG_KEEP_PARAMS",
            "SCHED_FLAG_UTIL_CLAMP_MIN",
            "SCHED_FLAG_UTIL_CLAMP_MAX",
        ];
        let mut bits = 0;
        for name in all {
            bits |= flag_bit(flag_from_name(name).expect(name));
        }
        assert_eq!(bits, 0x7f);
        assert!(flag_from_name("SCHED_FLAG_TURBO").is_err());
    }

    #[test]
    fn attr_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
        let s = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedDeadline)
            .runtime(10_000_000u64)
            .deadline(20_000_000u64)
            .period(30_000_000u64)
            .flags(vec![LinuxSchedulerFlag::SchedResetOnFork])
            .build()
            .expect("valid");
        let a = to_attr(&s);
        assert_eq!((a.policy, a.flags, a.nice, a.priority), (6, 1, 0, 0));
        assert_eq!(
            (a.runtime, a.deadline, a.period),
            (10_000_000, 20_000_000, 30_000_000)
        );
        validate(&s).expect("valid deadline config");
    }

    #[test]
    fn validation_follows_runc() {
        let nice = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedOther)
            .nice(20)
            .build()
            .expect("builds");
        assert_eq!(
            validate(&nice).expect_err("nice").to_string(),
            "invalid scheduler.nice: 20"
        );
        let prio = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedBatch)
            .priority(5)
            .build()
            .expect("builds");
        assert!(validate(&prio).is_err());
        let rt = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedRr)
            .priority(5)
            .build()
            .expect("builds");
        validate(&rt).expect("priority with SCHED_RR");
        let dl = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedOther)
            .period(5u64)
            .build()
            .expect("builds");
        assert!(validate(&dl).is_err());
    }

    #[test]
    fn sets_batch_in_a_child() {
        run(|| {
            let s = SchedulerBuilder::default()
                .policy(LinuxSchedulerPolicy::SchedBatch)
                .nice(7)
                .build()
                .map_err(|e| e.to_string())?;
            apply(&s).map_err(|e| e.to_string())?;
            // SAFETY: sched_getscheduler(0) only queries the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            if policy != libc::SCHED_BATCH {
                return Err(format!("policy is {policy}"));
            }
            // Raising nice needs no privilege, so this works as any user. getpriority(2) can
            // return -1 legitimately, but 7 is what we look for.
            // SAFETY: getpriority only queries the calling process.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            if nice != 7 {
                return Err(format!("nice is {nice}"));
            }
            Ok(())
        })
        .expect("scheduler set in the child");
    }
}
