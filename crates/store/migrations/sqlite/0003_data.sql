-- Data services: key-value stores, JSON document collections,
-- configuration variables and (encrypted) secrets.
-- PostgreSQL: value BYTEA, body JSONB (json_extract -> ->/->>, json_patch
-- -> jsonb || for merge), same keys and indexes.

CREATE TABLE kv (
    app        TEXT NOT NULL,
    store      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, store, key)
);
CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE docs (
    app        TEXT NOT NULL,
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, collection, id)
);

-- function '' holds app-wide values; secret values are encrypted.
CREATE TABLE config (
    app        TEXT NOT NULL,
    function   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    secret     INTEGER NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, function, key)
);
