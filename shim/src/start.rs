//! The `start` action's protocol with containerd. containerd-shim 0.12 answers the legacy
//! protocol with JSON carrying task API version 3, which containerd 1.6 and 1.7 cannot read
//! (1.6 wants the bare address; 1.7 rejects versions above 2), so this shim speaks it
//! itself: the bare address for every containerd before 2.3 (they all accept it), and the
//! protobuf BootstrapResult for 2.3+'s bootstrap protocol.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result};
use containerd_shim::bootstrap::{BootstrapParams, BootstrapResult, Extension};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::{Config, Flags, Shim, StartOpts};

use crate::shim::HuskShim;

/// Most containerd sends on stdin (runtime options or bootstrap params).
const MAX_INPUT: u64 = 10 << 20;

/// Which reply containerd expects.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Legacy,
    Bootstrap,
}

/// Decodes stdin into start options, as containerd-shim's bootstrap module does (its
/// decoder is private).
fn start_opts(input: &[u8], flags: &Flags) -> (StartOpts, Protocol) {
    if !input.is_empty() {
        if let Ok(p) = BootstrapParams::parse_from_bytes(input) {
            // Legacy runtime options (an Any) also decode as BootstrapParams, but then the
            // identity cannot match the command line.
            if p.instance_id == flags.id && p.namespace == flags.namespace {
                return (p.into(), Protocol::Bootstrap);
            }
        }
    }
    let mut params = BootstrapParams {
        instance_id: flags.id.clone(),
        namespace: flags.namespace.clone(),
        containerd_ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        containerd_grpc_address: flags.address.clone(),
        containerd_binary: flags.publish_binary.clone(),
        ..Default::default()
    };
    if let Ok(any) = Any::parse_from_bytes(input) {
        if !any.type_url.is_empty() {
            params.extensions.push(Extension {
                value: Some(any).into(),
                ..Default::default()
            });
        }
    }
    let mut opts: StartOpts = params.into();
    opts.debug = flags.debug;
    (opts, Protocol::Legacy)
}

fn reply(address: &str, protocol: &Protocol) -> Result<Vec<u8>> {
    match protocol {
        Protocol::Legacy => Ok(address.as_bytes().to_vec()),
        Protocol::Bootstrap => BootstrapResult {
            version: containerd_shim::protos::TASK_API_VERSION,
            address: address.to_string(),
            protocol: "ttrpc".to_string(),
            ..Default::default()
        }
        .write_to_bytes()
        .context("encoding the bootstrap result"),
    }
}

/// Runs the `start` action: prints the address of the shim serving this container.
pub fn run(runtime_id: &str, flags: &Flags) -> Result<()> {
    let mut input = Vec::new();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        stdin
            .lock()
            .take(MAX_INPUT)
            .read_to_end(&mut input)
            .context("reading start parameters from stdin")?;
    }
    let (opts, protocol) = start_opts(&input, flags);
    let mut shim = HuskShim::new(runtime_id, flags, &mut Config::default());
    let address = shim.start_shim(opts).context("starting the shim")?;
    let mut out = std::io::stdout().lock();
    out.write_all(&reply(&address, &protocol)?)
        .context("writing the address")?;
    out.flush().context("writing the address")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::shim::oci::Options;

    fn flags() -> Flags {
        Flags {
            id: "c1".into(),
            namespace: "ns".into(),
            address: "/run/containerd/containerd.sock".into(),
            action: "start".into(),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_options_on_stdin() {
        let o = Options {
            binary_name: "runc".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().expect("encode"),
            ..Default::default()
        };
        let (opts, proto) = start_opts(&any.write_to_bytes().expect("encode"), &flags());
        assert_eq!(proto, Protocol::Legacy);
        assert_eq!(opts.id, "c1");
        let got: Option<Options> = opts.extension().expect("decode");
        assert_eq!(got.map(|o| o.binary_name), Some("runc".to_string()));
        assert_eq!(reply("unix:///x", &proto).expect("reply"), b"unix:///x");
    }

    #[test]
    fn bootstrap_params_are_recognised() {
        let p = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "ns".into(),
            containerd_ttrpc_address: "/x.ttrpc".into(),
            ..Default::default()
        };
        let (opts, proto) = start_opts(&p.write_to_bytes().expect("encode"), &flags());
        assert_eq!(proto, Protocol::Bootstrap);
        assert_eq!(opts.ttrpc_address, "/x.ttrpc");
        let r = BootstrapResult::parse_from_bytes(&reply("unix:///x", &proto).expect("reply"))
            .expect("decode");
        assert_eq!(r.address, "unix:///x");
    }
}
