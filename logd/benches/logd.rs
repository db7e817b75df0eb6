//! `scripts/bench logd` (`cargo bench -p logd --bench logd`): what group commit buys, on the
//! same machine, the same database server and the same rows.
//!
//! For PostgreSQL (a server of its own, started here with `fsync=on` and `synchronous_commit=on`,
//! unlike the test harness) and for SQLite (WAL, `synchronous=FULL`, as logd runs it):
//! - events/s acknowledged by logd with group commit, many concurrent callers of one
//!   `LogdClient` (as httpd uses it: a few persistent connections, requests pipelined) through
//!   the real socket, with the CPU each thread group and the PostgreSQL server used (stderr);
//! - the same with the naive writer: one transaction per event (`batch_max_events = 1`);
//! - the ceiling: the same rows written in bulk without logd (PostgreSQL `COPY`; SQLite one
//!   transaction of multi-row INSERTs);
//! - ack latency p50/p99 at a steady 1,000 events/s for 10 s, group commit.
//!
//! Prints one markdown table per backend. Everything it starts is stopped on exit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::prelude::*;
use logd::db::schema::{aft_log, AftRecord};
use logd::db::AnyConnection;
use logd::row::{self, ChatType, Method, Transfer};
use logd::LogdClient;
use mft_config::DatabaseKind;
use tokio::sync::oneshot;

#[path = "../tests/common/sample.rs"]
mod sample;

/// Concurrent clients in the throughput runs.
const CLIENTS: usize = 256;
/// Length of each throughput run.
const THROUGHPUT_RUN: Duration = Duration::from_secs(5);
/// Rows written by the ceiling run.
const CEILING_ROWS: usize = 100_000;
/// The steady rate and length of the latency run.
const STEADY_RATE: u64 = 1_000;
const STEADY_RUN: Duration = Duration::from_secs(10);

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let work = tempfile::Builder::new()
        .prefix("logd-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a work directory on the build disk");
    let postgres = mft_tests::Postgres::start_durable(work.path()).expect("start postgres");
    let pg_config = config(DatabaseKind::Postgres, postgres.url("postgres"));
    let sqlite_config = config(
        DatabaseKind::Sqlite,
        work.path().join("aft_log.sqlite3").display().to_string(),
    );
    for (name, config) in [
        ("PostgreSQL (fsync on)", pg_config),
        ("SQLite (WAL, synchronous=FULL)", sqlite_config),
    ] {
        eprintln!("benchmarking {name} …");
        let report = runtime.block_on(bench(&config, work.path()));
        println!("{}", report.table(name, &config));
    }
}

fn config(kind: DatabaseKind, url: String) -> mft_config::Database {
    mft_config::Database {
        kind,
        url,
        ..Default::default()
    }
}

/// One backend's figures.
struct Report {
    group: f64,
    naive: f64,
    ceiling: f64,
    p50: Duration,
    p99: Duration,
    steady_acked: usize,
}

impl Report {
    fn table(&self, name: &str, config: &mft_config::Database) -> String {
        let ratio = |x: f64| format!("{:.1}×", x / self.naive);
        format!(
            "### {name}\n\n\
             | measure | result | vs naive |\n|---|---|---|\n\
             | group commit (batch ≤ {} events, wait ≤ {} ms), {CLIENTS} clients | {:.0} events/s | {} |\n\
             | naive writer (one transaction per event), {CLIENTS} clients | {:.0} events/s | 1.0× |\n\
             | ceiling ({}) of {CEILING_ROWS} rows | {:.0} rows/s | {} |\n\
             | ack latency at {STEADY_RATE} events/s for {} s ({} acked): p50 / p99 | {:.2} ms / {:.2} ms | |\n",
            config.batch_max_events,
            config.batch_max_wait_ms,
            self.group,
            ratio(self.group),
            self.naive,
            match config.kind {
                DatabaseKind::Postgres => "COPY, one statement",
                DatabaseKind::Sqlite => "one transaction of multi-row INSERTs",
            },
            self.ceiling,
            ratio(self.ceiling),
            STEADY_RUN.as_secs(),
            self.steady_acked,
            ms(self.p50),
            ms(self.p99),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench(config: &mft_config::Database, work: &Path) -> Report {
    let socket = work.join("logd.sock");
    let group = throughput(config, &socket).await;
    let naive = throughput(
        &mft_config::Database {
            batch_max_events: 1,
            ..config.clone()
        },
        &socket,
    )
    .await;
    let ceiling = tokio::task::spawn_blocking({
        let config = config.clone();
        move || ceiling(&config)
    })
    .await
    .unwrap();
    let (p50, p99, steady_acked) = latency(config, &socket).await;
    Report {
        group,
        naive,
        ceiling,
        p50,
        p99,
        steady_acked,
    }
}

/// logd serving `config` in this process until the sender is used.
async fn serve(
    config: &mft_config::Database,
    socket: &Path,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let (config, logd) = (
        config.clone(),
        mft_config::Logd {
            socket: socket.to_owned(),
        },
    );
    let task = tokio::spawn(async move {
        logd::server::run(&config, &logd, async {
            let _ = stopped.await;
        })
        .await
        .expect("logd runs");
    });
    while tokio::net::UnixStream::connect(socket).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (stop, task)
}

/// Events acknowledged per second by logd on `config`, [`CLIENTS`] clients posting flat out.
async fn throughput(config: &mft_config::Database, socket: &Path) -> f64 {
    let (stop, task) = serve(config, socket).await;
    let client = LogdClient::new(socket);
    let cpu = CpuTimes::now();
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (client, done, acked) = (client.clone(), done.clone(), acked.clone());
            tokio::spawn(async move {
                let t = transfer(n);
                while !done.load(Ordering::Relaxed) {
                    client.post(&t).await.expect("logd acknowledges");
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(THROUGHPUT_RUN).await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let rate = acked.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  batch ≤ {}: {rate:.0} events/s; CPU, in cores: {}",
        config.batch_max_events,
        cpu.since(started.elapsed())
    );
    stop.send(()).unwrap();
    task.await.unwrap();
    rate
}

/// Ack latencies at a steady [`STEADY_RATE`]: p50, p99 and how many were acknowledged.
async fn latency(config: &mft_config::Database, socket: &Path) -> (Duration, Duration, usize) {
    let (stop, task) = serve(config, socket).await;
    let client = LogdClient::new(socket);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut events = Vec::new();
    for n in 0..(STEADY_RATE * STEADY_RUN.as_secs()) as usize {
        tick.tick().await;
        let client = client.clone();
        events.push(tokio::spawn(async move {
            let started = Instant::now();
            client.post(&transfer(n)).await.expect("logd acknowledges");
            started.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(events.len());
    for e in events {
        latencies.push(e.await.unwrap());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    stop.send(()).unwrap();
    task.await.unwrap();
    (at(0.50), at(0.99), latencies.len())
}

/// Rows per second written in bulk, outside logd: the most the database takes.
fn ceiling(config: &mft_config::Database) -> f64 {
    let rows: Vec<AftRecord> = (0..CEILING_ROWS)
        .map(|n| AftRecord::from(&sample::row(Method::Post, transfer(n))))
        .collect();
    let mut conn = logd::db::connect(config).expect("connect");
    let started = Instant::now();
    match &mut conn {
        AnyConnection::Postgres(pg) => {
            diesel::copy_from(aft_log::table)
                .from_insertable(&rows)
                .execute(pg)
                .expect("COPY");
        }
        AnyConnection::Sqlite(sqlite) => {
            sqlite
                .transaction(|conn| {
                    for chunk in rows.chunks(1000) {
                        diesel::insert_into(aft_log::table)
                            .values(chunk)
                            .execute(conn)?;
                    }
                    diesel::QueryResult::Ok(())
                })
                .expect("bulk insert");
        }
    }
    CEILING_ROWS as f64 / started.elapsed().as_secs_f64()
}

/// A realistic upload event; `n` varies the names.
fn transfer(n: usize) -> Transfer {
    let name = format!("q3Zr8LwX0vKp2mTn{n:08}");
    Transfer {
        jid: format!("user{}@example.com/phone", n % 500),
        to_jid: "room@conference.example.com".into(),
        real_filename: "Quarterly report.pdf".into(),
        chat_type: ChatType::Groupchat,
        file_path: format!("/opt/mftFileStore/node_1/files/groupchat/20250102/03/{name}"),
        filename: name,
        file_size: 52_341,
        bytes_transferred: 52_341,
        timestamp: Utc::now(),
        ..sample::transfer()
    }
}

/// CPU time used so far by each thread group of this process (by thread name) and by the
/// PostgreSQL server's processes: where the time of a run goes.
struct CpuTimes(std::collections::BTreeMap<String, f64>);

impl CpuTimes {
    fn now() -> Self {
        let mut times = std::collections::BTreeMap::new();
        let mut add = |name: String, stat: &str| {
            // Fields after the parenthesised name; utime and stime are the 12th and 13th.
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
            let ticks: f64 =
                fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
            *times.entry(name).or_insert(0.0) += ticks / 100.0;
        };
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let name = stat
                .split('(')
                .nth(1)
                .and_then(|s| s.split(')').next())
                .unwrap_or("?");
            add(format!("bench:{name}"), &stat);
        }
        for process in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
                continue;
            };
            if stat.contains("(postgres)") {
                add("postgres".into(), &stat);
            }
        }
        Self(times)
    }

    /// Cores used by each group since `self`, over `wall`.
    fn since(&self, wall: Duration) -> String {
        let now = Self::now();
        now.0
            .iter()
            .map(|(name, t)| {
                (
                    name,
                    (t - self.0.get(name).unwrap_or(&0.0)) / wall.as_secs_f64(),
                )
            })
            .filter(|(_, cores)| *cores >= 0.01)
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
