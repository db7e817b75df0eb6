//! Recording an upload's `Post` row so that a lost answer never parts a file from its row.
//!
//! Every event httpd sends carries an event id (a UUID, [`new_event_id`]), and logd records an
//! id once, so sending a Post again is harmless: a second send is answered with the row of the
//! first. [`PostLog::record`] sends the Post and, while logd is unavailable (unreachable, not
//! answering, or answering that the database failed: then the event may or may not be committed,
//! since a database that dies after making a COMMIT durable cannot say so), sends it again, after
//! the waits of a [`Backoff`], for up to [`RETRY_FOR`] while the client waits. Then:
//!
//! - **recorded**: the row's `aft_index`, and the client gets its URI;
//! - **not recorded** (logd refused it, or no send reached logd): the file and its record are
//!   removed, and the client gets the error;
//! - **unknown** (a send went unanswered, or was answered `database`): the client gets 503, but
//!   the file and slot record
//!   stay. A task asks
//!   logd for the event id ([`AuditLog::lookup`]), first after [`LOOKUP_DELAY`] (longer than a
//!   logd call may take, so that a send still on its way has arrived and been committed or
//!   failed), then after the waits of a [`Backoff`] until logd answers: found, the
//!   file stays (an upload recorded although its client was told otherwise; the client's retry
//!   of a slot, or of an upload with the same `Idempotency-Key`, gets the first answer); not
//!   found, the file and its slot or key record are removed. While it is unresolved, a `PUT` of
//!   the slot, or an upload with the key, is answered 503 ([`PostLog::is_unresolved`]).
//!
//! A file is thus removed only when its row is known not to exist. If httpd stops while an
//! upload is unresolved, its file stays, with or without a row: `docs/operations.md` says how an
//! operator finds it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logd::{LogdError, Transfer};

use crate::audit::AuditLog;
use crate::backoff::Backoff;
use crate::idempotency::KeyIndex;
use crate::layout::FileLocation;
use crate::slot_index::SlotIndex;
use crate::store::Store;

/// How long a Post is sent again while its client waits.
pub const RETRY_FOR: Duration = Duration::from_secs(5);
/// The wait before an unresolved Post's event is first looked up: more than logd's call timeout.
pub const LOOKUP_DELAY: Duration = Duration::from_secs(15);

/// A fresh event id: a random UUID.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Records the Post rows of one node's uploads.
#[derive(Clone)]
pub struct PostLog {
    audit: Arc<dyn AuditLog>,
    store: Arc<Store>,
    slots: SlotIndex,
    keys: KeyIndex,
    /// The records of the unresolved uploads.
    unresolved: Arc<Mutex<HashSet<Record>>>,
}

/// The record that names an upload's file besides its Post row, removed with the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    /// An XEP-0363 slot ([`SlotIndex`]).
    Slot(String),
    /// The event id of an upload with an `Idempotency-Key` ([`KeyIndex`]).
    Key(String),
}

/// An upload's stored file and its record, if it has one.
#[derive(Debug, Clone)]
pub struct Stored {
    pub location: FileLocation,
    pub record: Option<Record>,
}

impl PostLog {
    pub fn new(
        audit: Arc<dyn AuditLog>,
        store: Arc<Store>,
        slots: SlotIndex,
        keys: KeyIndex,
    ) -> Self {
        Self {
            audit,
            store,
            slots,
            keys,
            unresolved: Arc::default(),
        }
    }

    /// Records the Post row of `transfer` (which must carry an event id) for the file
    /// `stored`, as the module doc says; its `aft_index`, or the error for the client. Needs a
    /// tokio runtime.
    pub async fn record(&self, transfer: &Transfer, stored: Stored) -> Result<i64, LogdError> {
        debug_assert!(
            transfer.event_id.is_some(),
            "a Post without an event id cannot be sent again"
        );
        let mut backoff = Backoff::default();
        // Whether a send may have reached logd (it did not answer, rather than not take it).
        let mut maybe_sent = false;
        let unknown = loop {
            let error = match self.audit.post(transfer).await {
                Ok(aft_index) => return Ok(aft_index),
                Err(
                    e @ (LogdError::Unavailable(_)
                    | LogdError::Unreachable(_)
                    | LogdError::Database(_)),
                ) => e,
                Err(e) => break e,
            };
            maybe_sent |= matches!(error, LogdError::Unavailable(_) | LogdError::Database(_));
            if backoff.waited() >= RETRY_FOR {
                break error;
            }
            backoff.wait().await;
        };
        // A refusal would have refused every send; an unreachable logd tells nothing of an
        // earlier send that went unanswered.
        if !maybe_sent || matches!(unknown, LogdError::Invalid { .. }) {
            self.remove(&stored, &transfer.file_path).await;
            return Err(unknown);
        }
        log::warn!(
            "the Post row of {} (event {}) may or may not be recorded: logd did not answer ({unknown}); \
             the file stays until logd says",
            transfer.file_path,
            transfer.event_id.as_deref().unwrap_or_default(),
        );
        if let Some(record) = &stored.record {
            self.unresolved.lock().unwrap().insert(record.clone());
        }
        let resolver = self.clone();
        let transfer = transfer.clone();
        tokio::spawn(async move { resolver.resolve(&transfer, stored).await });
        Err(unknown)
    }

    /// Whether the upload of `record` is unresolved.
    pub fn is_unresolved(&self, record: &Record) -> bool {
        self.unresolved.lock().unwrap().contains(record)
    }

    /// Looks the event of `transfer` up until logd answers; removes the file if it has no row.
    async fn resolve(&self, transfer: &Transfer, stored: Stored) {
        let id = transfer.event_id.as_deref().unwrap_or_default();
        tokio::time::sleep(LOOKUP_DELAY).await;
        let mut backoff = Backoff::default();
        loop {
            match self.audit.lookup(id).await {
                Ok(Some(aft_index)) => {
                    log::warn!(
                        "the Post row of {} (event {id}) was recorded as aft_index {aft_index} although its client \
                         was answered 503; the file stays",
                        transfer.file_path
                    );
                    break;
                }
                Ok(None) => {
                    log::info!(
                        "the Post row of {} (event {id}) was not recorded; removing the file",
                        transfer.file_path
                    );
                    self.remove(&stored, &transfer.file_path).await;
                    break;
                }
                Err(e) => {
                    log::debug!("cannot look up event {id} yet: {e}");
                    backoff.wait().await;
                }
            }
        }
        if let Some(record) = &stored.record {
            self.unresolved.lock().unwrap().remove(record);
        }
    }

    /// Removes a file whose Post row is known not to exist (`path` for the log), and its record.
    pub async fn remove(&self, stored: &Stored, path: &str) {
        if let Err(e) = self.store.remove(&stored.location).await {
            log::error!(
                "cannot remove {path}, whose upload was not recorded: {}",
                crate::error::with_causes(&e)
            );
        }
        let removed = match &stored.record {
            Some(Record::Slot(slot)) => self.slots.remove(slot).await,
            Some(Record::Key(event_id)) => self.keys.remove(event_id).await,
            None => Ok(()),
        };
        if let Err(e) = removed {
            log::error!(
                "cannot remove the record {:?}, whose upload was not recorded: {e}",
                stored.record
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::memory::MemoryAuditLog;
    use crate::layout::ChatType;
    use crate::real_name::RealName;
    use crate::store::Mount;

    fn slot_1() -> Record {
        Record::Slot("slot-1".into())
    }

    /// A post log over a temporary mount holding one stored file, and that file's Post.
    async fn stored_file(
        dir: &tempfile::TempDir,
        audit: &Arc<MemoryAuditLog>,
    ) -> (PostLog, Transfer, Stored, std::path::PathBuf) {
        let store = Arc::new(Store::new(dir.path(), Mount::Directory));
        let mut part = store
            .create(ChatType::Im, chrono::Utc::now())
            .await
            .unwrap();
        part.write(b"content").await.unwrap();
        let location = part
            .commit(&RealName::parse("a.txt").unwrap())
            .await
            .unwrap()
            .location;
        let path = dir.path().join(location.relative());
        let transfer = Transfer {
            jid: "alice@example.com".into(),
            to_jid: "bob@example.com".into(),
            filename: location.file_name.to_string(),
            real_filename: "a.txt".into(),
            file_type: "txt".into(),
            chat_type: ChatType::Im,
            file_server: "files.example.com".into(),
            file_path: path.display().to_string(),
            file_size: 7,
            bytes_transferred: 7,
            timestamp: chrono::Utc::now(),
            sha256: None,
            event_id: Some(new_event_id()),
        };
        let stored = Stored {
            location,
            record: Some(slot_1()),
        };
        let posts = PostLog::new(
            audit.clone(),
            store.clone(),
            SlotIndex::new(store.clone()),
            KeyIndex::new(store),
        );
        (posts, transfer, stored, path)
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_post_keeps_its_file_until_logd_says_it_has_no_row() {
        let (dir, audit) = (
            tempfile::tempdir().unwrap(),
            Arc::new(MemoryAuditLog::default()),
        );
        let (posts, transfer, stored, path) = stored_file(&dir, &audit).await;
        audit.fail_with(|| LogdError::Unavailable("no reply within 10s".into()));
        let started = tokio::time::Instant::now();
        let outcome = posts.record(&transfer, stored).await;
        assert!(
            matches!(outcome, Err(LogdError::Unavailable(_))),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() >= RETRY_FOR && started.elapsed() < RETRY_FOR * 2,
            "{:?}",
            started.elapsed()
        );
        assert!(path.exists() && posts.is_unresolved(&slot_1()));
        // logd stays away past the first lookup, then comes back.
        tokio::time::sleep(LOOKUP_DELAY + Duration::from_secs(30)).await;
        assert!(path.exists() && posts.is_unresolved(&slot_1()));
        audit.recover();
        tokio::time::sleep(crate::backoff::MAX * 2).await;
        assert!(
            !path.exists(),
            "the file of a row known not to exist is removed"
        );
        assert!(!posts.is_unresolved(&slot_1()));
        assert!(audit.rows().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_recorded_whose_answers_were_all_lost_keeps_its_file() {
        let (dir, audit) = (
            tempfile::tempdir().unwrap(),
            Arc::new(MemoryAuditLog::default()),
        );
        let (posts, transfer, stored, path) = stored_file(&dir, &audit).await;
        audit.lose_answers(usize::MAX);
        assert!(posts.record(&transfer, stored).await.is_err());
        audit.lose_answers(0);
        tokio::time::sleep(LOOKUP_DELAY + crate::backoff::MAX).await;
        assert!(path.exists(), "the file of a recorded row stays");
        assert!(!posts.is_unresolved(&slot_1()));
        assert_eq!(audit.rows().len(), 1, "sent many times, recorded once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_that_never_reached_logd_removes_its_file_once_the_client_stops_waiting() {
        let (dir, audit) = (
            tempfile::tempdir().unwrap(),
            Arc::new(MemoryAuditLog::default()),
        );
        let (posts, transfer, stored, path) = stored_file(&dir, &audit).await;
        audit.fail_with(|| LogdError::Unreachable("connect: refused".into()));
        assert!(matches!(
            posts.record(&transfer, stored).await,
            Err(LogdError::Unreachable(_))
        ));
        assert!(!path.exists() && !posts.is_unresolved(&slot_1()));
    }

    /// logd comes back while the client still waits: the upload is recorded.
    #[tokio::test(start_paused = true)]
    async fn a_post_is_sent_again_while_its_client_waits() {
        let (dir, audit) = (
            tempfile::tempdir().unwrap(),
            Arc::new(MemoryAuditLog::default()),
        );
        let (posts, transfer, stored, path) = stored_file(&dir, &audit).await;
        audit.fail_with(|| LogdError::Unreachable("connect: refused".into()));
        let back = audit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETRY_FOR / 2).await;
            back.recover();
        });
        assert_eq!(posts.record(&transfer, stored).await.unwrap(), 1);
        assert!(path.exists());
    }

    /// The database died after making the COMMIT durable (a PostgreSQL failover): logd answered
    /// `database`, the row exists, and the file stays with it.
    #[tokio::test(start_paused = true)]
    async fn a_post_committed_although_answered_database_keeps_its_file() {
        let (dir, audit) = (
            tempfile::tempdir().unwrap(),
            Arc::new(MemoryAuditLog::default()),
        );
        let (posts, transfer, stored, path) = stored_file(&dir, &audit).await;
        audit.lose_answers_with(1, || {
            LogdError::Database("server closed the connection unexpectedly".into())
        });
        assert_eq!(
            posts.record(&transfer, stored).await.unwrap(),
            1,
            "the second send is answered with the row"
        );
        assert!(path.exists());
        assert_eq!(audit.rows().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_the_database_did_not_commit_keeps_its_file_until_logd_says_it_has_no_row() {
        let (dir, audit) = (
            tempfile::tempdir().unwrap(),
            Arc::new(MemoryAuditLog::default()),
        );
        let (posts, transfer, stored, path) = stored_file(&dir, &audit).await;
        audit.fail_with(|| LogdError::Database("disk full".into()));
        assert!(matches!(
            posts.record(&transfer, stored).await,
            Err(LogdError::Database(_))
        ));
        assert!(path.exists() && posts.is_unresolved(&slot_1()));
        audit.recover();
        tokio::time::sleep(LOOKUP_DELAY + crate::backoff::MAX).await;
        assert!(!path.exists() && !posts.is_unresolved(&slot_1()));
        assert!(audit.rows().is_empty());
    }
}
