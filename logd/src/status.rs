//! What a running logd reports about itself (the `status` request): the seed's three database
//! tests, the alarms it has raised and not cleared, and its counters. Plain serde data, shared by
//! the server (which fills it) and [`LogdClient::status`](crate::LogdClient::status) (which
//! httpd's status page and metrics read); nothing here measures anything.

use serde::{Deserialize, Serialize};

/// The `report` of a `status` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogdStatus {
    /// `reachable`, `connected`, `schema verified`, in that order, as measured when asked.
    pub checks: Vec<Check>,
    /// The names of the alarms raised and not yet cleared (`MftDbConnectError`, `MftDbFullError`).
    pub alarms: Vec<String>,
    pub counters: LogdCounters,
}

impl LogdStatus {
    /// Whether every check passed and no alarm is raised.
    pub fn healthy(&self) -> bool {
        self.alarms.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// The names of the seed's three database tests, as a [`Check`]'s `name` gives them.
pub const REACHABLE: &str = "reachable";
pub const CONNECTED: &str = "connected";
pub const SCHEMA_VERIFIED: &str = "schema verified";

/// One of the seed's database tests, by name, and its outcome; `detail` is what was found: the
/// address reached, the error, the difference in the schema.
pub type Check = mft_journal::CheckResult<String>;

/// logd's counters since it started: events and transactions of its writer, and its uptime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogdCounters {
    /// Events committed, by request kind.
    pub committed: Committed,
    /// Transactions committed.
    pub batches: u64,
    /// Events answered `database` (their transaction did not commit).
    pub failed_events: u64,
    /// Events in the last transaction committed.
    pub last_batch_size: u64,
    pub uptime_seconds: u64,
}

/// Events committed, by what they recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Upload rows (`method = 'Post'`).
    pub post: u64,
    /// Download rows inserted (`method = 'Get'`, `get_start`).
    pub get_start: u64,
    /// Download rows completed (`get_end`).
    pub get_end: u64,
    /// Later shares of a stored file (`method = 'Share'`).
    #[serde(default)]
    pub share: u64,
    /// Post rows given their recipient by a first share (`amend_post`).
    #[serde(default)]
    pub amend_post: u64,
    /// Post rows marked as of files removed on purpose (`mark_file`).
    #[serde(default)]
    pub mark_file: u64,
}
