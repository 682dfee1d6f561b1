-- Metering: what each invocation is billed for, and hourly aggregates per
-- function (kept after the raw records are pruned), written in the same
-- transaction as the records they sum.

ALTER TABLE invocations ADD COLUMN memory_mb BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN peak_memory BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN cold BIGINT NOT NULL DEFAULT 0;

CREATE TABLE usage_hourly (
    app         TEXT NOT NULL,
    function    TEXT NOT NULL,
    hour        BIGINT NOT NULL,   -- start of the hour, µs since the epoch
    invocations BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    mb_us       BIGINT NOT NULL,   -- memory limit (MiB) × duration (µs)
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    cold_starts BIGINT NOT NULL,
    PRIMARY KEY (app, function, hour)
);
