-- S3 versioning. A bucket's `versioning` is NULL (never enabled),
-- 'Enabled' or 'Suspended'. `objects` keeps each key's current version
-- (the latest, unless that is a delete marker) with its id ('null': the
-- version written while versioning was off or suspended); every other
-- version of the key, and its delete markers, are rows of
-- `object_versions`, ordered newest first by (last_modified, version_id).
-- A key has a row in `objects` exactly when its latest version is not a
-- delete marker. Noncurrent versions take storage as objects do.
ALTER TABLE buckets ADD COLUMN versioning TEXT;
ALTER TABLE objects ADD COLUMN version_id TEXT COLLATE "C" NOT NULL DEFAULT 'null';

CREATE TABLE object_versions (
    bucket        TEXT NOT NULL,
    key           TEXT COLLATE "C" NOT NULL,
    version_id    TEXT COLLATE "C" NOT NULL,
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
-- were counted) or as 0-byte delete markers, so a change here is never
-- checked against the quota: a deletion in a versioned bucket passes even
-- for an app over its quota (the quota was lowered, say).
CREATE FUNCTION object_versions_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner TEXT;
    r RECORD;
    delta BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        delta := -OLD.size;
    ELSIF TG_OP = 'INSERT' THEN
        r := NEW;
        delta := NEW.size;
    ELSE
        r := NEW;
        delta := NEW.size - OLD.size;
    END IF;
    SELECT app INTO owner FROM buckets WHERE name = r.bucket;
    IF owner IS NULL OR delta = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO storage_usage (app, kind, shard, bytes) VALUES (owner, 'objects', hashtext(r.key) & 15, delta)
        ON CONFLICT (app, kind, shard) DO UPDATE SET bytes = storage_usage.bytes + excluded.bytes;
    RETURN NULL;
END $$;
CREATE TRIGGER object_versions_usage AFTER INSERT OR UPDATE OR DELETE ON object_versions
    FOR EACH ROW EXECUTE FUNCTION object_versions_usage();
