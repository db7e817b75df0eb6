//! logd: the node's audit writer. It owns the `aft_log` database; httpd reports every upload
//! and download to it over a local Unix socket and waits for the acknowledgement, which logd
//! sends only once the event's row is committed.
//!
//! Always compiled (what httpd links with `default-features = false`):
//! - [`row`]: one `aft_log` row, its column limits, [`Method`] and [`ChatType`]; the
//!   [`Transfer`] a client sends, the [`Amendment`] of a Post row, the [`FileMark`] of a file
//!   removed on purpose, and the checked [`row::Row`];
//! - [`LogdClient`], the async client, and its [`LogdError`];
//! - the wire format they share (newline-delimited JSON, see `docs/logd-protocol.md`);
//! - [`LogdStatus`], what a running logd reports about itself (checks, alarms, counters).
//!
//! With the `server` feature (default), the daemon itself: request framing ([`framing`]) and
//! decoding ([`decode_request`], for the fuzz targets of `fuzz/`), the batching policy, the
//! interface between the writer and the database (`store`), the group-commit writer, the
//! diesel database with its migrations and schema check ([`db`]), the alarms and counters, the
//! socket server ([`server::run`]); and the operator commands [`checks`] (`logd check`),
//! [`purge`] (`logd purge`) and [`reconcile`] (`logd reconcile`).
//!
//! Modules depend downwards only: `row` and `status` at the bottom, `protocol` and `client`
//! on them; in the server `store` on `db::schema`, `db` on `store`, `request`, `health` and
//! `writer` on those, `checks`, `purge` and `reconcile` on `db`, and `server` on top.

mod client;
mod protocol;
pub mod row;
mod status;

pub use client::{LogdClient, LogdError};
pub use row::{Amendment, ChatType, FileMark, FileState, Method, Transfer, UnknownChatType};
pub use status::{
    Check, Committed, LogdCounters, LogdStatus, CONNECTED, REACHABLE, SCHEMA_VERIFIED,
};

#[cfg(feature = "server")]
mod batch;
#[cfg(feature = "server")]
pub mod checks;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod framing;
#[cfg(feature = "server")]
mod health;
#[cfg(feature = "server")]
pub mod mount;
#[cfg(feature = "server")]
pub mod purge;
#[cfg(feature = "server")]
pub mod reconcile;
#[cfg(feature = "server")]
mod request;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod store;
#[cfg(feature = "server")]
mod writer;

#[cfg(test)]
#[path = "../tests/common/sample.rs"]
mod sample;

/// One request line decoded as the server decodes it: `Err` with the request's `id` (when it
/// could be read), the field at fault and why. Public for the fuzz targets of `fuzz/`.
#[cfg(feature = "server")]
pub fn decode_request(line: &str) -> Result<(), (Option<u64>, String, String)> {
    request::decode(line)
        .map(drop)
        .map_err(|r| (r.id, r.invalid.field, r.invalid.message))
}
