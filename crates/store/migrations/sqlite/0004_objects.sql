-- Object storage: buckets owned by apps, object metadata (bodies are files,
-- see BlobFiles), multipart uploads and their parts, S3 access keys.

CREATE TABLE buckets (
    name       TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX buckets_by_app ON buckets (app);

CREATE TABLE objects (
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
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
    key          TEXT NOT NULL,
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
