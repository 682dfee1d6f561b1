-- Core tables. Types and statements are chosen to have direct PostgreSQL
-- equivalents (BIGINT, TEXT; INTEGER PRIMARY KEY AUTOINCREMENT <-> BIGSERIAL).

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
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    function    TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    trigger     TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    status      INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    error       TEXT,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL
);
CREATE INDEX invocations_by_app ON invocations (app, function, started_at);

CREATE TABLE logs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    invocation_id TEXT NOT NULL,
    app           TEXT NOT NULL,
    function      TEXT NOT NULL,
    at            BIGINT NOT NULL,
    stream        TEXT NOT NULL,
    text          TEXT NOT NULL
);
CREATE INDEX logs_by_app ON logs (app, seq);
CREATE INDEX logs_by_invocation ON logs (invocation_id);
