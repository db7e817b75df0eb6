//! The transfer event: what httpd knows about one upload or download, i.e. the content of one
//! `aft_log` row except its `aft_index` (assigned by the database) and its `method` (implied by
//! the request that carries it); and the [`Amendment`] a file's first share makes to its Post
//! row. Plain data; the server validates it against the column limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One `aft_log` row's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Uploader (Post) or downloader (Get); at most 3071 characters.
    pub jid: String,
    /// Recipient: user, ad hoc group chat or persistent room; at most 3071 characters.
    pub to_jid: String,
    /// The encoded resource name; at most 511 characters.
    pub filename: String,
    /// The name the user uploaded; at most 511 characters.
    pub real_filename: String,
    /// The file's extension, lower case; at most 10 characters.
    pub file_type: String,
    /// `im`, `groupchat` or `persistent`.
    pub chat_type: String,
    /// Host name or IP of the file server; at most 511 characters.
    pub file_server: String,
    /// Absolute path on the file server, file name included; at most 4095 characters.
    pub file_path: String,
    /// Size of the file in bytes.
    pub file_size: i64,
    /// Bytes actually moved in this transfer.
    pub bytes_transferred: i64,
    /// UTC time of the transfer, stored as `TIMESTAMP` (no zone) at microsecond precision.
    pub timestamp: DateTime<Utc>,
    /// The content's SHA-256 as 64 lowercase hex digits, for an upload; absent (NULL in the
    /// row) for the other events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The id the sender chose for this event (at most 36 characters: letters, digits, `-`;
    /// httpd sends a UUID). logd records an id once: the same event sent again (its answer was
    /// lost) is answered with the row it wrote first, and [`LogdClient::lookup`] finds it.
    /// Absent (NULL) for senders that do not retry.
    ///
    /// [`LogdClient::lookup`]: crate::LogdClient::lookup
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// What a stored file's first share changes in its Post row: the recipient and chat type it
/// was shared to, and where the file lies now (it moves to that chat type's directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    /// The Post row's `filename` (the encoded resource name).
    pub filename: String,
    pub to_jid: String,
    /// `im`, `groupchat` or `persistent`.
    pub chat_type: String,
    /// Absolute path on the file server, file name included.
    pub file_path: String,
}
