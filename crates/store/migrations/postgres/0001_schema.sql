-- The whole schema on PostgreSQL: the same tables, columns and indexes as
-- migrations/sqlite/0001..0009, with PostgreSQL's types (BIGSERIAL, BYTEA,
-- JSONB). Keys that are listed in order (KV keys, object keys, document
-- ids) use the "C" collation: byte order, as on SQLite, whatever the
-- database's default collation is.

CREATE TABLE apps (
    name            TEXT PRIMARY KEY,
    active_revision BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE revisions (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    number     BIGINT NOT NULL,
    spec       TEXT NOT NULL,
    manifest   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, number)
);

CREATE TABLE invocations (
    id             TEXT COLLATE "C" PRIMARY KEY,
    app            TEXT NOT NULL,
    function       TEXT NOT NULL,
    revision       BIGINT NOT NULL,
    trigger        TEXT NOT NULL,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    started_at     BIGINT NOT NULL,
    duration_us    BIGINT NOT NULL,
    status         BIGINT NOT NULL,
    outcome        TEXT NOT NULL,
    error          TEXT,
    bytes_in       BIGINT NOT NULL,
    bytes_out      BIGINT NOT NULL,
    event_id       TEXT,
    attempt        BIGINT NOT NULL DEFAULT 0,
    memory_mb      BIGINT NOT NULL DEFAULT 0,
    peak_memory    BIGINT NOT NULL DEFAULT 0,
    cold           BIGINT NOT NULL DEFAULT 0,
    trace_id       TEXT NOT NULL DEFAULT '',
    span_id        TEXT NOT NULL DEFAULT '',
    parent_span_id TEXT
);
CREATE INDEX invocations_by_app ON invocations (app, function, started_at);
CREATE INDEX invocations_by_event ON invocations (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX invocations_by_trace ON invocations (trace_id);

CREATE TABLE logs (
    seq           BIGSERIAL PRIMARY KEY,
    invocation_id TEXT COLLATE "C" NOT NULL,
    app           TEXT NOT NULL,
    function      TEXT NOT NULL,
    at            BIGINT NOT NULL,
    stream        TEXT NOT NULL,
    text          TEXT NOT NULL
);
CREATE INDEX logs_by_app ON logs (app, seq);
CREATE INDEX logs_by_invocation ON logs (invocation_id);

CREATE TABLE messages (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    app          TEXT NOT NULL,
    channel      TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    lease_until  BIGINT,
    lease_owner  TEXT,
    group_key    TEXT,
    function     TEXT,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BYTEA NOT NULL,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX messages_pending ON messages (app, channel, seq)
    WHERE state IN ('queued', 'failed');
CREATE INDEX messages_groups ON messages (app, channel, group_key, seq)
    WHERE group_key IS NOT NULL AND state IN ('queued', 'failed', 'running');
CREATE INDEX messages_running ON messages (lease_until) WHERE state = 'running';
CREATE INDEX messages_by_function ON messages (app, function, state, seq);
CREATE INDEX messages_done ON messages (updated_at) WHERE state = 'succeeded';

CREATE TABLE message_keys (
    app        TEXT NOT NULL,
    channel    TEXT NOT NULL,
    key        TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app, channel, key)
);

CREATE TABLE schedules (
    app       TEXT NOT NULL,
    name      TEXT NOT NULL,
    last_tick BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);

CREATE TABLE kv (
    app        TEXT NOT NULL,
    store      TEXT NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      BYTEA NOT NULL,
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, store, key)
);
CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE docs (
    app        TEXT NOT NULL,
    collection TEXT NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    body       JSONB NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, collection, id)
);

CREATE TABLE config (
    app        TEXT NOT NULL,
    function   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    secret     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, function, key)
);

CREATE TABLE buckets (
    name       TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX buckets_by_app ON buckets (app);

CREATE TABLE objects (
    bucket        TEXT NOT NULL,
    key           TEXT COLLATE "C" NOT NULL,
    file          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    content_type  TEXT,
    metadata      TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    bucket       TEXT NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    content_type TEXT,
    metadata     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE upload_parts (
    upload_id   TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    file        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE s3_keys (
    access_key TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    app        TEXT,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE users (
    app        TEXT NOT NULL,
    id         TEXT NOT NULL,
    email      TEXT NOT NULL,
    password   TEXT NOT NULL,
    roles      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, id)
);
CREATE UNIQUE INDEX users_email ON users (app, email);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (app, user_id);

CREATE TABLE reset_tokens (
    hash       TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE TABLE signing_keys (
    app         TEXT NOT NULL,
    kid         TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT,
    PRIMARY KEY (app, kid)
);

CREATE TABLE usage_hourly (
    app         TEXT NOT NULL,
    function    TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    invocations BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    mb_us       BIGINT NOT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    cold_starts BIGINT NOT NULL,
    kv_ops      BIGINT NOT NULL DEFAULT 0,
    doc_ops     BIGINT NOT NULL DEFAULT 0,
    object_ops  BIGINT NOT NULL DEFAULT 0,
    event_ops   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app, function, hour)
);

CREATE TABLE failed_inputs (
    invocation_id TEXT COLLATE "C" PRIMARY KEY,
    app           TEXT NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    headers       TEXT NOT NULL,
    body          BYTEA NOT NULL,
    complete      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX failed_inputs_by_time ON failed_inputs (created_at);

CREATE TABLE op_spans (
    invocation_id TEXT COLLATE "C" NOT NULL,
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
    hour                BIGINT NOT NULL,
    kv_byte_seconds     BIGINT NOT NULL,
    doc_byte_seconds    BIGINT NOT NULL,
    object_byte_seconds BIGINT NOT NULL,
    kv_bytes            BIGINT NOT NULL,
    doc_bytes           BIGINT NOT NULL,
    object_bytes        BIGINT NOT NULL,
    sampled_at          BIGINT NOT NULL,
    PRIMARY KEY (app, hour)
);

-- RFC 7396 JSON merge patch, as SQLite's json_patch: members of the patch
-- replace the target's, null members remove them, objects merge
-- recursively, anything else replaces the whole target.
CREATE FUNCTION nimbus_json_patch(target JSONB, patch JSONB) RETURNS JSONB AS $$
DECLARE
    k TEXT;
    v JSONB;
    merged JSONB;
BEGIN
    IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
        RETURN patch;
    END IF;
    IF jsonb_typeof(target) IS DISTINCT FROM 'object' THEN
        merged := '{}'::jsonb;
    ELSE
        merged := target;
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(patch) LOOP
        IF jsonb_typeof(v) = 'null' THEN
            merged := merged - k;
        ELSE
            merged := jsonb_set(merged, ARRAY[k], nimbus_json_patch(merged -> k, v));
        END IF;
    END LOOP;
    RETURN merged;
END
$$ LANGUAGE plpgsql IMMUTABLE;

-- Cluster coordination: a counter every node polls (and is NOTIFYed
-- about) to learn that apps, revisions, configuration or keys changed.
CREATE TABLE cluster_state (
    id         BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO cluster_state (id, generation) VALUES (1, 0);

-- The nodes of the cluster, each seen at its last heartbeat: the live ones
-- split cluster-wide concurrency limits among themselves.
CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);

-- Periodic work done once for the whole cluster (sampling stored bytes):
-- when it was last done; a node does it only if it moves this forward.
CREATE TABLE samplers (
    name TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
