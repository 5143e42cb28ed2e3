//! `process.ioPriority`: the I/O scheduling class and priority of the container process, set
//! with ioprio_set(2) as runc's `setIOPriority` does.

use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{IOPriorityClass, LinuxIOPriority};

/// ioprio_set(2) target kind: a single process (runc's constant 1, named "Pgrp" there).
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// Bits the class is shifted by in an I/O priority value (linux/ioprio.h).
const IOPRIO_CLASS_SHIFT: i64 = 13;

/// Why the I/O priority could not be set.
#[derive(Debug, thiserror::Error)]
pub enum IoprioError {
    /// The class name is not one the runtime spec defines.
    #[error("invalid io priority class: {0}")]
    Class(String),
    /// The priority is outside 0..=7 (runc's wording).
    #[error("invalid ioPriority.Priority: {0}")]
    Priority(i64),
    /// ioprio_set(2) refused the value.
    #[error("failed to set io priority (class {class}, priority {priority}): {errno}")]
    Set {
        /// The class asked for.
        class: String,
        /// The priority asked for.
        priority: i64,
        /// Why.
        errno: Errno,
    },
}

/// The kernel number of an I/O scheduling class.
pub fn class_number(class: IOPriorityClass) -> i64 {
    match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    }
}

/// The class a config.json name (e.g. "IOPRIO_CLASS_BE") stands for.
pub fn class_from_name(name: &str) -> Result<IOPriorityClass, IoprioError> {
    IOPriorityClass::from_str(name).map_err(|_| IoprioError::Class(name.to_string()))
}

/// runc's check on `process.ioPriority`: the priority must be 0 to 7.
pub fn validate(p: &LinuxIOPriority) -> Result<(), IoprioError> {
    if !(0..=7).contains(&p.priority()) {
        return Err(IoprioError::Priority(p.priority()));
    }
    Ok(())
}

/// The value ioprio_set(2) takes: class in the top bits, priority below.
pub fn value(p: &LinuxIOPriority) -> Result<i64, IoprioError> {
    validate(p)?;
    Ok((class_number(p.class()) << IOPRIO_CLASS_SHIFT) | p.priority())
}

/// Sets the calling process's I/O class and priority.
pub fn apply(p: &LinuxIOPriority) -> Result<(), IoprioError> {
    let v = value(p)?;
    // SAFETY: ioprio_set(2) takes three integers by value and touches no memory of ours; who=0
    // with IOPRIO_WHO_PROCESS is the calling process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_int,
            v as libc::c_int,
        )
    };
    Errno::result(r)
        .map(|_| ())
        .map_err(|errno| IoprioError::Set {
            class: p.class().to_string(),
            priority: p.priority(),
            errno,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::capabilities::forked::run;
    use oci_spec::runtime::LinuxIOPriorityBuilder;

    fn prio(class: IOPriorityClass, priority: i64) -> LinuxIOPriority {
        LinuxIOPriorityBuilder::default()
            .class(class)
            .priority(priority)
            .build()
            .expect("valid")
    }

    #[test]
    fn class_names_parse() {
        for (name, n) in [
            ("IOPRIO_CLASS_RT", 1),
            ("IOPRIO_CLASS_BE", 2),
            ("IOPRIO_CLASS_IDLE", 3),
        ] {
            assert_eq!(class_number(class_from_name(name).expect(name)), n);
        }
        let err = class_from_name("IOPRIO_CLASS_NONE").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "invalid io priority class: IOPRIO_CLASS_NONE"
        );
    }

    #[test]
    fn value_combines_class_and_priority() {
        assert_eq!(
            value(&prio(IOPriorityClass::IoprioClassBe, 4)).ok(),
            Some((2 << 13) | 4)
        );
        assert_eq!(
            value(&prio(IOPriorityClass::IoprioClassIdle, 0)).ok(),
            Some(3 << 13)
        );
        let err = value(&prio(IOPriorityClass::IoprioClassRt, 8)).expect_err("too high");
        assert_eq!(err.to_string(), "invalid ioPriority.Priority: 8");
        assert!(value(&prio(IOPriorityClass::IoprioClassRt, -1)).is_err());
    }

    #[test]
    fn sets_best_effort_in_a_child() {
        run(|| {
            apply(&prio(IOPriorityClass::IoprioClassBe, 6)).map_err(|e| e.to_string())?;
            // SAFETY: ioprio_get(2) only queries the calling process.
            let got = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
            if got != (2 << 13) | 6 {
                return Err(format!("ioprio is {got:#x}"));
            }
            Ok(())
        })
        .expect("io priority set in the child");
    }
}
