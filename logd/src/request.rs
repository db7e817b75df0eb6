//! Decoding one request line on the server: JSON in, a [`Request`] ready for the writer out, or
//! a [`Rejection`] naming the field at fault. Pure functions, no I/O.
//!
//! Requests are read field by field (not through serde's derive) so that a wrong type, a missing
//! field and a value beyond its column's limit are all reported the same way: by field name.
//! Reading here checks each field's JSON type and its wire encoding (a `chat_type` name, an RFC
//! 3339 time, a `file_state` name); the column rules are [`Row::new`]'s, [`Amendment::check`]'s
//! and [`FileMark::check`]'s.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::protocol::{Outcome, Reply, PROTOCOL_VERSION};
use crate::row::{
    self, Amendment, ChatType, FileMark, FileState, Invalid, Method, Row, Transfer, CHAT_TYPE_MAX,
};
use crate::store::Command;

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
        Some("post") => Command::Insert(Row::new(Method::Post, transfer(request)?)?),
        Some("share") => Command::Insert(Row::new(Method::Share, transfer(request)?)?),
        Some("get_start") => {
            let row = Row::new(Method::Get, transfer(request)?)?;
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
            let amendment = Amendment {
                filename: a.string("filename")?,
                to_jid: a.string("to_jid")?,
                chat_type: a.chat_type()?,
                file_path: a.string("file_path")?,
            };
            amendment.check()?;
            Command::AmendPost(amendment)
        }
        Some("mark_file") => {
            let mark = FileMark {
                filename: request.string("filename")?,
                file_path: request.string("file_path")?,
                file_state: request.file_state()?,
            };
            mark.check()?;
            Command::MarkFile(mark)
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
        Some("lookup") => match request.0.get("event_id") {
            None | Some(Value::Null) => return Err(Invalid::new("event_id", "must be a string")),
            Some(Value::String(id)) if row::is_event_id(id) => Command::Lookup(id.clone()),
            Some(_) => return Err(Invalid::event_id("event_id")),
        },
        Some("status") => return Ok(Body::Status),
        _ => return Err(Invalid::new(
            "op",
            "must be \"post\", \"get_start\", \"get_end\", \"share\", \"amend_post\", \"mark_file\", \"lookup\" or \"status\"",
        )),
    };
    Ok(Body::Event(command))
}

/// The `transfer` object of a `post`, `get_start` or `share`, its fields of the right JSON
/// types; [`Row::new`] checks their values.
fn transfer(request: &Object) -> Result<Transfer, Invalid> {
    let Value::Object(map) = request.get("transfer")? else {
        return Err(Invalid::new("transfer", "must be a JSON object"));
    };
    let t = Object(map);
    let chat_type = t.chat_type()?;
    Ok(Transfer {
        jid: t.string("jid")?,
        to_jid: t.string("to_jid")?,
        filename: t.string("filename")?,
        real_filename: t.string("real_filename")?,
        file_type: t.string("file_type")?,
        chat_type,
        file_server: t.string("file_server")?,
        file_path: t.string("file_path")?,
        file_size: t.integer("file_size")?,
        bytes_transferred: t.integer("bytes_transferred")?,
        timestamp: t.timestamp("timestamp")?,
        sha256: t.optional_string("sha256", Invalid::sha256)?,
        event_id: t.optional_string("event_id", Invalid::event_id)?,
    })
}

/// A JSON object whose fields are read with errors naming them.
struct Object<'a>(&'a Map<String, Value>);

impl Object<'_> {
    fn get(&self, field: &str) -> Result<&Value, Invalid> {
        self.0
            .get(field)
            .ok_or_else(|| Invalid::new(field, "is missing"))
    }

    fn string(&self, field: &str) -> Result<String, Invalid> {
        self.get(field)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Invalid::new(field, "must be a string"))
    }

    /// A string, absent or null; `invalid` names the field's rule for any other value.
    fn optional_string(
        &self,
        field: &str,
        invalid: fn(&str) -> Invalid,
    ) -> Result<Option<String>, Invalid> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(invalid(field)),
        }
    }

    /// The `chat_type` field: a string within its column naming a [`ChatType`].
    fn chat_type(&self) -> Result<ChatType, Invalid> {
        let text = self.string("chat_type")?;
        row::text("chat_type", &text, CHAT_TYPE_MAX)?;
        text.parse().map_err(|_| {
            let names: Vec<&str> = ChatType::ALL.iter().map(|c| c.as_str()).collect();
            Invalid::new("chat_type", format!("must be one of {}", names.join(", ")))
        })
    }

    /// The `file_state` field: a string naming a [`FileState`].
    fn file_state(&self) -> Result<FileState, Invalid> {
        FileState::parse(&self.string("file_state")?).ok_or_else(|| {
            let names: Vec<&str> = FileState::ALL.iter().map(|s| s.as_str()).collect();
            Invalid::new("file_state", format!("must be one of {}", names.join(", ")))
        })
    }

    /// An integer that fits a BIGINT.
    fn integer(&self, field: &str) -> Result<i64, Invalid> {
        self.get(field)?
            .as_i64()
            .ok_or_else(|| Invalid::count(field))
    }

    /// A non-negative integer that fits a BIGINT.
    fn count(&self, field: &str) -> Result<i64, Invalid> {
        self.integer(field).and_then(|n| match n >= 0 {
            true => Ok(n),
            false => Err(Invalid::count(field)),
        })
    }

    /// An RFC 3339 time with a zone, as UTC.
    fn timestamp(&self, field: &str) -> Result<DateTime<Utc>, Invalid> {
        let text = self
            .get(field)?
            .as_str()
            .ok_or_else(|| Invalid::new(field, "must be a string"))?;
        let time = DateTime::parse_from_rfc3339(text).map_err(|e| {
            Invalid::new(
                field,
                format!("must be an RFC 3339 time such as 2025-01-02T03:04:05Z: {e}"),
            )
        })?;
        Ok(time.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use chrono::SubsecRound;
    use serde_json::json;

    /// A sample transfer as JSON, in a zone other than UTC and to the nanosecond.
    fn transfer() -> Value {
        let mut t = serde_json::to_value(Transfer {
            to_jid: "room@conference.example.com".into(),
            filename: "AbC-_123".into(),
            real_filename: "Привет.txt".into(),
            file_type: "txt".into(),
            chat_type: ChatType::Groupchat,
            file_server: "10.0.0.5".into(),
            file_path: "/opt/mftFileStore/node_1/files/groupchat/20250102/03/AbC-_123".into(),
            file_size: 10,
            bytes_transferred: 0,
            ..sample::transfer()
        })
        .unwrap();
        t["timestamp"] = json!("2025-01-02T04:04:05.123456789+01:00");
        t
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
        assert_eq!(row.method(), Method::Post);
        assert_eq!(row.transfer().jid, "alice@example.com/phone");
        assert_eq!(row.transfer().real_filename, "Привет.txt");
        assert_eq!(row.transfer().chat_type, ChatType::Groupchat);
        assert_eq!(
            (row.transfer().file_size, row.transfer().bytes_transferred),
            (10, 0)
        );
        // UTC, truncated to microseconds.
        assert_eq!(
            row.transfer().timestamp.naive_utc().to_string(),
            "2025-01-02 03:04:05.123456"
        );
    }

    #[test]
    fn a_sha256_is_optional_and_must_be_lowercase_hex() {
        let row = |sha256: Option<Value>| {
            let mut t = transfer();
            if let Some(sha256) = sha256 {
                t["sha256"] = sha256;
            }
            match decode(&line("post", t)).map(|request| request.body) {
                Ok(Body::Event(Command::Insert(row))) => Ok(row.transfer().sha256.clone()),
                Ok(other) => panic!("expected an insert, got {other:?}"),
                Err(rejection) => Err(rejection.invalid.field),
            }
        };
        let digest = "0123456789abcdef".repeat(4);
        assert_eq!(row(None), Ok(None));
        assert_eq!(row(Some(Value::Null)), Ok(None));
        assert_eq!(row(Some(json!(digest))), Ok(Some(digest.clone())));
        for bad in [
            json!(digest.to_uppercase()),
            json!(&digest[1..]),
            json!(format!("{digest}0")),
            json!(7),
        ] {
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
                Ok(Body::Event(Command::Insert(row))) => Ok(row.transfer().event_id.clone()),
                Ok(other) => panic!("expected an insert, got {other:?}"),
                Err(rejection) => Err(rejection.invalid.field),
            }
        };
        let uuid = "0f6b1c9e-8d1a-4e0c-9a55-3e4f9d2b7c11";
        assert_eq!(row(None), Ok(None));
        assert_eq!(row(Some(Value::Null)), Ok(None));
        assert_eq!(row(Some(json!(uuid))), Ok(Some(uuid.into())));
        for bad in [
            json!(""),
            json!(format!("{uuid}0")),
            json!("a b"),
            json!("é"),
            json!(7),
        ] {
            assert_eq!(row(Some(bad.clone())), Err("event_id".into()), "{bad}");
        }
        let lookup = |request: Value| {
            decode(&request.to_string())
                .map(|r| r.body)
                .map_err(|r| r.invalid.field)
        };
        assert_eq!(
            lookup(json!({"version": 1, "id": 2, "op": "lookup", "event_id": uuid})),
            Ok(Body::Event(Command::Lookup(uuid.into())))
        );
        for bad in [
            json!({"version": 1, "id": 2, "op": "lookup"}),
            json!({"version": 1, "id": 2, "op": "lookup", "event_id": null}),
        ] {
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
        assert_eq!(row.method(), Method::Get);
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
        let t: Transfer = serde_json::from_value(transfer()).unwrap();
        let line = crate::protocol::Request {
            version: PROTOCOL_VERSION,
            id: 77,
            op: crate::protocol::Op::Post { transfer: &t },
        }
        .to_line();
        let Body::Event(Command::Insert(row)) = decode(line.trim_end()).unwrap().body else {
            panic!("expected an insert")
        };
        assert_eq!(row.transfer().filename, t.filename);
        assert_eq!(row.transfer().timestamp, t.timestamp.trunc_subsecs(6));
    }

    #[test]
    fn shares_amendments_marks_and_gets_to_the_post_recipient_decode_as_the_client_encodes_them() {
        use crate::protocol::{Op, Request as Line};
        let t: Transfer = serde_json::from_value(transfer()).unwrap();
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
            (row.method(), row.transfer().to_jid.as_str()),
            (Method::Share, "room@conference.example.com")
        );
        let Body::Event(Command::InsertToPostRecipient(row)) = decoded(Op::GetStart {
            transfer: &t,
            to_jid_of_post: true,
        }) else {
            panic!("expected an insert to the Post's recipient")
        };
        assert_eq!(row.method(), Method::Get);
        let amendment = Amendment {
            filename: "AbC".into(),
            to_jid: "bob@example.com".into(),
            chat_type: ChatType::Im,
            file_path: "/srv/f/im/20250102/03/AbC".into(),
        };
        assert_eq!(
            decoded(Op::AmendPost {
                amendment: &amendment
            }),
            Body::Event(Command::AmendPost(amendment.clone()))
        );
        let mark = FileMark {
            filename: "AbC".into(),
            file_path: "/srv/f/im/20250102/03/AbC".into(),
            file_state: FileState::Expired,
        };
        assert_eq!(
            decoded(Op::MarkFile {
                filename: &mark.filename,
                file_path: &mark.file_path,
                file_state: mark.file_state,
            }),
            Body::Event(Command::MarkFile(mark))
        );
        let refused = |line: Value| decode(&line.to_string()).unwrap_err().invalid.field;
        let mark = |filename: &str, file_state: &str| json!({"version": 1, "id": 1, "op": "mark_file", "filename": filename, "file_path": "/p", "file_state": file_state});
        assert_eq!(refused(mark("", "expired")), "filename");
        for state in ["missing", "size", "digest", "EXPIRED", "gone"] {
            assert_eq!(refused(mark("f", state)), "file_state", "{state}");
        }
        assert_eq!(
            refused(
                json!({"version": 1, "id": 1, "op": "mark_file", "filename": "f", "file_state": "expired"})
            ),
            "file_path"
        );
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
