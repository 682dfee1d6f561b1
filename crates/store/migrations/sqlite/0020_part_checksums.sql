-- A part's additional checksum (base64, of the algorithm its upload
-- declared), NULL when it has none. An object's checksum is in its attrs.
ALTER TABLE upload_parts ADD COLUMN checksum TEXT;
