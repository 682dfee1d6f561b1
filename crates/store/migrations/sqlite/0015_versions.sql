-- S3 versioning. A bucket's `versioning` is NULL (never enabled),
-- 'Enabled' or 'Suspended'. `objects` keeps each key's current version
-- (the latest, unless that is a delete marker) with its id ('null': the
-- version written while versioning was off or suspended); every other
-- version of the key, and its delete markers, are rows of
-- `object_versions`, ordered newest first by (last_modified, version_id).
-- A key has a row in `objects` exactly when its latest version is not a
-- delete marker. Noncurrent versions take storage as objects do.
ALTER TABLE buckets ADD COLUMN versioning TEXT;
ALTER TABLE objects ADD COLUMN version_id TEXT NOT NULL DEFAULT 'null';

CREATE TABLE object_versions (
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    version_id    TEXT NOT NULL,
    delete_marker BIGINT NOT NULL,
    file          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    content_type  TEXT,
    metadata      TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    PRIMARY KEY (bucket, key, version_id)
);
-- A key's versions newest first (listings, the latest, promotion).
CREATE INDEX object_versions_by_age ON object_versions (bucket, key, last_modified, version_id);

-- Rows enter object_versions only by a move out of objects (whose bytes
-- were counted) or as 0-byte delete markers, so an insert here is never
-- checked against the quota: a deletion in a versioned bucket passes even
-- for an app over its quota (the quota was lowered, say).
CREATE TRIGGER object_versions_usage_insert AFTER INSERT ON object_versions
WHEN NEW.size <> 0 AND (SELECT app FROM buckets WHERE name = NEW.bucket) IS NOT NULL
BEGIN
    INSERT INTO storage_usage (app, kind, shard, bytes)
        VALUES ((SELECT app FROM buckets WHERE name = NEW.bucket), 'objects', 0, NEW.size)
        ON CONFLICT (app, kind, shard) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER object_versions_usage_update AFTER UPDATE ON object_versions BEGIN
    INSERT INTO storage_delta
        VALUES ((SELECT app FROM buckets WHERE name = NEW.bucket), 'objects', NEW.size - OLD.size);
END;
CREATE TRIGGER object_versions_usage_delete AFTER DELETE ON object_versions BEGIN
    INSERT INTO storage_delta
        VALUES ((SELECT app FROM buckets WHERE name = OLD.bucket), 'objects', -OLD.size);
END;
