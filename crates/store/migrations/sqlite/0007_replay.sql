-- Inputs of failed invocations, kept for replay (credentials removed and
-- secret values redacted by the runtime; the body bounded). Pruned with the
-- invocation records.

CREATE TABLE failed_inputs (
    invocation_id TEXT PRIMARY KEY,
    app           TEXT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    headers       TEXT NOT NULL,
    body          BLOB NOT NULL,
    complete      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX failed_inputs_by_time ON failed_inputs (created_at);
