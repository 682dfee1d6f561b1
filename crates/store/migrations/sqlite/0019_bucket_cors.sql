-- A bucket's CORS configuration: its rules as JSON, NULL when it has none.
ALTER TABLE buckets ADD COLUMN cors TEXT;
