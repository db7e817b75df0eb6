//! httpd: the node's HTTP front for managed file transfer.
//!
//! Uploads stream straight to the file server's mount in the seed's layout and are answered with
//! a URI only once the file is durable and its `aft_log` row is committed (through logd); a
//! download starts only once its `Get` row is committed, and its real byte count is recorded
//! when it ends.
//!
//! Modules, from the pure ones to the glue:
//! - [`layout`]: where a file goes (`files/<chat_type>/<YYYYMMDD>/<HH>[.<n>]/<file_name>`).
//! - [`real_name`]: the user's file name, validated and presented safely.
//! - [`uri`]: download URIs, formatted and strictly parsed.
//! - [`auth`]: JWT credentials.
//! - [`slot`]: XEP-0363 external upload slots and their schemes' credentials.
//! - [`share`]: the XMPP module's share reports and per-recipient download capabilities.
//! - [`conditional`]: `Range`, `ETag`, `If-None-Match`, `If-Range`.
//! - [`records`]: small JSON records on the mount beside `files/`, and the names in use.
//! - [`slot_index`]: which stored file each filled slot names, and when it expires.
//! - [`tls`]: the rustls server configuration from PEM files.
//! - [`reload`]: the token and slot secrets and the TLS certificate, re-read on SIGHUP.
//! - [`store`]: files on the mount (temp name, fsync, rename).
//! - [`audit`]: the audit log interface and its logd implementation.
//! - [`admission`]: whether uploads are admitted now (the file server and logd not known down).
//! - [`backoff`]: the waits between tries of a call to logd.
//! - [`post_log`]: each upload's Post row, sent again after a lost answer, its file removed only
//!   when the row is known not to exist.
//! - [`download_log`]: each download's bytes in its Get row, while it runs and at its end (retried).
//! - [`idempotency`]: `Idempotency-Key`s of native uploads, and what their first upload stored.
//! - [`transfer`]: the upload and download logic.
//! - [`error`]: every failure, mapped to a status and a stable code.
//! - [`route_table`]: every route and its methods, which the registrations below take.
//! - [`http`]: the transfer routes' handlers, and the server entry point (transfers and operations).
//!
//! Operations, beside the transfers:
//! - [`metrics`]: the seed's counters (totals and 60 s timeslices) and the Prometheus registry.
//! - [`node_status`]: the status report, assembled from fsd's, logd's and httpd's observations.
//! - [`status_page`]: that report as an HTML page.
//! - [`ops`]: `/status`, `/readyz`, `/metrics`, `/openapi.json` and request timing.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod conditional;
pub mod download_log;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod layout;
pub mod metrics;
pub mod node_status;
pub mod ops;
pub mod post_log;
pub mod real_name;
pub mod records;
pub mod reload;
pub mod route_table;
pub mod share;
pub mod slot;
pub mod slot_index;
pub mod status_page;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod uri;

#[cfg(test)]
mod api_tests;

pub use error::Error;
pub use http::run;
pub use transfer::{Clock, SystemClock, TransferService};
