//! Events to containerd, through a queue that survives containerd restarts: one thread
//! forwards envelopes in order over ttrpc (`TTRPC_ADDRESS`), reconnecting with backoff while
//! containerd is away, so a TaskExit that happened while containerd was down is delivered
//! when it comes back. Events older than [`MAX_AGE`] are dropped with a log line.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::{self, context};
use containerd_shim::protos::{Client, EventsClient};

use crate::process::unix_parts;

/// How long an undelivered event is kept (containerd restarts take seconds; an upgrade
/// a bit more).
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the connection to containerd stays open with nothing to send. Events come in
/// bursts (create and start, exit and delete) and the ttrpc client keeps two threads while
/// connected, so a shim that idles for its container's whole life closes it.
const IDLE: Duration = Duration::from_secs(2);

struct Pending {
    req: ForwardRequest,
    queued: Instant,
}

/// Handle for publishing; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    tx: Sender<Pending>,
    namespace: String,
    /// Number of events queued and not yet delivered (or dropped), for `flush`.
    inflight: Arc<(Mutex<usize>, Condvar)>,
}

/// An event's protobuf type name, which containerd reads from the envelope's type_url.
///
/// Constants rather than protobuf reflection (`descriptor().full_name()`): the first call of
/// the latter builds the descriptor tables of every file the message's file imports, ~0.3 MB
/// of heap for the shim's whole life (docs/shim-design.md, "Memory").
pub trait TypeName {
    /// The fully qualified name, e.g. `containerd.events.TaskExit`.
    const TYPE_NAME: &'static str;
}

macro_rules! event_type_names {
    ($($t:ident),* $(,)?) => {
        $(impl TypeName for containerd_shim::protos::events::task::$t {
            const TYPE_NAME: &'static str = concat!("containerd.events.", stringify!($t));
        })*
    };
}

event_type_names!(
    TaskCreate,
    TaskStart,
    TaskDelete,
    TaskIO,
    TaskExit,
    TaskOOM,
    TaskExecAdded,
    TaskExecStarted,
    TaskPaused,
    TaskResumed,
    TaskCheckpointed,
);

fn to_any<E: Message + TypeName>(event: &E) -> Option<Any> {
    let mut any = Any::new();
    any.value = event.write_to_bytes().ok()?;
    any.type_url = E::TYPE_NAME.to_string();
    Some(any)
}

impl Publisher {
    /// Starts the forwarding thread for containerd's ttrpc `address`.
    pub fn new(address: String, namespace: String) -> Publisher {
        let (tx, rx) = mpsc::channel();
        let inflight = Arc::new((Mutex::new(0usize), Condvar::new()));
        let counter = inflight.clone();
        let _ = thread::Builder::new()
            .name("publisher".into())
            .spawn(move || forward_loop(&address, rx, &counter));
        Publisher {
            tx,
            namespace,
            inflight,
        }
    }

    /// Queues `event` (a TaskExit, TaskCreate, ...) for containerd.
    pub fn publish<E: Event + Message + TypeName>(&self, event: E) {
        let topic = event.topic();
        let Some(any) = to_any(&event) else {
            log::error!("cannot encode event {topic}");
            return;
        };
        let mut env = Envelope::new();
        let (secs, nanos) = unix_parts(std::time::SystemTime::now());
        env.timestamp = containerd_shim::protos::protobuf::MessageField::some(
            containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp {
                seconds: secs,
                nanos,
                ..Default::default()
            },
        );
        env.namespace = self.namespace.clone();
        env.topic = topic;
        env.event = containerd_shim::protos::protobuf::MessageField::some(any);
        let mut req = ForwardRequest::new();
        req.envelope = containerd_shim::protos::protobuf::MessageField::some(env);
        {
            let (n, _) = &*self.inflight;
            if let Ok(mut n) = n.lock() {
                *n += 1;
            }
        }
        if self
            .tx
            .send(Pending {
                req,
                queued: Instant::now(),
            })
            .is_err()
        {
            done(&self.inflight);
        }
    }

    /// Waits until every queued event was delivered (or given up), at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (n, cv) = &*self.inflight;
        let deadline = Instant::now() + timeout;
        let Ok(mut g) = n.lock() else { return false };
        while *g > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match cv.wait_timeout(g, deadline - now) {
                Ok((ng, _)) => g = ng,
                Err(_) => return false,
            }
        }
        true
    }
}

fn done(inflight: &Arc<(Mutex<usize>, Condvar)>) {
    let (n, cv) = &**inflight;
    if let Ok(mut g) = n.lock() {
        *g = g.saturating_sub(1);
        cv.notify_all();
    }
}

fn connect(address: &str) -> Result<EventsClient, String> {
    let fd = containerd_shim::util::connect(address).map_err(|e| e.to_string())?;
    let client = Client::new(fd).map_err(|e: ttrpc::Error| e.to_string())?;
    Ok(EventsClient::new(client))
}

fn forward_loop(address: &str, rx: Receiver<Pending>, inflight: &Arc<(Mutex<usize>, Condvar)>) {
    let mut client: Option<EventsClient> = None;
    loop {
        let wait = if client.is_some() {
            IDLE
        } else {
            Duration::from_secs(3600)
        };
        let ev = match rx.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                client = None;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            if ev.queued.elapsed() > MAX_AGE {
                log::warn!(
                    "dropping event {} after {:?}: containerd unreachable",
                    ev.req.envelope.topic,
                    MAX_AGE
                );
                break;
            }
            if client.is_none() {
                match connect(address) {
                    Ok(c) => client = Some(c),
                    Err(e) => log::debug!("connecting to containerd at {address}: {e}"),
                }
            }
            if let Some(c) = &client {
                let ctx = context::with_timeout(
                    i64::try_from(RPC_TIMEOUT.as_nanos()).unwrap_or(i64::MAX),
                );
                match c.forward(ctx, &ev.req) {
                    Ok(_) => break,
                    Err(e) => {
                        log::warn!("publishing {}: {e}", ev.req.envelope.topic);
                        client = None;
                    }
                }
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        done(inflight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::events::task::*;
    use containerd_shim::protos::protobuf::MessageFull;

    fn reflected<E: MessageFull + TypeName>() {
        assert_eq!(E::TYPE_NAME, E::descriptor().full_name());
    }

    #[test]
    fn type_names_match_the_descriptors() {
        reflected::<TaskCreate>();
        reflected::<TaskStart>();
        reflected::<TaskDelete>();
        reflected::<TaskIO>();
        reflected::<TaskExit>();
        reflected::<TaskOOM>();
        reflected::<TaskExecAdded>();
        reflected::<TaskExecStarted>();
        reflected::<TaskPaused>();
        reflected::<TaskResumed>();
        reflected::<TaskCheckpointed>();
    }
}
