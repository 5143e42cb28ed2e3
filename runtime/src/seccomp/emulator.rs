//! A classic-BPF interpreter for the instructions seccomp filters use, so tests can run a
//! compiled program against any (arch, nr, args) without installing it.

use seccompiler::sock_filter;

/// What a seccomp filter sees: `struct seccomp_data`.
#[derive(Debug, Clone, Copy)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    /// The 32-bit word at byte `offset` of `struct seccomp_data` (little-endian).
    fn word(&self, offset: u32) -> Result<u32, String> {
        match offset {
            0 => Ok(self.nr),
            4 => Ok(self.arch),
            // instruction_pointer (8..16) is never loaded by husk's filters.
            16..=63 if offset.is_multiple_of(4) => {
                let arg = self.args[((offset - 16) / 8) as usize];
                Ok(if (offset - 16).is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                })
            }
            _ => Err(format!("load from offset {offset}")),
        }
    }
}

/// Runs `prog` on `data`; returns the filter's return value, or what made the program invalid
/// (the kernel's checker would refuse the same things: unknown opcodes, jumps out of range,
/// falling off the end).
pub fn run(prog: &[sock_filter], data: &Data) -> Result<u32, String> {
    check(prog)?;
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0usize;
    loop {
        let i = prog
            .get(pc)
            .ok_or_else(|| format!("ran off the end at {pc}"))?;
        steps += 1;
        if steps > prog.len() {
            // cBPF only jumps forward, so this cannot happen in a valid program.
            return Err("loop".into());
        }
        let k = i.k;
        let cond = |taken: bool| -> usize {
            pc + 1
                + if taken {
                    usize::from(i.jt)
                } else {
                    usize::from(i.jf)
                }
        };
        pc = match i.code {
            0x20 => {
                a = data.word(k)?;
                pc + 1
            }
            0x54 => {
                a &= k;
                pc + 1
            }
            0x05 => pc + 1 + k as usize,
            0x15 => cond(a == k),
            0x25 => cond(a > k),
            0x35 => cond(a >= k),
            0x45 => cond(a & k != 0),
            0x06 => return Ok(k),
            other => return Err(format!("opcode {other:#x} at {pc}")),
        };
    }
}

/// The kernel's static checks (bpf_check_classic + seccomp_check_filter) for what husk emits:
/// known opcodes, loads inside seccomp_data, every jump target inside the program (reachable
/// or not), a return at the end, at most 4096 instructions.
pub fn check(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > 4096 {
        return Err(format!("{} instructions", prog.len()));
    }
    for (pc, i) in prog.iter().enumerate() {
        let inside = |off: usize| pc + 1 + off < prog.len();
        let ok = match i.code {
            0x20 => i.k.is_multiple_of(4) && i.k < 64,
            0x54 | 0x06 => true,
            0x05 => inside(i.k as usize),
            0x15 | 0x25 | 0x35 | 0x45 => inside(usize::from(i.jt)) && inside(usize::from(i.jf)),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "instruction {pc} ({:#x} {} {} {:#x}) is invalid",
                i.code, i.jt, i.jf, i.k
            ));
        }
    }
    match prog.last() {
        Some(i) if i.code == 0x06 => Ok(()),
        _ => Err("the program does not end in a return".into()),
    }
}
