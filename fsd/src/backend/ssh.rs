//! The real file server: one SSH connection (`russh`) carrying a small pool of SFTP sessions
//! (`russh-sftp`), with the server's host key pinned and the node's key for authentication.
//!
//! Why a pool: russh-sftp 3.0.1 decodes SFTP handles as UTF-8 strings, lossily. OpenSSH's handles
//! are 4-byte big-endian slot numbers, reused from a free list, so a session never holding more
//! than 128 handles at once only ever sees slots 0–127, which are valid one-byte UTF-8; the 129th
//! would come back mangled and its writes and close would fail. So every session is kept under
//! [`HANDLES_PER_SESSION`] open handles and the files are spread over [`SESSIONS`] channels of the
//! one connection. When all are full, `open` fails with [`SftpError::TooManyOpenFiles`].
//!
//! Reads and writes are split into requests of at most [`MAX_CHUNK`] bytes (or the server's
//! `limits@openssh.com`, if smaller) that are sent at once, so one 1 MiB FUSE write is a few
//! pipelined SFTP writes rather than a chain of round trips.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use mft_config::FileServer;
use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as ClientError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{self, FileAttributes, OpenFlags, Packet};

use super::{
    Attributes, DirEntry, FileKind, FsStats, OpenOptions, SetAttributes, SftpBackend, SftpError,
    SftpResult, StatusCode,
};
use crate::host_key::{HostKeyMismatch, InvalidHostKey, PinnedHostKey};

/// SFTP sessions (SSH channels) on the one connection.
pub const SESSIONS: usize = 4;
/// Open handles one session may hold; below 128, see the module documentation.
pub const HANDLES_PER_SESSION: usize = 120;
const _: () = assert!(
    HANDLES_PER_SESSION < 128,
    "russh-sftp mangles OpenSSH handles from 128 on"
);
/// The largest read or write request; OpenSSH accepts up to 255 KiB.
pub const MAX_CHUNK: u32 = 256 * 1024;
/// How long one SFTP request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Keepalives: a silent server is declared dead after three unanswered ones.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
const STATVFS: &str = "statvfs@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// fsd could not establish its connection to the file server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    PinnedKey(#[from] InvalidHostKey),
    #[error("cannot load the node private key {path}: {source}")]
    PrivateKey {
        path: std::path::PathBuf,
        source: russh::keys::Error,
    },
    #[error(transparent)]
    HostKeyMismatch(#[from] HostKeyMismatch),
    #[error("cannot connect to the file server {server}: {source}")]
    Connect {
        server: String,
        source: russh::Error,
    },
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

/// Which session a handle lives on, and how many handles each session holds.
#[derive(Debug)]
struct HandleSlots(Mutex<Vec<usize>>);

impl HandleSlots {
    /// Takes a slot on the least loaded session, if any has room.
    fn take(self: &Arc<Self>) -> SftpResult<HandleSlot> {
        let mut counts = self.0.lock().expect("handle slots lock");
        let (session, count) = counts
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, count)| **count)
            .expect("at least one session");
        if *count >= HANDLES_PER_SESSION {
            return Err(SftpError::TooManyOpenFiles);
        }
        *count += 1;
        Ok(HandleSlot {
            slots: self.clone(),
            session,
        })
    }
}

/// One handle's place in a session, given back when dropped (after the handle is closed).
#[derive(Debug)]
struct HandleSlot {
    slots: Arc<HandleSlots>,
    session: usize,
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        self.slots.0.lock().expect("handle slots lock")[self.session] -= 1;
    }
}

/// An open file on the server; its session slot is given back when it is dropped.
#[derive(Debug)]
pub struct RemoteHandle {
    handle: String,
    slot: HandleSlot,
}

/// The file server over SSH/SFTP.
pub struct SshBackend {
    /// Keeps the connection open; the sessions are its channels.
    _ssh: client::Handle<ServerCheck>,
    sessions: Vec<RawSftpSession>,
    slots: Arc<HandleSlots>,
    next_session: AtomicUsize,
    chunk: u32,
    /// The node directory, as the server resolved it (symlinks followed).
    directory: String,
    /// Whether the loss of the connection has been reported.
    lost: AtomicBool,
}

impl SshBackend {
    /// Connects, verifies the host key, authenticates, starts the SFTP sessions and checks that
    /// the node directory is a directory.
    pub async fn connect(server: &FileServer) -> Result<Self, ConnectError> {
        let name = format!("{}:{}", server.host, server.port);
        let pinned = PinnedHostKey::from_keyscan_line(&server.host_key)?;
        let key = russh::keys::load_secret_key(&server.private_key, None).map_err(|source| {
            ConnectError::PrivateKey {
                path: server.private_key.clone(),
                source,
            }
        })?;
        let presented = Arc::new(Mutex::new(None));
        let check = ServerCheck {
            pinned: pinned.clone(),
            presented: presented.clone(),
        };
        let config = client::Config {
            preferred: russh::Preferred {
                key: Cow::Owned(host_key_algorithms(pinned.key().algorithm())),
                ..Default::default()
            },
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        };
        let connect_error = |source| ConnectError::Connect {
            server: name.clone(),
            source,
        };
        let connected =
            client::connect(Arc::new(config), (server.host.as_str(), server.port), check).await;
        let mut ssh = match connected {
            Ok(ssh) => ssh,
            Err(source) => {
                let presented = presented.lock().expect("presented key lock").take();
                if let Some(presented) = presented {
                    pinned.verify(&name, &presented)?;
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
                server: name,
                user: server.user.clone(),
            });
        }

        let mut sessions = Vec::with_capacity(SESSIONS);
        let mut chunk = MAX_CHUNK;
        for _ in 0..SESSIONS {
            let (session, limits) =
                open_session(&ssh)
                    .await
                    .map_err(|reason| ConnectError::Sftp {
                        server: name.clone(),
                        reason,
                    })?;
            for limit in [limits.read_len, limits.write_len].into_iter().flatten() {
                chunk = chunk.min(u32::try_from(limit).unwrap_or(u32::MAX));
            }
            sessions.push(session);
        }
        let mut backend = Self {
            _ssh: ssh,
            sessions,
            slots: Arc::new(HandleSlots(Mutex::new(vec![0; SESSIONS]))),
            next_session: AtomicUsize::new(0),
            // Whole pages: a FUSE request of a power of two splits into equal requests.
            chunk: prev_power_of_two(chunk),
            directory: server.directory.clone(),
            lost: AtomicBool::new(false),
        };
        let directory_error = |source| ConnectError::Directory {
            directory: server.directory.clone(),
            source,
        };
        let resolved = backend
            .any_session()
            .realpath(server.directory.as_str())
            .await
            .map_err(|e| directory_error(backend.error(e)))?;
        if let Some(file) = resolved.files.into_iter().next() {
            backend.directory = file.filename;
        }
        log::debug!(
            "{SESSIONS} SFTP sessions, reads and writes in requests of up to {} bytes",
            backend.chunk
        );
        let attrs = backend
            .lstat(&backend.directory)
            .await
            .map_err(directory_error)?;
        if attrs.kind != FileKind::Directory {
            return Err(ConnectError::NotADirectory {
                directory: server.directory.clone(),
            });
        }
        Ok(backend)
    }

    /// The node directory as the server resolved it.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// A session for a request without a handle (round robin).
    fn any_session(&self) -> &RawSftpSession {
        &self.sessions[self.next_session.fetch_add(1, Ordering::Relaxed) % self.sessions.len()]
    }

    fn session(&self, handle: &RemoteHandle) -> &RawSftpSession {
        &self.sessions[handle.slot.session]
    }

    /// Translates a russh-sftp error, reporting the loss of the connection once.
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
        if let SftpError::Disconnected(reason) = &error {
            if !self.lost.swap(true, Ordering::Relaxed) {
                log::error!(
                    "MftExtFsMountError: lost the connection to the file server ({reason}); \
                     file operations fail until fsd is restarted"
                );
            }
        }
        error
    }

    /// Sends an `@openssh.com` extension request that answers with a status.
    async fn extended_status(
        &self,
        session: &RawSftpSession,
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

    async fn read_chunk(
        &self,
        session: &RawSftpSession,
        handle: &str,
        offset: u64,
        len: u32,
    ) -> SftpResult<Vec<u8>> {
        match session.read(handle, offset, len).await {
            Ok(data) => Ok(data.data),
            Err(ClientError::Status(status)) if status.status_code == protocol::StatusCode::Eof => {
                Ok(Vec::new())
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// Opens one SFTP session on `ssh` and applies the server's limits to it.
async fn open_session(
    ssh: &client::Handle<ServerCheck>,
) -> Result<(RawSftpSession, Limits), String> {
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| e.to_string())?;
    let mut session = RawSftpSession::new(channel.into_stream());
    session.set_timeout(REQUEST_TIMEOUT.as_secs());
    let version = session.init().await.map_err(|e| e.to_string())?;
    for extension in [POSIX_RENAME, FSYNC, STATVFS] {
        if !version.extensions.contains_key(extension) {
            log::warn!(
                "the file server does not offer {extension}; operations that need it will fail"
            );
        }
    }
    let mut limits = Limits::default();
    if version.extensions.contains_key(LIMITS) {
        limits = session.limits().await.map_err(|e| e.to_string())?.into();
        session.set_limits(limits);
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
        let attrs = self
            .any_session()
            .lstat(path)
            .await
            .map_err(|e| self.error(e))?;
        Ok(attributes(&attrs.attrs))
    }

    async fn read_dir(&self, path: &str) -> SftpResult<Vec<DirEntry>> {
        let slot = self.slots.take()?;
        let session = &self.sessions[slot.session];
        let handle = session
            .opendir(path)
            .await
            .map_err(|e| self.error(e))?
            .handle;
        let mut entries = Vec::new();
        let listed = loop {
            match session.readdir(handle.as_str()).await {
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
                    break Ok(entries)
                }
                Err(e) => break Err(self.error(e)),
            }
        };
        let closed = session.close(handle).await.map_err(|e| self.error(e));
        drop(slot);
        let entries = listed?;
        closed?;
        Ok(entries)
    }

    async fn open(&self, path: &str, options: OpenOptions, perm: u16) -> SftpResult<RemoteHandle> {
        let slot = self.slots.take()?;
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
        let attrs = FileAttributes {
            permissions: options.create.then_some(u32::from(perm)),
            ..FileAttributes::empty()
        };
        let handle = self.sessions[slot.session]
            .open(path, flags, attrs)
            .await
            .map_err(|e| self.error(e))?
            .handle;
        Ok(RemoteHandle { handle, slot })
    }

    async fn fstat(&self, handle: &RemoteHandle) -> SftpResult<Attributes> {
        let attrs = self
            .session(handle)
            .fstat(handle.handle.as_str())
            .await
            .map_err(|e| self.error(e))?;
        Ok(attributes(&attrs.attrs))
    }

    async fn read(&self, handle: &RemoteHandle, offset: u64, len: u32) -> SftpResult<Vec<u8>> {
        let session = self.session(handle);
        let chunks: Vec<(u64, u32)> = (0..len)
            .step_by(self.chunk as usize)
            .map(|start| (offset + u64::from(start), self.chunk.min(len - start)))
            .collect();
        let answers = join_all(
            chunks
                .iter()
                .map(|&(at, n)| self.read_chunk(session, &handle.handle, at, n)),
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
            let want = self.chunk.min(len - out.len() as u32);
            let data = self
                .read_chunk(session, &handle.handle, offset + out.len() as u64, want)
                .await?;
            short_answer = !data.is_empty();
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    async fn write(&self, handle: &RemoteHandle, offset: u64, data: &[u8]) -> SftpResult<()> {
        let session = self.session(handle);
        let writes = data
            .chunks(self.chunk as usize)
            .enumerate()
            .map(|(i, chunk)| {
                session.write(
                    handle.handle.as_str(),
                    offset + i as u64 * u64::from(self.chunk),
                    chunk.to_vec(),
                )
            });
        for answer in join_all(writes).await {
            answer.map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    async fn fsync(&self, handle: &RemoteHandle) -> SftpResult<()> {
        self.extended_status(self.session(handle), FSYNC, ssh_strings(&[&handle.handle]))
            .await
    }

    async fn close(&self, handle: &RemoteHandle) -> SftpResult<()> {
        self.session(handle)
            .close(handle.handle.as_str())
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    async fn setstat(&self, path: &str, attrs: SetAttributes) -> SftpResult<()> {
        self.any_session()
            .setstat(path, file_attributes(attrs))
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    async fn fsetstat(&self, handle: &RemoteHandle, attrs: SetAttributes) -> SftpResult<()> {
        self.session(handle)
            .fsetstat(handle.handle.as_str(), file_attributes(attrs))
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    async fn mkdir(&self, path: &str, perm: u16) -> SftpResult<()> {
        let attrs = FileAttributes {
            permissions: Some(u32::from(perm)),
            ..FileAttributes::empty()
        };
        self.any_session()
            .mkdir(path, attrs)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    async fn rmdir(&self, path: &str) -> SftpResult<()> {
        self.any_session()
            .rmdir(path)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    async fn remove(&self, path: &str) -> SftpResult<()> {
        self.any_session()
            .remove(path)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> SftpResult<()> {
        if replace {
            // Plain SFTP rename refuses an existing target; OpenSSH's extension is rename(2).
            self.extended_status(self.any_session(), POSIX_RENAME, ssh_strings(&[from, to]))
                .await
        } else {
            self.any_session()
                .rename(from, to)
                .await
                .map(drop)
                .map_err(|e| self.error(e))
        }
    }

    async fn statvfs(&self, path: &str) -> SftpResult<FsStats> {
        let s = self
            .any_session()
            .statvfs(path)
            .await
            .map_err(|e| self.error(e))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_slots_spread_over_sessions_and_stop_below_the_utf8_limit() {
        let slots = Arc::new(HandleSlots(Mutex::new(vec![0; SESSIONS])));
        let taken: Vec<HandleSlot> = (0..SESSIONS * HANDLES_PER_SESSION)
            .map(|_| slots.take().expect("room left"))
            .collect();
        assert_eq!(
            *slots.0.lock().unwrap(),
            vec![HANDLES_PER_SESSION; SESSIONS]
        );
        assert_eq!(slots.take().unwrap_err(), SftpError::TooManyOpenFiles);
        let session = taken[0].session;
        drop(taken);
        assert_eq!(*slots.0.lock().unwrap(), vec![0; SESSIONS]);
        assert_eq!(slots.take().unwrap().session, session);
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
}
