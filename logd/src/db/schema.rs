//! The `aft_log` table as diesel sees it, its row type, and its limits: the one place that
//! knows the column names, types and lengths (DESIGN.md, "The `aft_log` table"). The
//! migrations create it, `verify` checks it, `request` validates events against these limits.

use chrono::NaiveDateTime;
use diesel::prelude::*;

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
        drift -> Nullable<Varchar>,
    }
}

/// `VARCHAR(n)` of `jid` and `to_jid`.
pub const JID_MAX: usize = 3071;
/// `VARCHAR(n)` of `method`.
pub const METHOD_MAX: usize = 63;
/// `VARCHAR(n)` of `filename`, `real_filename` and `file_server`.
pub const NAME_MAX: usize = 511;
/// `VARCHAR(n)` of `file_type`.
pub const FILE_TYPE_MAX: usize = 10;
/// `VARCHAR(n)` of `chat_type`.
pub const CHAT_TYPE_MAX: usize = 10;
/// `VARCHAR(n)` of `file_path`.
pub const PATH_MAX: usize = 4095;
/// `VARCHAR(n)` of `sha256`: a SHA-256 in lowercase hex is exactly this long.
pub const SHA256_LEN: usize = 64;
/// `VARCHAR(n)` of `event_id`: room for a UUID in its 36-character text form.
pub const EVENT_ID_MAX: usize = 36;
/// `VARCHAR(n)` of `drift`: room for the longest [`Drift`](crate::reconcile::Drift) label.
pub const DRIFT_MAX: usize = 7;

/// `method` of an upload row.
pub const POST: &str = "Post";
/// `method` of a download row.
pub const GET: &str = "Get";
/// `method` of a row recording that a stored file was shared in one more chat after its first
/// (whose recipient is the Post row's `to_jid`).
pub const SHARE: &str = "Share";
/// The values of `chat_type`.
pub const CHAT_TYPES: [&str; 3] = ["im", "groupchat", "persistent"];

/// One row without its `aft_index` and `drift` (which only `logd reconcile` writes): what an
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
