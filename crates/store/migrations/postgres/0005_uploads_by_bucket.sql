-- Multipart uploads are listed per bucket in (key, id) order
-- (ListMultipartUploads) and a bucket's emptiness check looks for any:
-- both find a bucket's uploads without scanning other tenants'.
CREATE INDEX uploads_by_bucket ON uploads (bucket, key, id);
