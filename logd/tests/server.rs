//! The real logd server, in-process, on a temporary socket and a real database (a temporary
//! SQLite file, and a throwaway PostgreSQL server from `mft-tests`), driven through
//! `LogdClient` and through raw protocol lines; rows are checked in the database itself.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use logd::server::ServerError;
use logd::{LogdClient, LogdError, Method, Transfer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use common::{row, start, transfer, Backend, TestDb};

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
                            row(&t, Method::Post, t.bytes_transferred),
                        ));
                    } else {
                        let start = Transfer {
                            bytes_transferred: 0,
                            ..t.clone()
                        };
                        let index = client.get_start(&start).await.unwrap();
                        let moved = t.file_size / 2;
                        client.get_end(index, moved).await.unwrap();
                        expected.push((index, row(&t, Method::Get, moved)));
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
    let mut broadcast = good.clone();
    broadcast["chat_type"] = "broadcast".into();
    let lines = [
        serde_json::json!({"version": 1, "id": 1, "op": "post", "transfer": good}).to_string(),
        serde_json::json!({"version": 1, "id": 2, "op": "post", "transfer": long_jid}).to_string(),
        "this is not json".into(),
        serde_json::json!({"version": 1, "id": 3, "op": "get_start", "transfer": good}).to_string(),
        serde_json::json!({"version": 1, "id": 4, "op": "get_end", "aft_index": 999, "bytes_transferred": 5}).to_string(),
        serde_json::json!({"version": 2, "id": 5, "op": "post", "transfer": good}).to_string(),
        serde_json::json!({"version": 1, "id": 6, "op": "post", "transfer": broadcast}).to_string(),
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
    assert_eq!(refused(Some(6)), ("invalid", "chat_type"));

    let rows = db.rows();
    assert_eq!(
        rows.iter().map(|(i, _)| Some(*i)).collect::<Vec<_>>(),
        [
            by_id[&Some(1)]["aft_index"].as_i64(),
            by_id[&Some(3)]["aft_index"].as_i64()
        ]
    );
    assert_eq!(rows[0].1, row(&transfer(1, 1), Method::Post, 1001));
    assert_eq!(rows[1].1, row(&transfer(1, 1), Method::Get, 1001));

    // The client sees the same refusal as a typed error.
    let client = LogdClient::new(&logd.socket);
    match client
        .post(&Transfer {
            jid: "x".repeat(3072),
            ..transfer(1, 2)
        })
        .await
    {
        Err(LogdError::Invalid { field, .. }) => assert_eq!(field, "jid"),
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

/// A line over the limit or not UTF-8 is refused and the connection goes on; a request that the
/// client's close cut off before its newline is refused and never committed (issue 15).
#[tokio::test]
async fn sqlite_broken_lines_are_refused_without_closing_the_connection() {
    let db = TestDb::new(Backend::Sqlite);
    let logd = start(&db).await.unwrap();
    let post = |id: u64| {
        serde_json::json!({"version": 1, "id": id, "op": "post", "transfer": transfer(1, id as usize)}).to_string()
    };
    let stream = UnixStream::connect(&logd.socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read).lines();
    let json =
        |line: Option<String>| serde_json::from_str::<serde_json::Value>(&line.unwrap()).unwrap();
    let mut bytes = vec![b'x'; 300 * 1024];
    bytes.extend_from_slice(b"\n\xff\xfe{}\n");
    bytes.extend_from_slice((post(7) + "\n").as_bytes());
    write.write_all(&bytes).await.unwrap();
    let first = json(replies.next_line().await.unwrap());
    let second = json(replies.next_line().await.unwrap());
    let third = json(replies.next_line().await.unwrap());
    assert_eq!(
        (first["status"].as_str(), first["field"].as_str()),
        (Some("invalid"), Some("request"))
    );
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("longer than"),
        "{first}"
    );
    assert_eq!(second["message"], "not UTF-8");
    assert_eq!(
        (third["id"].as_u64(), third["status"].as_str()),
        (Some(7), Some("ok"))
    );

    write.write_all(post(8).as_bytes()).await.unwrap();
    write.shutdown().await.unwrap();
    let cut = json(replies.next_line().await.unwrap());
    assert_eq!(
        (cut["id"].as_u64(), cut["status"].as_str()),
        (None, Some("invalid")),
        "{cut}"
    );
    assert!(
        cut["message"].as_str().unwrap().contains("newline"),
        "{cut}"
    );
    assert_eq!(db.rows().len(), 1, "the request cut short is not committed");
    logd.stop().await;
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
    // The socket is gone: unreachable (or, should the dead connection still look open,
    // unanswered).
    assert!(matches!(
        client.post(&transfer(0, 1)).await,
        Err(LogdError::Unreachable(_) | LogdError::Unavailable(_))
    ));

    let logd = start(&db).await.unwrap();
    let second = client.post(&transfer(0, 1)).await.unwrap();
    assert!(second > first);
    assert_eq!(db.rows().len(), 2);
    logd.stop().await;
}

/// A post sent again with its event id (its reply was lost) is answered with the first row,
/// through the real socket and database; `lookup` finds that row and refuses an unknown id.
#[tokio::test]
async fn sqlite_an_event_sent_twice_is_one_row_and_can_be_looked_up() {
    let db = TestDb::new(Backend::Sqlite);
    let logd = start(&db).await.unwrap();
    let client = LogdClient::new(&logd.socket);
    let event = Transfer {
        event_id: Some("0f6b1c9e-8d1a-4e0c-9a55-3e4f9d2b7c11".into()),
        ..transfer(0, 0)
    };
    let first = client.post(&event).await.unwrap();
    let other = client.post(&transfer(0, 1)).await.unwrap();
    assert_eq!(client.post(&event).await.unwrap(), first);
    assert_eq!(
        client
            .lookup("0f6b1c9e-8d1a-4e0c-9a55-3e4f9d2b7c11")
            .await
            .unwrap(),
        Some(first)
    );
    assert_eq!(client.lookup("never-sent").await.unwrap(), None);
    let rows = db.rows();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [first, other]);
    assert_eq!(rows[0].1.event_id, event.event_id);
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

/// The seed's example SQL, verbatim (its `<userid>@<domain>` placeholder filled in), against
/// rows recorded through logd: the upload query, then its three purges, each checked by what
/// is left.
#[tokio::test]
async fn postgres_the_seeds_statements_run_verbatim() {
    let db = TestDb::new(Backend::Postgres);
    let logd = start(&db).await.unwrap();
    let client = LogdClient::new(&logd.socket);
    let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
    let event = |jid: &str, name: &str, when: &str| Transfer {
        jid: jid.into(),
        filename: name.into(),
        file_path: format!("/opt/mftFileStore/node_1/files/im/20141218/11/{name}"),
        timestamp: at(when),
        ..transfer(0, 0)
    };
    // (method, transfer): uploads on either side of 2014-12-18 11:58:39, downloads by two users.
    let rows = [
        (
            "Post",
            event("alice@example.com/desk", "early", "2014-12-18T11:58:39Z"),
        ),
        (
            "Post",
            event("bob@example.com", "late", "2014-12-18T11:58:39.000001Z"),
        ),
        (
            "Post",
            event("alice@example.com", "later", "2015-01-01T00:00:00Z"),
        ),
        (
            "Get",
            event("alice@example.com/phone", "early", "2014-12-19T08:00:00Z"),
        ),
        (
            "Get",
            event("alice@example.com", "late", "2014-12-10T08:00:00Z"),
        ),
        (
            "Get",
            event("bob@example.com", "late", "2014-12-19T08:00:00Z"),
        ),
    ];
    for (method, t) in &rows {
        match *method {
            "Post" => client.post(t).await.unwrap(),
            _ => client.get_start(t).await.unwrap(),
        };
    }
    let left = || -> Vec<(String, String, String)> {
        let mut left: Vec<_> = db
            .rows()
            .into_iter()
            .map(|(_, r)| (r.method, r.jid, r.filename))
            .collect();
        left.sort();
        left
    };
    let triple = |m: &str, j: &str, f: &str| (m.to_owned(), j.to_owned(), f.to_owned());

    #[derive(QueryableByName, PartialEq, Debug)]
    struct FilePath {
        #[diesel(sql_type = diesel::sql_types::Text)]
        file_path: String,
    }
    let mut uploaded: Vec<FilePath> = diesel::sql_query(
        "SELECT file_path\nFROM aft_log\nWHERE method = 'Post' AND timestampvalue > '2014-12-18 11:58:39';",
    )
    .load(&mut db.connect())
    .unwrap();
    uploaded.sort_by(|a, b| a.file_path.cmp(&b.file_path));
    assert_eq!(
        uploaded,
        [
            FilePath {
                file_path: "/opt/mftFileStore/node_1/files/im/20141218/11/late".into()
            },
            FilePath {
                file_path: "/opt/mftFileStore/node_1/files/im/20141218/11/later".into()
            },
        ]
    );

    let run = |sql: &str| diesel::sql_query(sql).execute(&mut db.connect()).unwrap();
    assert_eq!(
        run("DELETE\nFROM aft_log\nWHERE jid LIKE 'alice@example.com%' AND method = 'Get';"),
        2
    );
    assert_eq!(
        left(),
        [
            triple("Get", "bob@example.com", "late"),
            triple("Post", "alice@example.com", "later"),
            triple("Post", "alice@example.com/desk", "early"),
            triple("Post", "bob@example.com", "late"),
        ]
    );
    assert_eq!(
        run("DELETE\nFROM aft_log\nWHERE method = 'Post' AND timestampvalue > '2014-12-18 11:58:39';"),
        2
    );
    assert_eq!(
        left(),
        [
            triple("Get", "bob@example.com", "late"),
            triple("Post", "alice@example.com/desk", "early"),
        ]
    );
    assert_eq!(run("DELETE\nFROM aft_log\nWHERE method = 'Post';"), 1);
    assert_eq!(left(), [triple("Get", "bob@example.com", "late")]);
    logd.stop().await;
}

/// The `status` request on a healthy logd: the three checks pass, no alarm, counters count.
#[tokio::test]
async fn sqlite_status_reports_checks_and_counters() {
    let db = TestDb::new(Backend::Sqlite);
    let logd = start(&db).await.unwrap();
    let client = LogdClient::new(&logd.socket);
    let index = client.post(&transfer(0, 0)).await.unwrap();
    client.get_start(&transfer(0, 1)).await.unwrap();
    client.get_end(index + 1, 3).await.unwrap();
    let status = client.status().await.unwrap();
    let checks: Vec<(&str, bool)> = status
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.ok))
        .collect();
    assert_eq!(
        checks,
        [
            ("reachable", true),
            ("connected", true),
            ("schema verified", true)
        ]
    );
    assert!(status.alarms.is_empty());
    let committed = &status.counters.committed;
    assert_eq!(
        (committed.post, committed.get_start, committed.get_end),
        (1, 1, 1)
    );
    assert_eq!(
        (status.counters.batches, status.counters.failed_events),
        (3, 0)
    );
    assert!(status.healthy());
    logd.stop().await;
}

/// Waits (up to `limit`) until logd's status satisfies `done`; returns that status.
async fn status_until(
    client: &LogdClient,
    limit: Duration,
    done: impl Fn(&logd::LogdStatus) -> bool,
) -> logd::LogdStatus {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = client.status().await.unwrap();
        if done(&status) || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL killed while events stream in from several tasks, then restarted: every event is
/// answered within bounds, an `ok` event is in the table exactly once under the index it was
/// given, every other event was told `database`, and the alarm is raised and then cleared
/// without restarting logd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_stream_loses_no_acknowledged_event() {
    const TASKS: usize = 6;
    let mut db = TestDb::new(Backend::Postgres);
    let logd = start(&db).await.unwrap();
    let client = LogdClient::new(&logd.socket).with_timeout(Duration::from_secs(30));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..TASKS)
        .map(|task| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let t = transfer(task, n);
                    let started = std::time::Instant::now();
                    let result = client.post(&t).await;
                    sent.push((t.filename, result, started.elapsed()));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                sent
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    db.postgres.as_mut().unwrap().kill();
    let down = status_until(&client, Duration::from_secs(15), |s| {
        s.alarms == ["MftDbConnectError"]
    })
    .await;
    assert_eq!(
        down.alarms,
        ["MftDbConnectError"],
        "the alarm is raised: {down:?}"
    );
    assert!(!down.checks[0].ok && !down.checks[1].ok, "{down:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    db.postgres.as_mut().unwrap().resume().unwrap();
    let up = status_until(&client, Duration::from_secs(20), |s| s.alarms.is_empty()).await;
    assert!(up.alarms.is_empty(), "the alarm is cleared: {up:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut acked = std::collections::HashMap::new();
    let mut failed = HashSet::new();
    for sender in senders {
        for (filename, result, took) in sender.await.unwrap() {
            assert!(took < Duration::from_secs(10), "{filename} waited {took:?}");
            match result {
                Ok(index) => assert!(acked.insert(filename, index).is_none()),
                Err(LogdError::Database(_)) => assert!(failed.insert(filename)),
                Err(other) => panic!("{filename}: not a database error: {other:?}"),
            }
        }
    }
    assert!(!failed.is_empty(), "some events fell in the outage");
    let rows = db.rows();
    let mut in_table = std::collections::HashMap::new();
    for (index, row) in &rows {
        assert!(
            in_table.insert(row.filename.clone(), *index).is_none(),
            "{} recorded twice",
            row.filename
        );
    }
    for (filename, index) in &acked {
        assert_eq!(
            in_table.get(filename),
            Some(index),
            "acknowledged {filename} is in the table"
        );
    }
    // A row not acknowledged can only be one whose COMMIT reached the server as it died.
    let unacked_rows: Vec<_> = in_table
        .keys()
        .filter(|f| !acked.contains_key(*f))
        .collect();
    assert!(
        unacked_rows.iter().all(|f| failed.contains(*f)),
        "{unacked_rows:?}"
    );
    assert!(
        unacked_rows.len() <= 64,
        "at most one batch in doubt: {unacked_rows:?}"
    );

    let counters = client.status().await.unwrap().counters;
    assert_eq!(counters.committed.post, acked.len() as u64);
    assert_eq!(counters.failed_events, failed.len() as u64);
    logd.stop().await;
}
