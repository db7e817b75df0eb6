//! The connections behind [`LogdClient`](crate::LogdClient): a small pool of persistent Unix
//! connections to logd, each carrying any number of pipelined requests.
//!
//! - [`Pending`] is the bookkeeping of one connection (plain data, no I/O): which request ids
//!   wait for a reply, and whether the connection is gone (then every waiter gets
//!   `Unavailable` and no new request is taken).
//! - A connection is two halves driven by one task: a writer that sends the request lines
//!   callers queue (several lines per `write`), and a reader that routes each reply to the
//!   caller waiting for its id. When either half fails, the connection closes and every request
//!   in flight on it fails.
//! - [`Pool`] holds up to [`CONNECTIONS`] of them, opened lazily and used round-robin, and
//!   reopens a closed one on the next call that picks it: a restarted logd is picked up
//!   transparently.
//!
//! The connection tasks run on a runtime of their own, on one background thread the pool
//! starts at its first connection and stops when the last clone of the client is dropped.
//! Callers reach them only through runtime-independent channels, so a client shared by several
//! single-threaded runtimes (actix-web workers) never depends on one of them being alive or
//! idle: a connection opened from one worker keeps serving the others after that worker stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::error::LogdError;
use crate::protocol::Reply;

/// Connections one client keeps to logd at most.
pub(super) const CONNECTIONS: usize = 4;

/// Request bytes gathered into one `write` at most (more are written by the next one).
const WRITE_BATCH: usize = 64 * 1024;

/// Where a reply goes: the caller waiting for it.
type Waiter = oneshot::Sender<Result<Reply, LogdError>>;

/// The requests of one connection still waiting for their reply.
#[derive(Debug, Default)]
pub(super) struct Pending {
    waiting: HashMap<u64, Waiter>,
    /// Why the connection is gone, once it is.
    closed: Option<String>,
}

impl Pending {
    /// Waits for the reply to `id`; gives the waiter back if the connection is gone.
    fn register(&mut self, id: u64, waiter: Waiter) -> Result<(), Waiter> {
        match self.closed {
            Some(_) => Err(waiter),
            None => {
                self.waiting.insert(id, waiter);
                Ok(())
            }
        }
    }

    /// Stops waiting for `id` (the caller gave up); its reply, if it comes, is dropped.
    fn cancel(&mut self, id: u64) -> Option<Waiter> {
        self.waiting.remove(&id)
    }

    /// Hands `reply` to the caller waiting for its id. A reply for an id nobody waits for any
    /// more (its caller timed out) is dropped; one without an id means logd could not read a
    /// request of ours, which can be any of them: an error, the connection must go.
    fn route(&mut self, reply: Reply) -> Result<(), String> {
        let id = reply
            .id
            .ok_or_else(|| format!("logd could not read a request: {:?}", reply.outcome))?;
        if let Some(waiter) = self.waiting.remove(&id) {
            // The caller may have given up in the meantime; nobody else wants the reply.
            let _ = waiter.send(Ok(reply));
        }
        Ok(())
    }

    /// The connection is gone: every waiter gets `Unavailable` with `reason`, and no request
    /// is taken any more.
    fn close(&mut self, reason: String) {
        for (_, waiter) in self.waiting.drain() {
            let _ = waiter.send(Err(LogdError::Unavailable(reason.clone())));
        }
        self.closed = Some(reason);
    }

    fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // Nothing panics while holding it; if something did, the data is still consistent.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A caller's side of one open connection.
#[derive(Clone)]
struct Connection {
    /// Request lines for the writer half.
    requests: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<Pending>>,
}

/// A request that could not be sent because its connection is gone, given back to be sent on
/// another.
struct NotSent {
    line: String,
    waiter: Waiter,
}

impl Connection {
    /// Connects to `socket` and starts the task driving the connection, on the current runtime.
    async fn open(socket: PathBuf) -> Result<Self, LogdError> {
        let stream = UnixStream::connect(&socket).await.map_err(|e| {
            LogdError::Unreachable(format!("cannot connect to {}: {e}", socket.display()))
        })?;
        let (requests, queued) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(drive(stream, socket, pending.clone(), queued));
        Ok(Self { requests, pending })
    }

    fn is_open(&self) -> bool {
        !self.requests.is_closed() && !lock(&self.pending).is_closed()
    }

    /// Registers `waiter` for `id` and queues `line`; gives both back if the connection is gone.
    fn send(&self, id: u64, line: String, waiter: Waiter) -> Result<Registration, NotSent> {
        let mut pending = lock(&self.pending);
        if let Err(waiter) = pending.register(id, waiter) {
            return Err(NotSent { line, waiter });
        }
        // The writer half may have stopped before the connection was marked closed.
        if let Err(mpsc::error::SendError(line)) = self.requests.send(line) {
            let waiter = pending.cancel(id).expect("registered under this lock");
            return Err(NotSent { line, waiter });
        }
        Ok(Registration {
            pending: self.pending.clone(),
            id,
        })
    }
}

/// A request in flight; dropping it (the caller timed out or was cancelled) forgets the waiter.
struct Registration {
    pending: Arc<Mutex<Pending>>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.pending).cancel(self.id);
    }
}

/// Runs one connection until it fails or its last caller-side handle is gone, then closes it.
async fn drive(
    stream: UnixStream,
    socket: PathBuf,
    pending: Arc<Mutex<Pending>>,
    mut queued: mpsc::UnboundedReceiver<String>,
) {
    let (read, write) = stream.into_split();
    let reason = tokio::select! {
        reason = read_replies(read, &pending) => reason,
        reason = write_requests(write, &mut queued) => reason,
    };
    log::debug!("connection to logd {} closed: {reason}", socket.display());
    lock(&pending).close(format!(
        "the connection to {} was lost: {reason}",
        socket.display()
    ));
}

/// Routes replies to their callers until the connection ends; returns why it ended.
async fn read_replies(read: OwnedReadHalf, pending: &Mutex<Pending>) -> String {
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return "logd closed it".into(),
            Err(e) => return format!("cannot read from it: {e}"),
        };
        let reply = match serde_json::from_str::<Reply>(&line) {
            Ok(reply) => reply,
            Err(e) => return format!("unreadable reply {line:?}: {e}"),
        };
        if let Err(reason) = lock(pending).route(reply) {
            return reason;
        }
    }
}

/// Sends queued request lines, all those already queued in one write, until the connection
/// fails or no caller-side handle is left; returns why it ended.
async fn write_requests(
    mut write: OwnedWriteHalf,
    queued: &mut mpsc::UnboundedReceiver<String>,
) -> String {
    let mut buffer = Vec::with_capacity(WRITE_BATCH);
    while let Some(line) = queued.recv().await {
        buffer.extend_from_slice(line.as_bytes());
        while buffer.len() < WRITE_BATCH {
            match queued.try_recv() {
                Ok(line) => buffer.extend_from_slice(line.as_bytes()),
                Err(_) => break,
            }
        }
        if let Err(e) = write.write_all(&buffer).await {
            return format!("cannot send on it: {e}");
        }
        buffer.clear();
    }
    "the client no longer uses it".into()
}

/// The runtime thread the connections run on; dropping this stops it (and them).
struct Driver {
    runtime: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl Driver {
    fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the logd client's runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("logd-client".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| format!("cannot start the logd client's thread: {e}"))?;
        Ok(Self {
            runtime: handle,
            _stop: stop,
        })
    }
}

/// Up to [`CONNECTIONS`] connections to one logd socket, shared by every clone of a client.
pub(super) struct Pool {
    socket: PathBuf,
    driver: OnceLock<Result<Driver, String>>,
    slots: [tokio::sync::Mutex<Option<Connection>>; CONNECTIONS],
    next_slot: AtomicUsize,
}

impl Pool {
    /// Nothing is started or connected until the first call.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            driver: OnceLock::new(),
            slots: Default::default(),
            next_slot: AtomicUsize::new(0),
        }
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Sends request `id` (its line, newline included) on the next connection and waits for
    /// its reply. Unbounded in time: the caller bounds it.
    pub async fn exchange(&self, id: u64, line: String) -> Result<Reply, LogdError> {
        let (waiter, reply) = oneshot::channel();
        let _in_flight = self.send(id, line, waiter).await?;
        reply.await.unwrap_or_else(|_| {
            Err(LogdError::Unavailable(format!(
                "{} stopped without replying",
                self.socket.display()
            )))
        })
    }

    /// Queues the request on the next slot's connection, opening it if there is none or it is
    /// closed. A request that could not be queued was never sent, so it is tried once more on
    /// a new connection.
    async fn send(&self, id: u64, line: String, waiter: Waiter) -> Result<Registration, LogdError> {
        let at = self.next_slot.fetch_add(1, Ordering::Relaxed) % CONNECTIONS;
        let mut slot = self.slots[at].lock().await;
        let mut request = NotSent { line, waiter };
        for _ in 0..2 {
            let connection = match &*slot {
                Some(connection) if connection.is_open() => connection.clone(),
                _ => {
                    *slot = None;
                    let connection = self.connect().await?;
                    slot.insert(connection).clone()
                }
            };
            match connection.send(id, request.line, request.waiter) {
                Ok(registration) => return Ok(registration),
                Err(not_sent) => request = not_sent,
            }
        }
        Err(LogdError::Unreachable(format!(
            "{} closed every new connection at once",
            self.socket.display()
        )))
    }

    /// Opens a connection on the driver's runtime (starting it at the first call).
    async fn connect(&self) -> Result<Connection, LogdError> {
        let driver = self
            .driver
            .get_or_init(Driver::start)
            .as_ref()
            .map_err(|e| LogdError::Unavailable(e.clone()))?;
        driver
            .runtime
            .spawn(Connection::open(self.socket.clone()))
            .await
            .map_err(|e| {
                LogdError::Unavailable(format!("the logd client's runtime has stopped: {e}"))
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Outcome;

    fn ok(id: Option<u64>, aft_index: i64) -> Reply {
        Reply {
            id,
            outcome: Outcome::Ok {
                aft_index,
                to_jid: None,
            },
        }
    }

    #[test]
    fn replies_reach_their_waiters_in_any_order() {
        let mut pending = Pending::default();
        let (a, mut to_a) = oneshot::channel();
        let (b, mut to_b) = oneshot::channel();
        pending.register(1, a).unwrap();
        pending.register(2, b).unwrap();
        pending.route(ok(Some(2), 20)).unwrap();
        pending.route(ok(Some(1), 10)).unwrap();
        assert_eq!(to_a.try_recv().unwrap().unwrap(), ok(Some(1), 10));
        assert_eq!(to_b.try_recv().unwrap().unwrap(), ok(Some(2), 20));
        assert!(pending.waiting.is_empty());
    }

    #[test]
    fn a_late_reply_is_dropped_and_one_without_id_fails() {
        let mut pending = Pending::default();
        let (a, to_a) = oneshot::channel();
        pending.register(1, a).unwrap();
        assert!(pending.cancel(1).is_some());
        drop(to_a);
        assert_eq!(pending.route(ok(Some(1), 10)), Ok(()));
        assert_eq!(pending.route(ok(Some(7), 10)), Ok(()));
        let reason = pending.route(ok(None, 0)).unwrap_err();
        assert!(reason.contains("could not read a request"), "{reason}");
    }

    #[test]
    fn closing_fails_every_waiter_and_refuses_new_ones() {
        let mut pending = Pending::default();
        let (a, mut to_a) = oneshot::channel();
        pending.register(1, a).unwrap();
        pending.close("logd closed it".into());
        match to_a.try_recv().unwrap() {
            Err(LogdError::Unavailable(m)) => assert_eq!(m, "logd closed it"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let (b, _to_b) = oneshot::channel();
        assert!(pending.register(2, b).is_err());
        assert!(pending.is_closed());
    }
}
