//! The `aft_log` table as diesel sees it, and its record type: the one place that knows the
//! column names and diesel types (DESIGN.md, "The `aft_log` table"; the lengths are in
//! [`crate::row`]). The migrations create it, `verify` checks it; a checked [`Row`] becomes an
//! [`AftRecord`] here, once.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::row::Row;

diesel::table! {
    /// One row per upload (`method = 'Post'`), per download (`method = 'Get'`) and per later
    /// share of an uploaded file (`method = 'Share'`).
    aft_log (aft_index) {
        aft_index -> BigInt,
        jid -> Varchar,
        to_jid -> Varchar,
        method -> Varchar,
        filename -> Varchar,
        real_filename -> Varchar,
        file_type -> Varchar,
        chat_type -> Varchar,
        file_server -> Varchar,
        file_path -> Varchar,
        file_size -> BigInt,
        bytes_transferred -> BigInt,
        timestampvalue -> Timestamp,
        sha256 -> Nullable<Varchar>,
        event_id -> Nullable<Varchar>,
        file_state -> Nullable<Varchar>,
    }
}

diesel::table! {
    /// The files whose `Post` rows `logd purge` deleted while it kept the files.
    aft_kept_file (filename) {
        filename -> Varchar,
        file_path -> Varchar,
        purged -> Timestamp,
    }
}

/// One row without its `aft_index` and `file_state` (which only marks write): what an
/// insert writes and what it returns. `None` is written as NULL, never as "default".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Insertable, Queryable, Selectable)]
#[diesel(table_name = aft_log, treat_none_as_default_value = false)]
pub struct AftRecord {
    pub jid: String,
    pub to_jid: String,
    pub method: String,
    pub filename: String,
    pub real_filename: String,
    pub file_type: String,
    pub chat_type: String,
    pub file_server: String,
    pub file_path: String,
    pub file_size: i64,
    pub bytes_transferred: i64,
    /// UTC.
    pub timestampvalue: NaiveDateTime,
    /// The content's SHA-256, lowercase hex: Post rows from httpd; `None` for the others.
    pub sha256: Option<String>,
    /// The id the sender chose for the event that wrote the row; unique where present.
    pub event_id: Option<String>,
}

impl From<&Row> for AftRecord {
    fn from(row: &Row) -> Self {
        let t = row.transfer();
        Self {
            jid: t.jid.clone(),
            to_jid: t.to_jid.clone(),
            method: row.method().as_str().to_owned(),
            filename: t.filename.clone(),
            real_filename: t.real_filename.clone(),
            file_type: t.file_type.clone(),
            chat_type: t.chat_type.as_str().to_owned(),
            file_server: t.file_server.clone(),
            file_path: t.file_path.clone(),
            file_size: t.file_size,
            bytes_transferred: t.bytes_transferred,
            timestampvalue: t.timestamp.naive_utc(),
            sha256: t.sha256.clone(),
            event_id: t.event_id.clone(),
        }
    }
}
