//! The runtime-spec profile -> libseccomp-merged rules per architecture -> one cBPF program.
//!
//! The program, for an x86_64 host and a profile naming x86_64, x86 and x32:
//!
//! ```text
//!   load arch
//!   arch == X86_64 -> x86_64 section     (x32 calls arrive here too, with bit 30 set)
//!   arch == I386   -> i386 section       (int 0x80 / 32-bit compat calls)
//!   return KILL_PROCESS                  (an architecture the profile does not name)
//! x86_64: load nr; nr has bit 30 -> x32 section (or KILL_PROCESS when x32 is not named)
//!   nr > highest nr the profile names -> ERRNO(ENOSYS)   (runc's stub; see below)
//!   binary search on nr -> RET action, or -> the syscall's argument rules
//!   return defaultAction
//! argument rules (per syscall): seccompiler-compiled conditions, first match's action,
//!   else defaultAction
//! ```
//!
//! Merging follows libseccomp as runc drives it: a rule whose action equals the default action
//! is dropped; the first unconditional rule for a syscall wins over everything else for it;
//! conditional rules are tried in profile order; two rules with the same conditions but
//! different actions are refused (libseccomp's EEXIST); an entry naming the same argument
//! twice becomes one rule per condition (runc's "old behaviour"). Names unknown to an
//! architecture are skipped for it, as runc skips names libseccomp does not know.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as FilterFlag,
    LinuxSeccompOperator as Operator,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde_json::{json, Value};

use super::{tables, SeccompError};

// seccomp return values (linux/seccomp.h): the action is in the high 16 bits.
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(crate) const RET_TRACE: u32 = 0x7ff0_0000;
pub(crate) const RET_LOG: u32 = 0x7ffc_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;

// AUDIT_ARCH_* (linux/audit.h): what the kernel puts in seccomp_data.arch.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(crate) const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
pub(crate) const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// x32 syscalls come in as AUDIT_ARCH_X86_64 with this bit set in the number.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// SECCOMP_FILTER_FLAG_* (linux/seccomp.h).
pub(crate) const FLAG_TSYNC: u64 = 1;
pub(crate) const FLAG_LOG: u64 = 1 << 1;
pub(crate) const FLAG_SPEC_ALLOW: u64 = 1 << 2;
pub(crate) const FLAG_NEW_LISTENER: u64 = 1 << 3;
pub(crate) const FLAG_WAIT_KILLABLE_RECV: u64 = 1 << 5;

/// BPF_MAXINSNS: the kernel refuses longer programs.
const MAX_INSNS: usize = 4096;
/// Syscalls per leaf of the binary search: below this a linear scan is shorter.
const LEAF: usize = 8;

// cBPF opcodes used here.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGT_K: u16 = 0x25;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
/// Offsets in struct seccomp_data.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// A compiled filter, ready for seccomp(2).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The cBPF program.
    pub program: Vec<sock_filter>,
    /// SECCOMP_FILTER_FLAG_* bits to pass to seccomp(2).
    pub flags: u64,
    /// Whether a rule uses SCMP_ACT_NOTIFY (the filter then makes a listener fd).
    pub notify: bool,
}

/// One architecture's part of the program.
// Only one host architecture's variants are built on any one machine.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SectionArch {
    X86_64,
    X32,
    I386,
    Aarch64,
    Arm,
}

impl SectionArch {
    /// The name -> number table, when husk has one.
    fn table(self) -> Option<&'static [(&'static str, u32)]> {
        match self {
            SectionArch::X86_64 => Some(tables::X86_64),
            SectionArch::X32 => Some(tables::X32),
            SectionArch::I386 => Some(tables::I386),
            SectionArch::Aarch64 => Some(tables::AARCH64),
            SectionArch::Arm => None,
        }
    }

    /// 64-bit argument comparisons (libseccomp compares only the low 32 bits on 32-bit ABIs).
    pub(crate) fn wide(self) -> bool {
        matches!(self, SectionArch::X86_64 | SectionArch::Aarch64)
    }

    /// AUDIT_ARCH value the section is dispatched on (x32 is reached from x86_64's).
    pub(crate) fn audit(self) -> u32 {
        match self {
            SectionArch::X86_64 | SectionArch::X32 => AUDIT_ARCH_X86_64,
            SectionArch::I386 => AUDIT_ARCH_I386,
            SectionArch::Aarch64 => AUDIT_ARCH_AARCH64,
            SectionArch::Arm => AUDIT_ARCH_ARM,
        }
    }
}

/// The architecture the kernel runs natively, which every filter covers (libseccomp always
/// includes it, whatever `architectures` says).
#[cfg(target_arch = "x86_64")]
const NATIVE: Option<SectionArch> = Some(SectionArch::X86_64);
#[cfg(target_arch = "aarch64")]
const NATIVE: Option<SectionArch> = Some(SectionArch::Aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE: Option<SectionArch> = None;

/// Which section an `architectures` entry means on this host; `None` for an architecture this
/// kernel cannot run, whose syscalls therefore never reach the filter.
fn section_for(arch: Arch) -> Option<SectionArch> {
    match (NATIVE?, arch) {
        (native, Arch::ScmpArchNative) => Some(native),
        (SectionArch::X86_64, Arch::ScmpArchX86_64) => Some(SectionArch::X86_64),
        (SectionArch::X86_64, Arch::ScmpArchX86) => Some(SectionArch::I386),
        (SectionArch::X86_64, Arch::ScmpArchX32) => Some(SectionArch::X32),
        (SectionArch::Aarch64, Arch::ScmpArchAarch64) => Some(SectionArch::Aarch64),
        (SectionArch::Aarch64, Arch::ScmpArchArm) => Some(SectionArch::Arm),
        _ => None,
    }
}

/// A comparison operator, as libseccomp has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CmpOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// One argument comparison: `args[index] op value` (MASKED_EQ: `args[index] & value ==
/// value_two`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cond {
    pub index: u8,
    pub op: CmpOp,
    pub value: u64,
    pub value_two: u64,
}

/// A conditional rule: every condition holds -> `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub conds: Vec<Cond>,
    pub action: u32,
}

/// What one syscall number gets, after merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No conditions: always this action.
    Always(u32),
    /// The first rule that matches decides; none -> the default action.
    Rules(Vec<Rule>),
}

/// One architecture's merged rules.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub arch: SectionArch,
    pub syscalls: BTreeMap<u32, Decision>,
    /// Syscall names by number, for messages.
    pub names: BTreeMap<u32, &'static str>,
    /// The highest number the profile names for this architecture (runc's -ENOSYS stub).
    pub max_nr: Option<u32>,
}

/// The profile after checking and merging: what the program must do.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub default: u32,
    /// Return ENOSYS for numbers above a section's `max_nr` (runc's patchbpf stub).
    pub enosys_stub: bool,
    pub sections: Vec<Section>,
    /// For architectures with no table (32-bit ARM on aarch64): every syscall gets this.
    pub untranslated: u32,
    pub flags: u64,
    pub notify: bool,
}

/// Checks and compiles `linux.seccomp`.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let plan = plan(seccomp)?;
    let program = assemble(&plan)?;
    Ok(Filter {
        program,
        flags: plan.flags,
        notify: plan.notify,
    })
}

/// The seccomp return value for an action; `errno_field` names where errnoRet came from.
pub(crate) fn action_value(
    action: Action,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<u32, SeccompError> {
    // runc (libseccomp) returns EPERM when ERRNO or TRACE come without a value.
    let data = || -> Result<u32, SeccompError> {
        match errno_ret {
            None => Ok(libc::EPERM as u32),
            Some(v) if v <= 0xffff => Ok(v),
            Some(v) => Err(SeccompError::invalid(
                errno_field,
                format!("{v} does not fit the 16 bits a seccomp filter returns"),
            )),
        }
    };
    Ok(match action {
        Action::ScmpActKill | Action::ScmpActKillThread => RET_KILL_THREAD,
        Action::ScmpActKillProcess => RET_KILL_PROCESS,
        Action::ScmpActTrap => RET_TRAP,
        Action::ScmpActErrno => RET_ERRNO | data()?,
        Action::ScmpActTrace => RET_TRACE | data()?,
        Action::ScmpActLog => RET_LOG,
        Action::ScmpActAllow => RET_ALLOW,
        Action::ScmpActNotify => RET_USER_NOTIF,
    })
}

/// Actions that let the syscall run (or hand it to a tracer): runc adds no -ENOSYS stub then.
fn permissive(action: u32) -> bool {
    matches!(action & 0xffff_0000, RET_ALLOW | RET_LOG | RET_TRACE)
}

fn operator(op: Operator) -> CmpOp {
    match op {
        Operator::ScmpCmpNe => CmpOp::Ne,
        Operator::ScmpCmpLt => CmpOp::Lt,
        Operator::ScmpCmpLe => CmpOp::Le,
        Operator::ScmpCmpEq => CmpOp::Eq,
        Operator::ScmpCmpGe => CmpOp::Ge,
        Operator::ScmpCmpGt => CmpOp::Gt,
        Operator::ScmpCmpMaskedEq => CmpOp::MaskedEq,
    }
}

/// Looks a syscall name up in a sorted table.
fn lookup(table: &'static [(&'static str, u32)], name: &str) -> Option<(&'static str, u32)> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i])
}

/// The syscall number `name` has on the native architecture, if husk knows it.
pub fn native_syscall_number(name: &str) -> Option<u32> {
    NATIVE
        .and_then(SectionArch::table)
        .and_then(|t| lookup(t, name))
        .map(|(_, nr)| nr)
}

impl Section {
    fn new(arch: SectionArch) -> Section {
        Section {
            arch,
            syscalls: BTreeMap::new(),
            names: BTreeMap::new(),
            max_nr: None,
        }
    }

    /// Adds one profile rule (`conds` None: unconditional) for `nr`, merging as libseccomp.
    fn add(
        &mut self,
        nr: u32,
        rules: Option<&[Vec<Cond>]>,
        action: u32,
        field: &str,
        name: &str,
    ) -> Result<(), SeccompError> {
        let existing = self.syscalls.get_mut(&nr);
        match (existing, rules) {
            // An unconditional rule already covers every call: later rules change nothing.
            (Some(Decision::Always(_)), _) => {}
            // An unconditional rule replaces the argument rules before it.
            (_, None) => {
                self.syscalls.insert(nr, Decision::Always(action));
            }
            (None, Some(rules)) => {
                let mut list = Vec::new();
                merge_rules(&mut list, rules, action, field, name)?;
                self.syscalls.insert(nr, Decision::Rules(list));
            }
            (Some(Decision::Rules(list)), Some(rules)) => {
                merge_rules(list, rules, action, field, name)?;
            }
        }
        Ok(())
    }
}

fn merge_rules(
    list: &mut Vec<Rule>,
    rules: &[Vec<Cond>],
    action: u32,
    field: &str,
    name: &str,
) -> Result<(), SeccompError> {
    for conds in rules {
        match list.iter().find(|r| &r.conds == conds) {
            Some(r) if r.action == action => {}
            Some(r) => {
                return Err(SeccompError::invalid(
                    field,
                    format!(
                        "{name} already has a rule with the same arguments but action {:#x}, \
                         this one is {action:#x} (libseccomp refuses the conflict too)",
                        r.action
                    ),
                ))
            }
            None => list.push(Rule {
                conds: conds.clone(),
                action,
            }),
        }
    }
    Ok(())
}

/// Checks the profile and merges its rules per architecture.
pub(crate) fn plan(seccomp: &LinuxSeccomp) -> Result<Plan, SeccompError> {
    let Some(native) = NATIVE else {
        return Err(SeccompError::invalid(
            "linux.seccomp",
            "husk has no seccomp support for this CPU architecture",
        ));
    };
    let default = action_value(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if seccomp.default_action() == Action::ScmpActNotify {
        // Every syscall, the listener hand-over included, would wait for an agent that has no
        // listener yet.
        return Err(SeccompError::invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }

    let mut arches = vec![native];
    for a in seccomp.architectures().iter().flatten() {
        if let Some(s) = section_for(*a) {
            if !arches.contains(&s) {
                arches.push(s);
            }
        }
    }
    arches.sort();
    let mut sections: Vec<Section> = arches.iter().map(|a| Section::new(*a)).collect();

    let mut notify = false;
    for (i, call) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let action = action_value(
            call.action(),
            call.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        if call.action() == Action::ScmpActNotify {
            notify = true;
            for (k, name) in call.names().iter().enumerate() {
                // husk hands the listener over with sendmsg; runc refuses write for its pipe.
                // Either would wait for an agent that cannot have the listener yet.
                if name == "write" || name == "sendmsg" {
                    return Err(SeccompError::invalid(
                        format!("{field}.names[{k}]"),
                        format!("SCMP_ACT_NOTIFY cannot be used for {name}"),
                    ));
                }
            }
        }
        let mut conds = Vec::new();
        let mut seen = [0u8; 6];
        for (j, a) in call.args().iter().flatten().enumerate() {
            let index = u8::try_from(a.index())
                .ok()
                .filter(|i| *i < 6)
                .ok_or_else(|| {
                    SeccompError::invalid(
                        format!("{field}.args[{j}].index"),
                        format!("{} is not a syscall argument (0 to 5)", a.index()),
                    )
                })?;
            seen[usize::from(index)] += 1;
            conds.push(Cond {
                index,
                op: operator(a.op()),
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            });
        }
        // runc: when one argument is compared twice, each comparison becomes its own rule.
        let rules: Option<Vec<Vec<Cond>>> = if conds.is_empty() {
            None
        } else if seen.iter().any(|n| *n > 1) {
            Some(conds.into_iter().map(|c| vec![c]).collect())
        } else {
            conds.sort();
            Some(vec![conds])
        };
        for (k, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(SeccompError::invalid(
                    format!("{field}.names[{k}]"),
                    "empty string is not a valid syscall",
                ));
            }
            for section in &mut sections {
                let Some((static_name, nr)) = section.arch.table().and_then(|t| lookup(t, name))
                else {
                    // Unknown to this architecture: skipped, as runc skips names libseccomp
                    // does not resolve.
                    continue;
                };
                section.max_nr = Some(section.max_nr.map_or(nr, |m| m.max(nr)));
                section.names.insert(nr, static_name);
                if action == default {
                    // runc drops rules that repeat the default action.
                    continue;
                }
                section.add(nr, rules.as_deref(), action, &field, name)?;
            }
        }
    }

    let mut flags = 0;
    let mut tsync = false;
    let mut wait_killable = false;
    for (i, f) in seccomp.flags().iter().flatten().enumerate() {
        match f {
            FilterFlag::SeccompFilterFlagTsync => tsync = true,
            FilterFlag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            FilterFlag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            FilterFlag::SeccompFilterFlagWaitKillableRecv => {
                if !seccomp
                    .syscalls()
                    .iter()
                    .flatten()
                    .any(|c| c.action() == Action::ScmpActNotify)
                {
                    return Err(SeccompError::invalid(
                        format!("linux.seccomp.flags[{i}]"),
                        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs a SCMP_ACT_NOTIFY rule",
                    ));
                }
                wait_killable = true;
            }
        }
    }
    if notify {
        flags |= FLAG_NEW_LISTENER;
        if wait_killable {
            flags |= FLAG_WAIT_KILLABLE_RECV;
        }
        // The kernel refuses TSYNC with NEW_LISTENER; the init is single-threaded, so TSYNC
        // has nothing to synchronise anyway (runc never passes it).
    } else if tsync {
        flags |= FLAG_TSYNC;
    }
    if notify
        && seccomp
            .listener_path()
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
    {
        return Err(SeccompError::invalid(
            "linux.seccomp.listenerPath",
            "a SCMP_ACT_NOTIFY rule needs the agent's socket path",
        ));
    }

    // runc's patchbpf: unless the default lets syscalls through or already is ENOSYS, numbers
    // above the highest one the profile names get ENOSYS, so programs fall back from syscalls
    // newer than the profile instead of failing with EPERM.
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    let enosys_stub = !permissive(default) && default != enosys;
    let untranslated = if permissive(default) { enosys } else { default };
    Ok(Plan {
        default,
        enosys_stub,
        sections,
        untranslated,
        flags,
        notify,
    })
}

/// A tiny assembler: instructions plus forward `ja` to labels, resolved at the end.
struct Asm {
    code: Vec<Item>,
    labels: Vec<Option<usize>>,
}

enum Item {
    Ins(sock_filter),
    Ja(usize),
}

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

impl Asm {
    fn new() -> Asm {
        Asm {
            code: Vec::new(),
            labels: Vec::new(),
        }
    }

    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn put(&mut self, i: sock_filter) {
        self.code.push(Item::Ins(i));
    }

    fn load(&mut self, offset: u32) {
        self.put(ins(BPF_LD_W_ABS, 0, 0, offset));
    }

    fn ret(&mut self, k: u32) {
        self.put(ins(BPF_RET_K, 0, 0, k));
    }

    fn ja(&mut self, label: usize) {
        self.code.push(Item::Ja(label));
    }

    /// `if A <op> k` falls through to the next instruction, else skips it: the usual
    /// "test; then-instruction" pair, which keeps every conditional jump short.
    fn test(&mut self, jcode: u16, k: u32) {
        self.put(ins(jcode, 0, 1, k));
    }

    fn finish(self) -> Result<Vec<sock_filter>, SeccompError> {
        let mut out = Vec::with_capacity(self.code.len());
        for (pos, item) in self.code.into_iter().enumerate() {
            out.push(match item {
                Item::Ins(i) => i,
                Item::Ja(l) => {
                    let target = self
                        .labels
                        .get(l)
                        .copied()
                        .flatten()
                        .filter(|t| *t > pos)
                        .ok_or_else(|| SeccompError::Unexpected(format!("label {l}")))?;
                    let k = u32::try_from(target - pos - 1)
                        .map_err(|_| SeccompError::Unexpected(format!("jump to label {l}")))?;
                    ins(BPF_JMP_JA, 0, 0, k)
                }
            });
        }
        if out.len() > MAX_INSNS {
            return Err(SeccompError::TooLarge(out.len()));
        }
        Ok(out)
    }
}

/// Where the binary search sends one syscall number.
#[derive(Clone, Copy)]
enum Exit {
    Ret(u32),
    Body(usize),
}

/// Emits a binary search over `entries` (sorted by number); A holds the syscall number.
fn search(asm: &mut Asm, entries: &[(u32, Exit)], default: u32) {
    if entries.len() <= LEAF {
        for (nr, exit) in entries {
            asm.test(BPF_JEQ_K, *nr);
            match exit {
                Exit::Ret(a) => asm.ret(*a),
                Exit::Body(l) => asm.ja(*l),
            }
        }
        asm.ret(default);
        return;
    }
    let mid = entries.len() / 2;
    let right = asm.label();
    asm.test(BPF_JGE_K, entries[mid].0);
    asm.ja(right);
    search(asm, &entries[..mid], default);
    asm.bind(right);
    search(asm, &entries[mid..], default);
}

/// seccompiler's condition for one of ours.
fn condition(c: &Cond, wide: bool) -> Result<SeccompCondition, seccompiler::BackendError> {
    let len = if wide {
        SeccompCmpArgLen::Qword
    } else {
        SeccompCmpArgLen::Dword
    };
    let (op, value) = match c.op {
        CmpOp::Ne => (SeccompCmpOp::Ne, c.value),
        CmpOp::Lt => (SeccompCmpOp::Lt, c.value),
        CmpOp::Le => (SeccompCmpOp::Le, c.value),
        CmpOp::Eq => (SeccompCmpOp::Eq, c.value),
        CmpOp::Ge => (SeccompCmpOp::Ge, c.value),
        CmpOp::Gt => (SeccompCmpOp::Gt, c.value),
        // libseccomp: value is the mask, valueTwo the datum (masked too, as libseccomp does).
        CmpOp::MaskedEq => (SeccompCmpOp::MaskedEq(c.value), c.value_two),
    };
    SeccompCondition::new(c.index, len, op, value)
}

/// Compiles rules sharing one action with seccompiler and cuts out the conditions.
///
/// seccompiler emits `[arch check (3)] [load nr] [jeq nr] rule... [ret mismatch] [ret
/// mismatch]`, each rule ending in `ret match`, a failing rule jumping to the next rule and the
/// last one to the first `ret mismatch`. Entered at the first rule, the code from there up to
/// that `ret mismatch` is exactly "first matching rule -> match": the match return (compiled
/// as ALLOW, a sentinel) becomes the real action, and the mismatch return becomes `next`. The
/// final `ret mismatch` stays (as `ret pad`): the rules' unused skip jumps land on it.
fn compile_run(
    nr: u32,
    name: &str,
    rules: &[&Rule],
    wide: bool,
    action: u32,
    next: sock_filter,
    pad: u32,
) -> Result<Vec<sock_filter>, SeccompError> {
    let err = |source| SeccompError::Compile {
        syscall: name.to_string(),
        source,
    };
    let mut compiled = Vec::with_capacity(rules.len());
    for r in rules {
        let conds = r
            .conds
            .iter()
            .map(|c| condition(c, wide))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        compiled.push(SeccompRule::new(conds).map_err(err)?);
    }
    let filter = SeccompFilter::new(
        BTreeMap::from([(i64::from(nr), compiled)]),
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(err)?;
    let program: BpfProgram = filter.try_into().map_err(err)?;
    let n = program.len();
    let unexpected = || SeccompError::Unexpected(name.to_string());
    let is_ret = |i: &sock_filter, k: u32| i.code == BPF_RET_K && i.k == k;
    if n < 8
        || program[3] != ins(BPF_LD_W_ABS, 0, 0, DATA_NR)
        || program[4] != ins(BPF_JEQ_K, 0, 1, nr)
        || !is_ret(&program[n - 1], RET_KILL_PROCESS)
        || !is_ret(&program[n - 2], RET_KILL_PROCESS)
    {
        return Err(unexpected());
    }
    let mut body = program[5..].to_vec();
    let end = body.len() - 2;
    for i in &mut body[..end] {
        if i.code == BPF_RET_K {
            if i.k != RET_ALLOW {
                return Err(unexpected());
            }
            i.k = action;
        }
    }
    body[end] = next;
    // Never reached, but each rule's "skip to the next syscall" jump points here, and the
    // kernel checks every jump target.
    body[end + 1] = ins(BPF_RET_K, 0, 0, pad);
    Ok(body)
}

/// Lays out the whole program.
pub(crate) fn assemble(plan: &Plan) -> Result<Vec<sock_filter>, SeccompError> {
    let mut asm = Asm::new();
    let has = |a: SectionArch| plan.sections.iter().any(|s| s.arch == a);
    let mut section_labels = BTreeMap::new();
    for s in &plan.sections {
        section_labels.insert(s.arch, asm.label());
    }
    asm.load(DATA_ARCH);
    for s in &plan.sections {
        // x32 shares x86_64's AUDIT_ARCH; the x86_64 section sends it on.
        if s.arch != SectionArch::X32 {
            asm.test(BPF_JEQ_K, s.arch.audit());
            asm.ja(section_labels[&s.arch]);
        }
    }
    // An architecture the profile does not name: libseccomp's "bad arch" action is a kill.
    asm.ret(RET_KILL_PROCESS);

    for s in &plan.sections {
        asm.bind(section_labels[&s.arch]);
        if s.arch.table().is_none() {
            asm.ret(plan.untranslated);
            continue;
        }
        if s.arch != SectionArch::X32 {
            asm.load(DATA_NR);
        }
        if s.arch == SectionArch::X86_64 {
            asm.test(BPF_JSET_K, X32_SYSCALL_BIT);
            if has(SectionArch::X32) {
                asm.ja(section_labels[&SectionArch::X32]);
            } else {
                asm.ret(RET_KILL_PROCESS);
            }
        }
        if plan.enosys_stub {
            if let Some(max) = s.max_nr {
                asm.test(BPF_JGT_K, max);
                asm.ret(RET_ERRNO | libc::ENOSYS as u32);
            }
        }
        let mut entries = Vec::with_capacity(s.syscalls.len());
        let mut bodies = Vec::new();
        for (nr, d) in &s.syscalls {
            match d {
                Decision::Always(a) => entries.push((*nr, Exit::Ret(*a))),
                Decision::Rules(rules) => {
                    let l = asm.label();
                    entries.push((*nr, Exit::Body(l)));
                    bodies.push((*nr, l, rules));
                }
            }
        }
        search(&mut asm, &entries, plan.default);
        for (nr, label, rules) in bodies {
            asm.bind(label);
            let name = s.names.get(&nr).copied().unwrap_or("?");
            // Consecutive rules with one action compile together; the code of each group
            // falls through to the next group, the last to the default action.
            let mut groups: Vec<(u32, Vec<&Rule>)> = Vec::new();
            for r in rules {
                match groups.last_mut() {
                    Some((a, g)) if *a == r.action => g.push(r),
                    _ => groups.push((r.action, vec![r])),
                }
            }
            let count = groups.len();
            for (gi, (action, group)) in groups.iter().enumerate() {
                // Not the last group: jump over the pad into the next group.
                let next = if gi + 1 == count {
                    ins(BPF_RET_K, 0, 0, plan.default)
                } else {
                    ins(BPF_JMP_JA, 0, 0, 1)
                };
                let wide = s.arch.wide();
                let code = compile_run(nr, name, group, wide, *action, next, plan.default)?;
                for i in code {
                    asm.put(i);
                }
            }
        }
    }
    asm.finish()
}

const ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
const FLAGS: [&str; 4] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// The first field of a raw `linux.seccomp` value that does not parse, with serde's reason.
pub(crate) fn explain_raw(v: &Value) -> Option<String> {
    // A missing field is checked as null: required fields then say so, optional ones pass.
    fn check<T: serde::de::DeserializeOwned>(v: Option<&Value>, field: &str) -> Option<String> {
        let v = v.unwrap_or(&Value::Null);
        serde_json::from_value::<T>(v.clone())
            .err()
            .map(|e| match v {
                Value::Null => format!("{field}: missing ({e})"),
                _ => format!("{field}: {e}"),
            })
    }
    if !v.is_object() {
        return Some(format!("linux.seccomp: expected an object, got {v}"));
    }
    let base = "linux.seccomp";
    if let Some(e) = check::<Action>(v.get("defaultAction"), &format!("{base}.defaultAction"))
        .or_else(|| {
            check::<Option<u32>>(v.get("defaultErrnoRet"), &format!("{base}.defaultErrnoRet"))
        })
    {
        return Some(e);
    }
    for (key, parse) in [
        (
            "architectures",
            check::<Arch> as fn(Option<&Value>, &str) -> Option<String>,
        ),
        ("flags", check::<FilterFlag>),
    ] {
        match v.get(key) {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(e) = parse(Some(item), &format!("{base}.{key}[{i}]")) {
                        return Some(e);
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => return Some(format!("{base}.{key}: expected an array, got {other}")),
        }
    }
    for key in ["listenerPath", "listenerMetadata"] {
        if let Some(e) = check::<Option<String>>(v.get(key), &format!("{base}.{key}")) {
            return Some(e);
        }
    }
    let calls = match v.get("syscalls") {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => return None,
        Some(other) => return Some(format!("{base}.syscalls: expected an array, got {other}")),
    };
    for (i, call) in calls.iter().enumerate() {
        let field = format!("{base}.syscalls[{i}]");
        let e = check::<Vec<String>>(call.get("names"), &format!("{field}.names"))
            .or_else(|| check::<Action>(call.get("action"), &format!("{field}.action")))
            .or_else(|| check::<Option<u32>>(call.get("errnoRet"), &format!("{field}.errnoRet")));
        if e.is_some() {
            return e;
        }
        if let Some(Value::Array(args)) = call.get("args") {
            for (j, a) in args.iter().enumerate() {
                let f = format!("{field}.args[{j}]");
                let e = check::<usize>(a.get("index"), &format!("{f}.index"))
                    .or_else(|| check::<u64>(a.get("value"), &format!("{f}.value")))
                    .or_else(|| check::<Option<u64>>(a.get("valueTwo"), &format!("{f}.valueTwo")))
                    .or_else(|| check::<Operator>(a.get("op"), &format!("{f}.op")));
                if e.is_some() {
                    return e;
                }
            }
        }
        if let Some(e) = check::<oci_spec::runtime::LinuxSyscall>(Some(call), &field) {
            return Some(e);
        }
    }
    check::<LinuxSeccomp>(Some(v), base)
}

/// The `linux.seccomp` object of `husk features`.
pub(crate) fn features() -> Value {
    let archs: Vec<&str> = match NATIVE {
        Some(SectionArch::X86_64) => vec!["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        Some(SectionArch::Aarch64) => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => vec![],
    };
    let supported: Vec<&str> = [
        (FLAGS[0], FLAG_TSYNC),
        (FLAGS[1], FLAG_SPEC_ALLOW),
        (FLAGS[2], FLAG_LOG),
        (FLAGS[3], FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER),
    ]
    .into_iter()
    .filter(|(_, bits)| super::install::kernel_knows_flags(*bits))
    .map(|(name, _)| name)
    .collect();
    json!({
        "enabled": NATIVE.is_some(),
        "actions": ACTIONS,
        "operators": OPERATORS,
        "archs": archs,
        "knownFlags": FLAGS,
        "supportedFlags": supported,
    })
}
