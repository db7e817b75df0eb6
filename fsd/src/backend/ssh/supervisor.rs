//! The supervisor: one task per backend that watches the connection and makes it again after
//! a loss, and publishes its state ([`Link`]).
//!
//! When the connection closes (the server went away, or `keepalive_max` keepalives went
//! unanswered) or a session was stuck past the deadline, the loss is published, the
//! connection's sessions end (requests in flight fail at once) and it is disconnected; new
//! requests fail without waiting until the supervisor has connected anew, with exponential
//! backoff ([`BACKOFF_MIN`] to [`BACKOFF_MAX`]). The new connection's sessions are new server
//! processes.
//!
//! **Stuck sessions.** The SSH connection can stay up while an SFTP session's server process
//! does not answer (stopped, or blocked on a dead disk): keepalives do not see that. Besides
//! each request's own deadline, the supervisor probes every session that has held no request
//! and heard nothing for [`PROBE_INTERVAL`], so a stuck idle session is found before a caller
//! meets it.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use mft_config::FileServer;
use tokio::sync::watch;

use super::connect::ConnectOptions;
use super::pool::Connection;
use crate::status::Check;

/// How long a session may hold no request and hear nothing before the supervisor probes it.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// The first and the longest wait between reconnection attempts.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the supervisor looks at the connection.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// The state of the connection, as [`SshBackend::link`](super::SshBackend::link) publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub connected: bool,
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Why the connection was lost, or the last failed attempt to make it again, and which check
    /// that fails.
    pub problem: Option<(Check, String)>,
}

/// Everything the backend and its supervisor share.
pub struct Shared {
    server: FileServer,
    options: ConnectOptions,
    current: RwLock<Option<Arc<Connection>>>,
    link: watch::Sender<Link>,
}

impl Shared {
    /// The state of `connection`, just made to `server`, and its supervisor, started.
    pub fn start(
        server: &FileServer,
        options: ConnectOptions,
        connection: Connection,
    ) -> Arc<Self> {
        let shared = Arc::new(Self {
            server: server.clone(),
            options,
            current: RwLock::new(Some(Arc::new(connection))),
            link: watch::Sender::new(Link {
                connected: true,
                reconnects: 0,
                problem: None,
            }),
        });
        tokio::spawn(supervise(Arc::downgrade(&shared)));
        shared
    }

    /// The connection, while there is one.
    pub fn current(&self) -> Option<Arc<Connection>> {
        self.current.read().expect("connection lock").clone()
    }

    /// The connection's state, updated as it is lost and made again.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.link.subscribe()
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
            probe_quiet_sessions(&current);
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
                    log::warn!(
                        "reconnecting to the file server failed (next try in {:?}): {e}",
                        (backoff * 2).min(BACKOFF_MAX)
                    );
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

/// Probes every session of `connection` that has held no request and heard nothing for
/// [`PROBE_INTERVAL`]; one that does not answer within the deadline makes the connection lost.
fn probe_quiet_sessions(connection: &Arc<Connection>) {
    for session in connection.quiet_sessions(PROBE_INTERVAL) {
        let connection = connection.clone();
        tokio::spawn(async move {
            if let Err(e) = session.probe().await {
                connection.error(e);
            }
        });
    }
}
