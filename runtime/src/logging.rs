//! Error and debug logging in runc's shape: logrus text or JSON lines, to `--log` or stderr.
//!
//! containerd-shim-runc-v2 reads the last `{"level":"error","msg":...}` line of the `--log`
//! file to report why a runtime call failed, so the JSON form must match logrus exactly.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The log line formats runc accepts for `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// logrus text: `time="..." level=error msg="..."`.
    Text,
    /// logrus JSON: `{"level":"error","msg":"...","time":"..."}`.
    Json,
}

/// Where log lines go and which of them are kept.
#[derive(Debug)]
struct Logger {
    path: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the process-wide log destination from the global flags; later calls are ignored.
pub fn init(path: Option<PathBuf>, format: LogFormat, debug: bool) {
    let _ = LOGGER.set(Logger {
        path,
        format,
        debug,
    });
}

/// Whether a `--log` file was given (errors then go there as well as to stderr).
pub fn has_log_file() -> bool {
    LOGGER.get().is_some_and(|l| l.path.is_some())
}

/// Logs an error line.
pub fn error(msg: &str) {
    write("error", msg);
}

/// Logs a warning line.
pub fn warn(msg: &str) {
    write("warning", msg);
}

/// Logs a debug line when `--debug` was given.
pub fn debug(msg: &str) {
    if LOGGER.get().is_some_and(|l| l.debug) {
        write("debug", msg);
    }
}

/// Renders one line in the chosen format.
pub fn format_line(format: LogFormat, level: &str, msg: &str, time: SystemTime) -> String {
    let time = crate::util::rfc3339(time);
    match format {
        LogFormat::Json => {
            let v = serde_json::json!({ "level": level, "msg": msg, "time": time });
            v.to_string()
        }
        LogFormat::Text => {
            let quoted = serde_json::Value::String(msg.to_string()).to_string();
            format!("time=\"{time}\" level={level} msg={quoted}")
        }
    }
}

fn write(level: &str, msg: &str) {
    let default = Logger {
        path: None,
        format: LogFormat::Text,
        debug: false,
    };
    let logger = LOGGER.get().unwrap_or(&default);
    let line = format_line(logger.format, level, msg, SystemTime::now());
    match &logger.path {
        Some(path) => {
            // A log file we cannot write must not hide the error itself: fall back to stderr.
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if written.is_err() {
                eprintln!("{line}");
            }
        }
        None => eprintln!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn json_line_matches_logrus() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let line = format_line(
            LogFormat::Json,
            "error",
            "container \"x\" does not exist",
            t,
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn text_line_quotes_message() {
        let t = UNIX_EPOCH;
        let line = format_line(LogFormat::Text, "error", "a \"b\"", t);
        assert_eq!(
            line,
            "time=\"1970-01-01T00:00:00Z\" level=error msg=\"a \\\"b\\\"\""
        );
    }
}
