//! Distributed tracing: W3C Trace Context (`traceparent`) and the spans
//! Nimbus records for the work it does on behalf of a request.
//!
//! How a trace goes through Nimbus: the gateway passes a client's
//! `traceparent` to the runtime (`InvokeRequest::trace`), an event delivery
//! the one stored with its message. The invocation becomes a child span of
//! it (or starts a trace); the outbound HTTP hook and the event producer
//! add the invocation's position to what the guest sends. The record
//! stores trace, span and parent span ids, and `GET /v1/traces/{id}` reads
//! a trace back from the records and the operation spans (optionally also
//! exported over OTLP).

use serde::{Deserialize, Serialize};

/// A position in a trace: the trace and the span that is the parent of
/// whatever happens next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub span_id: String,
    /// Whether the caller sampled it (`01` flag).
    pub sampled: bool,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// A new random span id (16 lowercase hex digits, never all zero).
pub fn new_span_id() -> String {
    random_hex(8)
}

/// A new random id of `bytes` bytes (8 or 16), as lowercase hex, never all
/// zero.
fn random_hex(bytes: usize) -> String {
    let mut raw: [u8; 16] = rand::random();
    if raw[..bytes].iter().all(|&b| b == 0) {
        raw[0] = 1;
    }
    hex_of(&raw[..bytes])
}

/// Lowercase hex of `b`, by table (this runs for every invocation).
fn hex_of(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(b.len() * 2);
    for &x in b {
        out.push(DIGITS[usize::from(x >> 4)]);
        out.push(DIGITS[usize::from(x & 15)]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

impl TraceContext {
    /// Parses a `traceparent` header (version `00`; later versions are read
    /// as `00` by their first four fields, as the spec asks).
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || !version.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        // Flags are two lowercase hex digits (from_str_radix alone would take "+1").
        let flags_ok = flags.len() == 2
            && flags
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || !flags_ok {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_string(),
            span_id: span_id.to_string(),
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace (its root has no parent span yet: `span_id` is the root's).
    pub fn start() -> TraceContext {
        TraceContext {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            sampled: true,
        }
    }

    /// A child position: same trace, a new span id.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            sampled: self.sampled,
        }
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        let mut h = String::with_capacity(55);
        h.push_str("00-");
        h.push_str(&self.trace_id);
        h.push('-');
        h.push_str(&self.span_id);
        h.push_str(if self.sampled { "-01" } else { "-00" });
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::parse(h).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled);
        assert_eq!(t.header(), h);
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
        assert!(TraceContext::parse(&c.header()).is_some());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad:?}");
        }
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceContext::parse(unsampled).unwrap().sampled);
        // A future version with more fields is read by its first four.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
                .is_some()
        );
        let s = TraceContext::start();
        assert_eq!((s.trace_id.len(), s.span_id.len()), (32, 16));
        assert_ne!(TraceContext::start().trace_id, s.trace_id);
    }
}
