-- What `logd reconcile --execute` found wrong with a Post row's file: 'missing' (no file at
-- file_path), 'size' (its size is not file_size) or 'digest' (its SHA-256 is not sha256). NULL
-- while nothing is known to be wrong; reconcile clears it when the file is right again.
-- Operators list them with `SELECT * FROM aft_log WHERE drift IS NOT NULL`; the seed's
-- statements, which name their columns, run unchanged.
ALTER TABLE aft_log ADD COLUMN drift VARCHAR(7);
