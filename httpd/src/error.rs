//! Every way a request fails, and what the client sees: one status, one stable code, one message.
//!
//! Error policy: library code returns this enum (built with `thiserror`); `anyhow` appears only in
//! `main`. The mapping to HTTP is a single exhaustive `match` in [`Error::status_and_code`], so a
//! new variant (here or in `logd::LogdError`) forces a decision. The error is logged once, with its
//! cause chain, when it becomes a response; the client's message never carries internal details.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use logd::LogdError;
use mft_config::TransferMode;

use crate::auth::AuthError;
use crate::real_name::RealNameError;
use crate::slot::SlotError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("the file name is missing: send ?name=, a Content-Disposition filename or a multipart file part")]
    MissingName,
    #[error(transparent)]
    BadName(#[from] RealNameError),
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("this node does not carry managed file transfers (node.transfer_mode = \"{}\")", .0.as_str())]
    NotManaged(TransferMode),
    #[error("no such file")]
    NotFound,
    /// A method that the route of the request's path does not take; its methods.
    #[error("this route takes only {}", .0.join(", "))]
    MethodNotAllowed(&'static [&'static str]),
    #[error("this file is stored by node {0}; download it from that node")]
    OtherNode(String),
    #[error("the file is larger than this node accepts ({0} bytes at most)")]
    TooLarge(u64),
    #[error("{}", audit_message(.0))]
    Audit(#[source] LogdError),
    #[error("{}", store_message(.0))]
    Store(#[source] StoreError),
    #[error("this node is busy with {0} transfers; retry shortly")]
    Busy(usize),
    #[error("the request body stalled: no data for {0} seconds")]
    Stalled(u64),
    #[error("the range starts beyond the end of the file ({0} bytes)")]
    RangeNotSatisfiable(u64),
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// An upload with the same `Idempotency-Key` is in progress.
    #[error("an upload with this Idempotency-Key is in progress; retry once it is answered")]
    KeyInFlight,
    /// An `Idempotency-Key` used before for another upload, or whose first answer is not known.
    #[error("the Idempotency-Key cannot be used for this upload: {0}")]
    KeyReused(String),
}

/// Seconds a client is asked to wait when the node is busy.
const RETRY_AFTER_SECS: &str = "1";

fn audit_message(e: &LogdError) -> &'static str {
    match e {
        LogdError::Unavailable(_) | LogdError::Unreachable(_) => {
            "the transfer cannot be recorded: the audit log service (logd) is unavailable"
        }
        LogdError::Database(_) => "the transfer cannot be recorded: the database is unavailable",
        LogdError::Invalid { .. } => "internal error",
    }
}

fn store_message(e: &StoreError) -> &'static str {
    match e {
        StoreError::Full(_) => "the file server is full",
        StoreError::Unavailable(_) => "the file server is unavailable",
        StoreError::Io(_) => "internal error",
    }
}

impl From<LogdError> for Error {
    fn from(e: LogdError) -> Self {
        Error::Audit(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl Error {
    /// The status and the stable, machine-readable code of each error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::MissingName => (StatusCode::BAD_REQUEST, "bad_file_name"),
            Error::BadName(_) => (StatusCode::BAD_REQUEST, "bad_file_name"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::NotManaged(_) => (StatusCode::FORBIDDEN, "managed_transfer_disabled"),
            Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::OtherNode(_) => (StatusCode::NOT_FOUND, "other_node"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::Audit(LogdError::Unavailable(_) | LogdError::Unreachable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            Error::Audit(LogdError::Database(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            Error::Audit(LogdError::Invalid { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            Error::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "file_server_unavailable")
            }
            Error::Store(StoreError::Full(_)) => {
                (StatusCode::INSUFFICIENT_STORAGE, "file_server_full")
            }
            Error::Store(StoreError::Io(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Error::Stalled(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            Error::RangeNotSatisfiable(_) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            Error::KeyInFlight => (StatusCode::CONFLICT, "idempotency_key_in_use"),
            Error::KeyReused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Error::Slot(e) => match e {
                SlotError::NotConfigured => (StatusCode::FORBIDDEN, "slots_disabled"),
                SlotError::BadPath => (StatusCode::NOT_FOUND, "not_found"),
                SlotError::BadMac => (StatusCode::FORBIDDEN, "bad_slot_token"),
                SlotError::LengthRequired => (StatusCode::LENGTH_REQUIRED, "length_required"),
                SlotError::BadToken(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
                SlotError::Expired => (StatusCode::GONE, "slot_expired"),
                SlotError::Mismatch(_) => (StatusCode::BAD_REQUEST, "slot_mismatch"),
                SlotError::SizeMismatch { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "size_mismatch"),
                SlotError::AlreadyUsed => (StatusCode::CONFLICT, "slot_used"),
                SlotError::BadCapability => (StatusCode::FORBIDDEN, "bad_capability"),
                SlotError::NotOurUrl => (StatusCode::BAD_REQUEST, "not_our_url"),
            },
        }
    }
}

/// `error`'s message with its cause chain, for the log; a cause that says just what the error
/// above it said (the client's message, then the store's own) is left out.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut last = error.to_string();
    let mut text = last.clone();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if message != last {
            text.push_str(": ");
            text.push_str(&message);
        }
        last = message;
        cause = e.source();
    }
    text
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            log::error!("{code}: {}", with_causes(self));
        } else {
            log::info!("{code}: {}", with_causes(self));
        }
        let mut response = HttpResponse::build(status);
        match self {
            _ if status == StatusCode::UNAUTHORIZED => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Error::Busy(_) => {
                response.insert_header((
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                ));
            }
            Error::RangeNotSatisfiable(size) => {
                response.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            Error::MethodNotAllowed(methods) => {
                response.insert_header((header::ALLOW, methods.join(", ")));
            }
            _ => {}
        }
        response.json(serde_json::json!({ "error": code, "message": self.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use actix_web::body::MessageBody;

    use super::*;

    fn io_error(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn each_error_has_its_status_code_and_message() {
        let cases: Vec<(Error, u16, &str, &str)> = vec![
            (Error::BadRequest("bad query".into()), 400, "bad_request", "bad query"),
            (
                Error::MissingName,
                400,
                "bad_file_name",
                "the file name is missing: send ?name=, a Content-Disposition filename or a multipart file part",
            ),
            (Error::BadName(RealNameError::Empty), 400, "bad_file_name", "the file name is empty"),
            (Error::Unauthorized(AuthError::Expired), 401, "unauthorized", "the token has expired"),
            (
                Error::NotManaged(TransferMode::PeerToPeer),
                403,
                "managed_transfer_disabled",
                "this node does not carry managed file transfers (node.transfer_mode = \"peer-to-peer\")",
            ),
            (Error::NotFound, 404, "not_found", "no such file"),
            (Error::MethodNotAllowed(&["GET", "HEAD"]), 405, "method_not_allowed", "this route takes only GET, HEAD"),
            (
                Error::OtherNode("node_2".into()),
                404,
                "other_node",
                "this file is stored by node node_2; download it from that node",
            ),
            (Error::TooLarge(10), 413, "too_large", "the file is larger than this node accepts (10 bytes at most)"),
            (
                Error::Audit(LogdError::Unavailable("connect: refused".into())),
                503,
                "database_unavailable",
                "the transfer cannot be recorded: the audit log service (logd) is unavailable",
            ),
            (
                Error::Audit(LogdError::Database("timeout".into())),
                503,
                "database_unavailable",
                "the transfer cannot be recorded: the database is unavailable",
            ),
            (
                Error::Audit(LogdError::Invalid { field: "jid".into(), message: "too long".into() }),
                500,
                "internal",
                "internal error",
            ),
            (
                Error::Store(StoreError::from(io_error(libc::ENOTCONN))),
                503,
                "file_server_unavailable",
                "the file server is unavailable",
            ),
            (Error::Store(StoreError::from(io_error(libc::ENOSPC))), 507, "file_server_full", "the file server is full"),
            (Error::Store(StoreError::from(io_error(libc::EACCES))), 500, "internal", "internal error"),
            // Every SFTP session full of open files: a capacity condition of the file server.
            (Error::Store(StoreError::from(io_error(libc::ENFILE))), 503, "file_server_unavailable", "the file server is unavailable"),
            (Error::Busy(64), 503, "busy", "this node is busy with 64 transfers; retry shortly"),
            (Error::Stalled(60), 408, "timeout", "the request body stalled: no data for 60 seconds"),
            (
                Error::RangeNotSatisfiable(10),
                416,
                "range_not_satisfiable",
                "the range starts beyond the end of the file (10 bytes)",
            ),
            (
                Error::Slot(SlotError::NotConfigured),
                403,
                "slots_disabled",
                "this node accepts no upload slots (http.slot_secrets is empty)",
            ),
            (
                Error::Slot(SlotError::BadPath),
                404,
                "not_found",
                "not an upload slot: expected /upload/<slot>/<file> or /upload/<hash>/<random>/<file>",
            ),
            (Error::Slot(SlotError::BadMac), 403, "bad_slot_token", "the slot token (?v= or ?v2=) is missing or does not match"),
            (Error::Slot(SlotError::LengthRequired), 411, "length_required", "a slot upload needs a Content-Length"),
            (Error::Slot(SlotError::BadToken("x".into())), 401, "unauthorized", "the slot token is missing or not valid: x"),
            (Error::Slot(SlotError::Expired), 410, "slot_expired", "the upload slot has expired"),
            (Error::Slot(SlotError::Mismatch("slot")), 400, "slot_mismatch", "the token is for another slot: slot"),
            (
                Error::Slot(SlotError::SizeMismatch { declared: 2, granted: 1 }),
                413,
                "size_mismatch",
                "the upload is 2 bytes but the slot was granted for 1",
            ),
            (Error::Slot(SlotError::AlreadyUsed), 409, "slot_used", "this upload slot has already been used"),
        ];
        for (error, status, code, message) in cases {
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            let body = response.into_body().try_into_bytes().unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                json,
                serde_json::json!({ "error": code, "message": message }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn the_log_keeps_the_cause() {
        let e = Error::Store(StoreError::from(io_error(libc::EACCES)));
        assert!(
            with_causes(&e).starts_with("internal error: file store error: Permission denied"),
            "{}",
            with_causes(&e)
        );
        let full = Error::Store(StoreError::from(io_error(libc::ENOSPC)));
        assert_eq!(
            with_causes(&full),
            "the file server is full: No space left on device (os error 28)",
            "each cause once"
        );
        let response = Error::Unauthorized(AuthError::Missing).error_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        let response = Error::Slot(SlotError::BadToken("x".into())).error_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        assert_eq!(
            Error::Busy(1)
                .error_response()
                .headers()
                .get(header::RETRY_AFTER)
                .unwrap(),
            "1"
        );
        let response = Error::RangeNotSatisfiable(1000).error_response();
        assert_eq!(
            response.headers().get(header::CONTENT_RANGE).unwrap(),
            "bytes */1000"
        );
    }
}
