-- Identity: API keys of the control plane and the gateway, per-app user
-- pools with their refresh and password-reset tokens, and the keys that sign
-- each app's access tokens. Secrets are stored as SHA-256 hashes (high-entropy
-- tokens) or argon2 hashes (passwords); signing keys are sealed.

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
    -- Spent by a refresh (a later use is a replay), or revoked (logout,
    -- password change, replay detected).
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
