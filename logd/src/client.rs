//! The async client httpd uses to record transfers. Each call opens its own connection to the
//! logd socket, sends one request, waits for its reply and closes: nothing is shared between
//! callers but the socket path and an id counter, so any number of concurrent callers is safe,
//! and a restarted logd is picked up by the next call. Every call is bounded by a timeout.
//!
//! Errors keep the three cases a caller must tell apart: logd unreachable, the database could
//! not commit, the event itself refused (with the field at fault).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::protocol::{Op, Outcome, Reply, Request, PROTOCOL_VERSION};
use crate::{LogdStatus, Transfer};

/// How long one call may take, connection included, unless [`LogdClient::with_timeout`] says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum LogdError {
    /// logd cannot be reached: socket missing, connection refused or reset, timeout, or a reply
    /// that is not the protocol. Whether the event was recorded is unknown.
    #[error("logd is unavailable: {0}")]
    Unavailable(String),
    /// logd is up but the database could not commit the event; nothing was recorded.
    #[error("the transfer log database could not record the event: {0}")]
    Database(String),
    /// logd refused the event; `field` names the request field at fault. Nothing was recorded.
    #[error("logd refused the event: {field}: {message}")]
    Invalid { field: String, message: String },
}

/// A handle on the logd socket. Cheap to clone; usable from any tokio task.
#[derive(Debug, Clone)]
pub struct LogdClient {
    socket: Arc<PathBuf>,
    timeout: Duration,
    next_id: Arc<AtomicU64>,
}

impl LogdClient {
    /// A client for the logd listening on `socket` (`[logd] socket` in the node configuration).
    /// Nothing is connected until the first call.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: Arc::new(socket.into()),
            timeout: DEFAULT_TIMEOUT,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The same client with another bound on each call (10 s by default).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// A completed upload: returns the committed row's aft_index.
    pub async fn post(&self, t: &Transfer) -> Result<i64, LogdError> {
        self.record(Op::Post { transfer: t }).await
    }

    /// A download about to start: inserts its Get row (bytes_transferred as given, normally 0)
    /// and returns aft_index once committed.
    pub async fn get_start(&self, t: &Transfer) -> Result<i64, LogdError> {
        self.record(Op::GetStart { transfer: t }).await
    }

    /// The download ended (completed or broke off): sets bytes_transferred of that row, committed.
    pub async fn get_end(&self, aft_index: i64, bytes_transferred: i64) -> Result<(), LogdError> {
        self.record(Op::GetEnd {
            aft_index,
            bytes_transferred,
        })
        .await
        .map(drop)
    }

    /// logd's database checks (measured now), raised alarms and counters.
    pub async fn status(&self) -> Result<LogdStatus, LogdError> {
        match self.call(Op::Status).await? {
            Outcome::Report { report } => Ok(report),
            other => Err(unexpected(other)),
        }
    }

    /// An event request, whose answer is an aft_index.
    async fn record(&self, op: Op<'_>) -> Result<i64, LogdError> {
        match self.call(op).await? {
            Outcome::Ok { aft_index } => Ok(aft_index),
            other => Err(unexpected(other)),
        }
    }

    /// Sends `op` and returns its reply's outcome; `invalid` and `database` replies as errors.
    async fn call(&self, op: Op<'_>) -> Result<Outcome, LogdError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = Request {
            version: PROTOCOL_VERSION,
            id,
            op,
        }
        .to_line();
        let reply = tokio::time::timeout(self.timeout, self.exchange(&line))
            .await
            .map_err(|_| {
                LogdError::Unavailable(format!(
                    "no reply from {} within {:?}",
                    self.socket.display(),
                    self.timeout
                ))
            })??;
        if reply.id != Some(id) {
            return Err(LogdError::Unavailable(format!(
                "reply for request {:?} received for request {id}",
                reply.id
            )));
        }
        match reply.outcome {
            Outcome::Invalid { field, message } => Err(LogdError::Invalid { field, message }),
            Outcome::Database { message } => Err(LogdError::Database(message)),
            outcome @ (Outcome::Ok { .. } | Outcome::Report { .. }) => Ok(outcome),
        }
    }

    /// Connects, sends one request line and reads one reply line.
    async fn exchange(&self, line: &str) -> Result<Reply, LogdError> {
        let unavailable = |what: &str, e: std::io::Error| {
            LogdError::Unavailable(format!("{what} {}: {e}", self.socket.display()))
        };
        let stream = UnixStream::connect(self.socket.as_path())
            .await
            .map_err(|e| unavailable("cannot connect to", e))?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| unavailable("cannot send to", e))?;
        let reply = BufReader::new(read)
            .lines()
            .next_line()
            .await
            .map_err(|e| unavailable("cannot read from", e))?
            .ok_or_else(|| {
                LogdError::Unavailable(format!(
                    "{} closed the connection without replying",
                    self.socket.display()
                ))
            })?;
        serde_json::from_str(&reply)
            .map_err(|e| LogdError::Unavailable(format!("unreadable reply {reply:?}: {e}")))
    }
}

/// A reply of the wrong kind for its request: logd is not speaking the protocol.
fn unexpected(outcome: Outcome) -> LogdError {
    LogdError::Unavailable(format!("unexpected reply {outcome:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    fn transfer() -> Transfer {
        Transfer {
            jid: "a@x".into(),
            to_jid: "b@x".into(),
            filename: "f".into(),
            real_filename: "f.txt".into(),
            file_type: "txt".into(),
            chat_type: "im".into(),
            file_server: "fs".into(),
            file_path: "/f".into(),
            file_size: 1,
            bytes_transferred: 1,
            timestamp: chrono::Utc::now(),
        }
    }

    /// A one-connection fake logd: reads one request and answers with `reply(request)`.
    async fn fake_logd(
        reply: impl FnOnce(serde_json::Value) -> String + Send + 'static,
    ) -> (tempfile::TempDir, LogdClient) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let line = BufReader::new(read)
                .lines()
                .next_line()
                .await
                .unwrap()
                .unwrap();
            let answer = reply(serde_json::from_str(&line).unwrap());
            write.write_all(answer.as_bytes()).await.unwrap();
        });
        (dir, LogdClient::new(path))
    }

    #[tokio::test]
    async fn replies_map_to_results() {
        let (_dir, client) = fake_logd(|req| {
            format!(
                "{{\"id\":{},\"status\":\"ok\",\"aft_index\":41}}\n",
                req["id"]
            )
        })
        .await;
        assert_eq!(client.post(&transfer()).await.unwrap(), 41);

        let (_dir, client) = fake_logd(|req| {
            format!("{{\"id\":{},\"status\":\"invalid\",\"field\":\"chat_type\",\"message\":\"bad\"}}\n", req["id"])
        })
        .await;
        match client.get_start(&transfer()).await {
            Err(LogdError::Invalid { field, message }) => {
                assert_eq!((field.as_str(), message.as_str()), ("chat_type", "bad"))
            }
            other => panic!("expected Invalid, got {other:?}"),
        }

        let (_dir, client) = fake_logd(|req| {
            assert_eq!(req["op"], "get_end");
            format!(
                "{{\"id\":{},\"status\":\"database\",\"message\":\"disk full\"}}\n",
                req["id"]
            )
        })
        .await;
        match client.get_end(3, 0).await {
            Err(LogdError::Database(m)) => assert_eq!(m, "disk full"),
            other => panic!("expected Database, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn status_returns_the_report_and_refuses_other_replies() {
        let (_dir, client) = fake_logd(|req| {
            assert_eq!(req["op"], "status");
            format!(
                "{{\"id\":{},\"status\":\"report\",\"report\":{{\"checks\":[],\"alarms\":[\"MftDbConnectError\"],\
                 \"counters\":{{\"committed\":{{\"post\":4,\"get_start\":1,\"get_end\":1}},\"batches\":3,\
                 \"failed_events\":2,\"last_batch_size\":1,\"uptime_seconds\":9}}}}}}\n",
                req["id"]
            )
        })
        .await;
        let status = client.status().await.unwrap();
        assert_eq!(status.alarms, ["MftDbConnectError"]);
        assert_eq!(
            (status.counters.committed.post, status.counters.batches),
            (4, 3)
        );
        assert!(!status.healthy());

        let (_dir, client) = fake_logd(|req| {
            format!(
                "{{\"id\":{},\"status\":\"ok\",\"aft_index\":1}}\n",
                req["id"]
            )
        })
        .await;
        assert!(matches!(
            client.status().await,
            Err(LogdError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_reply_for_another_id_is_a_protocol_failure() {
        let (_dir, client) =
            fake_logd(|_| "{\"id\":999999,\"status\":\"ok\",\"aft_index\":1}\n".into()).await;
        assert!(matches!(
            client.post(&transfer()).await,
            Err(LogdError::Unavailable(_))
        ));
        let (_dir, client) = fake_logd(|_| "not json\n".into()).await;
        assert!(matches!(
            client.post(&transfer()).await,
            Err(LogdError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let client = LogdClient::new(dir.path().join("absent.sock"));
        match client.post(&transfer()).await {
            Err(LogdError::Unavailable(m)) => assert!(m.contains("cannot connect to"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_logd_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logd.sock");
        let _listener = UnixListener::bind(&path).unwrap(); // accepts (backlog) but never answers
        let client = LogdClient::new(&path).with_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        match client.get_end(1, 1).await {
            Err(LogdError::Unavailable(m)) => assert!(m.contains("no reply"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
