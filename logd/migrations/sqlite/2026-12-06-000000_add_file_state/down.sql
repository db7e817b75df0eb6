DROP TABLE aft_kept_file;
ALTER TABLE aft_log DROP COLUMN file_state;
