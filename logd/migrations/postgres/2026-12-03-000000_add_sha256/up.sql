-- The SHA-256 of an upload's content, lowercase hex, computed by httpd while the file streamed
-- in. NULL for rows that carry no content (Get, Share) and for rows written before it existed;
-- the seed's statements, which name their columns, run unchanged.
ALTER TABLE aft_log ADD COLUMN IF NOT EXISTS sha256 VARCHAR(64);
