-- The id httpd chose for the event that wrote the row (a UUID per transfer): logd inserts an
-- event whose id is already here no second time, and answers with the row that has it, so a
-- retried event after a lost answer is recorded once. NULL for rows written before it existed
-- and for events sent without one; the seed's statements, which name their columns, run
-- unchanged.
ALTER TABLE aft_log ADD COLUMN IF NOT EXISTS event_id VARCHAR(36);
CREATE UNIQUE INDEX IF NOT EXISTS aft_log_event_id_idx ON aft_log (event_id);
