-- Metering of Nimbus's services: operations on KV, documents, objects and
-- events per function and hour (function '(api)': clients over REST and
-- S3), the spans of guests' operations in their traces, and stored bytes
-- per app sampled over time (byte-seconds per hour: GB-hours).

ALTER TABLE usage_hourly ADD COLUMN kv_ops BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN doc_ops BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN object_ops BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN event_ops BIGINT NOT NULL DEFAULT 0;

CREATE TABLE op_spans (
    invocation_id TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    span_id       TEXT NOT NULL,
    service       TEXT NOT NULL,
    op            TEXT NOT NULL,
    target        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    duration_us   BIGINT NOT NULL,
    ok            BIGINT NOT NULL
);
CREATE INDEX op_spans_by_trace ON op_spans (trace_id);
CREATE INDEX op_spans_by_invocation ON op_spans (invocation_id);

CREATE TABLE storage_hourly (
    app                 TEXT NOT NULL,
    hour                BIGINT NOT NULL,   -- start of the hour, µs since the epoch
    kv_byte_seconds     BIGINT NOT NULL,
    doc_byte_seconds    BIGINT NOT NULL,
    object_byte_seconds BIGINT NOT NULL,
    kv_bytes            BIGINT NOT NULL,   -- at the hour's last sample
    doc_bytes           BIGINT NOT NULL,
    object_bytes        BIGINT NOT NULL,
    sampled_at          BIGINT NOT NULL,
    PRIMARY KEY (app, hour)
);
