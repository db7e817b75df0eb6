//! The real logd server, in-process, on a temporary socket and a real database (a temporary
//! SQLite file, and a throwaway PostgreSQL server from `mft-tests`), driven through
//! `LogdClient` and through raw protocol lines; rows are checked in the database itself.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use diesel::prelude::*;
use logd::db::schema::{aft_log, AftRecord};
use logd::db::AnyConnection;
use logd::server::ServerError;
use logd::{LogdClient, LogdError, Transfer};
use mft_config::DatabaseKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A database for one test, deleted (or its server stopped) on drop.
struct TestDb {
    config: mft_config::Database,
    dir: tempfile::TempDir,
    postgres: Option<mft_tests::Postgres>,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (kind, url, postgres) = match backend {
            Backend::Sqlite => (
                DatabaseKind::Sqlite,
                dir.path().join("aft_log.sqlite3").display().to_string(),
                None,
            ),
            Backend::Postgres => {
                let pg = mft_tests::Postgres::start().expect("start a throwaway PostgreSQL");
                let url = pg.create_database("mft_node_1").unwrap();
                (DatabaseKind::Postgres, url, Some(pg))
            }
        };
        let config = mft_config::Database {
            kind,
            url,
            pool_size: 2,
            batch_max_events: 64,
            batch_max_wait_ms: 5,
        };
        Self {
            config,
            dir,
            postgres,
        }
    }

    fn connect(&self) -> AnyConnection {
        match self.config.kind {
            DatabaseKind::Sqlite => AnyConnection::Sqlite(
                diesel::SqliteConnection::establish(&self.config.url).unwrap(),
            ),
            DatabaseKind::Postgres => {
                AnyConnection::Postgres(diesel::PgConnection::establish(&self.config.url).unwrap())
            }
        }
    }

    /// Every row, by aft_index.
    fn rows(&self) -> Vec<(i64, AftRecord)> {
        aft_log::table
            .order(aft_log::aft_index)
            .select((aft_log::aft_index, AftRecord::as_select()))
            .load(&mut self.connect())
            .unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/logd.sock")
    }
}

/// logd running in this process until [`Running::stop`].
struct Running {
    socket: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

/// Starts logd on `db` and waits until it accepts connections, or returns why it stopped.
async fn start(db: &TestDb) -> Result<Running, ServerError> {
    let (stop, stopped) = oneshot::channel();
    let (config, socket) = (db.config.clone(), db.socket());
    let logd = mft_config::Logd {
        socket: socket.clone(),
    };
    let task = tokio::spawn(async move {
        logd::server::run(&config, &logd, async {
            let _ = stopped.await;
        })
        .await
    });
    for _ in 0..1500 {
        if task.is_finished() {
            return Err(task.await.unwrap().expect_err("logd stopped on its own"));
        }
        if UnixStream::connect(&socket).await.is_ok() {
            return Ok(Running { socket, stop, task });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("logd did not come up on {}", socket.display());
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn transfer(task: usize, n: usize) -> Transfer {
    Transfer {
        jid: format!("user{task}@example.com/phone"),
        to_jid: format!("room{task}@conference.example.com"),
        filename: format!("res-{task}-{n}"),
        real_filename: format!("Report {n} – été.pdf"),
        file_type: "pdf".into(),
        chat_type: ["im", "groupchat", "persistent"][n % 3].into(),
        file_server: "files.example.com".into(),
        file_path: format!("/opt/mftFileStore/node_1/files/im/20250102/03/res-{task}-{n}"),
        file_size: (task * 1000 + n) as i64,
        bytes_transferred: (task * 1000 + n) as i64,
        timestamp: Utc
            .with_ymd_and_hms(2025, 1, 2, 3, (n % 60) as u32, 5)
            .unwrap()
            + chrono::Duration::nanoseconds((task * 1_000_003 + n * 7_919) as i64),
    }
}

/// The row a transfer should become.
fn row(t: &Transfer, method: &str, bytes_transferred: i64) -> AftRecord {
    AftRecord {
        jid: t.jid.clone(),
        to_jid: t.to_jid.clone(),
        method: method.into(),
        filename: t.filename.clone(),
        real_filename: t.real_filename.clone(),
        file_type: t.file_type.clone(),
        chat_type: t.chat_type.clone(),
        file_server: t.file_server.clone(),
        file_path: t.file_path.clone(),
        file_size: t.file_size,
        bytes_transferred,
        timestampvalue: t.timestamp.trunc_subsecs(6).naive_utc(),
    }
}

/// 500 events from 20 concurrent tasks: 15 uploads and 10 downloads (start + end) each.
async fn concurrent_events_are_recorded_exactly(backend: Backend) {
    let db = TestDb::new(backend);
    let logd = start(&db).await.unwrap();
    let client = LogdClient::new(&logd.socket);
    let tasks: Vec<_> = (0..20)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut expected = Vec::new();
                for n in 0..25 {
                    let t = transfer(task, n);
                    if n % 5 < 3 {
                        expected.push((
                            client.post(&t).await.unwrap(),
                            row(&t, "Post", t.bytes_transferred),
                        ));
                    } else {
                        let start = Transfer {
                            bytes_transferred: 0,
                            ..t.clone()
                        };
                        let index = client.get_start(&start).await.unwrap();
                        let moved = t.file_size / 2;
                        client.get_end(index, moved).await.unwrap();
                        expected.push((index, row(&t, "Get", moved)));
                    }
                }
                expected
            })
        })
        .collect();
    let mut expected = Vec::new();
    for task in tasks {
        expected.extend(task.await.unwrap());
    }
    expected.sort_by_key(|(index, _)| *index);
    assert_eq!(
        expected
            .iter()
            .map(|(i, _)| *i)
            .collect::<HashSet<_>>()
            .len(),
        500,
        "every event has its own aft_index"
    );
    assert_eq!(db.rows(), expected);

    // The seed's purge queries run verbatim against the stored timestamps and methods.
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |sql: &str| {
        diesel::sql_query(sql)
            .get_result::<Count>(&mut db.connect())
            .unwrap()
            .n
    };
    assert_eq!(count("SELECT count(*) AS n FROM aft_log WHERE method = 'Post' AND timestampvalue > '2014-12-18 11:58:39'"), 300);
    assert_eq!(count("SELECT count(*) AS n FROM aft_log WHERE jid LIKE 'user7@example.com%' AND method = 'Get'"), 10);
    logd.stop().await;
}

/// Pipelined requests on one connection: refusals are answered by id (or with a null id for a
/// line that is not a request) and do not disturb the events around them.
async fn a_refused_event_leaves_the_connection_alone(backend: Backend) {
    let db = TestDb::new(backend);
    let logd = start(&db).await.unwrap();
    let good = serde_json::to_value(transfer(1, 1)).unwrap();
    let mut long_jid = good.clone();
    long_jid["jid"] = "x".repeat(3072).into();
    let lines = [
        serde_json::json!({"version": 1, "id": 1, "op": "post", "transfer": good}).to_string(),
        serde_json::json!({"version": 1, "id": 2, "op": "post", "transfer": long_jid}).to_string(),
        "this is not json".into(),
        serde_json::json!({"version": 1, "id": 3, "op": "get_start", "transfer": good}).to_string(),
        serde_json::json!({"version": 1, "id": 4, "op": "get_end", "aft_index": 999, "bytes_transferred": 5}).to_string(),
        serde_json::json!({"version": 2, "id": 5, "op": "post", "transfer": good}).to_string(),
    ];
    let stream = UnixStream::connect(&logd.socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all((lines.join("\n") + "\n").as_bytes())
        .await
        .unwrap();
    let mut replies = BufReader::new(read).lines();
    let mut by_id = std::collections::BTreeMap::new();
    for _ in 0..lines.len() {
        let reply: serde_json::Value =
            serde_json::from_str(&replies.next_line().await.unwrap().unwrap()).unwrap();
        by_id.insert(reply["id"].as_u64(), reply);
    }
    assert_eq!(by_id[&Some(1)]["status"], "ok");
    assert_eq!(by_id[&Some(3)]["status"], "ok");
    let refused = |id: Option<u64>| {
        (
            by_id[&id]["status"].as_str().unwrap(),
            by_id[&id]["field"].as_str().unwrap(),
        )
    };
    assert_eq!(refused(Some(2)), ("invalid", "jid"));
    assert_eq!(
        by_id[&Some(2)]["message"],
        "must be at most 3071 characters, got 3072"
    );
    assert_eq!(refused(None), ("invalid", "request"));
    assert_eq!(refused(Some(4)), ("invalid", "aft_index"));
    assert_eq!(refused(Some(5)), ("invalid", "version"));

    let rows = db.rows();
    assert_eq!(
        rows.iter().map(|(i, _)| Some(*i)).collect::<Vec<_>>(),
        [
            by_id[&Some(1)]["aft_index"].as_i64(),
            by_id[&Some(3)]["aft_index"].as_i64()
        ]
    );
    assert_eq!(rows[0].1, row(&transfer(1, 1), "Post", 1001));
    assert_eq!(rows[1].1, row(&transfer(1, 1), "Get", 1001));

    // The client sees the same refusal as a typed error.
    let client = LogdClient::new(&logd.socket);
    match client
        .post(&Transfer {
            chat_type: "broadcast".into(),
            ..transfer(1, 2)
        })
        .await
    {
        Err(LogdError::Invalid { field, .. }) => assert_eq!(field, "chat_type"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match client.get_end(rows[0].0, 1).await {
        Err(LogdError::Invalid { field, message }) => {
            assert_eq!(field, "aft_index");
            assert!(message.contains("no Get row"), "{message}");
        }
        other => panic!("a Post row is not a download: {other:?}"),
    }
    logd.stop().await;
}

/// A table that differs from the schema (here a wrong column type) stops logd before it listens.
async fn a_wrong_schema_is_refused(backend: Backend, wrong_type: &str, reported: &str) {
    let db = TestDb::new(backend);
    let create = format!(
        "CREATE TABLE aft_log (aft_index BIGINT PRIMARY KEY NOT NULL, jid VARCHAR(3071) NOT NULL, \
         to_jid VARCHAR(3071) NOT NULL, method VARCHAR(63) NOT NULL, filename VARCHAR(511) NOT NULL, \
         real_filename VARCHAR(511) NOT NULL, file_type VARCHAR(10) NOT NULL, chat_type VARCHAR(10) NOT NULL, \
         file_server VARCHAR(511) NOT NULL, file_path VARCHAR(4095) NOT NULL, file_size {wrong_type} NOT NULL, \
         bytes_transferred BIGINT NOT NULL, timestampvalue TIMESTAMP NOT NULL)"
    );
    diesel::sql_query(create)
        .execute(&mut db.connect())
        .unwrap();
    let error = start(&db)
        .await
        .err()
        .expect("logd must refuse the table")
        .to_string();
    assert_eq!(
        error,
        format!("the aft_log table is not what logd expects: column file_size is {reported}, expected BIGINT")
    );
    assert!(!db.socket().exists(), "logd must not listen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_events_are_recorded_exactly() {
    concurrent_events_are_recorded_exactly(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_events_are_recorded_exactly() {
    concurrent_events_are_recorded_exactly(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_a_refused_event_leaves_the_connection_alone() {
    a_refused_event_leaves_the_connection_alone(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_refused_event_leaves_the_connection_alone() {
    a_refused_event_leaves_the_connection_alone(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_a_wrong_schema_is_refused() {
    a_wrong_schema_is_refused(Backend::Sqlite, "TEXT", "TEXT").await;
}

#[tokio::test]
async fn postgres_a_wrong_schema_is_refused() {
    a_wrong_schema_is_refused(Backend::Postgres, "INTEGER", "integer").await;
}

/// A stale socket file is replaced; a live one is not taken over; on shutdown the socket goes,
/// and a restarted logd keeps the rows and continues the sequence.
#[tokio::test]
async fn sqlite_socket_lifecycle_and_restart() {
    let db = TestDb::new(Backend::Sqlite);
    std::fs::create_dir_all(db.socket().parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(db.socket()).unwrap()); // leaves a stale file
    let logd = start(&db).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&logd.socket)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o660
    );

    let socket = mft_config::Logd {
        socket: db.socket(),
    };
    let second = logd::server::run(&db.config, &socket, std::future::pending());
    match tokio::time::timeout(Duration::from_secs(30), second).await {
        Ok(Err(ServerError::AlreadyRunning(path))) => assert_eq!(path, db.socket()),
        other => panic!("a second logd must refuse the live socket: {other:?}"),
    }

    let client = LogdClient::new(&logd.socket);
    let first = client.post(&transfer(0, 0)).await.unwrap();
    logd.stop().await;
    assert!(!db.socket().exists(), "the socket is removed on shutdown");
    assert!(matches!(
        client.post(&transfer(0, 1)).await,
        Err(LogdError::Unavailable(_))
    ));

    let logd = start(&db).await.unwrap();
    let second = client.post(&transfer(0, 1)).await.unwrap();
    assert!(second > first);
    assert_eq!(db.rows().len(), 2);
    logd.stop().await;
}

/// Timestamps keep their microseconds and come back as the same UTC instant.
#[tokio::test]
async fn sqlite_timestamps_are_utc_to_the_microsecond() {
    let db = TestDb::new(Backend::Sqlite);
    let logd = start(&db).await.unwrap();
    let when: DateTime<Utc> = "2024-02-29T23:59:59.123456789Z".parse().unwrap();
    let index = LogdClient::new(&logd.socket)
        .post(&Transfer {
            timestamp: when,
            ..transfer(0, 0)
        })
        .await
        .unwrap();
    let rows = db.rows();
    assert_eq!(rows[0].0, index);
    assert_eq!(
        rows[0].1.timestampvalue.to_string(),
        "2024-02-29 23:59:59.123456"
    );
    logd.stop().await;
}

/// PostgreSQL going away mid-run: events get a `database` error, never a false ack, and logd
/// records again once the server is back, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_reported_then_recovered() {
    let mut db = TestDb::new(Backend::Postgres);
    let logd = start(&db).await.unwrap();
    let client = LogdClient::new(&logd.socket);
    let before = client.post(&transfer(0, 0)).await.unwrap();

    db.postgres.as_mut().unwrap().kill();
    match client.post(&transfer(0, 1)).await {
        Err(LogdError::Database(message)) => {
            assert!(message.contains("cannot reach the database"), "{message}")
        }
        other => panic!("expected a database error while PostgreSQL is down, got {other:?}"),
    }

    db.postgres.as_mut().unwrap().resume().unwrap();
    let after = client.post(&transfer(0, 2)).await.unwrap();
    assert!(after > before);
    let filenames: Vec<String> = db.rows().into_iter().map(|(_, r)| r.filename).collect();
    assert_eq!(filenames, ["res-0-0", "res-0-2"]);
    logd.stop().await;
}
