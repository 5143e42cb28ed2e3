//! Small helpers shared by several commands: RFC 3339 timestamps and process identity.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats a time as RFC 3339 in UTC with nanoseconds, the way Go's time.RFC3339Nano does for runc.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, clock) = civil(d.as_secs());
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{date}T{clock}Z");
    }
    // Go trims trailing zeros of the fraction in RFC3339Nano.
    let frac = format!("{nanos:09}");
    format!("{date}T{clock}.{}Z", frac.trim_end_matches('0'))
}

/// Formats a time as RFC 3339 in UTC to the second, as logrus writes `time=` fields.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (date, clock) = civil(secs);
    format!("{date}T{clock}Z")
}

/// Splits seconds since the epoch into a `YYYY-MM-DD` date and an `HH:MM:SS` clock.
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm: exact for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// The start time of a process (field 22 of /proc/PID/stat, in clock ticks since boot).
///
/// Stored with the container's pid so a recycled pid is never mistaken for the container.
/// Returns None when the process does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 22)
}

/// The one-letter state of a process (field 3 of /proc/PID/stat), None if it does not exist.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// Field `n` (1-based, as proc(5) numbers them) of a /proc/PID/stat line.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(n - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_400_000);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.1234Z");
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        assert_eq!(stat_field(stat, 22), Some(777));
        assert_eq!(stat_field(stat, 4), Some(1));
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        // The harness's main thread sleeps while tests run: any live state will do.
        assert!(process_state(me).is_some_and(|s| s != 'Z'));
    }
}
