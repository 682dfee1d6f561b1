-- S3 Object Lock on a bucket: NULL when it is not enabled, else JSON
-- with the bucket's default retention ({"default": null} for none). A
-- version's own retention and legal hold are in its attrs. Once set it is
-- never NULL again, and the bucket's versioning stays 'Enabled'.
ALTER TABLE buckets ADD COLUMN object_lock TEXT;
