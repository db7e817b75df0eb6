//! Decoding and validating one request line on the server: JSON in, a [`Command`] ready for the
//! database out, or a [`Rejection`] naming the field at fault. Pure functions, no I/O.
//!
//! Requests are read field by field (not through serde's derive) so that a wrong type, a missing
//! field and a value beyond its column's limit are all reported the same way: by field name.
//! Every limit here is a column limit from `db::schema`; an event that passes can be inserted
//! on both PostgreSQL and SQLite (which does not enforce VARCHAR lengths itself).

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::db::schema::{self, AftRecord};
use crate::protocol::{Outcome, Reply, PROTOCOL_VERSION};
use crate::Amendment;

/// A valid request: its id and what to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub id: u64,
    pub body: Body,
}

/// What a valid request asks for.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every request is an event; a box would only add an allocation"
)]
pub(crate) enum Body {
    /// An event for the writer.
    Event(Command),
    /// logd's checks, alarms and counters.
    Status,
}

/// What the writer does with one event.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every command is an insert; a box would only add an allocation"
)]
pub(crate) enum Command {
    /// `post`, `get_start` or `share`: insert this row (unless a row has its `event_id`).
    Insert(AftRecord),
    /// `get_start` with `to_jid_of_post`: insert this Get row with the `to_jid` of the Post row
    /// of the same `filename` (its own `to_jid` when there is none).
    InsertToPostRecipient(AftRecord),
    /// `get_end`: set `bytes_transferred` of the Get row `aft_index`.
    GetEnd {
        aft_index: i64,
        bytes_transferred: i64,
    },
    /// `amend_post`: a file's first share names its recipient and chat type, and where the file
    /// now lies, in its Post row.
    AmendPost(Amendment),
    /// `lookup`: the row written by the event with this id, if any.
    Lookup(String),
}

/// What one committed command did: the `aft_index` of the row it inserted or changed, and for
/// an [`Command::InsertToPostRecipient`] the `to_jid` the row took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Done {
    pub aft_index: i64,
    pub to_jid: Option<String>,
}

impl Done {
    pub fn row(aft_index: i64) -> Self {
        Self {
            aft_index,
            to_jid: None,
        }
    }
}

/// A value refused: which request field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct Invalid {
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
}

/// A request refused before reaching the writer; `id` if it could be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejection {
    pub id: Option<u64>,
    pub invalid: Invalid,
}

impl Rejection {
    pub fn into_reply(self) -> Reply {
        Reply {
            id: self.id,
            outcome: Outcome::Invalid {
                field: self.invalid.field,
                message: self.invalid.message,
            },
        }
    }
}

/// Reads one request line.
pub(crate) fn decode(line: &str) -> Result<Request, Rejection> {
    let reject = |id, invalid| Rejection { id, invalid };
    let value: Value = serde_json::from_str(line)
        .map_err(|e| reject(None, Invalid::new("request", format!("not JSON: {e}"))))?;
    let Value::Object(map) = value else {
        return Err(reject(
            None,
            Invalid::new("request", "must be a JSON object"),
        ));
    };
    let request = Object(&map);
    let id = request
        .get("id")
        .and_then(|id| {
            id.as_u64()
                .ok_or_else(|| Invalid::new("id", "must be an integer from 0 to 2^64-1"))
        })
        .map_err(|e| reject(None, e))?;
    let body = body(&request).map_err(|e| reject(Some(id), e))?;
    Ok(Request { id, body })
}

fn body(request: &Object) -> Result<Body, Invalid> {
    let version = request.get("version")?;
    if version.as_u64() != Some(PROTOCOL_VERSION.into()) {
        return Err(Invalid::new(
            "version",
            format!("unsupported protocol version {version}; this logd speaks version {PROTOCOL_VERSION}"),
        ));
    }
    let command = match request.get("op")?.as_str() {
        Some("post") => Command::Insert(transfer(request, schema::POST)?),
        Some("share") => Command::Insert(transfer(request, schema::SHARE)?),
        Some("get_start") => {
            let row = transfer(request, schema::GET)?;
            match request.0.get("to_jid_of_post") {
                None | Some(Value::Bool(false)) => Command::Insert(row),
                Some(Value::Bool(true)) => Command::InsertToPostRecipient(row),
                Some(_) => return Err(Invalid::new("to_jid_of_post", "must be true or false")),
            }
        }
        Some("amend_post") => {
            let Value::Object(map) = request.get("amendment")? else {
                return Err(Invalid::new("amendment", "must be a JSON object"));
            };
            let a = Object(map);
            Command::AmendPost(Amendment {
                filename: a.non_empty_text("filename", schema::NAME_MAX)?,
                to_jid: a.non_empty_text("to_jid", schema::JID_MAX)?,
                chat_type: chat_type(&a)?,
                file_path: a.text("file_path", schema::PATH_MAX)?,
            })
        }
        Some("get_end") => {
            let aft_index = request.count("aft_index")?;
            if aft_index == 0 {
                return Err(Invalid::new("aft_index", "must be a positive integer"));
            }
            Command::GetEnd {
                aft_index,
                bytes_transferred: request.count("bytes_transferred")?,
            }
        }
        Some("lookup") => Command::Lookup(request.event_id("event_id")?.ok_or_else(|| Invalid::new("event_id", "must be a string"))?),
        Some("status") => return Ok(Body::Status),
        _ => return Err(Invalid::new(
            "op",
            "must be \"post\", \"get_start\", \"get_end\", \"share\", \"amend_post\", \"lookup\" or \"status\"",
        )),
    };
    Ok(Body::Event(command))
}

/// The `transfer` object of a `post` or `get_start`, as the row to insert.
fn transfer(request: &Object, method: &str) -> Result<AftRecord, Invalid> {
    let Value::Object(map) = request.get("transfer")? else {
        return Err(Invalid::new("transfer", "must be a JSON object"));
    };
    let t = Object(map);
    let chat_type = chat_type(&t)?;
    Ok(AftRecord {
        jid: t.non_empty_text("jid", schema::JID_MAX)?,
        to_jid: t.non_empty_text("to_jid", schema::JID_MAX)?,
        method: method.to_owned(),
        filename: t.non_empty_text("filename", schema::NAME_MAX)?,
        real_filename: t.text("real_filename", schema::NAME_MAX)?,
        file_type: t.text("file_type", schema::FILE_TYPE_MAX)?,
        chat_type,
        file_server: t.text("file_server", schema::NAME_MAX)?,
        file_path: t.text("file_path", schema::PATH_MAX)?,
        file_size: t.count("file_size")?,
        bytes_transferred: t.count("bytes_transferred")?,
        timestampvalue: t.timestamp("timestamp")?,
        sha256: t.sha256("sha256")?,
        event_id: t.event_id("event_id")?,
    })
}

/// The `chat_type` field: one of [`schema::CHAT_TYPES`].
fn chat_type(object: &Object) -> Result<String, Invalid> {
    let chat_type = object.text("chat_type", schema::CHAT_TYPE_MAX)?;
    if !schema::CHAT_TYPES.contains(&chat_type.as_str()) {
        return Err(Invalid::new(
            "chat_type",
            format!("must be one of {}", schema::CHAT_TYPES.join(", ")),
        ));
    }
    Ok(chat_type)
}

/// A JSON object whose fields are read with errors naming them.
struct Object<'a>(&'a Map<String, Value>);

impl Object<'_> {
    fn get(&self, field: &str) -> Result<&Value, Invalid> {
        self.0
            .get(field)
            .ok_or_else(|| Invalid::new(field, "is missing"))
    }

    /// A string of at most `max` characters (VARCHAR counts characters, not bytes), without NUL
    /// (which PostgreSQL cannot store).
    fn text(&self, field: &str, max: usize) -> Result<String, Invalid> {
        let text = self
            .get(field)?
            .as_str()
            .ok_or_else(|| Invalid::new(field, "must be a string"))?;
        let chars = text.chars().count();
        if chars > max {
            return Err(Invalid::new(
                field,
                format!("must be at most {max} characters, got {chars}"),
            ));
        }
        if text.contains('\0') {
            return Err(Invalid::new(field, "must not contain NUL characters"));
        }
        Ok(text.to_owned())
    }

    fn non_empty_text(&self, field: &str, max: usize) -> Result<String, Invalid> {
        let text = self.text(field, max)?;
        if text.is_empty() {
            return Err(Invalid::new(field, "must not be empty"));
        }
        Ok(text)
    }

    /// An optional SHA-256: absent or null, or exactly [`schema::SHA256_LEN`] lowercase hex
    /// digits.
    fn sha256(&self, field: &str) -> Result<Option<String>, Invalid> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(hex))
                if hex.len() == schema::SHA256_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Some(hex.clone()))
            }
            Some(_) => Err(Invalid::new(
                field,
                format!("must be {} lowercase hex digits, or null", schema::SHA256_LEN),
            )),
        }
    }

    /// An optional event id: absent or null, or 1 to [`schema::EVENT_ID_MAX`] ASCII letters,
    /// digits and `-` (a UUID's text form fits).
    fn event_id(&self, field: &str) -> Result<Option<String>, Invalid> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(id))
                if (1..=schema::EVENT_ID_MAX).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                Ok(Some(id.clone()))
            }
            Some(_) => Err(Invalid::new(
                field,
                format!("must be 1 to {} ASCII letters, digits and '-', or null", schema::EVENT_ID_MAX),
            )),
        }
    }

    /// A non-negative integer that fits a BIGINT.
    fn count(&self, field: &str) -> Result<i64, Invalid> {
        self.get(field)?
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                Invalid::new(field, format!("must be an integer from 0 to {}", i64::MAX))
            })
    }

    /// An RFC 3339 time with a zone, from year 1 to 9999, as UTC truncated to the microsecond
    /// (the precision of PostgreSQL's TIMESTAMP, so both backends store the same value).
    fn timestamp(&self, field: &str) -> Result<chrono::NaiveDateTime, Invalid> {
        let text = self
            .get(field)?
            .as_str()
            .ok_or_else(|| Invalid::new(field, "must be a string"))?;
        let time = DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                Invalid::new(
                    field,
                    format!("must be an RFC 3339 time such as 2025-01-02T03:04:05Z: {e}"),
                )
            })?
            .with_timezone(&Utc);
        if !(1..=9999).contains(&time.year()) {
            return Err(Invalid::new(field, "must be between the years 1 and 9999"));
        }
        Ok(time.trunc_subsecs(6).naive_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transfer() -> Value {
        json!({
            "jid": "alice@example.com/phone", "to_jid": "room@conference.example.com",
            "filename": "AbC-_123", "real_filename": "Привет.txt", "file_type": "txt",
            "chat_type": "groupchat", "file_server": "10.0.0.5",
            "file_path": "/opt/mftFileStore/node_1/files/groupchat/20250102/03/AbC-_123",
            "file_size": 10, "bytes_transferred": 0, "timestamp": "2025-01-02T04:04:05.123456789+01:00"
        })
    }

    fn line(op: &str, transfer: Value) -> String {
        json!({"version": 1, "id": 9, "op": op, "transfer": transfer}).to_string()
    }

    /// The field a request with `change` applied to its transfer is refused for.
    fn refused_field(change: impl FnOnce(&mut Map<String, Value>)) -> (String, String) {
        let mut t = transfer();
        change(t.as_object_mut().unwrap());
        let rejection = decode(&line("post", t)).expect_err("should be refused");
        assert_eq!(rejection.id, Some(9));
        (rejection.invalid.field, rejection.invalid.message)
    }

    #[test]
    fn a_valid_post_becomes_its_row() {
        let request = decode(&line("post", transfer())).unwrap();
        assert_eq!(request.id, 9);
        let Body::Event(Command::Insert(row)) = request.body else {
            panic!("expected an insert")
        };
        assert_eq!(row.method, "Post");
        assert_eq!(row.jid, "alice@example.com/phone");
        assert_eq!(row.real_filename, "Привет.txt");
        assert_eq!(row.chat_type, "groupchat");
        assert_eq!((row.file_size, row.bytes_transferred), (10, 0));
        // UTC, truncated to microseconds.
        assert_eq!(row.timestampvalue.to_string(), "2025-01-02 03:04:05.123456");
    }

    #[test]
    fn a_sha256_is_optional_and_must_be_lowercase_hex() {
        let row = |sha256: Option<Value>| {
            let mut t = transfer();
            if let Some(sha256) = sha256 {
                t["sha256"] = sha256;
            }
            match decode(&line("post", t)).map(|request| request.body) {
                Ok(Body::Event(Command::Insert(row))) => Ok(row.sha256),
                Ok(other) => panic!("expected an insert, got {other:?}"),
                Err(rejection) => Err(rejection.invalid.field),
            }
        };
        let digest = "0123456789abcdef".repeat(4);
        assert_eq!(row(None), Ok(None));
        assert_eq!(row(Some(Value::Null)), Ok(None));
        assert_eq!(row(Some(json!(digest))), Ok(Some(digest.clone())));
        for bad in [json!(digest.to_uppercase()), json!(&digest[1..]), json!(format!("{digest}0")), json!(7)] {
            assert_eq!(row(Some(bad.clone())), Err("sha256".into()), "{bad}");
        }
    }

    #[test]
    fn an_event_id_is_optional_and_lookups_need_one() {
        let row = |event_id: Option<Value>| {
            let mut t = transfer();
            if let Some(event_id) = event_id {
                t["event_id"] = event_id;
            }
            match decode(&line("post", t)).map(|request| request.body) {
                Ok(Body::Event(Command::Insert(row))) => Ok(row.event_id),
                Ok(other) => panic!("expected an insert, got {other:?}"),
                Err(rejection) => Err(rejection.invalid.field),
            }
        };
        let uuid = "0f6b1c9e-8d1a-4e0c-9a55-3e4f9d2b7c11";
        assert_eq!(row(None), Ok(None));
        assert_eq!(row(Some(Value::Null)), Ok(None));
        assert_eq!(row(Some(json!(uuid))), Ok(Some(uuid.into())));
        for bad in [json!(""), json!(format!("{uuid}0")), json!("a b"), json!("é"), json!(7)] {
            assert_eq!(row(Some(bad.clone())), Err("event_id".into()), "{bad}");
        }
        let lookup = |request: Value| decode(&request.to_string()).map(|r| r.body).map_err(|r| r.invalid.field);
        assert_eq!(
            lookup(json!({"version": 1, "id": 2, "op": "lookup", "event_id": uuid})),
            Ok(Body::Event(Command::Lookup(uuid.into())))
        );
        for bad in [json!({"version": 1, "id": 2, "op": "lookup"}), json!({"version": 1, "id": 2, "op": "lookup", "event_id": null})] {
            assert_eq!(lookup(bad), Err("event_id".into()));
        }
    }

    #[test]
    fn get_start_and_get_end() {
        let Body::Event(Command::Insert(row)) =
            decode(&line("get_start", transfer())).unwrap().body
        else {
            panic!("expected an insert")
        };
        assert_eq!(row.method, "Get");
        let end =
            decode(r#"{"version":1,"id":3,"op":"get_end","aft_index":12,"bytes_transferred":5}"#)
                .unwrap();
        assert_eq!(
            end,
            Request {
                id: 3,
                body: Body::Event(Command::GetEnd {
                    aft_index: 12,
                    bytes_transferred: 5
                })
            }
        );
        assert_eq!(
            decode(r#"{"version":1,"id":4,"op":"status"}"#).unwrap(),
            Request {
                id: 4,
                body: Body::Status
            }
        );
        let e =
            decode(r#"{"version":1,"id":3,"op":"get_end","aft_index":0,"bytes_transferred":5}"#)
                .unwrap_err();
        assert_eq!(e.invalid.field, "aft_index");
        let e =
            decode(r#"{"version":1,"id":3,"op":"get_end","aft_index":1,"bytes_transferred":-1}"#)
                .unwrap_err();
        assert_eq!(e.invalid.field, "bytes_transferred");
    }

    #[test]
    fn limits_are_the_column_limits_in_characters() {
        let at_limit = |field: &str, n: usize| {
            let mut t = transfer();
            t[field] = json!("é".repeat(n));
            decode(&line("post", t)).is_ok()
        };
        for (field, max) in [
            ("jid", 3071),
            ("to_jid", 3071),
            ("filename", 511),
            ("real_filename", 511),
            ("file_server", 511),
            ("file_path", 4095),
            ("file_type", 10),
        ] {
            assert!(at_limit(field, max), "{field} at {max} should pass");
            assert!(
                !at_limit(field, max + 1),
                "{field} at {} should be refused",
                max + 1
            );
            let (f, message) = refused_field(|t| t[field] = json!("x".repeat(max + 1)));
            assert_eq!(f, field);
            assert_eq!(
                message,
                format!("must be at most {max} characters, got {}", max + 1)
            );
        }
    }

    #[test]
    fn each_bad_value_names_its_field() {
        // The field changed (set to the value, or removed if None) is the field named.
        let cases = [
            ("jid", Some(json!(""))),
            ("to_jid", None),
            ("filename", Some(json!(""))),
            ("chat_type", Some(json!("broadcast"))),
            ("file_size", Some(json!(-1))),
            ("file_size", Some(json!("10"))),
            ("bytes_transferred", Some(json!(1.5))),
            ("timestamp", Some(json!("2025-01-02 03:04:05"))),
            ("timestamp", Some(json!("+10000-01-01T00:00:00Z"))),
            ("real_filename", Some(json!("a\u{0}b"))),
            ("file_type", Some(json!(7))),
        ];
        for (field, value) in cases {
            let refused = refused_field(|t| match value {
                Some(v) => {
                    t.insert(field.into(), v);
                }
                None => {
                    t.remove(field);
                }
            });
            assert_eq!(refused.0, field);
        }
    }

    #[test]
    fn envelope_errors_name_their_field() {
        let cases = [
            ("{", None, "request"),
            ("[1]", None, "request"),
            (r#"{"version":1,"op":"post"}"#, None, "id"),
            (r#"{"version":1,"id":-4,"op":"post"}"#, None, "id"),
            (r#"{"version":2,"id":4,"op":"post"}"#, Some(4), "version"),
            (r#"{"id":4,"op":"post"}"#, Some(4), "version"),
            (r#"{"version":1,"id":4,"op":"put"}"#, Some(4), "op"),
            (
                r#"{"version":1,"id":4,"op":"post","transfer":"x"}"#,
                Some(4),
                "transfer",
            ),
            (
                r#"{"version":1,"id":4,"op":"get_end","bytes_transferred":1}"#,
                Some(4),
                "aft_index",
            ),
        ];
        for (text, id, field) in cases {
            let e = decode(text).unwrap_err();
            assert_eq!((e.id, e.invalid.field.as_str()), (id, field), "{text}");
        }
    }

    #[test]
    fn a_rejection_replies_invalid_with_its_id() {
        let reply = decode(r#"{"version":3,"id":4,"op":"post"}"#)
            .unwrap_err()
            .into_reply();
        assert_eq!(reply.id, Some(4));
        let Outcome::Invalid { field, message } = reply.outcome else {
            panic!("expected Invalid")
        };
        assert_eq!(field, "version");
        assert!(message.contains("speaks version 1"), "{message}");
    }

    #[test]
    fn what_the_client_encodes_the_server_decodes() {
        let t: crate::Transfer = serde_json::from_value(transfer()).unwrap();
        let line = crate::protocol::Request {
            version: PROTOCOL_VERSION,
            id: 77,
            op: crate::protocol::Op::Post { transfer: &t },
        }
        .to_line();
        let Body::Event(Command::Insert(row)) = decode(line.trim_end()).unwrap().body else {
            panic!("expected an insert")
        };
        assert_eq!(row.filename, t.filename);
        assert_eq!(row.timestampvalue, t.timestamp.trunc_subsecs(6).naive_utc());
    }

    #[test]
    fn shares_amendments_and_gets_to_the_post_recipient_decode_as_the_client_encodes_them() {
        use crate::protocol::{Op, Request as Line};
        let t: crate::Transfer = serde_json::from_value(transfer()).unwrap();
        let decoded = |op| {
            let line = Line {
                version: PROTOCOL_VERSION,
                id: 5,
                op,
            }
            .to_line();
            decode(line.trim_end()).unwrap().body
        };
        let Body::Event(Command::Insert(row)) = decoded(Op::Share { transfer: &t }) else {
            panic!("expected an insert")
        };
        assert_eq!(
            (row.method.as_str(), row.to_jid.as_str()),
            ("Share", "room@conference.example.com")
        );
        let Body::Event(Command::InsertToPostRecipient(row)) = decoded(Op::GetStart {
            transfer: &t,
            to_jid_of_post: true,
        }) else {
            panic!("expected an insert to the Post's recipient")
        };
        assert_eq!(row.method, "Get");
        let amendment = Amendment {
            filename: "AbC".into(),
            to_jid: "bob@example.com".into(),
            chat_type: "im".into(),
            file_path: "/srv/f/im/20250102/03/AbC".into(),
        };
        assert_eq!(
            decoded(Op::AmendPost {
                amendment: &amendment
            }),
            Body::Event(Command::AmendPost(amendment.clone()))
        );
        let refused = |line: Value| decode(&line.to_string()).unwrap_err().invalid.field;
        let amend = |a: Value| json!({"version": 1, "id": 1, "op": "amend_post", "amendment": a});
        assert_eq!(
            refused(amend(
                json!({"filename": "", "to_jid": "b@x", "chat_type": "im", "file_path": "/p"})
            )),
            "filename"
        );
        assert_eq!(
            refused(amend(
                json!({"filename": "f", "to_jid": "b@x", "chat_type": "dm", "file_path": "/p"})
            )),
            "chat_type"
        );
        assert_eq!(
            refused(amend(
                json!({"filename": "f", "chat_type": "im", "file_path": "/p"})
            )),
            "to_jid"
        );
        assert_eq!(
            refused(
                json!({"version": 1, "id": 1, "op": "get_start", "transfer": transfer(), "to_jid_of_post": 1})
            ),
            "to_jid_of_post"
        );
    }
}
