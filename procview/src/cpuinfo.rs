//! /proc/cpuinfo with only the visible CPUs, renumbered from 0 (as /sys/.../online says).

/// The host's cpuinfo keeping the blocks of the host CPUs in `visible`; blocks that describe no
/// processor (arm64's trailing summary) are kept as they are.
pub fn render(host: &str, visible: &[u32]) -> String {
    let mut out = String::with_capacity(host.len());
    let mut next = 0u32;
    for block in host.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let id = block.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "processor").then(|| v.trim().parse::<u32>().ok())?
        });
        match id {
            Some(id) if !visible.contains(&id) => continue,
            Some(_) => {
                for line in block.lines() {
                    match line.split_once(':') {
                        Some((k, _)) if k.trim() == "processor" => {
                            out.push_str(&format!("{k}: {next}"));
                        }
                        _ => out.push_str(line),
                    }
                    out.push('\n');
                }
                next += 1;
            }
            None => {
                out.push_str(block.trim_end_matches('\n'));
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_visible_cpus_renumbered() {
        let host = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\n\
                    processor\t: 2\nmodel name\t: X\n\n";
        let out = render(host, &[1, 2]);
        assert_eq!(out.matches("processor").count(), 2, "{out}");
        assert!(
            out.starts_with("processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\n"),
            "{out}"
        );
        assert_eq!(render(host, &[0]).matches("processor").count(), 1);
    }
}
