//! containerd-shim-husk-v2: the containerd shim v2 for husk.
//!
//! The shim is not built yet (see issue "containerd-shim-husk-v2"): until it is, this binary
//! refuses every action so containerd reports a clear error instead of hanging.

fn main() {
    eprintln!(
        "containerd-shim-husk-v2 {}: the shim is not built yet; use containerd-shim-runc-v2 with BinaryName=husk",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(1);
}
