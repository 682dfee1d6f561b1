-- Distributed tracing: each invocation is a span of a trace (W3C Trace
-- Context ids), with the span that caused it.

ALTER TABLE invocations ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
ALTER TABLE invocations ADD COLUMN span_id TEXT NOT NULL DEFAULT '';
ALTER TABLE invocations ADD COLUMN parent_span_id TEXT;
CREATE INDEX invocations_by_trace ON invocations (trace_id);
