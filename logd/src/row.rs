//! One `aft_log` row as httpd and logd share it: the columns' limits, the typed columns
//! ([`Method`], [`ChatType`]), a row's content as the client sends it ([`Transfer`]), the change
//! a first share makes to a Post row ([`Amendment`]), the mark of a file removed on purpose
//! ([`FileMark`]), and [`Row`], a transfer checked against every column rule, the only shape in
//! which logd's decoder hands a row on to be stored.
//!
//! Always compiled: httpd checks its own inputs against the same limits. Plain data and pure
//! checks; nothing here knows the wire encoding (`protocol`) or the database (`db`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

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
/// `VARCHAR(n)` of `file_state`: room for the longest [`FileState`].
pub const FILE_STATE_MAX: usize = 7;

/// The `file_state` column of a `Post` row: what is known of its file besides it being there
/// (NULL: nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// `logd reconcile` found no file at `file_path`.
    Missing,
    /// `logd reconcile` found a file of another size than `file_size`.
    Size,
    /// `logd reconcile --verify-content` found a file of another SHA-256 than `sha256`.
    Digest,
    /// httpd removed the file on purpose: its upload slot expired.
    Expired,
}

impl FileState {
    pub const ALL: [FileState; 4] = [
        FileState::Missing,
        FileState::Size,
        FileState::Digest,
        FileState::Expired,
    ];

    /// The column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Missing => "missing",
            FileState::Size => "size",
            FileState::Digest => "digest",
            FileState::Expired => "expired",
        }
    }

    /// The state a column's value names.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    /// Whether it is drift (the file disagrees with the row), not a removal on purpose.
    pub fn is_drift(self) -> bool {
        self != FileState::Expired
    }
}

/// The `method` column: what the row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// An upload.
    Post,
    /// A download.
    Get,
    /// A stored file shared in one more chat after its first (whose recipient is the Post
    /// row's `to_jid`).
    Share,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "Post",
            Method::Get => "Get",
            Method::Share => "Share",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `chat_type` column: the kind of conversation a file was sent in, and the first level of
/// the storage layout under `files/`. `im`, `groupchat` or `persistent` on the wire and in the
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    Im,
    Groupchat,
    Persistent,
}

impl ChatType {
    pub const ALL: [ChatType; 3] = [ChatType::Im, ChatType::Groupchat, ChatType::Persistent];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Im => "im",
            ChatType::Groupchat => "groupchat",
            ChatType::Persistent => "persistent",
        }
    }
}

impl fmt::Display for ChatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A chat type that is not one of `im`, `groupchat`, `persistent`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("chat type must be im, groupchat or persistent")]
pub struct UnknownChatType;

impl FromStr for ChatType {
    type Err = UnknownChatType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChatType::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownChatType)
    }
}

/// What httpd knows about one upload, download or share: the content of one `aft_log` row
/// except its `aft_index` (assigned by the database) and its `method` (implied by the request
/// that carries it). The limits in the field docs are checked by [`Row::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Uploader (Post) or downloader (Get); 1 to [`JID_MAX`] characters.
    pub jid: String,
    /// Recipient: user, ad hoc group chat or persistent room; 1 to [`JID_MAX`] characters.
    pub to_jid: String,
    /// The encoded resource name; 1 to [`NAME_MAX`] characters.
    pub filename: String,
    /// The name the user uploaded; at most [`NAME_MAX`] characters.
    pub real_filename: String,
    /// The file's extension, lower case; at most [`FILE_TYPE_MAX`] characters.
    pub file_type: String,
    pub chat_type: ChatType,
    /// Host name or IP of the file server; at most [`NAME_MAX`] characters.
    pub file_server: String,
    /// Absolute path on the file server, file name included; at most [`PATH_MAX`] characters.
    pub file_path: String,
    /// Size of the file in bytes; not negative.
    pub file_size: i64,
    /// Bytes actually moved in this transfer; not negative.
    pub bytes_transferred: i64,
    /// UTC time of the transfer, years 1 to 9999; stored as `TIMESTAMP` (no zone) at
    /// microsecond precision.
    pub timestamp: DateTime<Utc>,
    /// The content's SHA-256 as [`SHA256_LEN`] lowercase hex digits, for an upload; absent
    /// (NULL in the row) for the other events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The id the sender chose for this event (1 to [`EVENT_ID_MAX`] ASCII letters, digits and
    /// `-`; httpd sends a UUID). logd records an id once: the same event sent again (its answer
    /// was lost) is answered with the row it wrote first, and [`LogdClient::lookup`] finds it.
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
    pub chat_type: ChatType,
    /// Absolute path on the file server, file name included.
    pub file_path: String,
}

impl Amendment {
    /// Checks each value against its column, as [`Row::new`] does for a transfer.
    pub fn check(&self) -> Result<(), Invalid> {
        non_empty_text("filename", &self.filename, NAME_MAX)?;
        non_empty_text("to_jid", &self.to_jid, JID_MAX)?;
        text("file_path", &self.file_path, PATH_MAX)
    }
}

/// A mark a client sets on the Post row of a stored file: the row whose `filename` and
/// `file_path` these are takes `file_state`. Only [`FileState::Expired`] may be set this way (the
/// file was removed on purpose); the drift states are `logd reconcile`'s, written directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMark {
    /// The Post row's `filename` (the encoded resource name).
    pub filename: String,
    /// The Post row's `file_path`: where the file lay.
    pub file_path: String,
    pub file_state: FileState,
}

impl FileMark {
    /// Checks each value against its column, and that the state is one a client may set.
    pub fn check(&self) -> Result<(), Invalid> {
        non_empty_text("filename", &self.filename, NAME_MAX)?;
        text("file_path", &self.file_path, PATH_MAX)?;
        match self.file_state {
            FileState::Expired => Ok(()),
            other => Err(Invalid::new(
                "file_state",
                format!(
                    "must be \"expired\": {:?} is set by logd reconcile only",
                    other.as_str()
                ),
            )),
        }
    }
}

/// A value refused: which field, and why. The field is named as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A `file_size`, `bytes_transferred` or other count that is not a BIGINT from 0.
    pub fn count(field: &str) -> Self {
        Self::new(field, format!("must be an integer from 0 to {}", i64::MAX))
    }

    /// A `sha256` that is not [`SHA256_LEN`] lowercase hex digits.
    pub fn sha256(field: &str) -> Self {
        Self::new(
            field,
            format!("must be {SHA256_LEN} lowercase hex digits, or null"),
        )
    }

    /// An `event_id` that is not 1 to [`EVENT_ID_MAX`] letters, digits and `-`.
    pub fn event_id(field: &str) -> Self {
        Self::new(
            field,
            format!("must be 1 to {EVENT_ID_MAX} ASCII letters, digits and '-', or null"),
        )
    }
}

/// One `aft_log` row, without its `aft_index`: a method and a transfer whose every value fits
/// its column, so it can be inserted on PostgreSQL and on SQLite alike (SQLite does not enforce
/// VARCHAR lengths itself). Only [`Row::new`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    method: Method,
    transfer: Transfer,
}

impl Row {
    /// Checks `transfer` field by field (the first field at fault is named), and truncates its
    /// timestamp to the microsecond (the precision of PostgreSQL's TIMESTAMP, so both backends
    /// store the same value).
    pub fn new(method: Method, mut transfer: Transfer) -> Result<Self, Invalid> {
        let t = &transfer;
        non_empty_text("jid", &t.jid, JID_MAX)?;
        non_empty_text("to_jid", &t.to_jid, JID_MAX)?;
        non_empty_text("filename", &t.filename, NAME_MAX)?;
        text("real_filename", &t.real_filename, NAME_MAX)?;
        text("file_type", &t.file_type, FILE_TYPE_MAX)?;
        text("file_server", &t.file_server, NAME_MAX)?;
        text("file_path", &t.file_path, PATH_MAX)?;
        count("file_size", t.file_size)?;
        count("bytes_transferred", t.bytes_transferred)?;
        if !(1..=9999).contains(&t.timestamp.year()) {
            return Err(Invalid::new(
                "timestamp",
                "must be between the years 1 and 9999",
            ));
        }
        if let Some(hex) = &t.sha256 {
            if hex.len() != SHA256_LEN
                || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(Invalid::sha256("sha256"));
            }
        }
        if let Some(id) = &t.event_id {
            if !is_event_id(id) {
                return Err(Invalid::event_id("event_id"));
            }
        }
        transfer.timestamp = transfer.timestamp.trunc_subsecs(6);
        Ok(Self { method, transfer })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }
}

/// Whether `id` is a valid event id: 1 to [`EVENT_ID_MAX`] ASCII letters, digits and `-` (a
/// UUID's text form fits).
pub(crate) fn is_event_id(id: &str) -> bool {
    (1..=EVENT_ID_MAX).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A string value of at most `max` characters (VARCHAR counts characters, not bytes), without
/// NUL (which PostgreSQL cannot store).
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    let chars = value.chars().count();
    if chars > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters, got {chars}"),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// The same, and not empty.
fn non_empty_text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    text(field, value, max)?;
    if value.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    Ok(())
}

fn count(field: &str, value: i64) -> Result<(), Invalid> {
    match value >= 0 {
        true => Ok(()),
        false => Err(Invalid::count(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn refused(change: impl FnOnce(&mut Transfer)) -> (String, String) {
        let mut t = sample::transfer();
        change(&mut t);
        let e = Row::new(Method::Post, t).expect_err("should be refused");
        (e.field, e.message)
    }

    #[test]
    fn a_valid_transfer_is_a_row_to_the_microsecond() {
        let t = Transfer {
            timestamp: "2025-01-02T03:04:05.123456789Z".parse().unwrap(),
            ..sample::transfer()
        };
        let row = Row::new(Method::Get, t.clone()).unwrap();
        assert_eq!(row.method(), Method::Get);
        assert_eq!(
            row.transfer().timestamp.to_rfc3339(),
            "2025-01-02T03:04:05.123456+00:00"
        );
        assert_eq!(
            row.transfer(),
            &Transfer {
                timestamp: t.timestamp.trunc_subsecs(6),
                ..t
            }
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let long = |n: usize| "é".repeat(n);
        assert_eq!(
            refused(|t| t.jid = String::new()),
            ("jid".into(), "must not be empty".into())
        );
        assert_eq!(
            refused(|t| t.to_jid = long(3072)),
            (
                "to_jid".into(),
                "must be at most 3071 characters, got 3072".into()
            )
        );
        assert_eq!(
            refused(|t| t.real_filename = "a\0b".into()).0,
            "real_filename"
        );
        assert_eq!(refused(|t| t.file_type = long(11)).0, "file_type");
        assert_eq!(refused(|t| t.file_path = long(4096)).0, "file_path");
        assert_eq!(
            refused(|t| t.bytes_transferred = -1),
            (
                "bytes_transferred".into(),
                format!("must be an integer from 0 to {}", i64::MAX)
            )
        );
        assert_eq!(
            refused(|t| t.timestamp = "+10000-01-01T00:00:00Z".parse().unwrap()).0,
            "timestamp"
        );
        assert_eq!(refused(|t| t.sha256 = Some("A".repeat(64))).0, "sha256");
        assert_eq!(refused(|t| t.event_id = Some("a b".into())).0, "event_id");
        assert!(Row::new(
            Method::Post,
            Transfer {
                file_server: long(511),
                real_filename: long(511),
                ..sample::transfer()
            }
        )
        .is_ok());
    }

    #[test]
    fn amendments_are_checked_like_rows() {
        let amendment = Amendment {
            filename: "f".into(),
            to_jid: "room@conference.x".into(),
            chat_type: ChatType::Persistent,
            file_path: "/srv/f".into(),
        };
        assert_eq!(amendment.check(), Ok(()));
        let e = Amendment {
            to_jid: String::new(),
            ..amendment.clone()
        }
        .check()
        .unwrap_err();
        assert_eq!(e.field, "to_jid");
        let e = Amendment {
            file_path: "p".repeat(4096),
            ..amendment
        }
        .check()
        .unwrap_err();
        assert_eq!(e.field, "file_path");
    }

    #[test]
    fn a_client_marks_files_expired_only() {
        let mark = FileMark {
            filename: "f".into(),
            file_path: "/srv/f".into(),
            file_state: FileState::Expired,
        };
        assert_eq!(mark.check(), Ok(()));
        for state in [FileState::Missing, FileState::Size, FileState::Digest] {
            let e = FileMark {
                file_state: state,
                ..mark.clone()
            }
            .check()
            .unwrap_err();
            assert_eq!(e.field, "file_state");
        }
        assert_eq!(
            FileMark {
                filename: String::new(),
                ..mark.clone()
            }
            .check()
            .unwrap_err()
            .field,
            "filename"
        );
        assert_eq!(
            FileMark {
                file_path: "p".repeat(4096),
                ..mark
            }
            .check()
            .unwrap_err()
            .field,
            "file_path"
        );
    }

    #[test]
    fn methods_and_chat_types_are_their_column_values() {
        assert_eq!(
            [Method::Post, Method::Get, Method::Share].map(Method::as_str),
            ["Post", "Get", "Share"]
        );
        for c in ChatType::ALL {
            assert_eq!(c.as_str().parse(), Ok(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert!(c.as_str().len() <= CHAT_TYPE_MAX);
        }
        assert_eq!("IM".parse::<ChatType>(), Err(UnknownChatType));
        assert!(serde_json::from_str::<ChatType>("\"broadcast\"").is_err());
    }
}
