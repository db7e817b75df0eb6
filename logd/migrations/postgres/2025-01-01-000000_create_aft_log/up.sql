-- The aft_log table of DESIGN.md. IF NOT EXISTS adopts a table an operator created from the
-- same definition; logd verifies its columns after migrating.
CREATE TABLE IF NOT EXISTS aft_log (
    aft_index         BIGSERIAL PRIMARY KEY,
    jid               VARCHAR(3071) NOT NULL,
    to_jid            VARCHAR(3071) NOT NULL,
    method            VARCHAR(63)   NOT NULL,
    filename          VARCHAR(511)  NOT NULL,
    real_filename     VARCHAR(511)  NOT NULL,
    file_type         VARCHAR(10)   NOT NULL,
    chat_type         VARCHAR(10)   NOT NULL,
    file_server       VARCHAR(511)  NOT NULL,
    file_path         VARCHAR(4095) NOT NULL,
    file_size         BIGINT        NOT NULL,
    bytes_transferred BIGINT        NOT NULL,
    timestampvalue    TIMESTAMP     NOT NULL
);
CREATE INDEX IF NOT EXISTS aft_log_method_timestampvalue_idx ON aft_log (method, timestampvalue);
CREATE INDEX IF NOT EXISTS aft_log_jid_idx ON aft_log (jid);
CREATE INDEX IF NOT EXISTS aft_log_filename_idx ON aft_log (filename);
