//! What the integration tests share: a throwaway database (a temporary SQLite file, or a
//! PostgreSQL server from `mft-tests`), logd run in-process on it, and sample transfers
//! ([`sample`], which the unit tests and the benchmark include too).

#![allow(
    dead_code,
    reason = "each test binary uses its own part of this module"
)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use diesel::prelude::*;
use logd::db::schema::{aft_log, AftRecord};
use logd::db::AnyConnection;
use logd::row::{self, ChatType, Method, Transfer};
use logd::server::ServerError;
use mft_config::DatabaseKind;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod sample;

/// A database for one test, deleted (or its server stopped) on drop.
pub struct TestDb {
    pub config: mft_config::Database,
    pub dir: tempfile::TempDir,
    pub postgres: Option<mft_tests::Postgres>,
}

#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
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

    pub fn connect(&self) -> AnyConnection {
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
    pub fn rows(&self) -> Vec<(i64, AftRecord)> {
        aft_log::table
            .order(aft_log::aft_index)
            .select((aft_log::aft_index, AftRecord::as_select()))
            .load(&mut self.connect())
            .unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/logd.sock")
    }
}

/// logd running in this process until [`Running::stop`].
pub struct Running {
    pub socket: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

/// Starts logd on `db` and waits until it accepts connections, or returns why it stopped.
pub async fn start(db: &TestDb) -> Result<Running, ServerError> {
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
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A sample transfer of its own for event `n` of `task`: every name, size and time differs.
pub fn transfer(task: usize, n: usize) -> Transfer {
    Transfer {
        jid: format!("user{task}@example.com/phone"),
        to_jid: format!("room{task}@conference.example.com"),
        filename: format!("res-{task}-{n}"),
        real_filename: format!("Report {n} – été.pdf"),
        chat_type: ChatType::ALL[n % 3],
        file_path: format!("/opt/mftFileStore/node_1/files/im/20250102/03/res-{task}-{n}"),
        file_size: (task * 1000 + n) as i64,
        bytes_transferred: (task * 1000 + n) as i64,
        timestamp: Utc
            .with_ymd_and_hms(2025, 1, 2, 3, (n % 60) as u32, 5)
            .unwrap()
            + chrono::Duration::nanoseconds((task * 1_000_003 + n * 7_919) as i64),
        ..sample::transfer()
    }
}

/// The row a transfer should become, with `bytes_transferred`, and no digest or event id.
pub fn row(t: &Transfer, method: Method, bytes_transferred: i64) -> AftRecord {
    AftRecord {
        bytes_transferred,
        sha256: None,
        event_id: None,
        ..AftRecord::from(&sample::row(method, t.clone()))
    }
}
