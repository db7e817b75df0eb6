//! The wire format between [`LogdClient`](crate::LogdClient) and the logd server:
//! newline-delimited JSON over a Unix stream socket, one request or reply per line, replies
//! matched to requests by `id`. `docs/logd-protocol.md` is the reference; this module only
//! holds the message types and their encoding, no I/O.
//!
//! Requests are only encoded here (the client's side): the server decodes them field by field
//! in `request.rs`, so that every refusal names the field at fault.

use serde::{Deserialize, Serialize};

use crate::row::{Amendment, FileState, Transfer};
use crate::status::LogdStatus;

/// The protocol version this crate speaks; a request with another version is refused.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// One request line, as the client sends it.
#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    pub version: u32,
    pub id: u64,
    #[serde(flatten)]
    pub op: Op<'a>,
}

/// What the request asks for; `op` on the wire.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op<'a> {
    Post {
        transfer: &'a Transfer,
    },
    GetStart {
        transfer: &'a Transfer,
        /// The row takes the `to_jid` of the file's Post row (the transfer's own if none).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        to_jid_of_post: bool,
    },
    /// One more chat a stored file was shared in (a `Share` row).
    Share {
        transfer: &'a Transfer,
    },
    /// The first share: the Post row's recipient, chat type and path.
    AmendPost {
        amendment: &'a Amendment,
    },
    GetEnd {
        aft_index: i64,
        bytes_transferred: i64,
    },
    /// A stored file removed on purpose: the Post row of `filename` at `file_path` takes
    /// `file_state`.
    MarkFile {
        filename: &'a str,
        file_path: &'a str,
        file_state: FileState,
    },
    /// The row written by the event with this `event_id`, if any: `ok` with its `aft_index`, or
    /// `invalid` (field `event_id`) if there is none.
    Lookup {
        event_id: &'a str,
    },
    /// logd's own checks, alarms and counters; answered with [`Outcome::Report`].
    Status,
}

/// One reply line. `id` is the request's, or `null` when the request was too broken to have one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub id: Option<u64>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How a request ended; `status` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Committed: the row's `aft_index` (for `get_end`, `amend_post` and `mark_file`, the index
    /// it updated); for a `get_start` with `to_jid_of_post`, the `to_jid` the row took.
    Ok {
        aft_index: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_jid: Option<String>,
    },
    /// Refused before reaching the database (or, for `get_end`, no such Get row); nothing written.
    Invalid { field: String, message: String },
    /// The transaction carrying the event failed; nothing written.
    Database { message: String },
    /// The answer to a `status` request.
    Report { report: LogdStatus },
}

impl<'a> Request<'a> {
    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a request always serializes");
        line.push('\n');
        line
    }
}

impl Reply {
    /// Appends the reply to `out` as one line, newline included.
    #[cfg(feature = "server")]
    pub fn write_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("a reply always serializes");
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_as_documented() {
        let t = crate::sample::transfer();
        let line = Request {
            version: 1,
            id: 7,
            op: Op::Post { transfer: &t },
        }
        .to_line();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["id"], 7);
        assert_eq!(v["op"], "post");
        assert_eq!(v["transfer"]["jid"], "alice@example.com/phone");
        assert_eq!(v["transfer"]["timestamp"], "2025-01-02T03:04:05Z");

        let line = Request {
            version: 1,
            id: 8,
            op: Op::GetEnd {
                aft_index: 42,
                bytes_transferred: 10,
            },
        }
        .to_line();
        assert_eq!(
            line,
            "{\"version\":1,\"id\":8,\"op\":\"get_end\",\"aft_index\":42,\"bytes_transferred\":10}\n"
        );
        let line = Request {
            version: 1,
            id: 9,
            op: Op::GetStart {
                transfer: &t,
                to_jid_of_post: false,
            },
        }
        .to_line();
        assert!(line.contains("\"op\":\"get_start\""), "{line}");
        let line = Request {
            version: 1,
            id: 10,
            op: Op::Status,
        }
        .to_line();
        assert_eq!(line, "{\"version\":1,\"id\":10,\"op\":\"status\"}\n");
    }

    #[test]
    fn replies_round_trip_in_the_documented_shape() {
        let cases = [
            (
                Reply {
                    id: Some(1),
                    outcome: Outcome::Ok {
                        aft_index: 5,
                        to_jid: None,
                    },
                },
                r#"{"id":1,"status":"ok","aft_index":5}"#,
            ),
            (
                Reply {
                    id: Some(2),
                    outcome: Outcome::Invalid {
                        field: "jid".into(),
                        message: "must not be empty".into(),
                    },
                },
                r#"{"id":2,"status":"invalid","field":"jid","message":"must not be empty"}"#,
            ),
            (
                Reply {
                    id: None,
                    outcome: Outcome::Database {
                        message: "disk full".into(),
                    },
                },
                r#"{"id":null,"status":"database","message":"disk full"}"#,
            ),
            (
                Reply {
                    id: Some(3),
                    outcome: Outcome::Report {
                        report: LogdStatus {
                            checks: vec![crate::status::Check {
                                name: "reachable".into(),
                                ok: true,
                                detail: "127.0.0.1:5432".into(),
                            }],
                            alarms: vec!["MftDbFullError".into()],
                            counters: crate::status::LogdCounters {
                                batches: 2,
                                ..Default::default()
                            },
                        },
                    },
                },
                concat!(
                    r#"{"id":3,"status":"report","report":{"checks":[{"name":"reachable","ok":true,"#,
                    r#""detail":"127.0.0.1:5432"}],"alarms":["MftDbFullError"],"counters":{"committed":"#,
                    r#"{"post":0,"get_start":0,"get_end":0,"share":0,"amend_post":0,"mark_file":0},"batches":2,"#,
                    r#""failed_events":0,"last_batch_size":0,"uptime_seconds":0}}}"#
                ),
            ),
        ];
        for (reply, text) in cases {
            #[cfg(feature = "server")]
            {
                let mut line = b"earlier line\n".to_vec();
                reply.write_line(&mut line);
                assert_eq!(
                    String::from_utf8(line).unwrap(),
                    format!("earlier line\n{text}\n")
                );
            }
            assert_eq!(serde_json::from_str::<Reply>(text).unwrap(), reply);
        }
    }
}
