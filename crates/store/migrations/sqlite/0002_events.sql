-- Events: every message (queue message, topic copy, async invocation,
-- schedule tick) is one row that waits in a channel of its app until its
-- consumer leases it. PostgreSQL: seq BIGSERIAL, body BYTEA; the partial
-- indexes and UPDATE ... RETURNING are the same.

CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    app          TEXT NOT NULL,
    channel      TEXT NOT NULL,
    -- queued | running | failed (waiting for a retry) | succeeded | dead
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    lease_until  BIGINT,
    group_key    TEXT,
    function     TEXT,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
-- Waiting messages of a channel, oldest first: what a lease scans.
CREATE INDEX messages_pending ON messages (app, channel, seq)
    WHERE state IN ('queued', 'failed');
-- FIFO groups: is an older message of the group still unfinished?
CREATE INDEX messages_groups ON messages (app, channel, group_key, seq)
    WHERE group_key IS NOT NULL AND state IN ('queued', 'failed', 'running');
CREATE INDEX messages_running ON messages (lease_until) WHERE state = 'running';
CREATE INDEX messages_by_function ON messages (app, function, state, seq);
CREATE INDEX messages_done ON messages (updated_at) WHERE state = 'succeeded';

-- Idempotency keys seen recently, per channel.
CREATE TABLE message_keys (
    app        TEXT NOT NULL,
    channel    TEXT NOT NULL,
    key        TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app, channel, key)
);

-- The last tick each schedule fired (ms since the epoch).
CREATE TABLE schedules (
    app       TEXT NOT NULL,
    name      TEXT NOT NULL,
    last_tick BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);

ALTER TABLE invocations ADD COLUMN event_id TEXT;
ALTER TABLE invocations ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
CREATE INDEX invocations_by_event ON invocations (event_id) WHERE event_id IS NOT NULL;
