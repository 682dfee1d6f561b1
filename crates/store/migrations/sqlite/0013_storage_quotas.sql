-- Per-app storage quotas. Every change to a KV entry, a document, an
-- object or a multipart part adjusts its app's bytes in storage_usage in
-- the same statement (triggers, so no write path can forget it); a change
-- that grows an app past its quota for that kind aborts with the error
-- 'nimbus storage quota exceeded: KIND', which the store reports as
-- QuotaExceeded. Shrinking writes and deletions always pass.
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

-- Inserting (app, kind, delta) here applies a change: SQLite has no
-- stored functions, so the table triggers share this one.
CREATE VIEW storage_delta AS SELECT app AS owner, kind, bytes AS delta FROM storage_usage;

CREATE TRIGGER storage_delta_apply INSTEAD OF INSERT ON storage_delta
WHEN NEW.owner IS NOT NULL AND NEW.delta <> 0
BEGIN
    INSERT INTO storage_usage (app, kind, shard, bytes) VALUES (NEW.owner, NEW.kind, 0, NEW.delta)
        ON CONFLICT (app, kind, shard) DO UPDATE SET bytes = bytes + excluded.bytes;
    SELECT RAISE(ABORT, 'nimbus storage quota exceeded: kv')
     WHERE NEW.kind = 'kv' AND NEW.delta > 0
       AND (SELECT bytes FROM storage_usage WHERE app = NEW.owner AND kind = 'kv' AND shard = 0)
           > (SELECT max_bytes FROM storage_quotas WHERE kind = 'kv');
    SELECT RAISE(ABORT, 'nimbus storage quota exceeded: docs')
     WHERE NEW.kind = 'docs' AND NEW.delta > 0
       AND (SELECT bytes FROM storage_usage WHERE app = NEW.owner AND kind = 'docs' AND shard = 0)
           > (SELECT max_bytes FROM storage_quotas WHERE kind = 'docs');
    SELECT RAISE(ABORT, 'nimbus storage quota exceeded: objects')
     WHERE NEW.kind = 'objects' AND NEW.delta > 0
       AND (SELECT bytes FROM storage_usage WHERE app = NEW.owner AND kind = 'objects' AND shard = 0)
           > (SELECT max_bytes FROM storage_quotas WHERE kind = 'objects');
END;

CREATE TRIGGER kv_usage_insert AFTER INSERT ON kv BEGIN
    INSERT INTO storage_delta VALUES (NEW.app, 'kv', octet_length(NEW.key) + octet_length(NEW.value));
END;
CREATE TRIGGER kv_usage_update AFTER UPDATE ON kv BEGIN
    INSERT INTO storage_delta VALUES (NEW.app, 'kv',
        octet_length(NEW.key) + octet_length(NEW.value) - octet_length(OLD.key) - octet_length(OLD.value));
END;
CREATE TRIGGER kv_usage_delete AFTER DELETE ON kv BEGIN
    INSERT INTO storage_delta VALUES (OLD.app, 'kv', -(octet_length(OLD.key) + octet_length(OLD.value)));
END;

CREATE TRIGGER docs_usage_insert AFTER INSERT ON docs BEGIN
    INSERT INTO storage_delta VALUES (NEW.app, 'docs', octet_length(NEW.body));
END;
CREATE TRIGGER docs_usage_update AFTER UPDATE ON docs BEGIN
    INSERT INTO storage_delta VALUES (NEW.app, 'docs', octet_length(NEW.body) - octet_length(OLD.body));
END;
CREATE TRIGGER docs_usage_delete AFTER DELETE ON docs BEGIN
    INSERT INTO storage_delta VALUES (OLD.app, 'docs', -octet_length(OLD.body));
END;

CREATE TRIGGER objects_usage_insert AFTER INSERT ON objects BEGIN
    INSERT INTO storage_delta
        VALUES ((SELECT app FROM buckets WHERE name = NEW.bucket), 'objects', NEW.size);
END;
CREATE TRIGGER objects_usage_update AFTER UPDATE ON objects BEGIN
    INSERT INTO storage_delta
        VALUES ((SELECT app FROM buckets WHERE name = NEW.bucket), 'objects', NEW.size - OLD.size);
END;
CREATE TRIGGER objects_usage_delete AFTER DELETE ON objects BEGIN
    INSERT INTO storage_delta
        VALUES ((SELECT app FROM buckets WHERE name = OLD.bucket), 'objects', -OLD.size);
END;

-- Parts of unfinished multipart uploads take disk too: they count as
-- objects until the upload completes (their rows go in the completing
-- transaction) or is aborted.
CREATE TRIGGER parts_usage_insert AFTER INSERT ON upload_parts BEGIN
    INSERT INTO storage_delta VALUES ((SELECT b.app FROM uploads u JOIN buckets b ON b.name = u.bucket
        WHERE u.id = NEW.upload_id), 'objects', NEW.size);
END;
CREATE TRIGGER parts_usage_update AFTER UPDATE ON upload_parts BEGIN
    INSERT INTO storage_delta VALUES ((SELECT b.app FROM uploads u JOIN buckets b ON b.name = u.bucket
        WHERE u.id = NEW.upload_id), 'objects', NEW.size - OLD.size);
END;
CREATE TRIGGER parts_usage_delete AFTER DELETE ON upload_parts BEGIN
    INSERT INTO storage_delta VALUES ((SELECT b.app FROM uploads u JOIN buckets b ON b.name = u.bucket
        WHERE u.id = OLD.upload_id), 'objects', -OLD.size);
END;

-- What is stored already.
INSERT INTO storage_usage (app, kind, shard, bytes)
    SELECT app, 'kv', 0, SUM(octet_length(key) + octet_length(value)) FROM kv GROUP BY app;
INSERT INTO storage_usage (app, kind, shard, bytes)
    SELECT app, 'docs', 0, SUM(octet_length(body)) FROM docs GROUP BY app;
INSERT INTO storage_usage (app, kind, shard, bytes)
    SELECT app, 'objects', 0, SUM(n) FROM (
        SELECT b.app AS app, o.size AS n FROM objects o JOIN buckets b ON b.name = o.bucket
        UNION ALL
        SELECT b.app, p.size FROM upload_parts p JOIN uploads u ON u.id = p.upload_id
            JOIN buckets b ON b.name = u.bucket
    ) GROUP BY app;
