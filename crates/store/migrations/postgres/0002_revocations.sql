-- Ended sessions: a user's access tokens issued before `before_us` are
-- refused (logout everywhere, password change or reset, role change,
-- account deletion, a replayed refresh token). A row outlives the longest
-- access token (`expires_at`), then is pruned.
CREATE TABLE token_revocations (
    app        TEXT NOT NULL,
    subject    TEXT NOT NULL,
    before_us  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app, subject)
);
