-- Per-app storage quotas. Every change to a KV entry, a document, an
-- object or a multipart part adjusts its app's bytes in storage_usage in
-- the same statement (triggers, so no write path can forget it); a change
-- that grows an app past its quota for that kind raises
-- 'nimbus storage quota exceeded: KIND', which the store reports as
-- QuotaExceeded. Shrinking writes and deletions always pass. An app's
-- bytes are spread over 16 rows by key hash, so concurrent writers of one
-- app rarely wait on the same row; the check sums them (under READ
-- COMMITTED, writes committing at the same moment may overshoot a quota
-- by what they add together, never more).
CREATE TABLE storage_usage (
    app   TEXT NOT NULL,
    kind  TEXT NOT NULL,
    shard INTEGER NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (app, kind, shard)
);

-- The server's quota per kind ('kv', 'docs', 'objects'); no row: none.
CREATE TABLE storage_quotas (
    kind      TEXT PRIMARY KEY,
    max_bytes BIGINT NOT NULL
);

CREATE FUNCTION nimbus_storage_delta(owner TEXT, k TEXT, key TEXT, delta BIGINT) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    quota BIGINT;
    used BIGINT;
BEGIN
    IF owner IS NULL OR delta = 0 THEN
        RETURN;
    END IF;
    INSERT INTO storage_usage (app, kind, shard, bytes) VALUES (owner, k, hashtext(key) & 15, delta)
        ON CONFLICT (app, kind, shard) DO UPDATE SET bytes = storage_usage.bytes + excluded.bytes;
    IF delta > 0 THEN
        SELECT max_bytes INTO quota FROM storage_quotas WHERE kind = k;
        IF quota IS NOT NULL THEN
            SELECT SUM(bytes) INTO used FROM storage_usage WHERE app = owner AND kind = k;
            IF used > quota THEN
                RAISE EXCEPTION 'nimbus storage quota exceeded: %', k USING ERRCODE = 'NQ001';
            END IF;
        END IF;
    END IF;
END $$;

CREATE FUNCTION kv_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM nimbus_storage_delta(NEW.app, 'kv', NEW.key, octet_length(NEW.key) + octet_length(NEW.value));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM nimbus_storage_delta(NEW.app, 'kv', NEW.key,
            octet_length(NEW.key) + octet_length(NEW.value) - octet_length(OLD.key) - octet_length(OLD.value));
    ELSE
        PERFORM nimbus_storage_delta(OLD.app, 'kv', OLD.key, -(octet_length(OLD.key) + octet_length(OLD.value)));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER kv_usage AFTER INSERT OR UPDATE OR DELETE ON kv FOR EACH ROW EXECUTE FUNCTION kv_usage();

-- A JSONB body is measured as its text, as SQLite stores it.
CREATE FUNCTION docs_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM nimbus_storage_delta(NEW.app, 'docs', NEW.id, octet_length(CAST(NEW.body AS TEXT)));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM nimbus_storage_delta(NEW.app, 'docs', NEW.id,
            octet_length(CAST(NEW.body AS TEXT)) - octet_length(CAST(OLD.body AS TEXT)));
    ELSE
        PERFORM nimbus_storage_delta(OLD.app, 'docs', OLD.id, -octet_length(CAST(OLD.body AS TEXT)));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER docs_usage AFTER INSERT OR UPDATE OR DELETE ON docs FOR EACH ROW EXECUTE FUNCTION docs_usage();

CREATE FUNCTION objects_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM nimbus_storage_delta((SELECT app FROM buckets WHERE name = NEW.bucket), 'objects', NEW.key, NEW.size);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM nimbus_storage_delta((SELECT app FROM buckets WHERE name = NEW.bucket), 'objects', NEW.key, NEW.size - OLD.size);
    ELSE
        PERFORM nimbus_storage_delta((SELECT app FROM buckets WHERE name = OLD.bucket), 'objects', OLD.key, -OLD.size);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER objects_usage AFTER INSERT OR UPDATE OR DELETE ON objects FOR EACH ROW EXECUTE FUNCTION objects_usage();

-- Parts of unfinished multipart uploads take disk too: they count as
-- objects until the upload completes (their rows go in the completing
-- transaction) or is aborted.
CREATE FUNCTION parts_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM nimbus_storage_delta(
        (SELECT b.app FROM uploads u JOIN buckets b ON b.name = u.bucket WHERE u.id = r.upload_id),
        'objects', r.upload_id,
        CASE TG_OP WHEN 'INSERT' THEN NEW.size WHEN 'UPDATE' THEN NEW.size - OLD.size ELSE -OLD.size END);
    RETURN NULL;
END $$;
CREATE TRIGGER parts_usage AFTER INSERT OR UPDATE OR DELETE ON upload_parts FOR EACH ROW EXECUTE FUNCTION parts_usage();

-- What is stored already.
INSERT INTO storage_usage (app, kind, shard, bytes)
    SELECT app, 'kv', 0, SUM(octet_length(key) + octet_length(value)) FROM kv GROUP BY app;
INSERT INTO storage_usage (app, kind, shard, bytes)
    SELECT app, 'docs', 0, SUM(octet_length(CAST(body AS TEXT))) FROM docs GROUP BY app;
INSERT INTO storage_usage (app, kind, shard, bytes)
    SELECT app, 'objects', 0, SUM(n) FROM (
        SELECT b.app AS app, o.size AS n FROM objects o JOIN buckets b ON b.name = o.bucket
        UNION ALL
        SELECT b.app, p.size FROM upload_parts p JOIN uploads u ON u.id = p.upload_id
            JOIN buckets b ON b.name = u.bucket
    ) AS stored GROUP BY app;
