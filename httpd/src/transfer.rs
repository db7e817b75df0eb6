//! The node's two transfers, as plain async functions: an upload (native, or to an XEP-0363
//! slot) stores a body and records a `Post` row before it hands out a URI; a download (of a
//! native URI or a filled slot, whole or one range) records a `Get` row before it sends a byte,
//! and records the bytes actually sent when its body finishes or is dropped.
//!
//! Limits live here too: the size limit (by `Content-Length` before reading, and while
//! streaming), a stalled body (`http.request_timeout_secs` without data), and at most
//! `http.max_concurrent_transfers` transfers at once (a permit held until the body is done, or
//! dropped: a client that stops reading is cut off after the same timeout, see [`crate::http::run`]).
//!
//! [`TransferService`] knows the configuration, the credentials, the [`Store`] and the [`AuditLog`];
//! it takes header values, paths and body streams, and knows nothing else of HTTP (see
//! [`crate::http`] for the glue).

use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use std::{fmt, io};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use logd::{Amendment, FileMark, FileState, LogdError, Method, Transfer};
use mft_config::NodeConfig;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::io::ReaderStream;

use crate::admission::Admission;
use crate::audit::AuditLog;
use crate::auth::UploadGrant;
use crate::conditional::{self, Answer, Preconditions, Validators};
use crate::download_log::{DownloadLog, Progress, Recorded};
use crate::error::Error;
use crate::idempotency::{IdempotencyKey, KeyIndex, KeyRecord};
use crate::layout::{ChatType, FileLocation};
use crate::post_log::{new_event_id, PostLog, Record, Stored};
use crate::real_name::RealName;
use crate::reload::Secrets;
use crate::share::{verify_capability, verify_share, CapabilityQuery};
use crate::slot::{SlotPath, SlotRequest, SLOT_PREFIX};
use crate::slot_index::{purgeable, Reserved, SlotIndex, SlotRecord};
use crate::store::{Committed, ContentDigest, Mount, PartialFile, Store};
use crate::uri::FileUri;

/// How much of a stored file a download reads at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The time of day, injectable so tests can move between hours.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The JID recorded in `aft_log` where a transfer has no known user: anonymous downloads, and
/// slot uploads whose scheme names no uploader or recipient (`anonymous@<node id>`).
pub fn placeholder_jid(node_id: &str) -> String {
    format!("anonymous@{node_id}")
}

/// What a successful upload answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uploaded {
    /// The download URI (also sent as `Location`).
    pub uri: String,
    /// The encoded resource name the file is stored under.
    pub file_name: String,
    /// Bytes stored.
    pub size: u64,
    /// The SHA-256 of the bytes stored, lowercase hex, as the Post row records it (also sent as
    /// `Repr-Digest`).
    pub sha256: String,
}

/// A `GET` or `HEAD` as the download logic sees it.
#[derive(Debug, Clone, Copy)]
pub struct DownloadRequest<'a> {
    /// `Authorization`, for native URIs.
    pub authorization: Option<&'a str>,
    /// `false` for `HEAD`: no body, no `Get` row.
    pub with_body: bool,
    pub preconditions: Preconditions<'a>,
}

/// A download ready to answer: headers from `real_name`, `size`, `validators` and `answer`;
/// the body when the request was a `GET` that moves bytes.
pub struct Download {
    pub real_name: RealName,
    /// The whole file's size.
    pub size: u64,
    pub validators: Validators,
    /// Never [`Answer::Unsatisfiable`]: that is [`Error::RangeNotSatisfiable`].
    pub answer: Answer,
    pub body: Option<DownloadBody>,
}

/// To whom a `Get` row is addressed: the chat a capability names, or the upload's recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recipient {
    /// The chat (and its type) the download's capability was delivered in.
    Chat { jid: String, chat_type: ChatType },
    /// The `to_jid` of the file's Post row; [`placeholder_jid`] if logd has none.
    OfUpload,
}

/// What a share changed in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shared {
    /// The file's first share: its Post row now names the recipient and chat type, and the
    /// file lies in that chat type's directory.
    First,
    /// Shared in one more chat: a `Share` row.
    Again,
    /// This chat was recorded before (a retried report): nothing new.
    AlreadyRecorded,
}

/// An admitted upload: who sends it, within which limit, with which `Idempotency-Key`, holding
/// one of the transfer permits.
#[derive(Debug)]
pub struct UploadTicket {
    grant: UploadGrant,
    key: Option<IdempotencyKey>,
    _permit: OwnedSemaphorePermit,
}

/// The uploads and downloads of one node.
pub struct TransferService {
    config: NodeConfig,
    secrets: Arc<Secrets>,
    store: Arc<Store>,
    slots: SlotIndex,
    keys: KeyIndex,
    audit: Arc<dyn AuditLog>,
    downloads: DownloadLog,
    posts: PostLog,
    clock: Arc<dyn Clock>,
    permits: Arc<Semaphore>,
    admission: Arc<Admission>,
    /// Held while a share changes a slot's record: one at a time.
    sharing: tokio::sync::Mutex<()>,
}

impl TransferService {
    /// TransferService with the store at `file_server.mount_point`, which must be as `mount` says.
    pub fn new(
        config: NodeConfig,
        mount: Mount,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store = Arc::new(Store::new(config.file_server.mount_point.clone(), mount));
        let slots = SlotIndex::new(store.clone());
        let keys = KeyIndex::new(store.clone());
        Self {
            secrets: Arc::new(Secrets::new(&config.http)),
            sharing: tokio::sync::Mutex::new(()),
            posts: PostLog::new(audit.clone(), store.clone(), slots.clone(), keys.clone()),
            slots,
            keys,
            permits: Arc::new(Semaphore::new(config.http.max_concurrent_transfers)),
            admission: Arc::default(),
            downloads: DownloadLog::new(audit.clone()),
            store,
            config,
            audit,
            clock,
        }
    }

    /// Whether uploads are admitted now; [`crate::ops::Ops`] keeps it up to date.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Checks an upload before a byte of its body is read: the transfer mode, the upload token
    /// in `authorization`, the `Idempotency-Key` if one is sent, the request's `Content-Length`
    /// against the size limit, that the file server and logd are not known to be down
    /// ([`Admission`]), and a free transfer permit.
    pub fn admit_upload(
        &self,
        authorization: Option<&str>,
        idempotency_key: Option<&str>,
        declared_len: Option<u64>,
    ) -> Result<UploadTicket, Error> {
        self.require_managed()?;
        let grant = self
            .secrets
            .current()
            .credentials
            .verify_upload(authorization)?;
        let key = idempotency_key.map(IdempotencyKey::parse).transpose()?;
        let limit = self.size_limit(grant.max_size);
        if declared_len.is_some_and(|len| len > limit) {
            return Err(Error::TooLarge(limit));
        }
        self.admission.check()?;
        Ok(UploadTicket {
            grant,
            key,
            _permit: self.permit()?,
        })
    }

    /// Stores `body` as the file `name`, records the `Post` row, and only then returns the
    /// file's URI. The size limit is enforced while streaming too. With an `Idempotency-Key`
    /// (see [`crate::idempotency`]), the Post's event id is the key's, and an upload with a key
    /// whose Post row exists stores nothing: see [`TransferService::first_upload`].
    pub async fn upload<E: fmt::Display>(
        &self,
        ticket: UploadTicket,
        name: Option<&str>,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<Uploaded, Error> {
        let grant = &ticket.grant;
        let real_name = RealName::parse(name.ok_or(Error::MissingName)?)?;
        let limit = self.size_limit(grant.max_size);
        let (event_id, _held) = match &ticket.key {
            None => (new_event_id(), None),
            Some(key) => {
                let event_id = key.event_id(&grant.from);
                let held = self.keys.hold(&event_id)?;
                if let Some(first) = self.first_upload(&event_id).await? {
                    return self
                        .retried_upload(&first, grant, &real_name, limit, body)
                        .await;
                }
                (event_id, Some(held))
            }
        };
        let now = self.clock.now();
        let Committed {
            location,
            size,
            sha256,
        } = self
            .store_body(grant.chat_type, &real_name, limit, body, now)
            .await?;
        let transfer = Transfer {
            file_size: db_size(size),
            bytes_transferred: db_size(size),
            sha256: Some(sha256.clone()),
            event_id: Some(event_id.clone()),
            ..self.audit_row(&grant.from, &grant.to, &location, &real_name, now)
        };
        let mut stored = Stored {
            location: location.clone(),
            record: None,
        };
        let uri = FileUri {
            node_id: self.config.node.id.clone(),
            location,
            real_name,
        };
        if ticket.key.is_some() {
            if let Err(e) = self
                .keys
                .put(&event_id, &KeyRecord::new(grant, &uri, size, &sha256, now))
                .await
            {
                self.remove_quietly(&uri.location, &transfer.file_path)
                    .await;
                return Err(e.into());
            }
            stored.record = Some(Record::Key(event_id));
        }
        let aft_index = self.posts.record(&transfer, stored).await?;
        crate::metrics::TRANSFER_COUNTERS.upload_completed(size);
        log_transfer(Method::Post, &transfer, size, aft_index, "");
        Ok(self.uploaded(uri, size, sha256))
    }

    /// The answer to a native upload of `uri`.
    fn uploaded(&self, uri: FileUri, size: u64, sha256: String) -> Uploaded {
        Uploaded {
            uri: format!("{}{}", self.config.node.public_url, uri.path()),
            file_name: uri.location.file_name.to_string(),
            size,
            sha256,
        }
    }

    /// The first upload with the key whose event id is `event_id`, if its Post row exists (asked
    /// of logd: 503 if logd cannot say). 422 if the row exists but its key record does not (it
    /// cannot be answered as the first). No row: `None`, after removing what an upload with the
    /// key left behind (its row known not to exist: httpd stopped before recording it); 503
    /// while that upload is unresolved (its Post may still be recorded).
    async fn first_upload(&self, event_id: &str) -> Result<Option<KeyRecord>, Error> {
        let recorded = self.audit.lookup(event_id).await?;
        let record = self.keys.get(event_id).await?;
        let Some(aft_index) = recorded else {
            let claim = Record::Key(event_id.to_owned());
            if self.posts.is_unresolved(&claim) {
                return Err(LogdError::Unavailable(
                    "the first upload with this Idempotency-Key is not known to be recorded yet"
                        .into(),
                )
                .into());
            }
            if let Some(FileUri { location, .. }) = record.as_ref().and_then(KeyRecord::uri) {
                let path = self.config.file_server.server_path(&location.relative());
                log::warn!("an upload with the Idempotency-Key of event {event_id} left {path} without a Post row; removing it");
                let stored = Stored {
                    location,
                    record: Some(claim),
                };
                self.posts.remove(&stored, &path).await;
            }
            return Ok(None);
        };
        match record {
            Some(record) => Ok(Some(record)),
            None => Err(Error::KeyReused(format!("an upload with this key was recorded (aft_index {aft_index}) but this node no longer knows its answer (keys are kept 24 hours)"))),
        }
    }

    /// An upload with the key of `first`, an upload whose Post row exists: if it asks the same
    /// (name, recipient, chat type) with the same bytes (size and SHA-256), it is answered as
    /// the first was, and nothing is stored or recorded again; otherwise 422.
    async fn retried_upload<E: fmt::Display>(
        &self,
        first: &KeyRecord,
        grant: &UploadGrant,
        real_name: &RealName,
        limit: u64,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<Uploaded, Error> {
        let uri = first.uri().ok_or_else(|| {
            Error::KeyReused("the first upload with this key is not known".into())
        })?;
        if !first.asks_the_same(grant, real_name) {
            return Err(Error::KeyReused(
                "this key was used for an upload of another name, recipient or chat type".into(),
            ));
        }
        if !self.carries(body, limit, first.size, &first.sha256).await? {
            return Err(Error::KeyReused(
                "this key was used for an upload of other bytes".into(),
            ));
        }
        log::info!("a retried upload with the Idempotency-Key of {} carried the stored bytes: answered as the first", first.path);
        Ok(self.uploaded(uri, first.size, first.sha256.clone()))
    }

    /// Whether `body` (at most `limit` bytes, read into a digest only) is `size` bytes whose
    /// SHA-256 is `sha256`.
    async fn carries<E: fmt::Display>(
        &self,
        body: impl Stream<Item = Result<Bytes, E>>,
        limit: u64,
        size: u64,
        sha256: &str,
    ) -> Result<bool, Error> {
        let mut digest = ContentDigest::default();
        receive(&mut digest, body, limit, self.idle_timeout()).await?;
        Ok(digest.bytes() == size && digest.hex() == sha256)
    }

    /// Answers a `GET` or `HEAD` of the native download URI `raw_path` (still percent-encoded).
    /// A download token is required unless `http.anonymous_downloads` is set and none is sent.
    /// The `Get` row names the token's downloader (else [`placeholder_jid`]) and is addressed to
    /// the upload's recipient.
    pub async fn download(
        &self,
        raw_path: &str,
        request: &DownloadRequest<'_>,
    ) -> Result<Download, Error> {
        self.require_managed()?;
        let downloader = match request.authorization {
            None if self.config.http.anonymous_downloads => placeholder_jid(&self.config.node.id),
            authorization => {
                self.secrets
                    .current()
                    .credentials
                    .verify_download(authorization)?
                    .downloader
            }
        };
        let uri = FileUri::parse(raw_path).map_err(|_| Error::NotFound)?;
        if uri.node_id != self.config.node.id {
            return Err(Error::OtherNode(uri.node_id));
        }
        self.serve(
            &uri.location,
            uri.real_name,
            &downloader,
            Recipient::OfUpload,
            request,
        )
        .await
    }

    /// Fills the upload slot at `raw_path` (after [`SLOT_PREFIX`], still percent-encoded) with
    /// `body`, for any of the XEP-0363 external schemes; records the `Post` row and the slot.
    pub async fn upload_slot<E: fmt::Display>(
        &self,
        raw_path: &str,
        request: &SlotRequest<'_>,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<Uploaded, Error> {
        self.require_managed()?;
        let slot = SlotPath::parse(raw_path)?;
        let now = self.clock.now();
        let grant = self
            .secrets
            .current()
            .slot_secrets
            .verify(&slot, request, now)?;
        let limit = self.size_limit(None);
        if grant.size > limit {
            return Err(Error::TooLarge(limit));
        }
        self.admission.check()?;
        let _permit = self.permit()?;
        let slot_url = format!("{}{SLOT_PREFIX}{raw_path}", self.config.node.public_url);
        let _reservation = match self.slots.reserve(&slot).await? {
            Reserved::Free(reservation) => reservation,
            Reserved::Filled(_held, record) => {
                return self
                    .retried_slot_upload(slot_url, &record, grant.size, body, now)
                    .await
            }
        };
        let Committed {
            location,
            size,
            sha256,
        } = self
            .store_body(grant.chat_type, &grant.real_name, grant.size, body, now)
            .await?;
        let placeholder = placeholder_jid(&self.config.node.id);
        let uploader = grant.uploader.as_deref().unwrap_or(&placeholder);
        let transfer = Transfer {
            file_size: db_size(size),
            bytes_transferred: db_size(size),
            sha256: Some(sha256.clone()),
            ..self.audit_row(uploader, &placeholder, &location, &grant.real_name, now)
        };
        let record = SlotRecord {
            slot: slot.as_str().to_owned(),
            scheme: grant.scheme,
            location: location.relative(),
            real_name: grant.real_name.to_string(),
            size,
            uploader: grant.uploader.clone(),
            stored: now,
            expires: grant.expires,
            token_expires: grant.token_expires,
            purged: false,
            shares: Vec::new(),
            sha256: Some(sha256.clone()),
        };
        if let Err(e) = self.slots.put(&record).await {
            self.remove_quietly(&location, &transfer.file_path).await;
            return Err(e.into());
        }
        let stored = Stored {
            location: location.clone(),
            record: Some(Record::Slot(slot.as_str().to_owned())),
        };
        let aft_index = self.posts.record(&transfer, stored).await?;
        crate::metrics::TRANSFER_COUNTERS.upload_completed(size);
        log_transfer(
            Method::Post,
            &transfer,
            size,
            aft_index,
            &format!(" (slot {:?}, {:?})", slot.as_str(), grant.scheme),
        );
        Ok(Uploaded {
            uri: slot_url,
            file_name: location.file_name.to_string(),
            size,
            sha256,
        })
    }

    /// A `PUT` to a slot filled before, as `record` says: the retry of an upload whose answer
    /// was lost, if its body is the stored file's bytes (the same size and SHA-256), is answered
    /// as the first was, and nothing is stored or recorded again. Any other body, a slot whose
    /// file is gone, or a record that kept no digest: 409. While the first upload's Post row is
    /// not known to be recorded or not ([`PostLog::is_unresolved`]): 503, before the body.
    async fn retried_slot_upload<E: fmt::Display>(
        &self,
        slot_url: String,
        record: &SlotRecord,
        size: u64,
        body: impl Stream<Item = Result<Bytes, E>>,
        now: DateTime<Utc>,
    ) -> Result<Uploaded, Error> {
        if self.posts.is_unresolved(&Record::Slot(record.slot.clone())) {
            return Err(LogdError::Unavailable(
                "the first upload of this slot is not known to be recorded yet".into(),
            )
            .into());
        }
        let used = || Error::Slot(crate::slot::SlotError::AlreadyUsed);
        let (Some(stored_sha256), Some(location)) = (&record.sha256, record.file_location()) else {
            return Err(used());
        };
        if record.is_expired(now) || record.size != size {
            return Err(used());
        }
        if !self.carries(body, size, size, stored_sha256).await? {
            return Err(used());
        }
        log::info!(
            "a retried upload to slot {:?} carried the stored bytes: answered as the first",
            record.slot
        );
        Ok(Uploaded {
            uri: slot_url,
            file_name: location.file_name.to_string(),
            size,
            sha256: stored_sha256.clone(),
        })
    }

    /// Answers a `GET` or `HEAD` of a filled slot URL: a capability URL, no credentials. With a
    /// download capability (see [`crate::share`]) the `Get` row names its downloader and chat;
    /// without, [`placeholder_jid`], addressed to the upload's recipient.
    pub async fn download_slot(
        &self,
        raw_path: &str,
        capability: &CapabilityQuery<'_>,
        request: &DownloadRequest<'_>,
    ) -> Result<Download, Error> {
        self.require_managed()?;
        let slot = SlotPath::parse(raw_path)?;
        let (downloader, recipient) = match verify_capability(
            self.secrets.current().slot_secrets.secrets(),
            &slot,
            capability,
        )? {
            Some(capability) => (
                capability.downloader,
                Recipient::Chat {
                    jid: capability.chat,
                    chat_type: capability.chat_type,
                },
            ),
            None => (placeholder_jid(&self.config.node.id), Recipient::OfUpload),
        };
        let first = self
            .serve_slot(&slot, &downloader, recipient.clone(), request)
            .await;
        if !matches!(first, Err(Error::NotFound)) {
            return first;
        }
        // A share may be rewriting the slot's record or moving its file to the chat type's
        // directory: look again once it is done.
        let _turn = self.sharing.lock().await;
        self.serve_slot(&slot, &downloader, recipient, request)
            .await
    }

    async fn serve_slot(
        &self,
        slot: &SlotPath,
        downloader: &str,
        recipient: Recipient,
        request: &DownloadRequest<'_>,
    ) -> Result<Download, Error> {
        let (location, real_name) = self.slot_file(slot).await?;
        self.serve(&location, real_name, downloader, recipient, request)
            .await
    }

    /// Where the file of a filled, unexpired slot lies, and its real name.
    async fn slot_file(&self, slot: &SlotPath) -> Result<(FileLocation, RealName), Error> {
        let record = self
            .slots
            .get(slot.as_str())
            .await?
            .ok_or(Error::NotFound)?;
        if record.is_expired(self.clock.now()) {
            return Err(Error::NotFound);
        }
        let location = record.file_location().ok_or(Error::NotFound)?;
        Ok((location, RealName::parse(&record.real_name)?))
    }

    /// Records a share reported by the XMPP server's module (`authorization`: its share token,
    /// see [`crate::share`]). The first share of a slot's file names its recipient and chat type
    /// in the Post row and moves the file to that chat type's directory (its URL stays the
    /// same); each later chat gets a `Share` row; a chat recorded before changes nothing (the
    /// module retries reports whose answer it did not get).
    pub async fn share(&self, authorization: Option<&str>) -> Result<Shared, Error> {
        self.require_managed()?;
        let now = self.clock.now();
        let share = verify_share(
            self.secrets.current().slot_secrets.secrets(),
            &self.config.node.public_url,
            authorization,
            now,
        )?;
        let slot = SlotPath::parse(&share.raw_slot_path)?;
        let _turn = self.sharing.lock().await;
        let record = self
            .slots
            .get(slot.as_str())
            .await?
            .filter(|r| !r.is_expired(now))
            .ok_or(Error::NotFound)?;
        let location = record.file_location().ok_or(Error::NotFound)?;
        let real_name = RealName::parse(&record.real_name)?;
        let shared = match (record.shares.first(), record.shares.contains(&share.to)) {
            (None, _) => {
                let moved = if location.dir.chat_type == share.chat_type {
                    location.clone()
                } else {
                    self.store
                        .relocate(&location, share.chat_type, record.stored)
                        .await?
                };
                let shared = SlotRecord {
                    location: moved.relative(),
                    shares: vec![share.to.clone()],
                    ..record.clone()
                };
                if let Err(e) = self.slots.put(&shared).await {
                    if moved != location {
                        if let Err(back) = self.store.relocate_to(&moved, &location).await {
                            log::error!(
                                "cannot move {} back after its slot record failed: {back}",
                                moved.relative()
                            );
                        }
                    }
                    return Err(e.into());
                }
                self.amend_post(&moved, &share.to).await?;
                Shared::First
            }
            // A retried report of the first share: its Post row may not have been amended.
            (Some(first), _) if *first == share.to => {
                self.amend_post(&location, &share.to).await?;
                Shared::AlreadyRecorded
            }
            (Some(_), true) => Shared::AlreadyRecorded,
            (Some(_), false) => {
                let transfer = Transfer {
                    chat_type: share.chat_type,
                    file_size: db_size(record.size),
                    ..self.audit_row(&share.sharer, &share.to, &location, &real_name, now)
                };
                let aft_index = self.audit.share(&transfer).await?;
                let mut shares = record.shares.clone();
                shares.push(share.to.clone());
                self.slots
                    .put(&SlotRecord {
                        shares,
                        ..record.clone()
                    })
                    .await?;
                log_transfer(
                    Method::Share,
                    &transfer,
                    0,
                    aft_index,
                    &format!(" (slot {:?})", slot.as_str()),
                );
                Shared::Again
            }
        };
        log::info!(
            "shared {} ({:?}) by {} with {} ({}): {shared:?}",
            slot.as_str(),
            record.real_name,
            share.sharer,
            share.to,
            share.chat_type
        );
        Ok(shared)
    }

    /// Removes the files of expired slots (never one of the current UTC hour), marks their Post
    /// rows `expired` (removed on purpose, not drift), and only then their records, keeping a
    /// purged record as a tombstone while its token is valid (so the slot cannot be filled again)
    /// and removing tombstones whose token has expired; returns how many files it removed. A
    /// mark that fails (logd down) ends the round with the record kept, so the next round marks
    /// the row (the file is gone by then, which is fine).
    pub async fn purge_expired_slots(&self) -> Result<usize, Error> {
        let now = self.clock.now();
        let records = self.slots.all().await?;
        for tombstone in records
            .iter()
            .filter(|r| r.purged && !r.needs_tombstone(now))
        {
            self.slots.remove(&tombstone.slot).await?;
        }
        let mut removed = 0;
        for record in purgeable(&records, now) {
            if let Some(location) = record.file_location() {
                let path = self.config.file_server.server_path(&location.relative());
                match self.store.remove(&location).await {
                    Ok(()) => {
                        removed += 1;
                        log::info!(
                            "purged {path} ({:?}): slot {:?} expired at {:?}",
                            record.real_name,
                            record.slot,
                            record.expires
                        );
                    }
                    Err(crate::store::StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                    }
                    Err(e) => return Err(e.into()),
                }
                let mark = FileMark {
                    filename: location.file_name.to_string(),
                    file_path: path,
                    file_state: FileState::Expired,
                };
                if self.audit.mark_file(&mark).await?.is_none() {
                    log::info!("no Post row of {} to mark expired", mark.file_path);
                }
            }
            if record.needs_tombstone(now) {
                self.slots
                    .put(&SlotRecord {
                        purged: true,
                        ..record.clone()
                    })
                    .await?;
            } else {
                self.slots.remove(&record.slot).await?;
            }
        }
        Ok(removed)
    }

    /// Names `to` and the chat type and path of `location` in the Post row of the file there
    /// (idempotent).
    async fn amend_post(&self, location: &FileLocation, to: &str) -> Result<(), Error> {
        let amendment = Amendment {
            filename: location.file_name.to_string(),
            to_jid: to.to_owned(),
            chat_type: location.dir.chat_type,
            file_path: self.config.file_server.server_path(&location.relative()),
        };
        self.audit.amend_post(&amendment).await?;
        Ok(())
    }

    /// The node configuration the transfers run with.
    /// The reloadable token and slot secrets and TLS certificate.
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.secrets
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    fn require_managed(&self) -> Result<(), Error> {
        let mode = self.config.node.transfer_mode;
        if mode.is_managed() {
            Ok(())
        } else {
            Err(Error::NotManaged(mode))
        }
    }

    /// The largest upload allowed: the node's limit, lowered by the token's if it has one.
    fn size_limit(&self, token_limit: Option<u64>) -> u64 {
        let node_limit = self.config.http.max_file_size_bytes();
        token_limit.map_or(node_limit, |limit| limit.min(node_limit))
    }

    fn permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy(self.config.http.max_concurrent_transfers))
    }

    /// The longest an upload body may stall: `http.request_timeout_secs`.
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.http.request_timeout_secs)
    }

    /// Streams `body` into a new file for `chat_type` (at most `limit` bytes, no stall longer
    /// than `http.request_timeout_secs`) and commits it under `real_name`.
    async fn store_body<E: fmt::Display>(
        &self,
        chat_type: ChatType,
        real_name: &RealName,
        limit: u64,
        body: impl Stream<Item = Result<Bytes, E>>,
        now: DateTime<Utc>,
    ) -> Result<Committed, Error> {
        let mut part = self.store.create(chat_type, now).await?;
        if let Err(e) = receive(&mut part, body, limit, self.idle_timeout()).await {
            part.discard().await;
            return Err(e);
        }
        Ok(part.commit(real_name).await?)
    }

    async fn remove_quietly(&self, location: &FileLocation, path: &str) {
        if let Err(removal) = self.store.remove(location).await {
            log::error!(
                "cannot remove {path} after its upload failed: {}",
                crate::error::with_causes(&removal)
            );
        }
    }

    /// Opens a stored file and answers `request` for `downloader`; a response that moves bytes
    /// records its `Get` row first. The file must have been stored as `real_name` (else 404): a
    /// downloader cannot choose the name it is served and recorded under.
    async fn serve(
        &self,
        location: &FileLocation,
        real_name: RealName,
        downloader: &str,
        recipient: Recipient,
        request: &DownloadRequest<'_>,
    ) -> Result<Download, Error> {
        let permit = self.permit()?;
        let stored = self.store.open(location).await?.ok_or(Error::NotFound)?;
        if stored.real_name.as_deref() != Some(real_name.as_str()) {
            log::info!(
                "refused {}: the URI names it {:?}, it was stored as {:?}",
                location.relative(),
                real_name.as_str(),
                stored.real_name
            );
            return Err(Error::NotFound);
        }
        let size = stored.size;
        let validators = Validators::new(size, stored.modified, location.file_name.as_str());
        let answer = conditional::answer(&request.preconditions, &validators, size);
        let (offset, length) = match answer {
            Answer::Unsatisfiable => return Err(Error::RangeNotSatisfiable(size)),
            answer => answer.span(size),
        };
        let body = if request.with_body && answer != Answer::NotModified {
            let placeholder = placeholder_jid(&self.config.node.id);
            let (to_jid, chat_type) = match &recipient {
                Recipient::Chat { jid, chat_type } => (jid, *chat_type),
                Recipient::OfUpload => (&placeholder, location.dir.chat_type),
            };
            let mut transfer = Transfer {
                file_size: db_size(size),
                chat_type,
                ..self.audit_row(downloader, to_jid, location, &real_name, self.clock.now())
            };
            let aft_index = match recipient {
                Recipient::Chat { .. } => self.audit.get_start(&transfer).await?,
                Recipient::OfUpload => {
                    let (aft_index, to_jid) =
                        self.audit.get_start_to_post_recipient(&transfer).await?;
                    transfer.to_jid = to_jid;
                    aft_index
                }
            };
            let mut file = stored.file;
            if offset > 0 {
                file.seek(io::SeekFrom::Start(offset))
                    .await
                    .map_err(crate::store::StoreError::from)?;
            }
            let progress = self
                .downloads
                .start(aft_index, move |recorded| match recorded {
                    Ok(Recorded { bytes, tries }) => {
                        let retried = if tries > 1 {
                            format!(" (recorded at try {tries})")
                        } else {
                            String::new()
                        };
                        let broke_off = if bytes == length {
                            String::new()
                        } else {
                            format!(" (broke off: {bytes} of {length} bytes)")
                        };
                        log_transfer(
                            Method::Get,
                            &transfer,
                            bytes,
                            aft_index,
                            &format!("{broke_off}{retried}"),
                        );
                    }
                    Err(e) => log::error!(
                        "cannot record the end of download {} by {} (aft_index {aft_index}): {e}",
                        transfer.file_path,
                        transfer.jid
                    ),
                });
            Some(DownloadBody {
                file: ReaderStream::with_capacity(file.take(length), READ_CHUNK),
                progress,
                size: length,
                _permit: permit,
            })
        } else {
            None
        };
        Ok(Download {
            real_name,
            size,
            validators,
            answer,
            body,
        })
    }

    /// The audit record of a transfer, sizes left at 0, no digest, a fresh event id.
    fn audit_row(
        &self,
        jid: &str,
        to_jid: &str,
        location: &FileLocation,
        real_name: &RealName,
        timestamp: DateTime<Utc>,
    ) -> Transfer {
        Transfer {
            jid: jid.to_owned(),
            to_jid: to_jid.to_owned(),
            filename: location.file_name.to_string(),
            real_filename: real_name.to_string(),
            file_type: real_name.file_type(),
            chat_type: location.dir.chat_type,
            file_server: self.config.file_server.host.clone(),
            file_path: self.config.file_server.server_path(&location.relative()),
            file_size: 0,
            bytes_transferred: 0,
            timestamp,
            sha256: None,
            event_id: Some(new_event_id()),
        }
    }
}

/// How often expired slot files are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Rounds of [`purge_every_minute`] between two expiries of Idempotency-Keys (a listing of
/// their directory).
const KEY_EXPIRY_ROUNDS: u32 = 60;

/// Purges expired slot files every minute, and forgets expired Idempotency-Keys every hour, for
/// as long as the server runs; failures are logged here and retried at the next round.
pub async fn purge_every_minute(transfers: Arc<TransferService>) {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    for round in 0u32.. {
        interval.tick().await;
        if let Err(e) = transfers.purge_expired_slots().await {
            log::error!(
                "cannot purge expired upload slots: {}",
                crate::error::with_causes(&e)
            );
        }
        if round % KEY_EXPIRY_ROUNDS == 0 {
            match transfers.keys.expire().await {
                Ok(0) => {}
                Ok(n) => log::info!("forgot {n} Idempotency-Keys older than 24 hours"),
                Err(e) => log::error!(
                    "cannot forget expired Idempotency-Keys: {}",
                    crate::error::with_causes(&e)
                ),
            }
        }
    }
}

/// How often the start-up sweep looks again for the store while it is not there.
const SWEEP_RETRY: Duration = Duration::from_secs(2);

/// Removes the partial files that uploads cut off before this httpd started left behind
/// ([`Store::sweep_partials`]), once the store is first there.
pub async fn sweep_partials_once(transfers: Arc<TransferService>) {
    loop {
        match transfers.store.sweep_partials().await {
            Ok(swept) => {
                if swept.files > 0 {
                    log::warn!(
                        "removed {} partial uploads ({} bytes) left by uploads that were cut off before httpd started",
                        swept.files,
                        swept.bytes
                    );
                }
                return;
            }
            Err(crate::store::StoreError::Unavailable(_)) => tokio::time::sleep(SWEEP_RETRY).await,
            Err(e) => {
                log::error!(
                    "cannot sweep partial uploads: {}",
                    crate::error::with_causes(&e)
                );
                return;
            }
        }
    }
}

/// Where [`receive`] puts an upload body: a file on the mount, or only its digest.
trait BodySink {
    /// Bytes taken so far.
    fn written(&self) -> u64;
    fn take(&mut self, chunk: &[u8]) -> impl std::future::Future<Output = Result<(), Error>>;
}

impl BodySink for PartialFile {
    fn written(&self) -> u64 {
        PartialFile::written(self)
    }

    async fn take(&mut self, chunk: &[u8]) -> Result<(), Error> {
        Ok(self.write(chunk).await?)
    }
}

impl BodySink for ContentDigest {
    fn written(&self) -> u64 {
        self.bytes()
    }

    async fn take(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.update(chunk);
        Ok(())
    }
}

/// Copies an upload body into `sink`, refusing it once it passes `limit` bytes or when no data
/// arrives for `idle`.
async fn receive<E: fmt::Display>(
    sink: &mut impl BodySink,
    body: impl Stream<Item = Result<Bytes, E>>,
    limit: u64,
    idle: Duration,
) -> Result<(), Error> {
    let mut body = pin!(body);
    while let Some(chunk) = tokio::time::timeout(idle, body.next())
        .await
        .map_err(|_| Error::Stalled(idle.as_secs()))?
    {
        let chunk =
            chunk.map_err(|e| Error::BadRequest(format!("the upload body broke off: {e}")))?;
        if sink.written() + chunk.len() as u64 > limit {
            return Err(Error::TooLarge(limit));
        }
        sink.take(&chunk).await?;
    }
    Ok(())
}

fn db_size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A download's body: the stored file (or the requested range of it), chunk by chunk. Its Get
/// row records the bytes it handed to the server, while it runs and when it ends or is dropped
/// (the client went away): see [`DownloadLog`]. Dropping it gives its transfer permit back.
pub struct DownloadBody {
    file: ReaderStream<tokio::io::Take<tokio::fs::File>>,
    progress: Progress,
    /// The bytes this response is to carry.
    size: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for DownloadBody {
    fn drop(&mut self) {
        let sent = self.progress.sent();
        crate::metrics::TRANSFER_COUNTERS.download_ended(sent, sent == self.size);
    }
}

impl Stream for DownloadBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.file).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.progress.add(chunk.len() as u64);
        }
        polled
    }
}

/// Logs a finished transfer as one info line; its fields become journal fields under systemd
/// (`METHOD=`, `JID=`, `TO_JID=`, `FILENAME=`, `CHAT_TYPE=`, `BYTES=`, `AFT_INDEX=`).
fn log_transfer(method: Method, t: &Transfer, bytes: u64, aft_index: i64, note: &str) {
    log::info!(
        method = method.as_str(), jid = t.jid.as_str(), to_jid = t.to_jid.as_str(), filename = t.filename.as_str(),
        chat_type = t.chat_type.as_str(), bytes = bytes, aft_index = aft_index;
        "{method} {} ({:?}) by {}: {bytes} bytes{note}", t.file_path, t.real_filename, t.jid
    );
}
