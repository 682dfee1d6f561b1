-- Public access to a bucket: its ACL ('public-read': anyone may list it;
-- NULL: private) and its Public Access Block (JSON, NULL: none). An
-- object's own ACL is in its attrs (`public`).
ALTER TABLE buckets ADD COLUMN acl TEXT;
ALTER TABLE buckets ADD COLUMN public_access_block TEXT;
