//! The events capability's guest side: `nimbus:events/producer` (see
//! `wit/events.wit`), through which guests send messages to their app's
//! queues and topics with no network hop. A guest reaches only its own
//! app's queues and topics: its instance state names the app, not the
//! guest. A send's span becomes the parent of the delivery's
//! (`traceparent`).
//!
//! The runtime is built before the engine (which delivers through it), so
//! the [`Producer`] handed to `Runtime::new` is connected by
//! [`crate::Events::start`]; until then, and after the engine stops, a
//! send fails with `unavailable`.

use super::{EventError, Outgoing, Shared};
use http::HeaderValue;
use nimbus_core::Service;
use nimbus_runtime::{GuestCapability, GuestCx, HasCx, Host, HostCall, InstanceCx, Op};
use std::any::Any;
use std::sync::{Arc, OnceLock, Weak};
use wasmtime::component::Linker;

wasmtime::component::bindgen!({
    path: "../../wit/events.wit",
    world: "host",
    imports: { default: async },
});

use nimbus::events::producer::{self, Error as ProduceError, Message as GuestMessage};

/// The events capability's guest side, connected to the engine once it
/// starts.
#[derive(Clone, Default)]
pub struct Producer(Arc<OnceLock<Weak<Shared>>>);

impl Producer {
    pub fn new() -> Producer {
        Producer::default()
    }

    /// Sends go to `shared` from now on.
    pub(crate) fn connect(&self, shared: &Arc<Shared>) {
        let _ = self.0.set(Arc::downgrade(shared));
    }
}

/// One instance's state: the engine, its app, its trace position.
pub struct ProducerState {
    engine: Arc<OnceLock<Weak<Shared>>>,
    app: Arc<str>,
    /// The invocation's own `traceparent`.
    traceparent: Option<HeaderValue>,
}

pub(crate) type Cx<'a> = GuestCx<'a, ProducerState>;

impl GuestCapability for Producer {
    fn name(&self) -> &'static str {
        "events"
    }

    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        producer::add_to_linker::<Host, HasCx<ProducerState>>(
            linker,
            Host::capability::<ProducerState>,
        )?;
        crate::guest3::link(linker)
    }

    fn instance(&self, cx: &InstanceCx<'_>) -> Box<dyn Any + Send> {
        Box::new(ProducerState {
            engine: self.0.clone(),
            app: cx.function.app_name().clone(),
            traceparent: cx.traceparent.cloned(),
        })
    }
}

impl ProducerState {
    /// The call `op` (a send or a publish) to `target`, with what it needs
    /// cloned out of the instance: the WASI 0.2 binding awaits it in place,
    /// the WASI 0.3 one (`guest3`) after leaving the store. Its span id
    /// is chosen now, so the message's `traceparent` names it.
    pub(crate) fn call(cx: &Cx<'_>, op: &'static str, target: &str) -> SendCall {
        let mut op = cx.op(Service::Events, op, target);
        let s = &*cx.state;
        SendCall {
            traceparent: s.trace(op.span_id()),
            engine: s.engine(),
            app: s.app.clone(),
            op,
        }
    }

    fn engine(&self) -> Result<Arc<Shared>, ProduceError> {
        match self.engine.get() {
            None => Err(ProduceError::Unavailable(
                "this Nimbus server has no events engine".into(),
            )),
            Some(w) => w
                .upgrade()
                .ok_or_else(|| ProduceError::Unavailable("the events engine has stopped".into())),
        }
    }

    /// The `traceparent` of a send whose span is `span_id`: a child of the
    /// invocation's span (or of the invocation itself, if the send's span
    /// is not kept).
    fn trace(&self, span_id: Option<&str>) -> Option<String> {
        let tp = self.traceparent.as_ref()?.to_str().ok()?;
        let mut t = nimbus_core::trace::TraceContext::parse(tp)?;
        if let Some(id) = span_id {
            t.span_id = id.to_string();
        }
        Some(t.header())
    }
}

/// One send or publish (see [`ProducerState::call`]).
pub(crate) struct SendCall {
    op: Op,
    engine: Result<Arc<Shared>, ProduceError>,
    app: Arc<str>,
    traceparent: Option<String>,
}

/// What a call answers: the WASI 0.2 binding's types.
pub(crate) use producer::{Error as WitError, Message as WitMessage};

impl SendCall {
    /// Holds `room` (an async call's place among its instance's) until
    /// the call ends.
    pub(crate) fn holding(mut self, room: HostCall) -> Self {
        self.op.hold(room);
        self
    }

    pub(crate) async fn send(self, queue: &str, m: GuestMessage) -> Result<String, ProduceError> {
        let engine = self.engine?;
        let r = engine
            .send(&self.app, queue, outgoing(m, self.traceparent))
            .await;
        self.op.result(r.map(|r| r.id).map_err(produce_error))
    }

    pub(crate) async fn publish(
        self,
        topic: &str,
        m: GuestMessage,
    ) -> Result<Vec<String>, ProduceError> {
        let engine = self.engine?;
        let r = engine
            .publish(&self.app, topic, outgoing(m, self.traceparent))
            .await;
        self.op.result(
            r.map(|r| r.into_iter().map(|r| r.id).collect())
                .map_err(produce_error),
        )
    }
}

fn outgoing(m: GuestMessage, traceparent: Option<String>) -> Outgoing {
    Outgoing {
        body: m.body,
        content_type: m.content_type,
        ce_type: m.type_,
        group: m.group,
        idempotency_key: m.idempotency_key,
        traceparent,
        ..Default::default()
    }
}

fn produce_error(e: EventError) -> ProduceError {
    match e {
        EventError::NotFound(m) => ProduceError::UnknownTarget(m),
        EventError::TooLarge(m) => ProduceError::TooLarge(m),
        EventError::Invalid(m) => ProduceError::Invalid(m),
        EventError::Unavailable(m) => ProduceError::Unavailable(m),
    }
}

impl producer::Host for Cx<'_> {
    async fn send(&mut self, queue: String, message: GuestMessage) -> Result<String, ProduceError> {
        let c = ProducerState::call(self, "send", &queue);
        c.send(&queue, message).await
    }

    async fn publish(
        &mut self,
        topic: String,
        message: GuestMessage,
    ) -> Result<Vec<String>, ProduceError> {
        let c = ProducerState::call(self, "publish", &topic);
        c.publish(&topic, message).await
    }
}
