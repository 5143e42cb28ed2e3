//! Unit tests: the translation against libseccomp's merge rules, the compiled program run in
//! [`super::emulator`] against a direct evaluation of the merged rules, and real installs in
//! forked children.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use super::emulator::{self, Data};
use super::translate::*;
use super::{compile, SeccompError};

/// The containerd 1.6 default profile (tests/fixtures/containerd-default.json).
pub(super) const CONTAINERD: &str = include_str!("../../../tests/fixtures/containerd-default.json");

pub(super) fn profile(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("a valid linux.seccomp")
}

/// What the merged rules say for `d`, computed directly (no BPF).
pub(super) fn reference(plan: &Plan, d: &Data) -> u32 {
    let section = if d.arch == AUDIT_ARCH_X86_64 && d.nr & X32_SYSCALL_BIT != 0 {
        plan.sections
            .iter()
            .find(|s| s.arch == SectionArch::X32 && plan.sections[0].arch == SectionArch::X86_64)
    } else {
        plan.sections
            .iter()
            .find(|s| s.arch.audit() == d.arch && s.arch != SectionArch::X32)
    };
    let Some(s) = section else {
        return RET_KILL_PROCESS;
    };
    if plan.enosys_stub && s.max_nr.is_some_and(|m| d.nr > m) {
        return RET_ERRNO | libc::ENOSYS as u32;
    }
    match s.syscalls.get(&d.nr) {
        None => plan.default,
        Some(Decision::Always(a)) => *a,
        Some(Decision::Rules(rules)) => rules
            .iter()
            .find(|r| r.conds.iter().all(|c| holds(c, &d.args, s.arch.wide())))
            .map_or(plan.default, |r| r.action),
    }
}

fn holds(c: &Cond, args: &[u64; 6], wide: bool) -> bool {
    let narrow = |x: u64| if wide { x } else { x & 0xffff_ffff };
    let (v, a, b) = (
        narrow(args[usize::from(c.index)]),
        narrow(c.value),
        narrow(c.value_two),
    );
    match c.op {
        CmpOp::Eq => v == a,
        CmpOp::Ne => v != a,
        CmpOp::Lt => v < a,
        CmpOp::Le => v <= a,
        CmpOp::Gt => v > a,
        CmpOp::Ge => v >= a,
        CmpOp::MaskedEq => v & a == b & a,
    }
}

fn nr(name: &str) -> u32 {
    native_syscall_number(name).expect("a known syscall")
}

fn run(prog: &[seccompiler::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    emulator::run(prog, &Data { nr, arch, args }).expect("a valid program")
}

const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

#[cfg(target_arch = "x86_64")]
#[test]
fn containerd_profile_behaves_like_runc() {
    let seccomp: LinuxSeccomp = serde_json::from_str(CONTAINERD).expect("fixture parses");
    let f = compile(&seccomp).expect("compiles");
    assert!(f.program.len() < 4096, "{} instructions", f.program.len());
    assert_eq!(f.flags, 0);
    let x = AUDIT_ARCH_X86_64;
    let none = [0; 6];
    assert_eq!(run(&f.program, x, nr("getpid"), none), RET_ALLOW);
    assert_eq!(run(&f.program, x, nr("unshare"), none), EPERM);
    assert_eq!(run(&f.program, x, nr("mount"), none), EPERM);
    let clone = nr("clone");
    let sigchld = libc::SIGCHLD as u64;
    assert_eq!(
        run(&f.program, x, clone, [sigchld, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    let newuser = libc::CLONE_NEWUSER as u64 | sigchld;
    assert_eq!(run(&f.program, x, clone, [newuser, 0, 0, 0, 0, 0]), EPERM);
    // Bits above 32 are outside the mask: still allowed, as under libseccomp.
    assert_eq!(
        run(&f.program, x, clone, [1 << 40, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(run(&f.program, x, nr("clone3"), none), ENOSYS);
    let personality = nr("personality");
    for (arg, want) in [
        (0, RET_ALLOW),
        (8, RET_ALLOW),
        (0x20000, RET_ALLOW),
        (0xffff_ffff, RET_ALLOW),
        (0x0040000, EPERM),
        (0xffff_ffff_ffff_ffff, EPERM),
    ] {
        assert_eq!(
            run(&f.program, x, personality, [arg, 0, 0, 0, 0, 0]),
            want,
            "personality({arg:#x})"
        );
    }
    // Newer than anything the profile names: ENOSYS (runc's stub), not EPERM.
    assert_eq!(run(&f.program, x, 450, none), ENOSYS);
    assert_eq!(run(&f.program, x, 1000, none), ENOSYS);
    // i386 (int 0x80) uses its own numbers: getpid is 20, socketcall 102, both allowed.
    assert_eq!(run(&f.program, AUDIT_ARCH_I386, 20, none), RET_ALLOW);
    assert_eq!(run(&f.program, AUDIT_ARCH_I386, 102, none), RET_ALLOW);
    // i386 unshare (310) is blocked like x86_64's.
    assert_eq!(run(&f.program, AUDIT_ARCH_I386, 310, none), EPERM);
    // i386 personality compares the low 32 bits only.
    assert_eq!(
        run(
            &f.program,
            AUDIT_ARCH_I386,
            136,
            [0xffff_ffff, 0, 0, 0, 0, 0]
        ),
        RET_ALLOW
    );
    // x32: getpid with the x32 bit.
    assert_eq!(run(&f.program, x, X32_SYSCALL_BIT | 39, none), RET_ALLOW);
    assert_eq!(run(&f.program, x, X32_SYSCALL_BIT | 272, none), EPERM);
    // An architecture the profile does not name is killed.
    assert_eq!(
        run(&f.program, AUDIT_ARCH_AARCH64, 172, none),
        RET_KILL_PROCESS
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_and_32_bit_arches_never_fall_back_to_allow() {
    // A blocklist: allow by default, refuse unshare. Without x86 and x32 in `architectures`
    // a 32-bit or x32 unshare must not slip through the x86_64 rules.
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let f = compile(&p).expect("compiles");
    let none = [0; 6];
    assert_eq!(run(&f.program, AUDIT_ARCH_X86_64, 272, none), EPERM);
    assert_eq!(run(&f.program, AUDIT_ARCH_X86_64, 39, none), RET_ALLOW);
    assert_eq!(
        run(&f.program, AUDIT_ARCH_I386, 310, none),
        RET_KILL_PROCESS
    );
    assert_eq!(run(&f.program, AUDIT_ARCH_I386, 20, none), RET_KILL_PROCESS);
    assert_eq!(
        run(&f.program, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 272, none),
        RET_KILL_PROCESS
    );
    // Named: translated with their own tables, so the block holds there too.
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let f = compile(&p).expect("compiles");
    assert_eq!(run(&f.program, AUDIT_ARCH_I386, 310, none), EPERM);
    assert_eq!(run(&f.program, AUDIT_ARCH_I386, 20, none), RET_ALLOW);
    assert_eq!(
        run(&f.program, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 272, none),
        EPERM
    );
    // A permissive default gets no ENOSYS stub.
    assert_eq!(run(&f.program, AUDIT_ARCH_X86_64, 1000, none), RET_ALLOW);
}

#[test]
fn every_action_and_errno() {
    for (action, errno, want) in [
        ("SCMP_ACT_KILL", None, RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", None, RET_KILL_PROCESS),
        ("SCMP_ACT_TRAP", None, RET_TRAP),
        ("SCMP_ACT_ERRNO", None, EPERM),
        ("SCMP_ACT_ERRNO", Some(42), RET_ERRNO | 42),
        ("SCMP_ACT_TRACE", None, RET_TRACE | 1),
        ("SCMP_ACT_TRACE", Some(7), RET_TRACE | 7),
        ("SCMP_ACT_LOG", None, RET_LOG),
        ("SCMP_ACT_ALLOW", None, RET_ALLOW),
    ] {
        let mut rule = json!({"names": ["getppid"], "action": action});
        if let Some(e) = errno {
            rule["errnoRet"] = json!(e);
        }
        // A default that differs from every action under test.
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99, "syscalls": [rule]
        }));
        let f = compile(&p).expect("compiles");
        let arch = emulator_native_arch();
        assert_eq!(
            run(&f.program, arch, nr("getppid"), [0; 6]),
            want,
            "{action}"
        );
        assert_eq!(run(&f.program, arch, nr("getpid"), [0; 6]), RET_ERRNO | 99);
    }
}

fn emulator_native_arch() -> u32 {
    if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else {
        AUDIT_ARCH_X86_64
    }
}

#[test]
fn every_operator_on_64_bits() {
    let big = 0x1_0000_0005u64;
    let cases: [(&str, u64, u64, u64, u64); 7] = [
        ("SCMP_CMP_EQ", big, 0, big, 5),
        ("SCMP_CMP_NE", big, 0, 5, big),
        ("SCMP_CMP_LT", big, 0, 6, big),
        ("SCMP_CMP_LE", big, 0, big, big + 1),
        ("SCMP_CMP_GT", big, 0, big + 1, 0xffff_ffff),
        ("SCMP_CMP_GE", big, 0, big, 0x5),
        (
            "SCMP_CMP_MASKED_EQ",
            0xff00_0000_0000_00ff,
            0x1200_0000_0000_0034,
            0x12ab_cdef_0000_0034,
            0x12ab_cdef_0000_0035,
        ),
    ];
    for (op, value, two, yes, no) in cases {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                "args": [{"index": 2, "value": value, "valueTwo": two, "op": op}]}]
        }));
        let f = compile(&p).expect("compiles");
        let arch = emulator_native_arch();
        assert_eq!(
            run(&f.program, arch, nr("getppid"), [0, 0, yes, 0, 0, 0]),
            RET_ERRNO | 5,
            "{op} {yes:#x}"
        );
        assert_eq!(
            run(&f.program, arch, nr("getppid"), [0, 0, no, 0, 0, 0]),
            RET_ALLOW,
            "{op} {no:#x}"
        );
    }
}

#[test]
fn merging_follows_libseccomp() {
    let arch = emulator_native_arch();
    let eq = |v: u64| json!([{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]);
    // The first unconditional rule wins; conditional rules after it change nothing.
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP", "args": eq(1)},
    ]}));
    let f = compile(&p).expect("compiles");
    assert_eq!(
        run(&f.program, arch, nr("getppid"), [1, 0, 0, 0, 0, 0]),
        RET_LOG
    );
    // An unconditional rule after conditional ones replaces them.
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP", "args": eq(1)},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
    ]}));
    let f = compile(&p).expect("compiles");
    assert_eq!(
        run(&f.program, arch, nr("getppid"), [1, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    // Conditional rules with different actions: each decides its own arguments.
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP", "args": eq(1)},
        {"names": ["getppid"], "action": "SCMP_ACT_LOG", "args": eq(2)},
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP", "args": eq(3)},
    ]}));
    let f = compile(&p).expect("compiles");
    for (a, want) in [(1, RET_TRAP), (2, RET_LOG), (3, RET_TRAP), (4, EPERM)] {
        assert_eq!(
            run(&f.program, arch, nr("getppid"), [a, 0, 0, 0, 0, 0]),
            want
        );
    }
    // The same conditions with two actions: refused, as libseccomp refuses (EEXIST).
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_TRAP", "args": eq(1)},
        {"names": ["getppid"], "action": "SCMP_ACT_LOG", "args": eq(1)},
    ]}));
    let err = compile(&p).expect_err("conflict");
    assert!(
        err.to_string().starts_with("linux.seccomp.syscalls[1]:"),
        "{err}"
    );
    // One argument compared twice: each comparison is a rule of its own (OR), as runc does.
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
    ]}));
    let f = compile(&p).expect("compiles");
    for (a, want) in [(1, RET_ALLOW), (2, RET_ALLOW), (3, EPERM)] {
        assert_eq!(
            run(&f.program, arch, nr("getppid"), [a, 0, 0, 0, 0, 0]),
            want
        );
    }
    // Different arguments in one entry: all must hold (AND).
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
    ]}));
    let f = compile(&p).expect("compiles");
    assert_eq!(
        run(&f.program, arch, nr("getppid"), [1, 2, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        run(&f.program, arch, nr("getppid"), [1, 3, 0, 0, 0, 0]),
        EPERM
    );
    // A rule repeating the default action is dropped (it would be EACCES in libseccomp),
    // unknown names are skipped.
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getppid", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
    ]}));
    let f = compile(&p).expect("compiles");
    assert_eq!(run(&f.program, arch, nr("getppid"), [0; 6]), RET_ALLOW);
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
            "linux.seccomp.defaultAction:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
                {"names": ["getpid", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.syscalls[0].names[1]:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[1].index:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
            "linux.seccomp.syscalls[0].errnoRet:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}),
            "linux.seccomp.defaultErrnoRet:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": [""], "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names[0]:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
            "linux.seccomp.flags[0]:",
        ),
    ];
    for (p, field) in cases {
        let err = compile(&profile(p.clone())).expect_err("refused");
        assert!(
            matches!(err, SeccompError::Invalid { .. }) && err.to_string().starts_with(field),
            "{p}: {err}"
        );
    }
}

#[test]
fn parse_errors_name_the_field() {
    let spec = |seccomp: Value| {
        json!({"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/"},
               "root": {"path": "rootfs"}, "linux": {"seccomp": seccomp}})
        .to_string()
    };
    for (seccomp, field) in [
        (
            json!({"defaultAction": "SCMP_ACT_FOO"}),
            "linux.seccomp.defaultAction:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_Z80"]}),
            "linux.seccomp.architectures[1]:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}),
            "linux.seccomp.flags[0]:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["b"], "action": "SCMP_ACT_MAYBE"}]}),
            "linux.seccomp.syscalls[1].action:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
            "linux.seccomp.syscalls[0].args[0].op:",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].value:",
        ),
    ] {
        let text = spec(seccomp);
        let err = crate::spec::parse(text.as_bytes()).expect_err("refused");
        assert!(err.contains(field), "{text}\n{err}");
    }
}

#[test]
fn flags_translate() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
    assert_eq!(
        compile(&p).expect("compiles").flags,
        FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW
    );
    // With a listener, TSYNC is dropped (the kernel refuses the pair; the init has one thread).
    let p = profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let f = compile(&p).expect("compiles");
    assert!(f.notify);
    assert_eq!(f.flags, FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV);
    let arch = emulator_native_arch();
    assert_eq!(run(&f.program, arch, nr("getppid"), [0; 6]), RET_USER_NOTIF);
}

#[test]
fn long_argument_chains_and_many_rules_compile_correctly() {
    // Enough conditions that seccompiler needs its long-jump helpers, checked against the
    // direct evaluation.
    let mut calls = Vec::new();
    for v in 0..60u64 {
        calls.push(json!({"names": ["getppid"], "action": if v % 3 == 0 { "SCMP_ACT_TRAP" } else { "SCMP_ACT_LOG" },
            "args": [
                {"index": 0, "value": v, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0xffff_0000_0000u64 + v, "op": "SCMP_CMP_LE"},
                {"index": 2, "value": 1u64 << (v % 64), "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                {"index": 3, "value": v, "op": "SCMP_CMP_NE"},
            ]}));
    }
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": calls}));
    let plan = plan(&p).expect("plans");
    let prog = assemble(&plan).expect("assembles");
    let arch = emulator_native_arch();
    for v in 0..64u64 {
        for args in [
            [v, 0, 0, v + 1, 0, 0],
            [v, 0xffff_0000_0000 + v, 0, 0, 0, 0],
            [v, 0xffff_0000_0001 + v, 0, 1, 0, 0],
            [v, 1, 1u64 << (v % 64), v + 1, 0, 0],
            [v, 1, 0, v, 0, 0],
        ] {
            let d = Data {
                nr: nr("getppid"),
                arch,
                args,
            };
            assert_eq!(
                emulator::run(&prog, &d),
                Ok(reference(&plan, &d)),
                "{args:?}"
            );
        }
    }
}

#[test]
fn features_lists_what_is_translated() {
    let f = super::features();
    assert_eq!(f["enabled"], json!(true));
    assert_eq!(f["actions"].as_array().map(Vec::len), Some(9));
    assert_eq!(f["operators"].as_array().map(Vec::len), Some(7));
    // Every kernel husk runs on knows TSYNC (3.17).
    assert!(f["supportedFlags"]
        .as_array()
        .is_some_and(|a| a.contains(&json!("SECCOMP_FILTER_FLAG_TSYNC"))));
}

/// Installs a filter in a forked child (with no_new_privs, as an unprivileged process must)
/// and checks the kernel applies it as the emulator says.
#[test]
fn installed_filter_is_enforced() {
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 43,
             "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    let filter = compile(&p).expect("compiles");
    crate::process::capabilities::forked::run(move || {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        super::install::load(&filter).map_err(|e| e.to_string())?;
        let errno = || std::io::Error::last_os_error().raw_os_error();
        // SAFETY: plain syscalls without pointers.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        if r != -1 || errno() != Some(42) {
            return Err(format!("getppid: {r} {:?}", errno()));
        }
        // SAFETY: as above.
        let r = unsafe { libc::syscall(libc::SYS_getpriority, 0, 7) };
        if r != -1 || errno() != Some(43) {
            return Err(format!("getpriority(0, 7): {r} {:?}", errno()));
        }
        // SAFETY: as above.
        let r = unsafe { libc::syscall(libc::SYS_getpriority, 0, 0) };
        if r < 0 {
            return Err(format!("getpriority(0, 0): {:?}", errno()));
        }
        Ok(())
    })
    .expect("filter enforced in the child");
}

/// The containerd profile as the kernel sees it: accepted, and enforcing what runc's does.
#[cfg(target_arch = "x86_64")]
#[test]
fn containerd_profile_installs() {
    let seccomp: LinuxSeccomp = serde_json::from_str(CONTAINERD).expect("fixture parses");
    let filter = compile(&seccomp).expect("compiles");
    crate::process::capabilities::forked::run(move || {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        super::install::load(&filter).map_err(|e| e.to_string())?;
        let errno = || std::io::Error::last_os_error().raw_os_error();
        // SAFETY: plain syscalls; unshare(0) and clone3(NULL, 0) change nothing.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        // SAFETY: as above.
        let unshare = (unsafe { libc::syscall(libc::SYS_unshare, 0) }, errno());
        // SAFETY: as above.
        let clone3 = (unsafe { libc::syscall(libc::SYS_clone3, 0, 0) }, errno());
        match (pid > 0, unshare, clone3) {
            (true, (-1, Some(libc::EPERM)), (-1, Some(libc::ENOSYS))) => Ok(()),
            other => Err(format!("getpid/unshare/clone3: {other:?}")),
        }
    })
    .expect("containerd profile enforced in the child");
}
