DROP INDEX aft_log_event_id_idx;
ALTER TABLE aft_log DROP COLUMN event_id;
