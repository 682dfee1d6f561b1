//! The `nimbus:events/producer` host interface (see `wit/events.wit`):
//! guests send messages to their app's queues and topics with no network
//! hop. The runtime only carries the call; an [`EventProducer`] (the events
//! engine) stores the message, so the runtime never depends on the events
//! crate. A guest reaches only its own app's queues and topics (the binding
//! names the app, not the guest).

use crate::host::Host;
use futures::future::BoxFuture;
use nimbus_core::Service;
use std::sync::Arc;

wasmtime::component::bindgen!({
    path: "../../wit/events.wit",
    world: "host",
    imports: { default: async },
});

pub use nimbus::events::producer::{Error as ProduceError, Message as GuestMessage};

/// Stores what guests send. Implemented by the events engine.
pub trait EventProducer: Send + Sync {
    /// Sends `msg` to queue `queue` of `app`; the message id. `trace` is
    /// the send's position in the sender's trace (a `traceparent`), which
    /// the delivery continues.
    fn send(
        &self,
        app: &str,
        queue: &str,
        msg: GuestMessage,
        trace: Option<String>,
    ) -> BoxFuture<'static, Result<String, ProduceError>>;
    /// Publishes `msg` to topic `topic` of `app`; the copies' ids.
    fn publish(
        &self,
        app: &str,
        topic: &str,
        msg: GuestMessage,
        trace: Option<String>,
    ) -> BoxFuture<'static, Result<Vec<String>, ProduceError>>;
}

/// What a guest's calls are bound to: its app and the producer.
#[derive(Clone)]
pub(crate) struct EventsBinding {
    pub(crate) app: Arc<str>,
    pub(crate) producer: Option<Arc<dyn EventProducer>>,
    /// The invocation's own `traceparent`.
    pub(crate) traceparent: Option<http::HeaderValue>,
}

impl EventsBinding {
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

fn unavailable() -> ProduceError {
    ProduceError::Unavailable("this Nimbus server has no events engine".into())
}

impl nimbus::events::producer::Host for Host {
    async fn send(&mut self, queue: String, message: GuestMessage) -> Result<String, ProduceError> {
        let mut op = self.op(Service::Events, "send", &queue);
        let b = &self.events;
        let trace = b.trace(op.span_id());
        op.result(match &b.producer {
            Some(p) => p.send(&b.app, &queue, message, trace).await,
            None => Err(unavailable()),
        })
    }

    async fn publish(
        &mut self,
        topic: String,
        message: GuestMessage,
    ) -> Result<Vec<String>, ProduceError> {
        let mut op = self.op(Service::Events, "publish", &topic);
        let b = &self.events;
        let trace = b.trace(op.span_id());
        op.result(match &b.producer {
            Some(p) => p.publish(&b.app, &topic, message, trace).await,
            None => Err(unavailable()),
        })
    }
}

/// Adds the interface to a linker.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<Host>,
) -> wasmtime::Result<()> {
    nimbus::events::producer::add_to_linker::<Host, wasmtime::component::HasSelf<Host>>(
        linker,
        |h| h,
    )
}
