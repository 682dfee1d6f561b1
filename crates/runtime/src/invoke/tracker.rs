//! The tracker of one invocation: shared by the guest task and the
//! response body, it collects what the record needs and emits the record
//! when both are done (its last `Arc` drops).

use super::*;
pub(super) struct End {
    pub(super) duration: Duration,
    pub(super) outcome: Outcome,
    pub(super) error: Option<String>,
}

/// Shared by the guest task and the response body; the record is emitted
/// when both are done (the last `Arc` drops).
pub(super) struct Tracker {
    pub(super) id: String,
    pub(super) app: String,
    pub(super) function: String,
    pub(super) revision: i64,
    pub(super) trigger: &'static str,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) event_id: Option<String>,
    pub(super) attempt: u32,
    pub(super) memory_mb: u32,
    pub(super) peak_memory: Arc<AtomicU64>,
    pub(super) cold: bool,
    pub(super) trace: nimbus_core::trace::TraceContext,
    pub(super) parent_span_id: Option<String>,
    /// Request headers, kept for replay if it fails (credentials are
    /// dropped then).
    pub(super) headers: http::HeaderMap,
    /// The start of the request body, likewise.
    pub(super) input: Mutex<Vec<u8>>,
    pub(super) input_limit: usize,
    /// Whether a failure keeps the request for replay.
    pub(super) keep_input: bool,
    /// Whether the body was read to its end within `input_limit`.
    pub(super) input_complete: std::sync::atomic::AtomicBool,
    pub(super) started_at_us: i64,
    pub(super) start: Instant,
    pub(super) status: AtomicU16,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) end: Mutex<Option<End>>,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
    pub(super) config: Arc<ConfigSnapshot>,
    /// The guest's calls to Nimbus services.
    pub(super) ops: Arc<crate::ops::OpLog>,
    pub(super) sink: RecordSink,
}

impl Tracker {
    pub(super) fn finish(&self, outcome: Outcome, error: Option<String>) {
        let mut end = self.end.lock();
        if end.is_none() {
            *end = Some(End {
                duration: self.start.elapsed(),
                outcome,
                error,
            });
        }
    }

    /// Overrides how the invocation ended (the guest's own end said "ok").
    pub(super) fn set_end(&self, outcome: Outcome, error: Option<String>) {
        if let Some(end) = self.end.lock().as_mut() {
            end.outcome = outcome;
            end.error = error;
        }
    }

    /// How it ended, as far as set: the outcome and its error text (an
    /// error, if nothing set its end).
    pub(super) fn end_now(&self) -> (Outcome, String) {
        match self.end.lock().as_ref() {
            Some(e) => (e.outcome, e.error.clone().unwrap_or_default()),
            None => (Outcome::Error, "ended without a response".into()),
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.end
            .lock()
            .as_ref()
            .is_some_and(|e| e.outcome != Outcome::Ok)
    }

    /// The error a response body must end with if the invocation failed.
    pub(super) fn failure(&self) -> Option<wasmtime_wasi_http::Error> {
        let end = self.end.lock();
        let end = end.as_ref().filter(|e| e.outcome != Outcome::Ok)?;
        Some(wasmtime_wasi_http::Error::InternalError(end.error.clone()))
    }
}

impl Tracker {
    /// The request as kept for replay, secret values redacted.
    pub(super) fn stored_input(&mut self) -> Box<StoredInput> {
        let mut body = std::mem::take(self.input.get_mut());
        if let Ok(mut text) = String::from_utf8(body.clone()) {
            self.config.redact(&mut text);
            body = text.into_bytes();
        }
        let headers = self
            .headers
            .iter()
            .filter(|(k, _)| !nimbus_core::record::is_credential_header(k.as_str()))
            .map(|(k, v)| {
                let mut v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                self.config.redact(&mut v);
                (k.to_string(), v)
            })
            .collect();
        let mut path = self.path.clone();
        nimbus_core::record::redact_query(&mut path);
        self.config.redact(&mut path);
        Box::new(StoredInput {
            method: self.method.clone(),
            path,
            headers,
            body,
            complete: self.input_complete.load(Ordering::Relaxed),
        })
    }

    /// Guest output with every secret value replaced: secrets never reach
    /// the logs, even if a guest prints them.
    pub(super) fn redacted(&self, mut text: String) -> String {
        self.config.redact(&mut text);
        text
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // Every way an invocation ends records it, but one: its request was
        // dropped before the response started (the client went away, or
        // the server is shutting down), which dropped the instance too.
        let end = self.end.lock().take().unwrap_or_else(|| End {
            duration: self.start.elapsed(),
            outcome: Outcome::Error,
            error: Some(
                "the request was cancelled before the response started (the client went away, or the server shut down), so the function was stopped"
                    .into(),
            ),
        });
        let status = self.status.load(Ordering::Relaxed);
        let failed = end.outcome != Outcome::Ok || status >= 500;
        let input = (failed && self.keep_input).then(|| self.stored_input());
        let (ops, op_spans) = self.ops.take();
        (self.sink)(InvocationRecord {
            id: std::mem::take(&mut self.id),
            app: std::mem::take(&mut self.app),
            function: std::mem::take(&mut self.function),
            revision: self.revision,
            trigger: self.trigger.to_string(),
            method: std::mem::take(&mut self.method),
            path: {
                let mut path = std::mem::take(&mut self.path);
                nimbus_core::record::redact_query(&mut path);
                self.config.redact(&mut path);
                path
            },
            started_at_us: self.started_at_us,
            duration_us: end.duration.as_micros() as i64,
            status: self.status.load(Ordering::Relaxed),
            outcome: end.outcome,
            error: end.error.map(|e| self.redacted(e)),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            event_id: self.event_id.take(),
            attempt: self.attempt,
            memory_mb: self.memory_mb,
            peak_memory_bytes: self.peak_memory.load(Ordering::Relaxed),
            cold: self.cold,
            input,
            ops,
            op_spans,
            trace_id: std::mem::take(&mut self.trace.trace_id),
            span_id: std::mem::take(&mut self.trace.span_id),
            parent_span_id: self.parent_span_id.take(),
            stdout: self.redacted(self.stdout.text()),
            stderr: self.redacted(self.stderr.text()),
        });
    }
}
