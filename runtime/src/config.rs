//! husk's runtime-wide configuration: `/etc/husk/config.json`, or the file `HUSK_CONFIG` names.
//!
//! ```json
//! { "procview": { "enable": true } }
//! ```
//!
//! Every key is optional and unknown keys are ignored (a newer file works with an older husk).
//! Most hosts have no file: the lookup is one open(2) failing with ENOENT, nothing is parsed,
//! and it happens once per process. A file that cannot be read or parsed is one warning line
//! and the defaults, never a failed command.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Deserialize;

/// Where the file is unless `HUSK_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/husk/config.json";

/// The configuration; `Default` is what an absent file means.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Config {
    /// Per-container /proc views (docs/procview.md).
    pub procview: Procview,
}

/// The `procview` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Procview {
    /// Serve procview to every container whose annotation `io.husk.procview` is not "false".
    pub enable: bool,
}

/// The configuration of this host, read on first use.
pub fn get() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(load)
}

/// The file's path: `HUSK_CONFIG`, else [`DEFAULT_PATH`].
pub fn path() -> PathBuf {
    std::env::var_os("HUSK_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

fn load() -> Config {
    let path = path();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Config::default(),
        Err(e) => {
            crate::logging::warn(&format!(
                "config {}: {e}; using the defaults",
                path.display()
            ));
            return Config::default();
        }
    };
    parse(&text).unwrap_or_else(|e| {
        crate::logging::warn(&format!(
            "config {}: {e}; using the defaults",
            path.display()
        ));
        Config::default()
    })
}

/// Parses the file's text.
pub fn parse(text: &[u8]) -> Result<Config, serde_json::Error> {
    serde_json::from_slice(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_partial_files_mean_the_defaults() {
        assert_eq!(parse(b"{}").expect("parse"), Config::default());
        assert_eq!(
            parse(br#"{"procview": {}, "later": 1}"#).expect("parse"),
            Config::default()
        );
        assert!(
            parse(br#"{"procview": {"enable": true}}"#)
                .expect("parse")
                .procview
                .enable
        );
        assert!(parse(b"procview = true").is_err());
    }
}
