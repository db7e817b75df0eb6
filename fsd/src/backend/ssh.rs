//! The real file server: one SSH connection (`russh`) carrying a pool of SFTP sessions
//! (`SftpChannel`: fsd's own framing, with russh-sftp's packet
//! types), with the server's host key pinned and the node's key for authentication, watched by
//! keepalives and re-established in the background when it is lost.
//!
//! - `connect`: TCP, key exchange against the pinned host key, authentication.
//! - `pool`: one connection's SFTP sessions, kept clear of russh-sftp's handle defect
//!   ([`HANDLES_PER_SESSION`]), and what the connection knows of its loss.
//! - `supervisor`: reconnects after a loss, probes quiet sessions, publishes the [`Link`].
//! - `wire`: conversions between fsd's types and russh-sftp's.
//!
//! [`SshBackend::connect`] makes the first connection (startup fails if it cannot). Handles
//! opened on a lost connection stay invalid ([`SftpError::HandleLost`]): the server closed
//! them with the connection. Every SFTP request has one deadline, [`REQUEST_DEADLINE`], counted
//! in the session; a request past it fails with [`SftpError::Timeout`] and the connection
//! counts as lost.
//!
//! Reads and writes are split into requests of at most [`MAX_CHUNK`] bytes (or the server's
//! `limits@openssh.com`, if smaller) that are all sent at once.

mod connect;
mod pool;
mod supervisor;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use mft_config::FileServer;
use russh_sftp::client::error::Error as ClientError;
use russh_sftp::protocol::{self, FileAttributes};
use tokio::sync::watch;

pub use connect::{ConnectError, ConnectOptions};
pub use pool::{
    RemoteHandle, HANDLES_PER_SESSION, INITIAL_SESSIONS, MAX_CHUNK, MAX_SESSIONS, REQUEST_DEADLINE,
};
pub use supervisor::{Link, BACKOFF_MAX, BACKOFF_MIN, PROBE_INTERVAL};

use super::{
    Attributes, DirEntry, FileKind, FsStats, OpenOptions, SetAttributes, SftpBackend, SftpError,
    SftpResult,
};
use pool::Connection;
use supervisor::Shared;
use wire::{
    attributes, file_attributes, open_attributes, open_flags, ssh_strings, FSYNC, HARDLINK,
    POSIX_RENAME,
};

/// READDIR requests sent at once on one directory handle.
const READDIRS_IN_FLIGHT: usize = 8;

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
        let connection = Connection::open(server, options).await?;
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
        let shared = Shared::start(server, options, connection);
        Ok(Self { shared, directory })
    }

    /// The node directory as the server resolved it.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The connection's state, updated as it is lost and made again.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.shared.link()
    }

    /// SFTP sessions on the current connection (0 while disconnected).
    pub fn sessions(&self) -> usize {
        self.shared.current().map_or(0, |c| c.session_count())
    }

    fn connection(&self) -> SftpResult<Arc<Connection>> {
        self.shared.current().ok_or_else(|| {
            SftpError::Disconnected("not connected to the file server (reconnecting)".into())
        })
    }

    /// The live connection `handle` was opened on.
    fn connection_of<'a>(&self, handle: &'a RemoteHandle) -> SftpResult<&'a Connection> {
        let connection = handle.slot.connection();
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
        match handle
            .session
            .read(handle.handle.as_str(), offset, len)
            .await
        {
            Ok(data) => Ok(data.data),
            Err(ClientError::Status(status)) if status.status_code == protocol::StatusCode::Eof => {
                Ok(Vec::new())
            }
            Err(e) => Err(connection.error(e)),
        }
    }
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
        let handle = session.opendir(path).await.map_err(|e| c.error(e))?.handle;
        // READDIRs on one handle are answered in order, each with the next names: several in
        // flight at once list a large directory in fewer round trips, and a small one (names,
        // then end of file) in one.
        let mut entries = Vec::new();
        let listed = 'listing: loop {
            let answers =
                join_all((0..READDIRS_IN_FLIGHT).map(|_| session.readdir(handle.as_str()))).await;
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
        let s = c
            .any_session()
            .statvfs(path)
            .await
            .map_err(|e| c.error(e))?;
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
        let name = c
            .any_session()
            .readlink(path)
            .await
            .map_err(|e| c.error(e))?;
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
