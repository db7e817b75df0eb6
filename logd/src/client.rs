//! The async client httpd uses to record transfers. A client keeps up to
//! [`connection::CONNECTIONS`] persistent connections to the logd socket, opened at first use,
//! and pipelines the requests of all its concurrent callers over them; each reply goes back to
//! its caller by request id (`connection` holds that machinery). Clones share the connections,
//! so any number of concurrent callers, on any tokio runtimes, is safe. A connection that dies
//! (logd restarted) fails the calls in flight on it with `Unavailable`; the next call opens a
//! new one. Every call is bounded by a timeout, connecting included.
//!
//! Errors keep the cases a caller must tell apart: logd unreachable (the event not sent), logd
//! not answering (the event's fate unknown), the database could not commit, the event itself
//! refused (with the field at fault).

mod connection;
mod error;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{Op, Outcome, Request, PROTOCOL_VERSION};
use crate::row::{Amendment, FileMark, Transfer};
use crate::status::LogdStatus;
use connection::Pool;
pub use error::LogdError;

/// How long one call may take, connection included, unless [`LogdClient::with_timeout`] says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the logd socket. Cheap to clone (clones share the connections); usable from any
/// tokio task on any runtime.
#[derive(Clone)]
pub struct LogdClient {
    pool: Arc<Pool>,
    timeout: Duration,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogdClient")
            .field("socket", &self.pool.socket())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LogdClient {
    /// A client for the logd listening on `socket` (`[logd] socket` in the node configuration).
    /// Nothing is connected until the first call.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            pool: Arc::new(Pool::new(socket.into())),
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
        self.aft_index(Op::Post { transfer: t }).await
    }

    /// A download about to start: inserts its Get row (bytes_transferred as given, normally 0)
    /// and returns aft_index once committed.
    pub async fn get_start(&self, t: &Transfer) -> Result<i64, LogdError> {
        self.aft_index(Op::GetStart {
            transfer: t,
            to_jid_of_post: false,
        })
        .await
    }

    /// The same, but the row's `to_jid` is the one of the file's Post row (the upload's
    /// recipient), or `t.to_jid` if logd finds no Post row of `t.filename`; returns the
    /// aft_index and that `to_jid`.
    pub async fn get_start_to_post_recipient(
        &self,
        t: &Transfer,
    ) -> Result<(i64, String), LogdError> {
        let op = Op::GetStart {
            transfer: t,
            to_jid_of_post: true,
        };
        match self.call(op).await? {
            Outcome::Ok { aft_index, to_jid } => {
                Ok((aft_index, to_jid.unwrap_or_else(|| t.to_jid.clone())))
            }
            other => Err(unexpected(other)),
        }
    }

    /// One more chat a stored file was shared in: inserts a `Share` row (`jid` the sharer,
    /// `to_jid` the chat) and returns its aft_index once committed.
    pub async fn share(&self, t: &Transfer) -> Result<i64, LogdError> {
        self.aft_index(Op::Share { transfer: t }).await
    }

    /// A stored file's first share: sets the recipient, chat type and path of its Post row;
    /// returns that row's aft_index once committed (`Invalid` if there is no such row).
    pub async fn amend_post(&self, amendment: &Amendment) -> Result<i64, LogdError> {
        self.aft_index(Op::AmendPost { amendment }).await
    }

    /// A stored file removed on purpose: sets `file_state` of its Post row (the row of
    /// `mark.filename` at `mark.file_path`); returns that row's aft_index once committed, or
    /// `None` if there is no such row. A mark logd would refuse ([`FileMark::check`]) is
    /// refused here, unsent.
    pub async fn mark_file(&self, mark: &FileMark) -> Result<Option<i64>, LogdError> {
        mark.check().map_err(|e| LogdError::Invalid {
            field: e.field,
            message: e.message,
        })?;
        let op = Op::MarkFile {
            filename: &mark.filename,
            file_path: &mark.file_path,
            file_state: mark.file_state,
        };
        match self.aft_index(op).await {
            Ok(aft_index) => Ok(Some(aft_index)),
            Err(LogdError::Invalid { field, .. }) if field == "filename" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The download ended (completed or broke off): sets bytes_transferred of that row, committed.
    pub async fn get_end(&self, aft_index: i64, bytes_transferred: i64) -> Result<(), LogdError> {
        self.aft_index(Op::GetEnd {
            aft_index,
            bytes_transferred,
        })
        .await
        .map(drop)
    }

    /// The `aft_index` of the row written by the event `event_id` ([`Transfer::event_id`]), or
    /// `None` if no row has it. Answered after every event logd had received before it is
    /// committed or failed (lookups queue behind them), so an event that is not found was not
    /// recorded and, unless it is still on its way to logd, never will be.
    pub async fn lookup(&self, event_id: &str) -> Result<Option<i64>, LogdError> {
        match self.aft_index(Op::Lookup { event_id }).await {
            Ok(aft_index) => Ok(Some(aft_index)),
            Err(LogdError::Invalid { field, .. }) if field == "event_id" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// logd's database checks (measured now), raised alarms and counters.
    pub async fn status(&self) -> Result<LogdStatus, LogdError> {
        match self.call(Op::Status).await? {
            Outcome::Report { report } => Ok(report),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a request whose answer is an aft_index (an event's row, or the row looked up).
    async fn aft_index(&self, op: Op<'_>) -> Result<i64, LogdError> {
        match self.call(op).await? {
            Outcome::Ok { aft_index, .. } => Ok(aft_index),
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
        let reply = tokio::time::timeout(self.timeout, self.pool.exchange(id, line))
            .await
            .map_err(|_| {
                LogdError::Unavailable(format!(
                    "no reply from {} within {:?}",
                    self.pool.socket().display(),
                    self.timeout
                ))
            })??;
        match reply.outcome {
            Outcome::Invalid { field, message } => Err(LogdError::Invalid { field, message }),
            Outcome::Database { message } => Err(LogdError::Database(message)),
            outcome @ (Outcome::Ok { .. } | Outcome::Report { .. }) => Ok(outcome),
        }
    }
}

/// A reply of the wrong kind for its request: logd is not speaking the protocol.
fn unexpected(outcome: Outcome) -> LogdError {
    LogdError::Unavailable(format!("unexpected reply {outcome:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::transfer;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::mpsc;

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
    async fn a_mark_of_no_row_is_none_and_a_mark_logd_would_refuse_is_not_sent() {
        let mark = FileMark {
            filename: "f".into(),
            file_path: "/srv/f".into(),
            file_state: crate::row::FileState::Expired,
        };
        let (_dir, client) = fake_logd(|req| {
            assert_eq!(
                (
                    &req["op"],
                    &req["filename"],
                    &req["file_path"],
                    &req["file_state"]
                ),
                (
                    &"mark_file".into(),
                    &"f".into(),
                    &"/srv/f".into(),
                    &"expired".into()
                )
            );
            format!(
                "{{\"id\":{},\"status\":\"ok\",\"aft_index\":7}}\n",
                req["id"]
            )
        })
        .await;
        assert_eq!(client.mark_file(&mark).await.unwrap(), Some(7));
        let (_dir, client) = fake_logd(|req| {
            format!("{{\"id\":{},\"status\":\"invalid\",\"field\":\"filename\",\"message\":\"no row\"}}\n", req["id"])
        })
        .await;
        assert_eq!(client.mark_file(&mark).await.unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let client = LogdClient::new(dir.path().join("absent.sock"));
        let missing = FileMark {
            file_state: crate::row::FileState::Missing,
            ..mark
        };
        match client.mark_file(&missing).await {
            Err(LogdError::Invalid { field, .. }) => assert_eq!(field, "file_state"),
            other => panic!("expected Invalid, got {other:?}"),
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
    async fn a_reply_for_another_id_is_ignored_and_one_not_json_fails_the_call() {
        // A reply nobody waits for (as one arriving after its caller timed out) is dropped.
        let mut fake = FakeLogd::start().await;
        let client = fake.client.clone().with_timeout(Duration::from_millis(300));
        let call = tokio::spawn(async move { client.post(&transfer()).await });
        fake.next()
            .await
            .reply("{\"id\":999999,\"status\":\"ok\",\"aft_index\":1}\n");
        match call.await.unwrap() {
            Err(LogdError::Unavailable(m)) => assert!(m.contains("no reply"), "{m}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        let (_dir, client) = fake_logd(|_| "not json\n".into()).await;
        match client.post(&transfer()).await {
            Err(LogdError::Unavailable(m)) => assert!(m.contains("unreadable reply"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// One request line received by [`FakeLogd`], with the way back to its connection.
    struct Received {
        request: serde_json::Value,
        connection: mpsc::UnboundedSender<Option<String>>,
    }

    impl Received {
        fn reply(&self, line: &str) {
            self.connection.send(Some(line.into())).unwrap();
        }

        fn answer(&self, aft_index: i64) {
            self.reply(&format!(
                "{{\"id\":{},\"status\":\"ok\",\"aft_index\":{aft_index}}}\n",
                self.request["id"]
            ));
        }

        /// Closes the connection the request came on, without answering.
        fn hang_up(&self) {
            self.connection.send(None).unwrap();
        }
    }

    /// A fake logd taking any number of connections: every request of every connection is
    /// handed to the test, which answers it (in any order) or hangs up its connection.
    struct FakeLogd {
        _dir: tempfile::TempDir,
        client: LogdClient,
        accepted: Arc<AtomicU64>,
        received: mpsc::UnboundedReceiver<Received>,
    }

    impl FakeLogd {
        async fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("logd.sock");
            let listener = UnixListener::bind(&path).unwrap();
            let accepted = Arc::new(AtomicU64::new(0));
            let (to_test, received) = mpsc::unbounded_channel();
            let counter = accepted.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(Self::connection(stream, to_test.clone()));
                }
            });
            Self {
                _dir: dir,
                client: LogdClient::new(path),
                accepted,
                received,
            }
        }

        async fn connection(stream: UnixStream, to_test: mpsc::UnboundedSender<Received>) {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let (connection, mut replies) = mpsc::unbounded_channel();
            loop {
                tokio::select! {
                    line = lines.next_line() => match line.unwrap() {
                        Some(line) => {
                            let request = serde_json::from_str(&line).unwrap();
                            let connection = connection.clone();
                            let _ = to_test.send(Received { request, connection });
                        }
                        None => return,
                    },
                    reply = replies.recv() => match reply.flatten() {
                        Some(line) => write.write_all(line.as_bytes()).await.unwrap(),
                        None => return,
                    },
                }
            }
        }

        async fn next(&mut self) -> Received {
            self.received.recv().await.unwrap()
        }

        /// Answers every request from now on with its id as aft_index.
        fn answer_all(mut self) -> (LogdClient, Arc<AtomicU64>) {
            tokio::spawn(async move {
                let _dir = self._dir;
                while let Some(received) = self.received.recv().await {
                    received.answer(received.request["id"].as_i64().unwrap());
                }
            });
            (self.client, self.accepted)
        }
    }

    fn sized(n: i64) -> Transfer {
        Transfer {
            file_size: n,
            ..transfer()
        }
    }

    #[tokio::test]
    async fn concurrent_calls_share_a_few_connections_and_get_their_own_replies() {
        const CALLERS: i64 = 200;
        let mut fake = FakeLogd::start().await;
        let calls: Vec<_> = (0..CALLERS)
            .map(|n| {
                let client = fake.client.clone();
                tokio::spawn(async move { client.post(&sized(n)).await.unwrap() })
            })
            .collect();
        let mut received = Vec::new();
        for _ in 0..CALLERS {
            received.push(fake.next().await);
        }
        // Answered in the reverse order of arrival: every connection sees its replies reversed.
        for r in received.iter().rev() {
            r.answer(r.request["transfer"]["file_size"].as_i64().unwrap() * 10);
        }
        for (n, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), n as i64 * 10);
        }
        let connections = fake.accepted.load(Ordering::SeqCst);
        assert!(
            (1..=connection::CONNECTIONS as u64).contains(&connections),
            "{connections} connections"
        );
    }

    #[tokio::test]
    async fn a_lost_connection_fails_its_calls_and_the_next_call_reconnects() {
        let mut fake = FakeLogd::start().await;
        let client = fake.client.clone();
        // One call per slot opens every connection.
        for n in 0..connection::CONNECTIONS as i64 {
            let call = tokio::spawn({
                let client = client.clone();
                async move { client.post(&sized(n)).await }
            });
            fake.next().await.answer(n);
            assert_eq!(call.await.unwrap().unwrap(), n);
        }
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 4);

        // The first slot's connection dies with a call in flight.
        let in_flight = tokio::spawn({
            let client = client.clone();
            async move { client.post(&sized(100)).await }
        });
        fake.next().await.hang_up();
        match in_flight.await.unwrap() {
            Err(LogdError::Unavailable(m)) => assert!(m.contains("was lost"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }

        // The other three slots keep their connections; the first one reconnects.
        for n in 0..connection::CONNECTIONS as i64 {
            let call = tokio::spawn({
                let client = client.clone();
                async move { client.post(&sized(n)).await }
            });
            fake.next().await.answer(n);
            assert_eq!(call.await.unwrap().unwrap(), n);
        }
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 5);
    }

    /// As actix-web uses it: one client, several single-threaded runtimes on their own threads.
    /// Connections opened from a runtime keep serving the others after it is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_outlive_the_runtime_that_opened_them() {
        let (client, accepted) = FakeLogd::start().await.answer_all();
        let on_own_runtime = |client: LogdClient| {
            tokio::task::spawn_blocking(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for _ in 0..connection::CONNECTIONS {
                        client.get_end(1, 1).await.unwrap();
                    }
                });
            })
        };
        on_own_runtime(client.clone()).await.unwrap();
        on_own_runtime(client.clone()).await.unwrap();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            4,
            "the connections were reused"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let client = LogdClient::new(dir.path().join("absent.sock"));
        match client.post(&transfer()).await {
            Err(LogdError::Unreachable(m)) => assert!(m.contains("cannot connect to"), "{m}"),
            other => panic!("expected Unreachable, got {other:?}"),
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
