-- What an object carries besides its body, media type and user metadata:
-- the standard headers S3 keeps (Cache-Control, Content-Disposition,
-- Content-Encoding, Content-Language, Expires) and its tags, as one JSON
-- object (`ObjectAttrs`); an upload carries them to the object it
-- completes. A bucket's tags: NULL when it has none.
ALTER TABLE objects ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE object_versions ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE uploads ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE buckets ADD COLUMN tags TEXT;
