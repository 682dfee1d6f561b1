//! What a guest does with Nimbus's services (KV, documents, objects,
//! events): every call is counted for metering, and the first
//! [`MAX_OP_SPANS`] become spans of the invocation's trace.
//!
//! Every host call into a service opens an [`Op`] guard (`Host::op`) that
//! records it when dropped; an early error return counts as failed with no
//! extra code. The [`OpLog`] is shared by the invocation's store state and
//! its tracker, which puts it in the record. A producer send's span id is
//! chosen before the send, so the message's `traceparent` names it and the
//! delivery becomes its child.

use nimbus_core::record::MAX_OP_SPANS;
use nimbus_core::{OpCounts, OpSpan, Service};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

/// The operations of one invocation, shared by its store state (which adds
/// to it) and its tracker (which puts it in the record).
#[derive(Default)]
pub(crate) struct OpLog {
    inner: Mutex<(OpCounts, Vec<OpSpan>)>,
}

impl OpLog {
    /// Everything recorded so far.
    pub(crate) fn take(&self) -> (OpCounts, Vec<OpSpan>) {
        std::mem::take(&mut *self.inner.lock())
    }
}

/// Where an operation is recorded.
#[derive(Clone)]
pub(crate) enum OpSink {
    /// The invocation's own log (a fresh instance).
    Own(Arc<OpLog>),
    /// A shared instance (instance reuse): the log of the oldest request it
    /// serves when the operation ends, else its last one's, else the
    /// store's own. Chosen at the end, as a WASI 0.3 guest's async call may
    /// outlive the request it began under, whose record is then written.
    Shared(Arc<crate::invoke::Shared>, Arc<OpLog>),
}

impl OpSink {
    fn log(&self) -> Arc<OpLog> {
        match self {
            OpSink::Own(log) => log.clone(),
            OpSink::Shared(shared, own) => shared.ops().unwrap_or_else(|| own.clone()),
        }
    }
}

/// One operation in progress; recorded when dropped. It counts as failed
/// unless [`Op::result`] or [`Op::succeeded`] says otherwise, so an early
/// error return needs nothing.
pub struct Op {
    log: OpSink,
    service: Service,
    op: &'static str,
    target: String,
    /// Items it covers (a batch counts each key).
    n: u64,
    span_id: Option<String>,
    start: Instant,
    started_at_us: i64,
    ok: bool,
    /// Its room among the instance's concurrent host calls, if it took one.
    call: Option<HostCall>,
}

impl Op {
    pub(crate) fn start(log: &OpSink, service: Service, op: &'static str, target: &str) -> Op {
        Op {
            log: log.clone(),
            service,
            op,
            target: target.to_string(),
            n: 1,
            span_id: None,
            start: Instant::now(),
            started_at_us: nimbus_store::now_us(),
            ok: false,
            call: None,
        }
    }

    /// Counts it as `n` operations (a batch of `n` keys), at least one.
    pub fn items(mut self, n: usize) -> Op {
        self.n = (n as u64).max(1);
        self
    }

    /// Its span id, chosen now (so what it causes can name it as parent);
    /// `None` if its span will not be kept (the invocation has
    /// [`MAX_OP_SPANS`] already), so nothing names a span that is not
    /// stored. A WASI 0.2 guest's calls run one at a time, so the room
    /// seen here is still there when this one ends; a WASI 0.3 guest's
    /// async calls may overlap, and one that loses the room to another
    /// leaves its id unstored (what it caused then names a missing parent).
    pub fn span_id(&mut self) -> Option<&str> {
        if self.log.log().inner.lock().1.len() >= MAX_OP_SPANS {
            return None;
        }
        Some(
            self.span_id
                .get_or_insert_with(nimbus_core::trace::new_span_id),
        )
    }

    /// Marks it succeeded or failed by its result, and passes the result on.
    pub fn result<T, E>(mut self, r: Result<T, E>) -> Result<T, E> {
        self.ok = r.is_ok();
        r
    }

    /// Marks it succeeded.
    pub fn succeeded(mut self) {
        self.ok = true;
    }

    /// Holds `call` until it ends (see [`crate::GuestCx::host_call`]).
    pub fn hold(&mut self, call: HostCall) {
        self.call = Some(call);
    }
}

/// Room for one host call among those an instance may have in flight at
/// once (WASI 0.3 guests' async calls), held by the call's [`Op`] until it
/// ends, wherever it runs to its end.
pub struct HostCall {
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// Async host calls one instance may have in flight per request it may
/// serve at once (`instance_concurrency`): each holds its arguments or
/// answer in host memory, outside the instance's `memory_mb`, and may hold
/// a database connection.
pub const HOST_CALLS_PER_REQUEST: usize = 16;

/// A call refused because its instance has as many in flight as it may.
#[derive(Debug, thiserror::Error)]
#[error(
    "this instance has {0} host calls in flight, the most it may ({HOST_CALLS_PER_REQUEST} per request it serves at once): await some before starting more"
)]
pub struct TooManyCalls(pub usize);

/// The host calls of one instance (see [`HostCall`]).
pub(crate) struct HostCalls {
    room: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl HostCalls {
    pub(crate) fn new(concurrency: u32) -> HostCalls {
        let max = HOST_CALLS_PER_REQUEST * concurrency.max(1) as usize;
        HostCalls {
            room: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }

    pub(crate) fn take(&self) -> Result<HostCall, TooManyCalls> {
        match self.room.clone().try_acquire_owned() {
            Ok(room) => Ok(HostCall { _room: room }),
            Err(_) => Err(TooManyCalls(self.max)),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let log = self.log.log();
        let mut inner = log.inner.lock();
        inner.0.add(self.service, self.n);
        if inner.1.len() < MAX_OP_SPANS {
            let span = OpSpan {
                span_id: self
                    .span_id
                    .take()
                    .unwrap_or_else(nimbus_core::trace::new_span_id),
                service: self.service,
                op: self.op.to_string(),
                target: std::mem::take(&mut self.target),
                started_at_us: self.started_at_us,
                duration_us: self.start.elapsed().as_micros() as i64,
                ok: self.ok,
            };
            inner.1.push(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_op_and_keeps_the_first_spans() {
        let own = Arc::new(OpLog::default());
        let log = OpSink::Own(own.clone());
        let ok: Result<(), ()> = Op::start(&log, Service::Kv, "get", "s").result(Ok(()));
        assert!(ok.is_ok());
        drop(Op::start(&log, Service::Docs, "put", "c")); // an early error return
        Op::start(&log, Service::Kv, "get_many", "s")
            .items(3)
            .succeeded();
        for _ in 0..MAX_OP_SPANS {
            Op::start(&log, Service::Objects, "get", "b").succeeded();
        }
        let (counts, spans) = own.take();
        assert_eq!(counts.kv, 4);
        assert_eq!(counts.docs, 1);
        assert_eq!(counts.objects, MAX_OP_SPANS as u64);
        assert_eq!(spans.len(), MAX_OP_SPANS);
        assert!(spans[0].ok && !spans[1].ok && spans[2].ok);
        assert_eq!(
            (spans[1].service, spans[1].op.as_str()),
            (Service::Docs, "put")
        );
        assert_ne!(spans[0].span_id, spans[1].span_id);
        assert!(own.take().1.is_empty());
        // A span that will not be kept has no id to hand out.
        let mut full = Op::start(&log, Service::Events, "send", "q");
        assert!(full.span_id().is_some());
        drop(full);
        for _ in 1..MAX_OP_SPANS {
            Op::start(&log, Service::Kv, "get", "s").succeeded();
        }
        assert!(
            Op::start(&log, Service::Events, "send", "q")
                .span_id()
                .is_none()
        );
    }

    #[test]
    fn an_instance_has_room_for_so_many_host_calls() {
        let calls = HostCalls::new(2);
        let held: Vec<_> = (0..2 * HOST_CALLS_PER_REQUEST)
            .map(|_| calls.take().expect("room"))
            .collect();
        let refused = calls.take().err().expect("full");
        assert!(
            refused.to_string().contains("32 host calls in flight"),
            "{refused}"
        );
        drop(held);
        assert!(calls.take().is_ok());
    }
}
