//! One SSH connection's pool of SFTP sessions ([`SftpChannel`]), kept clear of russh-sftp's
//! handle defect, and what the connection knows of its own loss.
//!
//! **The handle defect.** russh-sftp 3.0.1, whose decoder fsd uses, decodes SFTP handles as
//! UTF-8 strings, lossily. OpenSSH's handles are 4-byte big-endian slot numbers, reused from a
//! free list, so a session never holding more than 128 handles at once only ever sees slots
//! 0–127, which are valid one-byte UTF-8; the 129th would come back mangled and its writes and
//! close would fail. So every session is kept under [`HANDLES_PER_SESSION`] open handles: an
//! open goes to the least loaded session ([`Connection::take_slot`]), and when every session is
//! full a new one (SSH channel) is opened, up to [`MAX_SESSIONS`] (and the server's
//! `MaxSessions`). Only then does `open` fail with [`SftpError::TooManyOpenFiles`]. Requests
//! without a handle go round robin ([`Connection::any_session`]).
//!
//! **Loss.** Every russh-sftp error passes through [`Connection::error`], which remembers a
//! closed session or one stuck past [`REQUEST_DEADLINE`] as the loss of the connection, for the
//! supervisor to act on ([`super::supervisor`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mft_config::FileServer;
use russh::client;
use russh_sftp::client::error::Error as ClientError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::protocol::{self, Packet};

use super::connect::{self, ConnectError, ConnectOptions, ServerCheck, CONNECT_TIMEOUT};
use super::wire::{self, FSYNC, HARDLINK, LIMITS, POSIX_RENAME, STATVFS};
use crate::backend::sftp::SftpChannel;
use crate::backend::{SftpError, SftpResult};

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
/// The largest read or write request; OpenSSH accepts up to 255 KiB.
pub const MAX_CHUNK: u32 = 256 * 1024;
/// How long one SFTP request may take, sent and answered: the one timer of a request to the
/// file server (opening a session's SSH channel is bounded by it too).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

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
pub struct Connection {
    ssh: client::Handle<ServerCheck>,
    pool: Mutex<Pool>,
    /// Held while a session is being added, so full sessions add one at a time.
    grow: tokio::sync::Mutex<()>,
    next_session: AtomicUsize,
    /// The largest read or write request.
    pub chunk: u32,
    /// Why the connection was lost, once a request found out.
    lost: Mutex<Option<String>>,
    /// Whether a session of it was stuck past the deadline.
    stuck: AtomicBool,
}

/// One handle's place in a session, given back when dropped (after the handle is closed).
pub struct HandleSlot {
    connection: Arc<Connection>,
    index: usize,
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        self.connection.pool.lock().expect("pool lock").handles[self.index] -= 1;
    }
}
impl HandleSlot {
    /// The connection the handle was opened on.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// An open file on the server; its session slot is given back when it is dropped.
pub struct RemoteHandle {
    pub(super) handle: String,
    pub(super) session: Arc<SftpChannel>,
    pub(super) slot: HandleSlot,
}

impl Connection {
    /// Connects ([`connect::establish`]) and starts the first SFTP sessions.
    pub async fn open(server: &FileServer, options: ConnectOptions) -> Result<Self, ConnectError> {
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
        let ssh = connect::establish(server, options, name).await?;

        let mut sessions = Vec::with_capacity(INITIAL_SESSIONS);
        let mut chunk = MAX_CHUNK;
        for _ in 0..INITIAL_SESSIONS {
            let (session, limits) =
                open_session(&ssh)
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
    pub fn loss(&self) -> Option<String> {
        let reason = self.lost.lock().expect("lost lock").clone();
        match reason {
            Some(reason) => Some(reason),
            None if self.ssh.is_closed() => Some("the SSH connection closed".into()),
            None => None,
        }
    }

    pub fn is_lost(&self) -> bool {
        self.loss().is_some()
    }

    /// SFTP sessions now.
    pub fn session_count(&self) -> usize {
        self.pool.lock().expect("pool lock").sessions.len()
    }

    /// The sessions that have held no request and heard nothing for `quiet_for`.
    pub fn quiet_sessions(&self, quiet_for: Duration) -> Vec<Arc<SftpChannel>> {
        self.pool
            .lock()
            .expect("pool lock")
            .sessions
            .iter()
            .filter(|session| session.is_quiet(quiet_for))
            .cloned()
            .collect()
    }

    /// Ends the lost connection: its sessions end (requests they hold fail at once, with
    /// [`SftpError::Timeout`] if a session was stuck) and the server is told to close it, so its
    /// session processes go too.
    pub fn close(self: &Arc<Self>) {
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
    pub fn any_session(&self) -> Arc<SftpChannel> {
        let pool = self.pool.lock().expect("pool lock");
        let next = self.next_session.fetch_add(1, Ordering::Relaxed);
        pool.sessions[next % pool.sessions.len()].clone()
    }

    /// A place for one more handle, adding a session when every one is full.
    pub async fn take_slot(self: &Arc<Self>) -> SftpResult<(HandleSlot, Arc<SftpChannel>)> {
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
    pub fn error(&self, error: ClientError) -> SftpError {
        let error = wire::client_error(error);
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
    pub async fn extended_status(
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
            Packet::Status(status) => Err(wire::status_error(status)),
            other => Err(SftpError::Protocol(format!("{request} answered {other:?}"))),
        }
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

fn prev_power_of_two(n: u32) -> u32 {
    1 << (u32::BITS - 1 - n.max(1).leading_zeros())
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
}
