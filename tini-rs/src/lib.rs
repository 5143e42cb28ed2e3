//! husk-init: a tiny PID 1 for container images and a drop-in for tini.
//!
//! It starts one program, forwards it every signal, reaps every zombie and exits with the
//! program's status; it also explains OOM kills, reloads the program when watched config
//! changes, and installs /etc/hosts overrides. The library is `no_std` (plus `alloc`) so the
//! binary links only libc; unit tests build it with std.
//!
//! Module map: [`init`] is the supervisor loop; [`args`] parses the command line; [`signals`],
//! [`spawn`] and [`reap`] are the PID 1 duties; [`pause`] is the Kubernetes pause process
//! (`--pause`); [`oom`], [`watch`], [`hosts`] and [`etc_hosts`] are the extras; [`sys`] is
//! the only place with `unsafe`; [`log`] prints and [`text`] holds small byte-string helpers; [`signame`] and [`status`] are lookup tables.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod args;
pub mod etc_hosts;
pub mod hosts;
pub mod init;
pub mod log;
pub mod oom;
pub mod pause;
pub mod reap;
pub mod signals;
pub mod signame;
pub mod spawn;
pub mod status;
pub mod sys;
pub mod text;
pub mod watch;

pub use init::run;

/// The `--version` line, in tini's layout so `docker info` can read the commit.
///
/// Docker splits the output at " - " and takes the commit from `git.<commit>`; the first part
/// names husk-init rather than pretending to be tini.
pub const VERSION: &str = concat!(
    "husk-init version ",
    env!("CARGO_PKG_VERSION"),
    " - git.",
    env!("HUSK_INIT_GIT")
);
