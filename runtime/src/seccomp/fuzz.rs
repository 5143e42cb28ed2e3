//! Bounded fuzzing that runs with `cargo test` on stable Rust (cargo-fuzz needs nightly).
//!
//! Structure-aware mutation of real configs (runc's `runc spec`, containerd's `ctr run
//! --seccomp`, Docker's `docker run`, containerd's seccomp profile) plus byte-level mutation
//! of their text, fed to config.json parsing and validation, to seccomp translation, and to
//! `--resources` parsing: no panic, no hang, every refusal a message (seccomp refusals naming
//! the field). Random seccomp profiles are also compiled and every program is run in the BPF
//! emulator against a direct evaluation of the merged rules, so translation bugs show up as
//! wrong verdicts, not only as crashes.
//!
//! Deterministic: a fixed seed per test; `HUSK_FUZZ_ITERS=N` multiplies the iterations (CI
//! runs the default, a few seconds), `HUSK_FUZZ_SEED=N` changes the seed. A failure prints the
//! seed, the iteration and the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, LinuxSeccomp};
use serde_json::{json, Value};

use super::emulator::{self, Data};
use super::tests::{reference, CONTAINERD};
use super::translate::*;
use super::SeccompError;

const RUNC_SPEC: &str = include_str!("../../../tests/fixtures/runc-spec.json");
const RUNC_ROOTLESS: &str = include_str!("../../../tests/fixtures/runc-spec-rootless.json");
const CONTAINERD_CONFIG: &str =
    include_str!("../../../tests/fixtures/containerd-ctr-run-seccomp.json");
const DOCKER_CONFIG: &str = include_str!("../../../tests/fixtures/docker-run.json");

/// No single input may take longer than this (a hang shows up as a failure, not a stuck CI).
const PER_INPUT: Duration = Duration::from_secs(2);

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn iterations(default: usize) -> usize {
    let scale = std::env::var("HUSK_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    default * scale.max(1)
}

fn seed(default: u64) -> u64 {
    std::env::var("HUSK_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        | 1
}

/// A config whose linux.seccomp is containerd's default profile.
fn spec_with_containerd_profile() -> Value {
    let mut v: Value = serde_json::from_str(RUNC_SPEC).expect("runc spec fixture");
    v["linux"]["seccomp"] = serde_json::from_str(CONTAINERD).expect("containerd profile");
    v
}

fn seeds() -> Vec<Value> {
    [RUNC_SPEC, RUNC_ROOTLESS, CONTAINERD_CONFIG, DOCKER_CONFIG]
        .iter()
        .map(|t| serde_json::from_str(t).expect("fixture parses"))
        .chain([spec_with_containerd_profile()])
        .collect()
}

/// Values that break assumptions: wrong types, extremes, near-miss enum names, paths.
fn hostile(rng: &mut Rng, like: &Value) -> Value {
    match (rng.below(4), like) {
        // A near miss of the same type.
        (0, Value::String(s)) => {
            let mut s = s.clone();
            match rng.below(5) {
                0 => s.push('X'),
                1 => s = s.to_lowercase(),
                2 => s.truncate(s.len() / 2),
                3 => s = format!("../{s}"),
                _ => s.insert(0, '\u{0}'),
            }
            Value::String(s)
        }
        (0, Value::Number(_)) => rng
            .pick(&[
                json!(0),
                json!(-1),
                json!(i64::MIN),
                json!(u64::MAX),
                json!(4096),
                json!(65536),
                json!(0.5),
                json!(1e300),
            ])
            .clone(),
        (0, Value::Array(a)) if !a.is_empty() => {
            // Duplicate or drop elements.
            let mut a = a.clone();
            if rng.chance(2) {
                let i = rng.below(a.len());
                a.push(a[i].clone());
            } else {
                a.remove(rng.below(a.len()));
            }
            Value::Array(a)
        }
        _ => rng
            .pick(&[
                json!(null),
                json!(true),
                json!(""),
                json!(-7),
                json!(u64::MAX),
                json!([]),
                json!({}),
                json!(["SCMP_ACT_ALLOW"]),
                json!("SCMP_ACT_ERRNO"),
                json!("SCMP_CMP_MASKED_EQ"),
                json!("SCMP_ARCH_X86"),
                json!({"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}),
                json!({"names": ["write"], "action": "SCMP_ACT_NOTIFY"}),
                json!("/proc/self/fd/3"),
                json!("a\u{0}b"),
            ])
            .clone(),
    }
}

/// Changes one node somewhere below `v` (replace, delete a key, or recurse).
fn mutate(v: &mut Value, rng: &mut Rng) {
    let stop = rng.chance(5);
    match v {
        Value::Object(m) if !m.is_empty() && !stop => {
            let Some(k) = m.keys().nth(rng.below(m.len())).cloned() else {
                return;
            };
            if rng.chance(10) {
                m.remove(&k);
            } else if let Some(child) = m.get_mut(&k) {
                mutate(child, rng);
            }
        }
        Value::Array(a) if !a.is_empty() && !stop => {
            let i = rng.below(a.len());
            mutate(&mut a[i], rng);
        }
        _ => {
            let replacement = hostile(rng, v);
            *v = replacement;
        }
    }
}

/// Byte-level damage to serialized JSON: flips, truncation, insertion, duplication.
fn damage(bytes: &mut Vec<u8>, rng: &mut Rng) {
    if bytes.is_empty() {
        return;
    }
    match rng.below(4) {
        0 => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let n = rng.below(bytes.len());
            bytes.truncate(n);
        }
        2 => {
            let i = rng.below(bytes.len());
            let b = *rng.pick(b"{}[]\",:0\\\x00\xff");
            bytes.insert(i, b);
        }
        _ => {
            let a = rng.below(bytes.len());
            let b = (a + rng.below(64)).min(bytes.len());
            let chunk = bytes[a..b].to_vec();
            let at = rng.below(bytes.len());
            bytes.splice(at..at, chunk);
        }
    }
}

/// What one config input did; panics (caught by the caller) are the failures.
fn check_config(data: &[u8]) -> Result<(), String> {
    let spec = match crate::spec::parse(data) {
        Ok(s) => s,
        Err(msg) if msg.trim().is_empty() => return Err("parse refused without a message".into()),
        Err(_) => return Ok(()),
    };
    match crate::spec::validate(&spec) {
        Ok(()) => {
            // A valid config's seccomp profile must compile (validate compiled it).
            if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
                super::compile(s).map_err(|e| format!("validated but does not compile: {e}"))?;
            }
            Ok(())
        }
        Err(e) if e.to_string().trim().is_empty() => Err("refused without a message".into()),
        Err(_) => Ok(()),
    }
}

/// Runs `f` on each input, catching panics and timing each one; fails with the input.
fn drive(
    name: &str,
    seed: u64,
    inputs: impl Iterator<Item = Vec<u8>>,
    f: impl Fn(&[u8]) -> Result<(), String>,
) {
    let started = Instant::now();
    let mut count = 0;
    for (i, input) in inputs.enumerate() {
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| f(&input)));
        let took = t.elapsed();
        let show = || String::from_utf8_lossy(&input[..input.len().min(4000)]).into_owned();
        match r {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => panic!("{name}: seed {seed}, input {i}: {msg}\n{}", show()),
            Err(_) => panic!("{name}: seed {seed}, input {i} panicked\n{}", show()),
        }
        assert!(
            took < PER_INPUT,
            "{name}: seed {seed}, input {i} took {took:?}\n{}",
            show()
        );
        count += 1;
    }
    eprintln!(
        "{name}: {count} inputs in {:?} (seed {seed})",
        started.elapsed()
    );
}

#[test]
fn fuzz_config_parse_and_validate() {
    let seed = seed(0x00c0_ffee_1234_5678);
    let mut rng = Rng(seed);
    let corpus = seeds();
    let n = iterations(3000);
    let inputs = (0..n).map(move |_| {
        let mut v = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut v, &mut rng);
        }
        let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
        if rng.chance(4) {
            damage(&mut bytes, &mut rng);
        }
        bytes
    });
    drive("config", seed, inputs, check_config);
}

#[test]
fn fuzz_seccomp_profile_mutations() {
    // Mutations focused on linux.seccomp of real profiles.
    let seed = seed(0x5ecc_0000_0000_0001);
    let mut rng = Rng(seed);
    let profiles: Vec<Value> = [
        serde_json::from_str::<Value>(CONTAINERD).expect("profile"),
        serde_json::from_str::<Value>(CONTAINERD_CONFIG).expect("config")["linux"]["seccomp"]
            .clone(),
        serde_json::from_str::<Value>(DOCKER_CONFIG).expect("config")["linux"]["seccomp"].clone(),
    ]
    .into_iter()
    .filter(|v| v.is_object())
    .collect();
    let n = iterations(1500);
    let inputs = (0..n).map(move |_| {
        let mut p = profiles[rng.below(profiles.len())].clone();
        for _ in 0..=rng.below(6) {
            mutate(&mut p, &mut rng);
        }
        serde_json::to_vec(&p).unwrap_or_default()
    });
    drive("seccomp", seed, inputs, |data| {
        let v: Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let Ok(profile) = serde_json::from_value::<LinuxSeccomp>(v.clone()) else {
            // serde refused it: the field must be nameable.
            return match super::translate::explain_raw(&v) {
                Some(m) if m.starts_with("linux.seccomp") => Ok(()),
                other => Err(format!("unparsable profile without a field: {other:?}")),
            };
        };
        match super::compile(&profile) {
            Ok(f) => emulator::check(&f.program),
            Err(SeccompError::Invalid { field, .. }) if field.starts_with("linux.seccomp") => {
                Ok(())
            }
            Err(SeccompError::TooLarge(_)) => Ok(()),
            Err(e) => Err(format!("refused without naming a field: {e}")),
        }
    });
}

#[test]
fn fuzz_resources_json() {
    let seed = seed(0x7e50_0000_0000_0003);
    let mut rng = Rng(seed);
    let corpus: Vec<Value> = seeds()
        .into_iter()
        .map(|v| v["linux"]["resources"].clone())
        .filter(Value::is_object)
        .collect();
    assert!(!corpus.is_empty());
    let n = iterations(2000);
    let inputs = (0..n).map(move |_| {
        let mut v = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut v, &mut rng);
        }
        let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
        if rng.chance(5) {
            damage(&mut bytes, &mut rng);
        }
        bytes
    });
    drive("resources", seed, inputs, |data| {
        // What `husk update --resources` does with the file before touching a cgroup.
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            let _ = serde_json::from_value::<LinuxResources>(v);
        }
        // And the size flags' parser with what the JSON holds as text.
        let text = String::from_utf8_lossy(data);
        for word in text.split(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-') {
            let _ = crate::commands::update::parse_bytes(word);
        }
        Ok(())
    });
}

/// A random profile for the semantic check, built directly (mostly valid).
fn random_profile(rng: &mut Rng) -> Value {
    const NAMES: &[&str] = &[
        "getppid",
        "getpid",
        "personality",
        "clone",
        "socket",
        "unshare",
        "mount",
        "read",
        "socketcall",
        "_llseek",
        "futex_waitv",
        "cachestat",
        "mseal",
        "no_such_call",
        "ptrace",
        "getpriority",
    ];
    const ACTIONS: &[&str] = &[
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_NOTIFY",
    ];
    const OPS: &[&str] = &[
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GT",
        "SCMP_CMP_GE",
        "SCMP_CMP_MASKED_EQ",
    ];
    const ARCHES: &[&str] = &[
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_NATIVE",
        "SCMP_ARCH_MIPS",
    ];
    let mut p = json!({"defaultAction": rng.pick(&ACTIONS[..8])});
    if rng.chance(3) {
        p["defaultErrnoRet"] = json!(*rng.pick(&[1u64, 38, 99, 4095]));
    }
    if rng.chance(2) {
        let arches: Vec<&str> = ARCHES.iter().copied().filter(|_| rng.chance(2)).collect();
        p["architectures"] = json!(arches);
    }
    let mut calls = Vec::new();
    for _ in 0..rng.below(10) {
        let names: Vec<&str> = (0..=rng.below(3)).map(|_| *rng.pick(NAMES)).collect();
        let mut call = json!({"names": names, "action": rng.pick(ACTIONS)});
        if rng.chance(3) {
            call["errnoRet"] = json!(rng.below(200));
        }
        let mut args = Vec::new();
        for _ in 0..rng.below(4) {
            let mut a = json!({
                "index": rng.below(6),
                "value": interesting(rng),
                "op": rng.pick(OPS),
            });
            if rng.chance(2) {
                a["valueTwo"] = json!(interesting(rng));
            }
            args.push(a);
        }
        if !args.is_empty() {
            call["args"] = json!(args);
        }
        calls.push(call);
    }
    p["syscalls"] = json!(calls);
    if rng.below(10) > 0 {
        p["listenerPath"] = json!("/run/agent.sock");
    }
    p
}

fn interesting(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => *rng.pick(&[0, 1, 8, 0x20000, 0xffff_ffff, 0x1_0000_0000, u64::MAX]),
        1 => rng.next() & 0xff,
        2 => rng.next() & 0xffff_ffff,
        3 => 1 << rng.below(64),
        4 => rng.next() | 0xffff_ffff_0000_0000,
        _ => rng.next(),
    }
}

/// Argument values likely to sit on the edges of `plan`'s conditions.
fn probe_values(plan: &Plan, rng: &mut Rng) -> Vec<u64> {
    let mut v = vec![0, 1, u64::MAX, 0xffff_ffff, 0x1_0000_0000];
    for s in &plan.sections {
        for d in s.syscalls.values() {
            if let Decision::Rules(rules) = d {
                for r in rules {
                    for c in &r.conds {
                        for x in [c.value, c.value_two, c.value & c.value_two] {
                            v.extend([x, x.wrapping_add(1), x.wrapping_sub(1), x | (1 << 40)]);
                        }
                    }
                }
            }
        }
    }
    for _ in 0..8 {
        v.push(interesting(rng));
    }
    v
}

#[test]
fn fuzz_translation_against_reference() {
    let seed = seed(0xb9f0_0000_0000_0005);
    let mut rng = Rng(seed);
    let n = iterations(400);
    let started = Instant::now();
    let (mut compiled, mut checked) = (0, 0u64);
    for i in 0..n {
        let p = random_profile(&mut rng);
        let profile: LinuxSeccomp =
            serde_json::from_value(p.clone()).expect("generated profiles parse");
        let plan = match plan(&profile) {
            Ok(plan) => plan,
            Err(SeccompError::Invalid { field, .. }) => {
                assert!(
                    field.starts_with("linux.seccomp"),
                    "seed {seed}, profile {i}: {field}"
                );
                continue;
            }
            Err(e) => panic!("seed {seed}, profile {i}: {e}\n{p:#}"),
        };
        let prog = match assemble(&plan) {
            Ok(prog) => prog,
            Err(SeccompError::TooLarge(_)) => continue,
            Err(e) => panic!("seed {seed}, profile {i}: {e}\n{p:#}"),
        };
        compiled += 1;
        emulator::check(&prog).unwrap_or_else(|e| panic!("seed {seed}, profile {i}: {e}\n{p:#}"));
        let values = probe_values(&plan, &mut rng);
        let arches = [
            AUDIT_ARCH_X86_64,
            AUDIT_ARCH_I386,
            AUDIT_ARCH_AARCH64,
            AUDIT_ARCH_ARM,
            0,
        ];
        for s in &plan.sections {
            let mut nrs: Vec<u32> = s.syscalls.keys().copied().collect();
            nrs.extend(s.max_nr.map(|m| m + 1));
            nrs.extend([0, 1000, rng.next() as u32]);
            let arch = s.arch.audit();
            for nr in nrs {
                for _ in 0..6 {
                    let mut args = [0u64; 6];
                    for a in &mut args {
                        *a = *rng.pick(&values);
                    }
                    for (arch, nr) in [
                        (arch, nr),
                        (*rng.pick(&arches), nr),
                        (arch, nr | X32_SYSCALL_BIT),
                    ] {
                        let d = Data { nr, arch, args };
                        let got = emulator::run(&prog, &d)
                            .unwrap_or_else(|e| panic!("seed {seed}, profile {i}: {e}"));
                        let want = reference(&plan, &d);
                        assert_eq!(
                            got, want,
                            "seed {seed}, profile {i}: {d:?} -> {got:#x}, the rules say {want:#x}\n{p:#}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(compiled > n / 4, "only {compiled} of {n} profiles compiled");
    eprintln!(
        "translation: {compiled} programs, {checked} verdicts in {:?} (seed {seed})",
        started.elapsed()
    );
}
