DROP TABLE aft_log;
