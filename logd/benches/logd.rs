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
//! - ack latency p50/p99/p99.9/max at a steady 1,000 events/s for 10 s, group commit, timed
//!   from just before each call's task is spawned (tokio's scheduling of it included);
//! - over the same seconds, a probe timing `fdatasync` of an 8 KiB page on the filesystem of the
//!   database, every 10 ms: the disk's own flush latency, next to which the ack tail is read
//!   (a commit waits for one such flush, an event queued behind a slow one for two), and how many
//!   acks took over 20 ms, and how many of those while the probe saw a flush over 5 ms.
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
/// An ack slower than this is counted (issue 18's bound on p99).
const SLOW_ACK: Duration = Duration::from_millis(20);
/// A probe flush slower than this is a disk stall (a quiet flush takes well under 1 ms).
const SLOW_FLUSH: Duration = Duration::from_millis(5);
/// How often the probe flushes, and what it writes each time (PostgreSQL's WAL page).
const PROBE_EVERY: Duration = Duration::from_millis(10);
const PROBE_PAGE: usize = 8192;

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
    steady: Steady,
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
             | ack latency at {STEADY_RATE} events/s for {} s ({} acked): p50 / p99 / p99.9 / max | {} | |\n\
             | the same seconds, the disk: `fdatasync` of an {} KiB page every {} ms (probe, {} flushes): p50 / p99 / p99.9 / max | {} | |\n\
             | acks over {} ms (of them, while the probe saw a flush over {} ms) | {} ({}) | |\n",
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
            self.steady.acks.len(),
            quantiles(&self.steady.acks),
            PROBE_PAGE / 1024,
            PROBE_EVERY.as_millis(),
            self.steady.flushes.len(),
            quantiles(&self.steady.flushes),
            SLOW_ACK.as_millis(),
            SLOW_FLUSH.as_millis(),
            self.steady.slow_acks().len(),
            self.steady.slow_acks_in_stalls(),
        )
    }
}

/// "p50 / p99 / p99.9 / max ms" of the durations of `timed`.
fn quantiles(timed: &[Timed]) -> String {
    let mut sorted: Vec<Duration> = timed.iter().map(|t| t.took).collect();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} ms",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(at(0.999)),
        ms(at(1.0))
    )
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
    let steady = latency(config, &socket, work).await;
    Report {
        group,
        naive,
        ceiling,
        steady,
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

/// Something timed: when it began and how long it took.
#[derive(Clone, Copy)]
struct Timed {
    at: Instant,
    took: Duration,
}

impl Timed {
    fn overlaps(&self, other: &Timed) -> bool {
        self.at < other.at + other.took && other.at < self.at + self.took
    }
}

/// The steady run: each event's ack latency and, over the same seconds, each probe flush.
struct Steady {
    acks: Vec<Timed>,
    flushes: Vec<Timed>,
}

impl Steady {
    fn slow_acks(&self) -> Vec<&Timed> {
        self.acks.iter().filter(|a| a.took > SLOW_ACK).collect()
    }

    /// Slow acks that overlap a slow probe flush.
    fn slow_acks_in_stalls(&self) -> usize {
        let stalls: Vec<&Timed> = self
            .flushes
            .iter()
            .filter(|f| f.took > SLOW_FLUSH)
            .collect();
        self.slow_acks()
            .into_iter()
            .filter(|a| stalls.iter().any(|f| a.overlaps(f)))
            .count()
    }
}

/// Ack latencies at a steady [`STEADY_RATE`], with the fsync probe running beside them on the
/// filesystem of `work` (the database's).
async fn latency(config: &mft_config::Database, socket: &Path, work: &Path) -> Steady {
    let (stop, task) = serve(config, socket).await;
    let client = LogdClient::new(socket);
    let probing = Arc::new(AtomicBool::new(true));
    let probe = fsync_probe(work, probing.clone());
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut events = Vec::new();
    for n in 0..(STEADY_RATE * STEADY_RUN.as_secs()) as usize {
        tick.tick().await;
        let client = client.clone();
        let at = Instant::now();
        events.push(tokio::spawn(async move {
            client.post(&transfer(n)).await.expect("logd acknowledges");
            Timed {
                at,
                took: at.elapsed(),
            }
        }));
    }
    let mut acks = Vec::with_capacity(events.len());
    for e in events {
        acks.push(e.await.unwrap());
    }
    probing.store(false, Ordering::Relaxed);
    let flushes = probe.join().expect("the fsync probe runs");
    stop.send(()).unwrap();
    task.await.unwrap();
    Steady { acks, flushes }
}

/// Until `running` is false, every [`PROBE_EVERY`]: overwrites the next [`PROBE_PAGE`] of a
/// preallocated 16 MiB file in `dir` (as PostgreSQL writes a WAL segment) and times its
/// `fdatasync`. It adds about 100 small flushes a second to the disk.
fn fsync_probe(dir: &Path, running: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Timed>> {
    use std::os::unix::fs::FileExt;
    const FILE: u64 = 16 << 20;
    let path = dir.join("fsync-probe");
    let file = std::fs::File::create(&path).expect("create the fsync probe's file");
    file.write_all_at(&vec![0; FILE as usize], 0)
        .expect("preallocate the fsync probe's file");
    file.sync_all().expect("sync the fsync probe's file");
    std::thread::Builder::new()
        .name("fsync-probe".into())
        .spawn(move || {
            let page = [7u8; PROBE_PAGE];
            let mut flushes = Vec::new();
            let mut offset = 0;
            while running.load(Ordering::Relaxed) {
                file.write_all_at(&page, offset).expect("write a page");
                let at = Instant::now();
                file.sync_data().expect("fdatasync");
                flushes.push(Timed {
                    at,
                    took: at.elapsed(),
                });
                offset = (offset + PROBE_PAGE as u64) % FILE;
                std::thread::sleep(PROBE_EVERY);
            }
            drop(file);
            std::fs::remove_file(path).expect("remove the fsync probe's file");
            flushes
        })
        .expect("spawn the fsync probe")
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
