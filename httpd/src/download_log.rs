//! How many bytes each download moved, as its `Get` row records them (`get_end`).
//!
//! Each download with a body gets a reporter task ([`DownloadLog::start`]): while the body runs
//! it records the bytes handed to the server so far every [`PROGRESS_INTERVAL`] (so that if
//! httpd dies mid-download the row keeps what was sent up to the last report), and when the body
//! ends or is dropped it records the final count, retrying while logd is unavailable (after the
//! waits of a [`Backoff`]) until logd records it: a logd restart loses
//! nothing. One task per download sends its reports in order, so a late progress report never
//! overwrites the final count. At most [`MAX_PENDING`] final counts wait for logd at once;
//! beyond, a count is logged as an error and not recorded (the row keeps its last progress).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use logd::LogdError;
use tokio::sync::oneshot;

use crate::audit::AuditLog;
use crate::backoff::Backoff;

/// How often a running download's bytes are recorded.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Final counts waiting for logd, at most.
pub const MAX_PENDING: usize = 10_000;

/// Starts the reporters of the downloads of one node.
#[derive(Clone)]
pub struct DownloadLog {
    audit: Arc<dyn AuditLog>,
    /// Final counts not yet recorded after a first failed try.
    pending: Arc<AtomicUsize>,
}

/// What a download's body holds: the bytes it handed on, and its end.
pub struct Progress {
    sent: Arc<AtomicU64>,
    _end: oneshot::Sender<()>,
}

impl Progress {
    /// Counts `bytes` more handed to the server.
    pub fn add(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// How a download's final count was recorded.
#[derive(Debug)]
pub struct Recorded {
    pub bytes: u64,
    /// Tries it took; more than one when logd was unavailable.
    pub tries: u32,
}

impl DownloadLog {
    pub fn new(audit: Arc<dyn AuditLog>) -> Self {
        Self {
            audit,
            pending: Arc::default(),
        }
    }

    /// Starts reporting the download of `Get` row `aft_index`; `done` gets the final outcome
    /// (for the log line). The reporter ends once the returned [`Progress`] is dropped and its
    /// final count is recorded. Needs a tokio runtime.
    pub fn start(
        &self,
        aft_index: i64,
        done: impl FnOnce(Result<Recorded, LogdError>) + Send + 'static,
    ) -> Progress {
        let sent = Arc::new(AtomicU64::new(0));
        let (end, ended) = oneshot::channel();
        let reporter = Reporter {
            log: self.clone(),
            aft_index,
            sent: sent.clone(),
        };
        tokio::spawn(async move { done(reporter.run(ended).await) });
        Progress { sent, _end: end }
    }
}

struct Reporter {
    log: DownloadLog,
    aft_index: i64,
    sent: Arc<AtomicU64>,
}

impl Reporter {
    async fn run(self, mut ended: oneshot::Receiver<()>) -> Result<Recorded, LogdError> {
        let mut recorded = 0;
        loop {
            tokio::select! {
                _ = &mut ended => break,
                _ = tokio::time::sleep(PROGRESS_INTERVAL) => {
                    let sent = self.sent.load(Ordering::Relaxed);
                    // A failed progress report is only a missed one: the next, or the final
                    // count, says more.
                    if sent != recorded && self.record(sent).await.is_ok() {
                        recorded = sent;
                    }
                }
            }
        }
        self.record_final(self.sent.load(Ordering::Relaxed)).await
    }

    async fn record(&self, bytes: u64) -> Result<(), LogdError> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.log.audit.get_end(self.aft_index, bytes).await
    }

    /// Records `bytes` as the final count, retrying while logd or its database is unavailable.
    async fn record_final(&self, bytes: u64) -> Result<Recorded, LogdError> {
        let mut tries = 1;
        let first = self.record(bytes).await;
        if !retryable(&first) {
            return first.map(|()| Recorded { bytes, tries });
        }
        if self.log.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.log.pending.fetch_sub(1, Ordering::SeqCst);
            return first.map(|()| Recorded { bytes, tries });
        }
        if let Err(e) = &first {
            log::warn!(
                "cannot record the end of download aft_index {} yet ({bytes} bytes), retrying: {e}",
                self.aft_index
            );
        }
        let mut backoff = Backoff::default();
        let outcome = loop {
            backoff.wait().await;
            tries += 1;
            let outcome = self.record(bytes).await;
            if !retryable(&outcome) {
                break outcome;
            }
        };
        self.log.pending.fetch_sub(1, Ordering::SeqCst);
        outcome.map(|()| Recorded { bytes, tries })
    }
}

/// Whether a try failed in a way that a later try may not: logd or its database unavailable.
fn retryable(outcome: &Result<(), LogdError>) -> bool {
    matches!(
        outcome,
        Err(LogdError::Unavailable(_) | LogdError::Unreachable(_) | LogdError::Database(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::memory::MemoryAuditLog;
    use logd::Transfer;

    fn get_row(audit: &MemoryAuditLog) -> i64 {
        let transfer = Transfer {
            jid: "bob@example.com".into(),
            to_jid: "alice@example.com".into(),
            filename: "f".into(),
            real_filename: "a.txt".into(),
            file_type: "txt".into(),
            chat_type: logd::ChatType::Im,
            file_server: "files.example.com".into(),
            file_path: "/srv/f".into(),
            file_size: 8192,
            bytes_transferred: 0,
            timestamp: chrono::Utc::now(),
            sha256: None,
            event_id: None,
        };
        futures_util::FutureExt::now_or_never(audit.get_start(&transfer))
            .unwrap()
            .unwrap()
    }

    /// A reporter for `aft_index`, and where its outcome arrives.
    fn start(
        audit: &Arc<MemoryAuditLog>,
        aft_index: i64,
    ) -> (Progress, oneshot::Receiver<Result<Recorded, LogdError>>) {
        let (tx, done) = oneshot::channel();
        (
            DownloadLog::new(audit.clone()).start(aft_index, move |r| drop(tx.send(r))),
            done,
        )
    }

    async fn outcome(
        done: oneshot::Receiver<Result<Recorded, LogdError>>,
    ) -> Result<Recorded, LogdError> {
        tokio::time::timeout(Duration::from_secs(600), done)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_count_is_retried_until_logd_records_it() {
        let audit = Arc::new(MemoryAuditLog::default());
        let aft_index = get_row(&audit);
        let (progress, done) = start(&audit, aft_index);
        progress.add(1000);
        audit.fail_with(|| LogdError::Unavailable("connect: refused".into()));
        drop(progress);
        // logd stays away for a minute (several tries), then comes back.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(audit.rows()[0].transfer.bytes_transferred, 0);
        audit.recover();
        let recorded = outcome(done).await.unwrap();
        assert_eq!(recorded.bytes, 1000);
        assert!(recorded.tries > 3, "{recorded:?}");
        assert_eq!(audit.rows()[0].transfer.bytes_transferred, 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_download_records_its_progress_and_then_its_end() {
        let audit = Arc::new(MemoryAuditLog::default());
        let aft_index = get_row(&audit);
        let (progress, done) = start(&audit, aft_index);
        progress.add(4096);
        tokio::time::sleep(PROGRESS_INTERVAL + Duration::from_millis(10)).await;
        assert_eq!(
            audit.rows()[0].transfer.bytes_transferred,
            4096,
            "progress after one interval"
        );
        progress.add(4096);
        drop(progress);
        assert_eq!(outcome(done).await.unwrap().bytes, 8192);
        assert_eq!(audit.rows()[0].transfer.bytes_transferred, 8192);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_count_is_not_retried() {
        let audit = Arc::new(MemoryAuditLog::default());
        // There is no Get row 7: logd refuses, and retrying cannot help.
        let (progress, done) = start(&audit, 7);
        drop(progress);
        assert!(matches!(
            outcome(done).await,
            Err(LogdError::Invalid { .. })
        ));
    }
}
