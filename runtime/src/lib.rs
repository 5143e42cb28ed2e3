//! husk: a runc-compatible OCI container runtime.
//!
//! The library holds everything the `husk` binary does; `main.rs` only parses the command line.
//! One module per concern, so a reader finds where a runtime-spec field is applied by its name.

pub mod cgroups;
pub mod cli;
pub mod commands;
pub mod config;
pub mod container;
pub mod hooks;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sysctl;
pub mod util;
