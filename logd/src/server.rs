//! The socket side of logd: binds the Unix socket, reads newline-delimited JSON requests from
//! each connection, answers refused ones at once, forwards valid ones to the writer thread, and
//! writes each reply when it comes back. Replies may leave in another order than their requests
//! (a refusal overtakes events waiting for their batch); the `id` pairs them.
//!
//! A `status` request is answered here, apart from the writer: the checks run on a blocking
//! thread against the pool, the alarms and counters come from the writer's `Monitor`.
//!
//! Only translation lives here: framing is in `framing`, decoding in `request`, batching and
//! commit in `writer`. No line, however broken, ends a connection: each is answered.
//! [`run`] takes the shutdown signal as a future, so tests run the real server in-process.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::BatchPolicy;
use crate::db::{Database, DbError};
use crate::framing::{Frame, RequestLines};
use crate::health::Monitor;
use crate::protocol::{Outcome, Reply};
use crate::request::{self, Body, Rejection};
use crate::row::Invalid;
use crate::status::{Check, LogdStatus};
use crate::store::AftStore;
use crate::writer::{self, Job, Responder};

/// The longest request line accepted; the largest valid request is well under 100 KiB.
const MAX_LINE: usize = 256 * 1024;

/// Requests one connection may have waiting for the writer before logd stops reading it.
const MAX_PENDING: usize = 1024;

/// Why logd could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot listen on {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another logd is already listening on {0}")]
    AlreadyRunning(PathBuf),
}

/// Opens the database (migrations, schema check), listens on the socket and serves until
/// `shutdown` completes; then stops accepting, lets the events in flight commit and be
/// answered, and removes the socket file.
pub async fn run(
    database: &mft_config::Database,
    logd: &mft_config::Logd,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let config = database.clone();
    let db = tokio::task::spawn_blocking(move || Database::open(&config))
        .await
        .expect("opening the database does not panic")?;
    let listener = bind(&logd.socket).await?;
    let kind = match database.kind {
        mft_config::DatabaseKind::Postgres => "postgres",
        mft_config::DatabaseKind::Sqlite => "sqlite",
    };
    log::info!("logd ready on {} ({kind})", logd.socket.display());
    let checked = db.clone();
    let status = Status {
        checks: Box::new(move || crate::checks::run_pooled(&checked)),
        monitor: Arc::new(Monitor::new()),
    };
    serve(
        listener,
        Box::new(db),
        Arc::new(status),
        BatchPolicy::from_config(database),
        shutdown,
    )
    .await;
    if let Err(e) = std::fs::remove_file(&logd.socket) {
        log::warn!("cannot remove the socket {}: {e}", logd.socket.display());
    }
    log::info!("logd stopped");
    Ok(())
}

/// Binds the socket: creates its directory, replaces a stale socket file (but not a live one),
/// and makes it readable and writable by owner and group only.
async fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let socket_error = |source| ServerError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(socket_error)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::AlreadyRunning(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(socket_error)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(socket_error)?;
    Ok(listener)
}

/// What a `status` request reports: checks measured when asked, and the writer's monitor.
struct Status {
    checks: Box<dyn Fn() -> Vec<Check> + Send + Sync>,
    monitor: Arc<Monitor>,
}

impl Status {
    /// Blocks while the checks run (each step is bounded by a timeout).
    fn report(&self) -> LogdStatus {
        let checks = (self.checks)();
        let (alarms, counters) = self.monitor.snapshot();
        LogdStatus {
            checks,
            alarms,
            counters,
        }
    }
}

/// Accepts connections until `shutdown`, with one writer thread committing for all of them.
async fn serve(
    listener: UnixListener,
    mut store: Box<dyn AftStore + Send>,
    status: Arc<Status>,
    policy: BatchPolicy,
    shutdown: impl Future<Output = ()>,
) {
    let (jobs, queue) = crossbeam_channel::unbounded();
    let monitor = status.monitor.clone();
    let writer = std::thread::Builder::new()
        .name("logd-writer".into())
        .spawn(move || writer::run(queue, &mut *store, policy, &monitor))
        .expect("spawn the writer thread");
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, jobs.clone(), status.clone(), stop.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: pause rather than spin.
                    log::error!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    log::info!("logd shutting down: no new connections; finishing the events in flight");
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    drop(jobs);
    if tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        log::error!("the writer thread panicked");
    }
}

/// Serves one connection: reads requests (up to [`MAX_PENDING`] unanswered) and writes replies
/// as they become ready, all those ready at once in one write. On `stop` it reads no more but
/// still answers what it forwarded.
async fn connection(
    stream: UnixStream,
    jobs: Sender<Job>,
    status: Arc<Status>,
    stop: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut requests = FramedRead::new(read, RequestLines::new(MAX_LINE));
    let (replies_to, mut replies) = mpsc::unbounded_channel();
    let mut pending = 0usize;
    let mut reading = true;
    let mut out = Vec::new();
    while reading || pending > 0 {
        let reply = tokio::select! {
            () = stop.cancelled(), if reading => {
                reading = false;
                continue;
            }
            Some(reply) = replies.recv() => {
                pending -= 1;
                reply
            }
            frame = requests.next(), if reading && pending < MAX_PENDING => match frame {
                None => {
                    reading = false;
                    continue;
                }
                Some(Ok(Frame::Line(line))) if line.trim().is_empty() => continue,
                Some(Ok(Frame::Line(line))) => match forward(&line, &jobs, &status, &replies_to) {
                    None => {
                        pending += 1;
                        continue;
                    }
                    Some(reply) => reply,
                },
                Some(Ok(frame)) => {
                    let message = match frame {
                        Frame::TooLong => format!("longer than {MAX_LINE} bytes"),
                        Frame::NotUtf8 => "not UTF-8".into(),
                        _ => "the connection ended before the line's newline; the line was not read".into(),
                    };
                    log::warn!("refused a request line: {message}");
                    Rejection { id: None, invalid: Invalid::new("request", message) }.into_reply()
                }
                Some(Err(e)) => {
                    log::debug!("connection closed: {e}");
                    return;
                }
            },
        };
        reply.write_line(&mut out);
        // A committed batch answers many requests of this connection at once.
        while let Ok(reply) = replies.try_recv() {
            pending -= 1;
            reply.write_line(&mut out);
        }
        if let Err(e) = write.write_all(&out).await {
            log::debug!("cannot reply, the client left: {e}");
            return;
        }
        out.clear();
    }
}

/// Decodes one request line and hands a valid request on, an event to the writer and a status
/// request to a blocking task: `None` if it went (its reply comes back through `replies_to`),
/// or the reply to send now.
fn forward(
    line: &str,
    jobs: &Sender<Job>,
    status: &Arc<Status>,
    replies_to: &mpsc::UnboundedSender<Reply>,
) -> Option<Reply> {
    match request::decode(line) {
        Ok(request::Request {
            id,
            body: Body::Status,
        }) => {
            let (status, to) = (status.clone(), replies_to.clone());
            tokio::task::spawn_blocking(move || {
                let report = status.report();
                let _ = to.send(Reply {
                    id: Some(id),
                    outcome: Outcome::Report { report },
                });
            });
            None
        }
        Ok(request::Request {
            id,
            body: Body::Event(command),
        }) => {
            let responder = Responder {
                id,
                to: replies_to.clone(),
            };
            let job = Job {
                command,
                reply: responder,
                queued: std::time::Instant::now(),
            };
            jobs.send(job).err().map(|_| Reply {
                id: Some(id),
                outcome: Outcome::Database {
                    message: "logd's writer has stopped".into(),
                },
            })
        }
        Err(rejection) => {
            log::warn!("refused request {:?}: {}", rejection.id, rejection.invalid);
            Some(rejection.into_reply())
        }
    }
}
