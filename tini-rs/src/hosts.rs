//! /etc/hosts overrides: parsing `--add-host`, `HUSK_INIT_HOSTS` and hosts(5) files, and
//! merging them into the existing hosts file.
//!
//! Merge rules: an override replaces every existing entry for the same name (names compare
//! case-insensitively, as resolvers do); a later source replaces an earlier one (hosts files in
//! order, then `HUSK_INIT_HOSTS`, then `--add-host` in order); lines naming localhost are never
//! touched. Overriding a localhost name with a flag or the variable is an error; in a hosts file,
//! where a copied standard header is common, localhost names are skipped. Comments and unrelated
//! lines stay as they were.
//!
//! Overrides borrow from their sources (argv, environment, file contents) instead of being
//! copied: this code is most of what husk-init adds to libc, and it is kept small.

use alloc::vec::Vec;

use crate::log::Msg;
use crate::sys;
use crate::text::eq_ignore_case;

/// One override line: an address and its whitespace-separated names (first is canonical).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The address, validated.
    pub ip: &'a [u8],
    /// The names as written, validated.
    pub names: &'a [u8],
}

/// Names that stay bound to the loopback address whatever the overrides say.
const LOCALHOST_NAMES: [&[u8]; 8] = [
    b"localhost",
    b"localhost.localdomain",
    b"localhost4",
    b"localhost4.localdomain4",
    b"localhost6",
    b"localhost6.localdomain6",
    b"ip6-localhost",
    b"ip6-loopback",
];

/// Whether `name` is one of the localhost names.
fn is_localhost(name: &[u8]) -> bool {
    LOCALHOST_NAMES.iter().any(|l| eq_ignore_case(l, name))
}

/// The whitespace-separated words of `text`.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
}

/// The names a line overrides (localhost names never are).
fn overriding<'a>(line: &Line<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
    words(line.names).filter(|n| !is_localhost(n))
}

/// Checks a host name: 1 to 253 letters, digits, `-`, `.` or `_`, not starting with `-`.
fn check_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name[0] != b'-'
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Validates one `name`/`ip` pair from a flag or the environment; `what` is printed first
/// in the error message.
fn pair<'a>(name: &'a [u8], ip: &'a [u8], what: &[&[u8]], err: &mut Msg) -> Option<Line<'a>> {
    let name = name.trim_ascii();
    let mut ip = ip.trim_ascii();
    if let Some(inner) = ip.strip_prefix(b"[").and_then(|i| i.strip_suffix(b"]")) {
        ip = inner;
    }
    let problem: (&[u8], &[u8], &[u8]) = if name.is_empty() {
        (b": empty host name", b"", b"")
    } else if !check_name(name) {
        (b": invalid host name '", name, b"'")
    } else if is_localhost(name) {
        (b": '", name, b"' cannot be overridden")
    } else if ip == b"host-gateway" {
        (
            b": host-gateway is resolved by the container engine, not by husk-init",
            b"",
            b"",
        )
    } else if !sys::is_ip_address(ip) {
        (b": invalid IP address '", ip, b"'")
    } else {
        return Some(Line { ip, names: name });
    };
    for part in what {
        err.s(part);
    }
    err.s(problem.0).s(problem.1).s(problem.2);
    None
}

/// Parses an `--add-host` value, Docker's syntax: `NAME:IP` or `NAME=IP`, IPv6 optionally in
/// brackets (`db:[::1]`); the name ends at the first `=` if any, else at the first `:`.
pub fn parse_add_host<'a>(arg: &'a [u8], err: &mut Msg) -> Option<Line<'a>> {
    let sep = arg
        .iter()
        .position(|&b| b == b'=')
        .or_else(|| arg.iter().position(|&b| b == b':'));
    match sep {
        Some(at) => pair(&arg[..at], &arg[at + 1..], &[b"--add-host ", arg], err),
        None => {
            err.s(b"--add-host ").s(arg).s(b": expected NAME:IP");
            None
        }
    }
}

/// Parses `HUSK_INIT_HOSTS` (`name=ip` items separated by commas; empty items are skipped)
/// onto `out`.
pub fn parse_env<'a>(value: &'a [u8], out: &mut Vec<Line<'a>>, err: &mut Msg) -> Option<()> {
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        let what: [&[u8]; 3] = [b"HUSK_INIT_HOSTS item '", item, b"'"];
        let Some(at) = item.iter().position(|&b| b == b'=') else {
            err.s(what[0]).s(item).s(b"': expected name=ip");
            return None;
        };
        out.push(pair(&item[..at], &item[at + 1..], &what, err)?);
    }
    Some(())
}

/// Splits a hosts(5) line into its address and the rest, dropping any comment.
fn fields(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let data = match line.iter().position(|&b| b == b'#') {
        Some(hash) => &line[..hash],
        None => line,
    };
    let ip = words(data).next()?;
    // ip is a subslice of data, so its end is an offset into data.
    let end = ip.as_ptr() as usize - data.as_ptr() as usize + ip.len();
    Some((ip, &data[end..]))
}

/// Parses the content of hosts(5) file `path` onto `out`.
pub fn parse_file<'a>(
    content: &'a [u8],
    path: &[u8],
    out: &mut Vec<Line<'a>>,
    err: &mut Msg,
) -> Option<()> {
    for (n, line) in content.split(|&b| b == b'\n').enumerate() {
        let Some((ip, names)) = fields(line) else {
            continue;
        };
        let problem: Option<(&[u8], &[u8])> = if !sys::is_ip_address(ip) {
            Some((b": invalid IP address '", ip))
        } else if words(names).next().is_none() {
            Some((b": no host name after '", ip))
        } else {
            words(names)
                .find(|n| !check_name(n))
                .map(|bad| (&b": invalid host name '"[..], bad))
        };
        if let Some((what, text)) = problem {
            err.s(path)
                .s(b" line ")
                .n(n as i64 + 1)
                .s(what)
                .s(text)
                .s(b"'");
            return None;
        }
        out.push(Line { ip, names });
    }
    Some(())
}

/// The marker line that precedes husk-init's entries in the merged file.
pub const MARKER: &[u8] = b"# husk-init overrides (--add-host, --hosts-file, HUSK_INIT_HOSTS)\n";

/// Merges `overrides` (in source order: later ones win) into the hosts file content `base`.
pub fn merge(base: &[u8], overrides: &[Line<'_>]) -> Vec<u8> {
    let defined_in = |lines: &[Line<'_>], name: &[u8]| {
        lines
            .iter()
            .any(|l| overriding(l).any(|n| eq_ignore_case(n, name)))
    };
    let mut out = Vec::with_capacity(base.len() + 64 * overrides.len() + MARKER.len());
    let mut rest = base;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (&rest[..nl], &rest[nl + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let keep_whole = match fields(line) {
            None => true,
            Some((_, names)) => {
                words(names).any(is_localhost) || !words(names).any(|n| defined_in(overrides, n))
            }
        };
        if keep_whole {
            out.extend_from_slice(line);
            out.push(b'\n');
        } else if let Some((ip, names)) = fields(line) {
            write_line(
                &mut out,
                ip,
                words(names).filter(|n| !defined_in(overrides, n)),
            );
        }
    }
    if overrides.is_empty() {
        return out;
    }
    out.extend_from_slice(MARKER);
    for (i, line) in overrides.iter().enumerate() {
        let later = &overrides[i + 1..];
        write_line(
            &mut out,
            line.ip,
            overriding(line).filter(|n| !defined_in(later, n)),
        );
    }
    out
}

/// Appends one hosts(5) line (the address, a tab, the names separated by spaces), or nothing
/// when there is no name left.
fn write_line<'n>(out: &mut Vec<u8>, ip: &[u8], names: impl Iterator<Item = &'n [u8]>) {
    let mut sep = 0;
    for name in names {
        if sep == 0 {
            out.extend_from_slice(ip);
            sep = b'\t';
        }
        out.push(sep);
        out.extend_from_slice(name);
        sep = b' ';
    }
    if sep != 0 {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l<'a>(ip: &'a str, names: &'a str) -> Line<'a> {
        Line {
            ip: ip.as_bytes(),
            names: names.as_bytes(),
        }
    }

    fn add_host(arg: &str) -> Result<Line<'_>, String> {
        let mut err = Msg::plain();
        parse_add_host(arg.as_bytes(), &mut err)
            .ok_or_else(|| String::from_utf8(err.as_bytes().to_vec()).unwrap())
    }

    fn env(value: &str) -> Result<Vec<Line<'_>>, String> {
        let mut err = Msg::plain();
        let mut out = Vec::new();
        parse_env(value.as_bytes(), &mut out, &mut err)
            .map(|()| out)
            .ok_or_else(|| String::from_utf8(err.as_bytes().to_vec()).unwrap())
    }

    fn file(content: &str) -> Result<Vec<Line<'_>>, String> {
        let mut err = Msg::plain();
        let mut out = Vec::new();
        parse_file(content.as_bytes(), b"/h", &mut out, &mut err)
            .map(|()| out)
            .ok_or_else(|| String::from_utf8(err.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn add_host_syntax() {
        assert_eq!(
            add_host("db.example:10.0.0.5").unwrap(),
            l("10.0.0.5", "db.example")
        );
        assert_eq!(add_host("v6:::1").unwrap(), l("::1", "v6"));
        assert_eq!(
            add_host("v6:[2001:db8::1]").unwrap(),
            l("2001:db8::1", "v6")
        );
        assert_eq!(add_host("eq=fe80::2").unwrap(), l("fe80::2", "eq"));
        assert_eq!(
            add_host("db:999.0.0.1").unwrap_err(),
            "--add-host db:999.0.0.1: invalid IP address '999.0.0.1'"
        );
        assert_eq!(
            add_host(":1.2.3.4").unwrap_err(),
            "--add-host :1.2.3.4: empty host name"
        );
        assert_eq!(
            add_host("nocolon").unwrap_err(),
            "--add-host nocolon: expected NAME:IP"
        );
        assert!(add_host("a b:1.2.3.4")
            .unwrap_err()
            .contains("invalid host name 'a b'"));
        assert!(add_host("localhost:1.2.3.4")
            .unwrap_err()
            .contains("cannot be overridden"));
        assert!(add_host("gw:host-gateway")
            .unwrap_err()
            .contains("host-gateway"));
        assert!(add_host("db:")
            .unwrap_err()
            .contains("invalid IP address ''"));
        assert!(add_host("db:1.2.3")
            .unwrap_err()
            .contains("invalid IP address"));
    }

    #[test]
    fn env_syntax() {
        assert_eq!(
            env("a=1.2.3.4, b=::1,,").unwrap(),
            vec![l("1.2.3.4", "a"), l("::1", "b")]
        );
        assert_eq!(env("").unwrap(), vec![]);
        assert_eq!(
            env("a=1.2.3.4,b").unwrap_err(),
            "HUSK_INIT_HOSTS item 'b': expected name=ip"
        );
        assert!(env("=1.2.3.4").unwrap_err().contains("empty host name"));
        assert!(env("a=1.2.3")
            .unwrap_err()
            .contains("invalid IP address '1.2.3'"));
    }

    #[test]
    fn hosts_file_syntax() {
        let content = "# comment\n127.0.0.1 localhost\n\n10.0.0.5  db db.alias # trailing\n2001:db8::7\tsix\n";
        let lines = file(content).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].ip, b"10.0.0.5");
        assert_eq!(
            words(lines[1].names).collect::<Vec<_>>(),
            [&b"db"[..], b"db.alias"]
        );
        assert_eq!(
            file("ok 1.2.3.4\n").unwrap_err(),
            "/h line 1: invalid IP address 'ok'"
        );
        assert_eq!(
            file("\n\n1.2.3.4\n").unwrap_err(),
            "/h line 3: no host name after '1.2.3.4'"
        );
        assert_eq!(
            file("1.2.3.4 a/b\n").unwrap_err(),
            "/h line 1: invalid host name 'a/b'"
        );
    }

    #[test]
    fn merge_replaces_and_keeps_localhost() {
        let base = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n# keep me\n172.17.0.2\tabc123\n10.9.9.9 db other # c\n10.8.8.8 DB\n";
        let merged = merge(base, &[l("10.0.0.5", "db"), l("10.0.0.6", "abc123 new")]);
        let expected = [
            "127.0.0.1\tlocalhost\n",
            "::1\tlocalhost ip6-localhost ip6-loopback\n",
            "# keep me\n",
            "10.9.9.9\tother\n",
            std::str::from_utf8(MARKER).unwrap(),
            "10.0.0.5\tdb\n",
            "10.0.0.6\tabc123 new\n",
        ]
        .concat();
        assert_eq!(String::from_utf8(merged).unwrap(), expected);
    }

    #[test]
    fn later_overrides_win_and_localhost_is_skipped() {
        let merged = merge(
            b"",
            &[
                l("127.0.0.1", "localhost"),
                l("10.0.0.1", "a b"),
                l("10.0.0.2", "B"),
                l("10.0.0.4", "a"),
            ],
        );
        let expected = [
            std::str::from_utf8(MARKER).unwrap(),
            "10.0.0.2\tB\n",
            "10.0.0.4\ta\n",
        ]
        .concat();
        assert_eq!(String::from_utf8(merged).unwrap(), expected);
    }

    #[test]
    fn merge_without_overrides_is_identity_and_adds_newline() {
        assert_eq!(merge(b"1.2.3.4 a\n", &[]), b"1.2.3.4 a\n");
        assert_eq!(merge(b"1.2.3.4 a", &[]), b"1.2.3.4 a\n");
        assert_eq!(merge(b"\n\n", &[]), b"\n\n");
    }
}
