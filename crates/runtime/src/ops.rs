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

/// One operation in progress; recorded when dropped. It counts as failed
/// unless [`Op::result`] or [`Op::succeeded`] says otherwise, so an early
/// error return needs nothing.
pub struct Op {
    log: Arc<OpLog>,
    service: Service,
    op: &'static str,
    target: String,
    /// Items it covers (a batch counts each key).
    n: u64,
    span_id: Option<String>,
    start: Instant,
    started_at_us: i64,
    ok: bool,
}

impl Op {
    pub(crate) fn start(log: &Arc<OpLog>, service: Service, op: &'static str, target: &str) -> Op {
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
    /// stored. A guest's calls run one at a time, so the room seen here is
    /// still there when this one ends.
    pub fn span_id(&mut self) -> Option<&str> {
        if self.log.inner.lock().1.len() >= MAX_OP_SPANS {
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
}

impl Drop for Op {
    fn drop(&mut self) {
        let mut inner = self.log.inner.lock();
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
        let log = Arc::new(OpLog::default());
        let ok: Result<(), ()> = Op::start(&log, Service::Kv, "get", "s").result(Ok(()));
        assert!(ok.is_ok());
        drop(Op::start(&log, Service::Docs, "put", "c")); // an early error return
        Op::start(&log, Service::Kv, "get_many", "s")
            .items(3)
            .succeeded();
        for _ in 0..MAX_OP_SPANS {
            Op::start(&log, Service::Objects, "get", "b").succeeded();
        }
        let (counts, spans) = log.take();
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
        assert!(log.take().1.is_empty());
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
}
