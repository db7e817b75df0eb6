//! The real file server: one SSH connection (`russh`) carrying a pool of SFTP sessions
//! ([`SftpChannel`]: fsd's own framing, with russh-sftp's packet types), with the server's host
//! key pinned and the node's key for authentication, watched by keepalives and re-established
//! in the background when it is lost.
//!
//! **Connection.** [`SshBackend::connect`] makes the first connection (startup fails if it
//! cannot). A supervisor task then watches it: when it closes (the server went away, or
//! `keepalive_max` keepalives went unanswered), the loss is published on [`SshBackend::link`],
//! requests in flight fail at once (their session is gone), new requests fail with
//! [`SftpError::Disconnected`] without waiting, and the supervisor reconnects with exponential
//! backoff ([`BACKOFF_MIN`] to [`BACKOFF_MAX`]). Handles opened on a lost connection stay
//! invalid ([`SftpError::HandleLost`]): the server closed them with the connection.
//!
//! **Sessions and the handle defect.** russh-sftp 3.0.1, whose decoder fsd uses, decodes SFTP
//! handles as UTF-8 strings, lossily. OpenSSH's handles are 4-byte big-endian slot numbers,
//! reused from a free list, so a session never holding more than 128 handles at once only ever
//! sees slots 0–127, which are valid one-byte UTF-8; the 129th would come back mangled and its
//! writes and close would fail. So every session is kept under [`HANDLES_PER_SESSION`] open
//! handles: an open goes to the least loaded session, and when every session is full a new one
//! (SSH channel) is opened, up to [`MAX_SESSIONS`] (and the server's `MaxSessions`). Only then
//! does `open` fail with [`SftpError::TooManyOpenFiles`].
//!
//! **Stuck sessions.** The SSH connection can stay up while an SFTP session's server process
//! does not answer (stopped, or blocked on a dead disk): keepalives do not see that. Every SFTP
//! request has one deadline, [`REQUEST_DEADLINE`], counted in [`SftpChannel`]; a request past it
//! fails with [`SftpError::Timeout`] and its session gives up (see [`super::sftp`]). The
//! supervisor also probes every session that has held no request and heard nothing for
//! [`PROBE_INTERVAL`], so a stuck idle session is found before a caller meets it. Either way the
//! connection counts as lost: the supervisor ends its sessions, disconnects it and connects
//! anew, whose sessions are new server processes.
//!
//! Reads and writes are split into requests of at most [`MAX_CHUNK`] bytes (or the server's
//! `limits@openssh.com`, if smaller) that are all sent at once.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::join_all;
use mft_config::FileServer;
use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as ClientError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::protocol::{self, FileAttributes, OpenFlags, Packet};
use tokio::sync::watch;

use super::sftp::SftpChannel;
use super::{
    Attributes, DirEntry, FileKind, FsStats, OpenOptions, SetAttributes, SftpBackend, SftpError,
    SftpResult, StatusCode,
};
use crate::host_key::{HostKeyMismatch, InvalidHostKey, PinnedHostKey};
use crate::keys::{self, KeyError};
use crate::status::Check;

/// SFTP sessions opened with the connection (more are opened as files are opened).
pub const INITIAL_SESSIONS: usize = 4;
/// The most SFTP sessions on one connection.
pub const MAX_SESSIONS: usize = 64;
/// Open handles one session may hold; below 128, see the module documentation.
pub const HANDLES_PER_SESSION: usize = 120;
const _: () = assert!(
    HANDLES_PER_SESSION < 128,
    "russh-sftp mangles OpenSSH handles from 128 on"
);
/// READDIR requests sent at once on one directory handle.
const READDIRS_IN_FLIGHT: usize = 8;
/// The largest read or write request; OpenSSH accepts up to 255 KiB.
pub const MAX_CHUNK: u32 = 256 * 1024;
/// How long one SFTP request may take, sent and answered: the one timer of a request to the
/// file server (opening a session's SSH channel is bounded by it too).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a session may hold no request and hear nothing before the supervisor probes it.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long making a connection (TCP, key exchange, authentication, sessions) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest wait between reconnection attempts.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the supervisor looks at the connection.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Unanswered keepalives after which the connection is closed: with `keepalive_max` 2, russh
/// gives up at the third interval of silence.
const KEEPALIVE_MAX: usize = 2;

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
const STATVFS: &str = "statvfs@openssh.com";
const HARDLINK: &str = "hardlink@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// fsd could not establish a connection to the file server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    PinnedKey(#[from] InvalidHostKey),
    #[error(transparent)]
    PrivateKey(#[from] KeyError),
    #[error(transparent)]
    HostKeyMismatch(#[from] HostKeyMismatch),
    #[error("cannot connect to the file server {server}: {source}")]
    Connect {
        server: String,
        source: russh::Error,
    },
    #[error("the file server {server} did not complete the connection within {CONNECT_TIMEOUT:?}")]
    Timeout { server: String },
    #[error(
        "the file server {server} refused the node key for user {user:?} \
         (is the node's public key in that user's authorized_keys?)"
    )]
    AuthRejected { server: String, user: String },
    #[error("cannot start SFTP on the file server {server}: {reason}")]
    Sftp { server: String, reason: String },
    #[error("the node directory {directory} on the file server is not usable: {source}")]
    Directory {
        directory: String,
        source: SftpError,
    },
    #[error("the node directory {directory} on the file server is not a directory")]
    NotADirectory { directory: String },
}

impl ConnectError {
    /// Which of the seed's file-server checks this failure fails (the ones before it passed).
    pub fn failed_check(&self) -> Check {
        match self {
            Self::Connect { source, .. } => match source {
                russh::Error::IO(_) | russh::Error::ConnectionTimeout => Check::Reachable,
                _ => Check::Listening,
            },
            Self::Timeout { .. } => Check::Listening,
            Self::PinnedKey(_) | Self::HostKeyMismatch(_) => Check::HostKey,
            Self::PrivateKey(_) | Self::AuthRejected { .. } => Check::NodeKey,
            Self::Sftp { .. } | Self::Directory { .. } | Self::NotADirectory { .. } => {
                Check::Directory
            }
        }
    }
}

/// How fsd connects, besides `[file_server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// SSH keepalive interval; the server is declared dead after three silent intervals.
    pub keepalive: Duration,
}

/// The state of the connection, as [`SshBackend::link`] publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub connected: bool,
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Why the connection was lost, or the last failed attempt to make it again, and which check
    /// that fails.
    pub problem: Option<(Check, String)>,
}

/// Checks the server's host key against the pinned one and remembers what it presented.
struct ServerCheck {
    pinned: PinnedHostKey,
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for ServerCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Certificate algorithms are never advertised, so a server cannot present one.
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let matches = key.key_data() == self.pinned.key().key_data();
        *self.presented.lock().expect("presented key lock") = Some(key.clone());
        Ok(matches)
    }
}

/// The SFTP sessions of one connection and the handles each holds.
struct Pool<S = SftpChannel> {
    sessions: Vec<Arc<S>>,
    handles: Vec<usize>,
}

impl<S> Pool<S> {
    /// A place on the least loaded session with room, if any.
    fn take(&mut self) -> Option<(usize, Arc<S>)> {
        let (index, count) = self
            .handles
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, count)| **count)?;
        if *count >= HANDLES_PER_SESSION {
            return None;
        }
        *count += 1;
        Some((index, self.sessions[index].clone()))
    }
}

/// One SSH connection and its sessions.
struct Connection {
    ssh: client::Handle<ServerCheck>,
    pool: Mutex<Pool>,
    /// Held while a session is being added, so full sessions add one at a time.
    grow: tokio::sync::Mutex<()>,
    next_session: AtomicUsize,
    chunk: u32,
    /// Why the connection was lost, once a request found out.
    lost: Mutex<Option<String>>,
    /// Whether a session of it was stuck past the deadline.
    stuck: AtomicBool,
}

/// One handle's place in a session, given back when dropped (after the handle is closed).
struct HandleSlot {
    connection: Arc<Connection>,
    index: usize,
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        self.connection.pool.lock().expect("pool lock").handles[self.index] -= 1;
    }
}

/// An open file on the server; its session slot is given back when it is dropped.
pub struct RemoteHandle {
    handle: String,
    session: Arc<SftpChannel>,
    slot: HandleSlot,
}

/// Everything the backend and its supervisor share.
struct Shared {
    server: FileServer,
    options: ConnectOptions,
    current: RwLock<Option<Arc<Connection>>>,
    link: watch::Sender<Link>,
}

/// The file server over SSH/SFTP.
pub struct SshBackend {
    shared: Arc<Shared>,
    /// The node directory, as the server resolved it (symlinks followed).
    directory: String,
}

impl SshBackend {
    /// Connects, checks that the node directory is a directory, and starts the supervisor that
    /// reconnects after a loss. Must run inside a tokio runtime.
    pub async fn connect(
        server: &FileServer,
        options: ConnectOptions,
    ) -> Result<Self, ConnectError> {
        let connection = Arc::new(Connection::open(server, options).await?);
        let directory_error = |source| ConnectError::Directory {
            directory: server.directory.clone(),
            source,
        };
        let resolved = connection
            .any_session()
            .realpath(server.directory.as_str())
            .await
            .map_err(|e| directory_error(connection.error(e)))?;
        let directory = resolved
            .files
            .into_iter()
            .next()
            .map_or_else(|| server.directory.clone(), |f| f.filename);
        let attrs = connection
            .any_session()
            .lstat(directory.as_str())
            .await
            .map_err(|e| directory_error(connection.error(e)))?;
        if attributes(&attrs.attrs).kind != FileKind::Directory {
            return Err(ConnectError::NotADirectory {
                directory: server.directory.clone(),
            });
        }
        let shared = Arc::new(Shared {
            server: server.clone(),
            options,
            current: RwLock::new(Some(connection)),
            link: watch::Sender::new(Link {
                connected: true,
                reconnects: 0,
                problem: None,
            }),
        });
        tokio::spawn(supervise(Arc::downgrade(&shared)));
        Ok(Self { shared, directory })
    }

    /// The node directory as the server resolved it.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The connection's state, updated as it is lost and made again.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.shared.link.subscribe()
    }

    /// SFTP sessions on the current connection (0 while disconnected).
    pub fn sessions(&self) -> usize {
        self.shared
            .current()
            .map_or(0, |c| c.pool.lock().expect("pool lock").sessions.len())
    }

    fn connection(&self) -> SftpResult<Arc<Connection>> {
        self.shared.current().ok_or_else(|| {
            SftpError::Disconnected("not connected to the file server (reconnecting)".into())
        })
    }

    /// The live connection `handle` was opened on.
    fn connection_of<'a>(&self, handle: &'a RemoteHandle) -> SftpResult<&'a Connection> {
        let connection = &handle.slot.connection;
        if connection.is_lost() {
            return Err(SftpError::HandleLost);
        }
        Ok(connection)
    }

    async fn read_chunk(
        connection: &Connection,
        handle: &RemoteHandle,
        offset: u64,
        len: u32,
    ) -> SftpResult<Vec<u8>> {
        match handle.session.read(handle.handle.as_str(), offset, len).await {
            Ok(data) => Ok(data.data),
            Err(ClientError::Status(status)) if status.status_code == protocol::StatusCode::Eof => {
                Ok(Vec::new())
            }
            Err(e) => Err(connection.error(e)),
        }
    }
}

impl Shared {
    fn current(&self) -> Option<Arc<Connection>> {
        self.current.read().expect("connection lock").clone()
    }
}

/// Watches the connection and makes it again after a loss, until the backend is dropped.
async fn supervise(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(current) = shared.current() else {
            continue;
        };
        let Some(reason) = current.loss() else {
            current.probe_quiet_sessions();
            continue;
        };
        *shared.current.write().expect("connection lock") = None;
        current.close();
        drop(current);
        log::warn!("lost the connection to the file server: {reason}");
        shared.link.send_modify(|link| {
            link.connected = false;
            link.problem = Some((Check::Reachable, reason));
        });
        let mut backoff = BACKOFF_MIN;
        loop {
            tokio::time::sleep(backoff).await;
            match Connection::open(&shared.server, shared.options).await {
                Ok(connection) => {
                    *shared.current.write().expect("connection lock") = Some(Arc::new(connection));
                    log::info!("reconnected to the file server");
                    shared.link.send_modify(|link| {
                        link.connected = true;
                        link.reconnects += 1;
                        link.problem = None;
                    });
                    break;
                }
                Err(e) => {
                    log::warn!("reconnecting to the file server failed (next try in {:?}): {e}", (backoff * 2).min(BACKOFF_MAX));
                    let problem = Some((e.failed_check(), e.to_string()));
                    shared.link.send_if_modified(|link| {
                        let changed = link.problem != problem;
                        link.problem = problem;
                        changed
                    });
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

impl Connection {
    /// Connects, verifies the host key, authenticates and starts the first SFTP sessions.
    async fn open(server: &FileServer, options: ConnectOptions) -> Result<Self, ConnectError> {
        let name = format!("{}:{}", server.host, server.port);
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open_within(server, options, &name))
            .await
            .unwrap_or(Err(ConnectError::Timeout { server: name }))
    }

    async fn open_within(
        server: &FileServer,
        options: ConnectOptions,
        name: &str,
    ) -> Result<Self, ConnectError> {
        let pinned = PinnedHostKey::from_keyscan_line(&server.host_key)?;
        let key = keys::load_private_key(&server.private_key)?;
        let presented = Arc::new(Mutex::new(None));
        let check = ServerCheck {
            pinned: pinned.clone(),
            presented: presented.clone(),
        };
        let connect_error = |source| ConnectError::Connect {
            server: name.to_owned(),
            source,
        };
        let config = Arc::new(client_config(pinned.key().algorithm(), options.keepalive));
        let connected = client::connect(config, (server.host.as_str(), server.port), check).await;
        let mut ssh = match connected {
            Ok(ssh) => ssh,
            Err(source) => {
                let presented = presented.lock().expect("presented key lock").take();
                if let Some(presented) = presented {
                    pinned.verify(name, &presented)?;
                }
                return Err(connect_error(source));
            }
        };

        let hash = if key.algorithm().is_rsa() {
            ssh.best_supported_rsa_hash()
                .await
                .map_err(connect_error)?
                .flatten()
        } else {
            None
        };
        let auth = ssh
            .authenticate_publickey(
                &server.user,
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(connect_error)?;
        if !auth.success() {
            return Err(ConnectError::AuthRejected {
                server: name.to_owned(),
                user: server.user.clone(),
            });
        }

        let mut sessions = Vec::with_capacity(INITIAL_SESSIONS);
        let mut chunk = MAX_CHUNK;
        for _ in 0..INITIAL_SESSIONS {
            let (session, limits) = open_session(&ssh)
                .await
                .map_err(|reason| ConnectError::Sftp {
                    server: name.to_owned(),
                    reason,
                })?;
            for limit in [limits.read_len, limits.write_len].into_iter().flatten() {
                chunk = chunk.min(u32::try_from(limit).unwrap_or(u32::MAX));
            }
            sessions.push(session);
        }
        // Whole pages: a FUSE request of a power of two splits into equal requests.
        let chunk = prev_power_of_two(chunk);
        log::debug!("{INITIAL_SESSIONS} SFTP sessions, requests of up to {chunk} bytes");
        Ok(Self {
            ssh,
            pool: Mutex::new(Pool {
                handles: vec![0; sessions.len()],
                sessions,
            }),
            grow: tokio::sync::Mutex::new(()),
            next_session: AtomicUsize::new(0),
            chunk,
            lost: Mutex::new(None),
            stuck: AtomicBool::new(false),
        })
    }

    /// Why the connection is gone, or `None` while it is up.
    fn loss(&self) -> Option<String> {
        let reason = self.lost.lock().expect("lost lock").clone();
        match reason {
            Some(reason) => Some(reason),
            None if self.ssh.is_closed() => Some("the SSH connection closed".into()),
            None => None,
        }
    }

    fn is_lost(&self) -> bool {
        self.loss().is_some()
    }

    /// Probes every session that has held no request and heard nothing for [`PROBE_INTERVAL`];
    /// one that does not answer within the deadline makes the connection lost.
    fn probe_quiet_sessions(self: &Arc<Self>) {
        let quiet: Vec<_> = self
            .pool
            .lock()
            .expect("pool lock")
            .sessions
            .iter()
            .filter(|session| session.is_quiet(PROBE_INTERVAL))
            .cloned()
            .collect();
        for session in quiet {
            let connection = self.clone();
            tokio::spawn(async move {
                if let Err(e) = session.probe().await {
                    connection.error(e);
                }
            });
        }
    }

    /// Drops the lost connection: its sessions end (requests they hold fail at once, with
    /// [`SftpError::Timeout`] if a session was stuck) and the server is told to close it, so its
    /// session processes go too.
    fn close(self: &Arc<Self>) {
        let stuck = self.stuck.load(Ordering::Relaxed);
        for session in &self.pool.lock().expect("pool lock").sessions {
            if stuck {
                session.give_up();
            } else {
                session.end();
            }
        }
        let connection = self.clone();
        tokio::spawn(async move {
            let _ = connection
                .ssh
                .disconnect(russh::Disconnect::ByApplication, "connection lost", "")
                .await;
        });
    }

    /// A session for a request without a handle (round robin).
    fn any_session(&self) -> Arc<SftpChannel> {
        let pool = self.pool.lock().expect("pool lock");
        let next = self.next_session.fetch_add(1, Ordering::Relaxed);
        pool.sessions[next % pool.sessions.len()].clone()
    }

    /// A place for one more handle, adding a session when every one is full.
    async fn take_slot(self: &Arc<Self>) -> SftpResult<(HandleSlot, Arc<SftpChannel>)> {
        let taken = |connection: &Arc<Self>| {
            let (index, session) = connection.pool.lock().expect("pool lock").take()?;
            let slot = HandleSlot {
                connection: connection.clone(),
                index,
            };
            Some((slot, session))
        };
        if let Some(taken) = taken(self) {
            return Ok(taken);
        }
        let _growing = self.grow.lock().await;
        if let Some(taken) = taken(self) {
            return Ok(taken);
        }
        if self.pool.lock().expect("pool lock").sessions.len() >= MAX_SESSIONS {
            return Err(SftpError::TooManyOpenFiles);
        }
        let (session, _) = open_session(&self.ssh).await.map_err(|reason| {
            log::warn!(
                "cannot open another SFTP session ({reason}); is the server's MaxSessions too low?"
            );
            SftpError::TooManyOpenFiles
        })?;
        let mut pool = self.pool.lock().expect("pool lock");
        pool.sessions.push(session);
        pool.handles.push(0);
        log::debug!("opened SFTP session {}", pool.sessions.len());
        drop(pool);
        taken(self).ok_or(SftpError::TooManyOpenFiles)
    }

    /// Translates a russh-sftp error, remembering the loss of the connection (closed, or a
    /// session stuck past the deadline).
    fn error(&self, error: ClientError) -> SftpError {
        let error = match error {
            ClientError::Status(status) => status_error(status),
            ClientError::Timeout => SftpError::Timeout,
            ClientError::Limited(message) => SftpError::Protocol(message),
            ClientError::UnexpectedPacket => SftpError::Protocol("unexpected packet".into()),
            // The session's channel is gone ("session closed", "sender dropped") or broke.
            ClientError::IO(message) | ClientError::UnexpectedBehavior(message) => {
                SftpError::Disconnected(message)
            }
        };
        let loss = match &error {
            SftpError::Disconnected(reason) => Some(reason.clone()),
            SftpError::Timeout => {
                self.stuck.store(true, Ordering::Relaxed);
                Some(format!(
                    "an SFTP session did not answer within {REQUEST_DEADLINE:?} (its server process is stuck)"
                ))
            }
            _ => None,
        };
        if let Some(reason) = loss {
            self.lost.lock().expect("lost lock").get_or_insert(reason);
        }
        error
    }

    /// Sends an `@openssh.com` extension request that answers with a status.
    async fn extended_status(
        &self,
        session: &Arc<SftpChannel>,
        request: &str,
        data: Vec<u8>,
    ) -> SftpResult<()> {
        match session
            .extended(request, data)
            .await
            .map_err(|e| self.error(e))?
        {
            Packet::Status(status) if status.status_code == protocol::StatusCode::Ok => Ok(()),
            Packet::Status(status) => Err(status_error(status)),
            other => Err(SftpError::Protocol(format!("{request} answered {other:?}"))),
        }
    }
}

/// russh's client configuration: only the pinned key's algorithm, a fast cipher from OpenSSH's
/// default list, no compression, keepalives.
fn client_config(pinned: Algorithm, keepalive: Duration) -> client::Config {
    client::Config {
        preferred: russh::Preferred {
            key: Cow::Owned(host_key_algorithms(pinned)),
            cipher: Cow::Borrowed(cipher_preference(aes_in_hardware())),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Default::default()
        },
        keepalive_interval: Some(keepalive),
        keepalive_max: KEEPALIVE_MAX,
        // Large enough to keep many 256 KiB requests in flight in both directions.
        window_size: 16 * 1024 * 1024,
        nodelay: true,
        ..Default::default()
    }
}

/// Whether this CPU has AES and carry-less multiply instructions (fast AES-GCM).
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Ciphers in order of preference, all from OpenSSH's default list: AES-GCM first where the CPU
/// has AES instructions, ChaCha20-Poly1305 first where it has not.
fn cipher_preference(aes_hardware: bool) -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_128_GCM, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    if aes_hardware {
        &[AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305, AES_128_CTR, AES_256_CTR]
    } else {
        &[CHACHA20_POLY1305, AES_128_GCM, AES_256_GCM, AES_128_CTR, AES_256_CTR]
    }
}

/// Opens one SFTP session on `ssh`; returns it with the server's limits. The SSH channel is
/// opened within [`REQUEST_DEADLINE`], and each SFTP request then has its own.
async fn open_session(
    ssh: &client::Handle<ServerCheck>,
) -> Result<(Arc<SftpChannel>, Limits), String> {
    let open = async {
        let channel = ssh.channel_open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        Ok::<_, russh::Error>(channel)
    };
    let channel = tokio::time::timeout(REQUEST_DEADLINE, open)
        .await
        .map_err(|_| format!("no SFTP channel within {REQUEST_DEADLINE:?}"))?
        .map_err(|e| e.to_string())?;
    let (session, version) = SftpChannel::start(channel, REQUEST_DEADLINE)
        .await
        .map_err(|e| e.to_string())?;
    for extension in [POSIX_RENAME, FSYNC, STATVFS, HARDLINK] {
        if !version.extensions.contains_key(extension) {
            log::warn!(
                "the file server does not offer {extension}; operations that need it will fail"
            );
        }
    }
    let mut limits = Limits::default();
    if version.extensions.contains_key(LIMITS) {
        limits = session.limits().await.map_err(|e| e.to_string())?.into();
    }
    Ok((session, limits))
}

/// The host key algorithms to offer: only the pinned key's, so the server presents that key.
fn host_key_algorithms(pinned: Algorithm) -> Vec<Algorithm> {
    if matches!(pinned, Algorithm::Rsa { .. }) {
        vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]
    } else {
        vec![pinned]
    }
}

fn prev_power_of_two(n: u32) -> u32 {
    1 << (u32::BITS - 1 - n.max(1).leading_zeros())
}

fn status_error(status: protocol::Status) -> SftpError {
    let code = match status.status_code {
        protocol::StatusCode::Ok => {
            return SftpError::Protocol(format!(
                "an OK status reported as an error: {}",
                status.error_message
            ))
        }
        protocol::StatusCode::Eof => StatusCode::Eof,
        protocol::StatusCode::NoSuchFile => StatusCode::NoSuchFile,
        protocol::StatusCode::PermissionDenied => StatusCode::PermissionDenied,
        protocol::StatusCode::Failure => StatusCode::Failure,
        protocol::StatusCode::BadMessage => StatusCode::BadMessage,
        protocol::StatusCode::NoConnection => StatusCode::NoConnection,
        protocol::StatusCode::ConnectionLost => StatusCode::ConnectionLost,
        protocol::StatusCode::OpUnsupported => StatusCode::OpUnsupported,
    };
    SftpError::Status {
        code,
        message: status.error_message,
    }
}

fn from_sftp_time(seconds: Option<u32>) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.unwrap_or(0).into())
}

fn to_sftp_time(time: SystemTime) -> u32 {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

fn attributes(attrs: &FileAttributes) -> Attributes {
    let mode = attrs.permissions.unwrap_or(0);
    Attributes {
        kind: FileKind::from_mode(mode),
        perm: (mode & 0o7777) as u16,
        size: attrs.size.unwrap_or(0),
        uid: attrs.uid.unwrap_or(0),
        gid: attrs.gid.unwrap_or(0),
        atime: from_sftp_time(attrs.atime),
        mtime: from_sftp_time(attrs.mtime),
    }
}

fn file_attributes(attrs: SetAttributes) -> FileAttributes {
    FileAttributes {
        size: attrs.size,
        uid: attrs.owner.map(|(uid, _)| uid),
        gid: attrs.owner.map(|(_, gid)| gid),
        permissions: attrs.perm.map(u32::from),
        atime: attrs.times.map(|(atime, _)| to_sftp_time(atime)),
        mtime: attrs.times.map(|(_, mtime)| to_sftp_time(mtime)),
        ..FileAttributes::empty()
    }
}

/// SFTP `pflags` for an open.
fn open_flags(options: OpenOptions) -> OpenFlags {
    let mut flags = OpenFlags::empty();
    for (wanted, flag) in [
        (options.read, OpenFlags::READ),
        (options.write, OpenFlags::WRITE),
        (options.append, OpenFlags::APPEND),
        (options.create, OpenFlags::CREATE),
        (options.truncate, OpenFlags::TRUNCATE),
        (options.exclusive, OpenFlags::EXCLUDE),
    ] {
        flags.set(flag, wanted);
    }
    flags
}

/// The attributes an open sends: the permission bits of a file it creates.
fn open_attributes(options: OpenOptions, perm: u16) -> FileAttributes {
    FileAttributes {
        permissions: options.create.then_some(u32::from(perm)),
        ..FileAttributes::empty()
    }
}

/// SSH wire strings (`uint32` length, then the bytes), for extension requests.
fn ssh_strings(strings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

impl SftpBackend for SshBackend {
    type Handle = RemoteHandle;

    async fn lstat(&self, path: &str) -> SftpResult<Attributes> {
        let c = self.connection()?;
        let attrs = c.any_session().lstat(path).await.map_err(|e| c.error(e))?;
        Ok(attributes(&attrs.attrs))
    }

    async fn read_dir(&self, path: &str) -> SftpResult<Vec<DirEntry>> {
        let c = self.connection()?;
        let (slot, session) = c.take_slot().await?;
        let handle = session
            .opendir(path)
            .await
            .map_err(|e| c.error(e))?
            .handle;
        // READDIRs on one handle are answered in order, each with the next names: several in
        // flight at once list a large directory in fewer round trips, and a small one (names,
        // then end of file) in one.
        let mut entries = Vec::new();
        let listed = 'listing: loop {
            let answers = join_all(
                (0..READDIRS_IN_FLIGHT).map(|_| session.readdir(handle.as_str())),
            )
            .await;
            for answer in answers {
                match answer {
                    Ok(name) => entries.extend(
                        name.files
                            .into_iter()
                            .filter(|f| f.filename != "." && f.filename != "..")
                            .map(|f| DirEntry {
                                attrs: attributes(&f.attrs),
                                name: f.filename,
                            }),
                    ),
                    Err(ClientError::Status(s)) if s.status_code == protocol::StatusCode::Eof => {
                        break 'listing Ok(entries)
                    }
                    Err(e) => break 'listing Err(c.error(e)),
                }
            }
        };
        let closed = session.close(&handle).await.map_err(|e| c.error(e));
        drop(slot);
        let entries = listed?;
        closed?;
        Ok(entries)
    }

    async fn open(&self, path: &str, options: OpenOptions, perm: u16) -> SftpResult<RemoteHandle> {
        let c = self.connection()?;
        let (slot, session) = c.take_slot().await?;
        let handle = session
            .open(path, open_flags(options), open_attributes(options, perm))
            .await
            .map_err(|e| c.error(e))?
            .handle;
        Ok(RemoteHandle {
            handle,
            session,
            slot,
        })
    }

    async fn open_stat(
        &self,
        path: &str,
        options: OpenOptions,
        perm: u16,
    ) -> SftpResult<(RemoteHandle, Attributes)> {
        let c = self.connection()?;
        let (slot, session) = c.take_slot().await?;
        // One session serves its requests in order: the LSTAT sees what the OPEN made.
        let (opened, stat) = futures_util::join!(
            session.open(path, open_flags(options), open_attributes(options, perm)),
            session.lstat(path)
        );
        let handle = RemoteHandle {
            handle: opened.map_err(|e| c.error(e))?.handle,
            session,
            slot,
        };
        match stat {
            Ok(attrs) => Ok((handle, attributes(&attrs.attrs))),
            Err(e) => {
                let _ = self.close(&handle).await;
                Err(c.error(e))
            }
        }
    }

    async fn fstat(&self, handle: &RemoteHandle) -> SftpResult<Attributes> {
        let c = self.connection_of(handle)?;
        let attrs = handle
            .session
            .fstat(handle.handle.as_str())
            .await
            .map_err(|e| c.error(e))?;
        Ok(attributes(&attrs.attrs))
    }

    async fn read(&self, handle: &RemoteHandle, offset: u64, len: u32) -> SftpResult<Vec<u8>> {
        let c = self.connection_of(handle)?;
        let chunk = c.chunk;
        let chunks: Vec<(u64, u32)> = (0..len)
            .step_by(chunk as usize)
            .map(|start| (offset + u64::from(start), chunk.min(len - start)))
            .collect();
        let answers = join_all(
            chunks
                .iter()
                .map(|&(at, n)| Self::read_chunk(c, handle, at, n)),
        )
        .await;
        let mut out = Vec::with_capacity(len as usize);
        let mut short_answer = false;
        for ((_, n), answer) in chunks.iter().zip(answers) {
            let data = answer?;
            out.extend_from_slice(&data);
            if data.len() < *n as usize {
                short_answer = !data.is_empty();
                break;
            }
        }
        // A short but non-empty answer is usually the end of the file, but a server may answer
        // short anywhere: ask for the rest until it says end of file.
        while short_answer && out.len() < len as usize {
            let want = chunk.min(len - out.len() as u32);
            let data = Self::read_chunk(c, handle, offset + out.len() as u64, want).await?;
            short_answer = !data.is_empty();
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    async fn write(&self, handle: &RemoteHandle, offset: u64, data: Vec<u8>) -> SftpResult<()> {
        let c = self.connection_of(handle)?;
        // Pieces of the one buffer, sent without copying.
        let data = Bytes::from(data);
        let chunk = c.chunk as usize;
        let writes = (0..data.len()).step_by(chunk).map(|start| {
            let piece = data.slice(start..data.len().min(start + chunk));
            handle
                .session
                .write(handle.handle.as_str(), offset + start as u64, piece)
        });
        for answer in join_all(writes).await {
            answer.map_err(|e| c.error(e))?;
        }
        Ok(())
    }

    async fn fsync(&self, handle: &RemoteHandle) -> SftpResult<()> {
        let c = self.connection_of(handle)?;
        c.extended_status(&handle.session, FSYNC, ssh_strings(&[&handle.handle]))
            .await
    }

    async fn close(&self, handle: &RemoteHandle) -> SftpResult<()> {
        // The server closed the handles of a lost connection with it.
        let Ok(c) = self.connection_of(handle) else {
            return Ok(());
        };
        handle
            .session
            .close(handle.handle.as_str())
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn setstat(&self, path: &str, attrs: SetAttributes) -> SftpResult<()> {
        let c = self.connection()?;
        c.any_session()
            .setstat(path, file_attributes(attrs))
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn fsetstat(&self, handle: &RemoteHandle, attrs: SetAttributes) -> SftpResult<()> {
        let c = self.connection_of(handle)?;
        handle
            .session
            .fsetstat(handle.handle.as_str(), file_attributes(attrs))
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn mkdir(&self, path: &str, perm: u16) -> SftpResult<()> {
        let c = self.connection()?;
        let attrs = FileAttributes {
            permissions: Some(u32::from(perm)),
            ..FileAttributes::empty()
        };
        c.any_session()
            .mkdir(path, attrs)
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn rmdir(&self, path: &str) -> SftpResult<()> {
        let c = self.connection()?;
        c.any_session()
            .rmdir(path)
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn remove(&self, path: &str) -> SftpResult<()> {
        let c = self.connection()?;
        c.any_session()
            .remove(path)
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> SftpResult<()> {
        let c = self.connection()?;
        if replace {
            // Plain SFTP rename refuses an existing target; OpenSSH's extension is rename(2).
            c.extended_status(&c.any_session(), POSIX_RENAME, ssh_strings(&[from, to]))
                .await
        } else {
            c.any_session()
                .rename(from, to)
                .await
                .map(drop)
                .map_err(|e| c.error(e))
        }
    }

    async fn statvfs(&self, path: &str) -> SftpResult<FsStats> {
        let c = self.connection()?;
        let s = c.any_session().statvfs(path).await.map_err(|e| c.error(e))?;
        Ok(FsStats {
            block_size: s.fragment_size,
            blocks: s.blocks,
            blocks_free: s.blocks_free,
            blocks_avail: s.blocks_avail,
            files: s.inodes,
            files_free: s.inodes_free,
            name_max: s.name_max,
        })
    }

    async fn symlink(&self, target: &str, path: &str) -> SftpResult<()> {
        let c = self.connection()?;
        // OpenSSH's sftp-server reads SSH_FXP_SYMLINK's two paths in the opposite order to the
        // draft (target first), and every client follows it: the target goes in `linkpath`.
        c.any_session()
            .symlink(target, path)
            .await
            .map(drop)
            .map_err(|e| c.error(e))
    }

    async fn readlink(&self, path: &str) -> SftpResult<String> {
        let c = self.connection()?;
        let name = c.any_session().readlink(path).await.map_err(|e| c.error(e))?;
        name.files
            .into_iter()
            .next()
            .map(|f| f.filename)
            .ok_or_else(|| SftpError::Protocol("readlink answered no name".into()))
    }

    async fn hardlink(&self, existing: &str, new: &str) -> SftpResult<()> {
        let c = self.connection()?;
        c.extended_status(&c.any_session(), HARDLINK, ssh_strings(&[existing, new]))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_go_to_the_least_loaded_session_and_stop_below_the_utf8_limit() {
        let mut pool = Pool {
            sessions: vec![Arc::new(()), Arc::new(())],
            handles: vec![0; 2],
        };
        let taken: Vec<usize> = (0..2 * HANDLES_PER_SESSION)
            .map(|_| pool.take().expect("room left").0)
            .collect();
        assert_eq!(taken[..4], [0, 1, 0, 1]);
        assert_eq!(pool.handles, vec![HANDLES_PER_SESSION; 2]);
        assert!(pool.take().is_none(), "full sessions take no more");
        pool.handles[1] -= 1;
        assert_eq!(pool.take().map(|(index, _)| index), Some(1));
    }

    #[test]
    fn chunks_are_powers_of_two_within_the_server_limit() {
        assert_eq!(prev_power_of_two(261_120), 128 * 1024);
        assert_eq!(prev_power_of_two(MAX_CHUNK), MAX_CHUNK);
        assert_eq!(prev_power_of_two(32 * 1024 + 1), 32 * 1024);
    }

    #[test]
    fn extension_strings_are_length_prefixed() {
        assert_eq!(
            ssh_strings(&["ab", ""]),
            vec![0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]
        );
    }

    #[test]
    fn aes_gcm_leads_only_with_aes_instructions() {
        use russh::cipher::{AES_128_GCM, CHACHA20_POLY1305};
        assert_eq!(cipher_preference(true)[0], AES_128_GCM);
        assert_eq!(cipher_preference(false)[0], CHACHA20_POLY1305);
        // Every name is one OpenSSH offers by default (no CBC, no 3DES, no "none").
        for name in cipher_preference(true) {
            assert!(
                name.as_ref().contains("gcm")
                    || name.as_ref().contains("ctr")
                    || name.as_ref().starts_with("chacha20"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn connect_errors_name_the_check_they_fail() {
        let refused = ConnectError::Connect {
            server: "x:22".into(),
            source: russh::Error::IO(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert_eq!(refused.failed_check(), Check::Reachable);
        let garbage = ConnectError::Connect {
            server: "x:22".into(),
            source: russh::Error::Version,
        };
        assert_eq!(garbage.failed_check(), Check::Listening);
        let rejected = ConnectError::AuthRejected {
            server: "x:22".into(),
            user: "mft".into(),
        };
        assert_eq!(rejected.failed_check(), Check::NodeKey);
        let directory = ConnectError::NotADirectory {
            directory: "/x".into(),
        };
        assert_eq!(directory.failed_check(), Check::Directory);
    }
}
