-- What is known of a Post row's file besides it being there: 'missing' (no file at file_path),
-- 'size' (its size is not file_size) or 'digest' (its SHA-256 is not sha256), as
-- `logd reconcile --execute` found; 'expired' when httpd removed the file on purpose (an upload
-- slot's expiry). NULL while nothing is known to be wrong; reconcile clears a mark of drift when
-- the file is right again. Operators list them with
-- `SELECT * FROM aft_log WHERE file_state IS NOT NULL`; the seed's statements, which name their
-- columns, run unchanged.
ALTER TABLE aft_log ADD COLUMN IF NOT EXISTS file_state VARCHAR(7);
-- The files whose Post rows `logd purge` deleted while it kept the files (without
-- --delete-files: the seed keeps them downloadable), so that `logd reconcile` knows them from
-- files whose upload was never recorded.
CREATE TABLE IF NOT EXISTS aft_kept_file (
    filename  VARCHAR(511)  PRIMARY KEY,
    file_path VARCHAR(4095) NOT NULL,
    purged    TIMESTAMP     NOT NULL
);
