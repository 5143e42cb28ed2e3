//! containerd-shim-husk-v2: the containerd shim v2 for husk (`io.containerd.husk.v2`).
//!
//! containerd runs this binary with `start` (spawn or reuse a shim daemon, print its address),
//! with no action (be the daemon: a ttrpc Task service) and with `delete` (clean up after a
//! daemon that died). It drives the runtime binary (`husk` beside this binary or on PATH, or
//! `BinaryName` from the runtime options) exactly as containerd-shim-runc-v2 drives runc.
//! See docs/shim-design.md.

mod cgroup;
mod container;
mod daemon;
mod error;
mod logger;
mod oom;
mod options;
mod persist;
mod process;
mod publisher;
mod runtime;
mod service;
mod shim;
mod start;
mod stats;
mod stdio;

/// The runtime type containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.husk.v2";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // `start` and the daemon are run here (see start.rs and daemon.rs for why);
    // `delete`, `-info` and `-version` go through containerd-shim.
    if let Ok(flags) = containerd_shim::parse(&args) {
        if !flags.namespace.is_empty() && !flags.info && !flags.version {
            let res = match flags.action.as_str() {
                "start" => Some(start::run(RUNTIME_ID, &flags)),
                "" => Some(daemon::run(RUNTIME_ID, &flags)),
                _ => None,
            };
            if let Some(res) = res {
                if let Err(e) = res {
                    eprintln!("{RUNTIME_ID}: {e:#}");
                    log::error!("{e:#}");
                    std::process::exit(1);
                }
                return;
            }
        }
    }
    containerd_shim::run::<shim::HuskShim>(RUNTIME_ID, None);
}
