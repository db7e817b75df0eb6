//! The node's two transfers, as plain async functions: an upload stores a body and records a
//! `Post` row before it hands out a URI; a download records a `Get` row before it sends a byte,
//! and records the bytes actually sent when its body finishes or is dropped.
//!
//! [`Transfers`] knows the configuration, the credentials, the [`Store`] and the [`AuditLog`];
//! it takes header values, paths and body streams, and knows nothing else of HTTP (see
//! [`crate::http`] for the glue).

use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::{fmt, io};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use logd::Transfer;
use mft_config::NodeConfig;
use serde::Serialize;
use tokio_util::io::ReaderStream;

use crate::audit::AuditLog;
use crate::auth::Credentials;
use crate::error::Error;
use crate::layout::FileLocation;
use crate::real_name::RealName;
use crate::store::{Mount, PartialFile, Store};
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

/// What a successful upload answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uploaded {
    /// The download URI (also sent as `Location`).
    pub uri: String,
    /// The encoded resource name the file is stored under.
    pub file_name: String,
    /// Bytes stored.
    pub size: u64,
}

/// A download ready to answer: headers from `real_name` and `size`, and the body unless the
/// request was `HEAD`.
pub struct Download {
    pub real_name: RealName,
    pub size: u64,
    pub body: Option<DownloadBody>,
}

/// The uploads and downloads of one node.
pub struct Transfers {
    config: NodeConfig,
    credentials: Credentials,
    store: Arc<Store>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
}

impl Transfers {
    /// Transfers with the store at `file_server.mount_point`, which must be as `mount` says.
    pub fn new(config: NodeConfig, mount: Mount, audit: Arc<dyn AuditLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            credentials: Credentials::new(&config.http.token_secrets),
            store: Arc::new(Store::new(config.file_server.mount_point.clone(), mount)),
            config,
            audit,
            clock,
        }
    }

    /// Stores `body` as the file `name` sent with the upload token in `authorization`, records
    /// the `Post` row, and only then returns the file's URI. `declared_len` is the request's
    /// `Content-Length`, checked before a byte is read; the limit is enforced while streaming too.
    pub async fn upload<E: fmt::Display>(
        &self,
        authorization: Option<&str>,
        name: Option<&str>,
        declared_len: Option<u64>,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<Uploaded, Error> {
        self.require_managed()?;
        let grant = self.credentials.verify_upload(authorization)?;
        let real_name = RealName::parse(name.ok_or(Error::MissingName)?)?;
        let limit = self.config.http.max_file_size_bytes();
        if declared_len.is_some_and(|len| len > limit) {
            return Err(Error::TooLarge(limit));
        }
        let now = self.clock.now();
        let mut part = self.store.create(grant.chat_type, now).await?;
        if let Err(e) = receive(&mut part, body, limit).await {
            part.discard().await;
            return Err(e);
        }
        let (location, size) = part.commit().await?;
        let transfer = Transfer {
            file_size: db_size(size),
            bytes_transferred: db_size(size),
            ..self.record(&grant.from, &grant.to, &location, &real_name, now)
        };
        let aft_index = match self.audit.post(&transfer).await {
            Ok(index) => index,
            Err(e) => {
                if let Err(removal) = self.store.remove(&location).await {
                    log::error!("cannot remove {} after its Post record failed: {removal}", transfer.file_path);
                }
                return Err(e.into());
            }
        };
        log::info!(
            "upload {} ({:?}) from {} to {} ({}): {size} bytes, aft_index {aft_index}",
            transfer.file_path,
            real_name.as_str(),
            grant.from,
            grant.to,
            grant.chat_type
        );
        let uri = FileUri {
            node_id: self.config.node.id.clone(),
            location,
            real_name,
        };
        Ok(Uploaded {
            uri: format!("{}{}", self.config.node.public_url, uri.path()),
            file_name: uri.location.file_name.to_string(),
            size,
        })
    }

    /// Opens the file at the raw request path `raw_path` for the download token in
    /// `authorization`. With `with_body`, records the `Get` row first and returns the body.
    pub async fn download(&self, authorization: Option<&str>, raw_path: &str, with_body: bool) -> Result<Download, Error> {
        self.require_managed()?;
        let grant = self.credentials.verify_download(authorization)?;
        let uri = FileUri::parse(raw_path).map_err(|_| Error::NotFound)?;
        if uri.node_id != self.config.node.id {
            return Err(Error::OtherNode(uri.node_id));
        }
        let (file, size) = self.store.open(&uri.location).await?.ok_or(Error::NotFound)?;
        let body = if with_body {
            let jid = &grant.downloader;
            let transfer = Transfer {
                file_size: db_size(size),
                ..self.record(jid, jid, &uri.location, &uri.real_name, self.clock.now())
            };
            let aft_index = self.audit.get_start(&transfer).await?;
            Some(DownloadBody {
                file: ReaderStream::with_capacity(file, READ_CHUNK),
                sent: 0,
                size,
                aft_index,
                audit: self.audit.clone(),
                label: format!("{} by {jid}", transfer.file_path),
            })
        } else {
            None
        };
        Ok(Download {
            real_name: uri.real_name,
            size,
            body,
        })
    }

    fn require_managed(&self) -> Result<(), Error> {
        let mode = self.config.node.transfer_mode;
        if mode.is_managed() {
            Ok(())
        } else {
            Err(Error::NotManaged(mode))
        }
    }

    /// The audit record of a transfer, sizes left at 0.
    fn record(&self, jid: &str, to_jid: &str, location: &FileLocation, real_name: &RealName, timestamp: DateTime<Utc>) -> Transfer {
        Transfer {
            jid: jid.to_owned(),
            to_jid: to_jid.to_owned(),
            filename: location.file_name.to_string(),
            real_filename: real_name.to_string(),
            file_type: real_name.file_type(),
            chat_type: location.dir.chat_type.to_string(),
            file_server: self.config.file_server.host.clone(),
            file_path: self.config.file_server.server_path(&location.relative()),
            file_size: 0,
            bytes_transferred: 0,
            timestamp,
        }
    }
}

/// Copies an upload body into `part`, refusing it once it passes `limit` bytes.
async fn receive<E: fmt::Display>(
    part: &mut PartialFile,
    body: impl Stream<Item = Result<Bytes, E>>,
    limit: u64,
) -> Result<(), Error> {
    let mut body = pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("the upload body broke off: {e}")))?;
        if part.written() + chunk.len() as u64 > limit {
            return Err(Error::TooLarge(limit));
        }
        part.write(&chunk).await?;
    }
    Ok(())
}

fn db_size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A download's body: the stored file, chunk by chunk. When it ends or is dropped (the client
/// went away), it records in the background how many bytes it handed to the server.
pub struct DownloadBody {
    file: ReaderStream<tokio::fs::File>,
    sent: u64,
    size: u64,
    aft_index: i64,
    audit: Arc<dyn AuditLog>,
    label: String,
}

impl Stream for DownloadBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.file).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.sent += chunk.len() as u64;
        }
        polled
    }
}

impl Drop for DownloadBody {
    fn drop(&mut self) {
        let (audit, aft_index, sent, size) = (self.audit.clone(), self.aft_index, self.sent, self.size);
        let label = std::mem::take(&mut self.label);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            log::error!("cannot record the end of download {label} (aft_index {aft_index}, {sent} bytes): no runtime");
            return;
        };
        runtime.spawn(async move {
            match audit.get_end(aft_index, db_size(sent)).await {
                Ok(()) if sent == size => log::info!("download {label}: {sent} bytes, aft_index {aft_index}"),
                Ok(()) => log::info!("download {label} broke off: {sent} of {size} bytes, aft_index {aft_index}"),
                Err(e) => log::error!("cannot record the end of download {label} (aft_index {aft_index}, {sent} bytes): {e}"),
            }
        });
    }
}
