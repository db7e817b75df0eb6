//! `scripts/bench seed-day`: the seed's sizing example (12,000 users, 2 files per user-hour,
//! 100 KB on average) replayed at rising scale factors, open loop, against the whole node
//! (httpd → fsd → sshd, `aft_log` on PostgreSQL with fsync on) and, at the same factor, two
//! anchors: nginx WebDAV on sshfs of the same sshd (`common`), and Prosody's own
//! `mod_http_file_share` storing on local disk (`mft_tests::file_share`; its downloads are
//! limited to its cache, see [`Failure::Evicted`]).
//!
//! - Arrivals: Poisson uploads at ×1 = 12,000 × 2 / 3,600 = 6.67/s; each request's latency runs
//!   from its scheduled start, so a slow server is not hidden by a waiting generator.
//! - Sizes ([`SIZE_MIX`], log-uniform within each class, mean ≈ 100 kB): many chat images and
//!   small documents, fewer photos and documents, a few large ones, 0.6 % of 1–5 MB.
//! - Downloads: a 1:1 upload ([`IM_SHARE`] of them, chat type `im`) is downloaded once, a group
//!   chat upload ([`GROUP_DOWNLOADS`]) five times, each 0.2–5 s after its upload's answer: 2.7
//!   downloads per upload, ≈ 1,800/s at ×100.
//! - Errors: a non-2xx answer, a short body, a connection error, no answer within [`TIMEOUT`],
//!   and a request due while [`MAX_IN_FLIGHT`] are in progress (not sent).
//!
//! A step passes with no error and an upload p99 ≤ 250 ms; a side's ladder stops at its first
//! failing step. Each step's schedule comes from a fixed seed (the same for every side), and
//! between steps the stored files are deleted on the file server. Prints per step the CPU each
//! process tree used (from /proc), the generator included. `SEED_DAY_SECS` (default 120) and
//! `SEED_DAY_FACTORS` (default `10,25,50,75,100,125,150`) change the steps, and
//! `SEED_DAY_MAX_TRANSFERS` the node's `http.max_concurrent_transfers` (its default, 256). Needs what
//! `scripts/bench httpd` needs, less wrk, plus Prosody.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use mft_tests::file_share::FileShare;
use mft_tests::{run, Database, Node, Postgres, Sshd};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Uploads per second at ×1: 12,000 users, 2 files per user-hour.
const BASE_RATE: f64 = 12_000.0 * 2.0 / 3_600.0;
/// The share of uploads sent 1:1 (downloaded once); the others go to a group chat.
const IM_SHARE: f64 = 0.575;
const GROUP_DOWNLOADS: usize = 5;
/// When each download starts after its upload's answer, in seconds.
const DOWNLOAD_DELAY: (f64, f64) = (0.2, 5.0);
/// File size classes: (share, smallest, largest) in bytes, log-uniform within a class.
const SIZE_MIX: [(f64, f64, f64); 4] = [
    (0.650, 4e3, 64e3),
    (0.285, 64e3, 256e3),
    (0.059, 256e3, 1e6),
    (0.006, 1e6, 5e6),
];
const LARGEST: usize = 5_000_000;
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_IN_FLIGHT: usize = 2_048;
const P99_LIMIT: Duration = Duration::from_millis(250);
/// The sides, in the order each step runs them.
const SIDES: [&str; 3] = ["node", "nginx on sshfs", "Prosody file_share"];
const DEFAULT_FACTORS: &str = "10,25,50,75,100,125,150";

/// One scheduled upload and its downloads.
struct Upload {
    /// Seconds after the step's start.
    at: f64,
    size: usize,
    group: bool,
    /// Seconds after the upload's answer, one per download.
    downloads: Vec<f64>,
}

/// A step's schedule, the same for every side.
struct Plan {
    factor: u32,
    uploads: Vec<Upload>,
}

impl Plan {
    fn new(factor: u32, secs: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(u64::from(factor));
        let rate = BASE_RATE * f64::from(factor);
        let mut uploads = Vec::new();
        let mut at = 0.0;
        loop {
            // Exponential gaps: a Poisson process at `rate`.
            at += -(1.0 - rng.random::<f64>()).ln() / rate;
            if at >= secs as f64 {
                break;
            }
            let size = size(&mut rng);
            let group = rng.random::<f64>() >= IM_SHARE;
            let count = if group { GROUP_DOWNLOADS } else { 1 };
            let downloads = (0..count)
                .map(|_| rng.random_range(DOWNLOAD_DELAY.0..DOWNLOAD_DELAY.1))
                .collect();
            uploads.push(Upload {
                at,
                size,
                group,
                downloads,
            });
        }
        Self { factor, uploads }
    }

    fn downloads(&self) -> usize {
        self.uploads.iter().map(|u| u.downloads.len()).sum()
    }

    fn mean_size(&self) -> f64 {
        let total: usize = self.uploads.iter().map(|u| u.size).sum();
        total as f64 / self.uploads.len().max(1) as f64
    }
}

/// A size drawn from [`SIZE_MIX`].
fn size(rng: &mut StdRng) -> usize {
    let mut pick = rng.random::<f64>();
    let (_, low, high) = SIZE_MIX
        .iter()
        .find(|(share, _, _)| {
            pick -= share;
            pick < 0.0
        })
        .unwrap_or(&SIZE_MIX[SIZE_MIX.len() - 1]);
    let size = (low.ln() + rng.random::<f64>() * (high / low).ln()).exp();
    (size as usize).min(LARGEST)
}

/// The expected mean of [`SIZE_MIX`], in bytes.
fn expected_mean() -> f64 {
    SIZE_MIX
        .iter()
        .map(|(share, low, high)| share * (high - low) / (high / low).ln())
        .sum()
}

/// Where the load goes.
enum Target {
    /// `POST /files` with an upload token per chat type; the answer's `uri`, with a download
    /// token.
    Node {
        base: String,
        im: HeaderValue,
        group: HeaderValue,
        download: HeaderValue,
    },
    /// WebDAV `PUT`, then `GET` of the same path.
    Nginx { base: String },
    /// A slot signed for each upload, `PUT` with its `Authorization`, then `GET` of its URL.
    Prosody(Arc<FileShare>),
}

impl Target {
    fn node(node: &Node) -> Result<Self> {
        let bearer = |token: String| -> Result<HeaderValue> {
            Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
        };
        Ok(Self::Node {
            base: node.url(""),
            im: bearer(node.upload_token("alice@example.com", "bob@example.com", "im")?)?,
            group: bearer(node.upload_token(
                "alice@example.com",
                "room@conference.example.com",
                "groupchat",
            )?)?,
            download: bearer(node.download_token("bob@example.com")?)?,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Node { .. } => SIDES[0],
            Self::Nginx { .. } => SIDES[1],
            Self::Prosody(_) => SIDES[2],
        }
    }

    /// Stores `body` as file `n` of step `factor`; returns the URL to download it from.
    async fn upload(
        &self,
        client: &reqwest::Client,
        factor: u32,
        n: usize,
        body: Bytes,
        group: bool,
    ) -> Result<String, Failure> {
        match self {
            Self::Node {
                base, im, group: g, ..
            } => {
                let answer = client
                    .post(format!("{base}/files?name=s{factor}-{n}.bin"))
                    .header(AUTHORIZATION, if group { g } else { im })
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body)
                    .send()
                    .await?;
                let reply = checked(answer).await?.bytes().await?;
                let reply: serde_json::Value =
                    serde_json::from_slice(&reply).map_err(|_| Failure::Reply)?;
                Ok(reply["uri"].as_str().ok_or(Failure::Reply)?.to_owned())
            }
            Self::Nginx { base } => {
                let url = format!("{base}/s{factor}/{n}.bin");
                let answer = client.put(&url).body(body).send().await?;
                checked(answer).await?.bytes().await?;
                Ok(url)
            }
            Self::Prosody(share) => {
                let slot = share
                    .slot(&format!("s{factor}-{n}.bin"), body.len() as u64)
                    .map_err(|_| Failure::Reply)?;
                let answer = client
                    .put(&slot.url)
                    .header(AUTHORIZATION, slot.authorization)
                    .body(body)
                    .send()
                    .await?;
                checked(answer).await?.bytes().await?;
                Ok(slot.url)
            }
        }
    }

    /// Downloads `url`, expecting `size` bytes.
    async fn download(
        &self,
        client: &reqwest::Client,
        url: &str,
        size: usize,
    ) -> Result<(), Failure> {
        let mut request = client.get(url);
        if let Self::Node { download, .. } = self {
            request = request.header(AUTHORIZATION, download);
        }
        let answer = request.send().await?;
        if matches!(self, Self::Prosody(_)) && answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Failure::Evicted);
        }
        let mut answer = checked(answer).await?;
        let mut got = 0;
        while let Some(chunk) = answer.chunk().await? {
            got += chunk.len();
        }
        if got == size {
            Ok(())
        } else {
            Err(Failure::Short)
        }
    }
}

/// Why a request counts as an error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// The status and the node's error code (`busy`, …).
    Status(u16, String),
    Connection,
    Timeout,
    Reply,
    Short,
    /// Due while [`MAX_IN_FLIGHT`] requests were in progress: not sent.
    NotSent,
    /// Prosody's 404 for a download whose slot has left `mod_http_file_share`'s cache of the
    /// 1,024 slots last uploaded or served: slots signed here are in no slot store (XMPP slot
    /// requests write there), so the module cannot find them again. Not an error of the step.
    Evicted,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Self::Status(status, code) => write!(f, "{status} {code}"),
            Self::Connection => f.write_str("connection"),
            Self::Timeout => f.write_str("timeout"),
            Self::Reply => f.write_str("bad reply"),
            Self::Short => f.write_str("short body"),
            Self::NotSent => f.write_str("not sent"),
            Self::Evicted => f.write_str("404 past the cache (not counted)"),
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(_: reqwest::Error) -> Self {
        Self::Connection
    }
}

/// The answer if it is a success; else its status and the node's error code, if any.
async fn checked(answer: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = answer.status();
    if status.is_success() {
        return Ok(answer);
    }
    let body = answer.bytes().await.unwrap_or_default();
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|reply| reply["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Err(Failure::Status(status.as_u16(), code))
}

/// What one side did in one step.
#[derive(Default)]
struct Outcome {
    /// Latencies of the successful requests, in microseconds.
    uploads: Vec<u32>,
    downloads: Vec<u32>,
    errors: BTreeMap<Failure, u64>,
}

impl Outcome {
    fn errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(f, _)| **f != Failure::Evicted)
            .map(|(_, n)| n)
            .sum()
    }

    /// `0`, or each kind of error with its count.
    fn error_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(f, n)| format!("{n} × {f}"))
            .collect();
        kinds.join(", ")
    }

    fn record(&mut self, upload: bool, due: Instant, result: &Result<(), Failure>) {
        match result {
            Ok(()) => {
                let micros = due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                if upload {
                    self.uploads.push(micros)
                } else {
                    self.downloads.push(micros)
                }
            }
            Err(failure) => *self.errors.entry(failure.clone()).or_default() += 1,
        }
    }
}

/// The quantile `q` of latencies in microseconds, as a duration.
fn quantile(latencies: &mut [u32], q: f64) -> Option<Duration> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
    Some(Duration::from_micros(u64::from(latencies[index])))
}

/// Runs `f` unless [`MAX_IN_FLIGHT`] requests are in progress, within [`TIMEOUT`].
async fn guarded<F>(in_flight: &AtomicUsize, f: F) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        in_flight.fetch_sub(1, Ordering::Relaxed);
        return Err(Failure::NotSent);
    }
    let result = tokio::time::timeout(TIMEOUT, f)
        .await
        .unwrap_or(Err(Failure::Timeout));
    in_flight.fetch_sub(1, Ordering::Relaxed);
    result
}

/// Everything a step's requests share.
struct Load {
    target: Target,
    client: reqwest::Client,
    body: Bytes,
    in_flight: AtomicUsize,
    outcome: Mutex<Outcome>,
    tracker: TaskTracker,
}

impl Load {
    fn record(&self, upload: bool, due: Instant, result: &Result<(), Failure>) {
        self.outcome
            .lock()
            .expect("outcome lock")
            .record(upload, due, result);
    }
}

/// Replays `plan` against `target` open loop; returns when every request has ended.
async fn replay(target: Target, client: reqwest::Client, body: Bytes, plan: &Plan) -> Outcome {
    let load = Arc::new(Load {
        target,
        client,
        body,
        in_flight: AtomicUsize::new(0),
        outcome: Mutex::default(),
        tracker: TaskTracker::new(),
    });
    let start = Instant::now() + Duration::from_millis(100);
    for (n, upload) in plan.uploads.iter().enumerate() {
        let due = start + Duration::from_secs_f64(upload.at);
        tokio::time::sleep_until(due).await;
        let load2 = load.clone();
        let (size, group, factor) = (upload.size, upload.group, plan.factor);
        let delays = upload.downloads.clone();
        load.tracker.spawn(async move {
            let load = load2;
            let body = load.body.slice(..size);
            let mut url = None;
            let result = guarded(&load.in_flight, async {
                url = Some(
                    load.target
                        .upload(&load.client, factor, n, body, group)
                        .await?,
                );
                Ok(())
            })
            .await;
            load.record(true, due, &result);
            let Some(url) = url.filter(|_| result.is_ok()) else {
                return;
            };
            let url: Arc<str> = url.into();
            for delay in delays {
                let (load2, url) = (load.clone(), url.clone());
                load.tracker.spawn(async move {
                    let load = load2;
                    let due = Instant::now() + Duration::from_secs_f64(delay);
                    tokio::time::sleep_until(due).await;
                    let result = guarded(
                        &load.in_flight,
                        load.target.download(&load.client, &url, size),
                    )
                    .await;
                    load.record(false, due, &result);
                });
            }
        });
    }
    // Every upload is spawned, and its task spawns its downloads before it ends.
    load.tracker.close();
    load.tracker.wait().await;
    let outcome = std::mem::take(&mut *load.outcome.lock().expect("outcome lock"));
    outcome
}

/// CPU time (user + system, and of reaped children) in clock ticks of this process and of
/// each of its children's process trees, by the child's command name.
fn cpu_ticks() -> BTreeMap<String, u64> {
    let stat = |pid: i32| -> Option<(String, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, tail) = text.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        // After comm: state is field 3; utime, stime, cutime, cstime are fields 14–17.
        let ticks = tail
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        Some((comm, ticks))
    };
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, ppid) in mft_tests::parent_pids() {
        children.entry(ppid).or_default().push(pid);
    }
    let me = std::process::id() as i32;
    let mut ticks = BTreeMap::new();
    if let Some((_, own)) = stat(me) {
        ticks.insert("generator".to_owned(), own);
    }
    for &child in children.get(&me).into_iter().flatten() {
        let Some((comm, _)) = stat(child) else {
            continue;
        };
        let mut tree = vec![child];
        let mut total = 0;
        while let Some(pid) = tree.pop() {
            total += stat(pid).map_or(0, |(_, t)| t);
            tree.extend(children.get(&pid).into_iter().flatten());
        }
        *ticks.entry(comm).or_default() += total;
    }
    ticks
}

/// Cores used per process tree between two [`cpu_ticks`], busiest first.
fn cores(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, secs: f64) -> String {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut used: Vec<(f64, &str)> = after
        .iter()
        .map(|(name, t)| {
            let delta = t.saturating_sub(before.get(name).copied().unwrap_or(0));
            (delta as f64 / hz / secs, name.as_str())
        })
        .filter(|(c, _)| *c >= 0.005)
        .collect();
    used.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = used.iter().map(|(c, _)| c).sum();
    let parts: Vec<String> = used
        .iter()
        .map(|(c, name)| format!("{name} {c:.2}"))
        .collect();
    format!("{} (total {total:.2})", parts.join(", "))
}

/// Deletes the files (not the directories) under `dir`, as the file server sees them.
fn delete_files(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    run(Command::new("find")
        .arg(dir)
        .args(["-type", "f", "-delete"]))?;
    Ok(())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

struct Row {
    factor: u32,
    side: &'static str,
    offered: (f64, f64),
    achieved: (f64, f64),
    outcome: Outcome,
    cpu: String,
    passed: bool,
}

fn main() -> Result<()> {
    let secs: u64 = std::env::var("SEED_DAY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let factors: Vec<u32> = std::env::var("SEED_DAY_FACTORS")
        .unwrap_or_else(|_| DEFAULT_FACTORS.into())
        .split(',')
        .map(|f| {
            f.trim()
                .parse()
                .context("SEED_DAY_FACTORS: numbers, comma-separated")
        })
        .collect::<Result<_>>()?;
    eprintln!(
        "size mix: expected mean {:.1} kB; {IM_SHARE} of uploads 1:1 (1 download), the rest group chat ({GROUP_DOWNLOADS}): {:.2} downloads per upload",
        expected_mean() / 1e3,
        IM_SHARE + (1.0 - IM_SHARE) * GROUP_DOWNLOADS as f64
    );

    let work = tempfile::Builder::new()
        .prefix("mft-bench-seed-day-")
        .tempdir()?;
    let sshd = Sshd::start()?;
    let postgres = Postgres::start_durable(work.path())?;
    // The node's own limit (its default) unless SEED_DAY_MAX_TRANSFERS sets another.
    let max_transfers: Option<u32> = std::env::var("SEED_DAY_MAX_TRANSFERS")
        .ok()
        .map(|n| n.parse().context("SEED_DAY_MAX_TRANSFERS: a number"))
        .transpose()?;
    let node = Node::start_configured(
        &sshd,
        "node_bench",
        Database::Postgres(postgres.url("postgres")),
        |toml| {
            if let Some(n) = max_transfers {
                toml.http_extra = format!("max_concurrent_transfers = {n}\n");
            }
        },
    )?;
    eprintln!(
        "node: http.max_concurrent_transfers = {}",
        max_transfers.map_or("the default".into(), |n| n.to_string())
    );
    let nginx = common::start_nginx(&sshd, work.path())?;
    let share = Arc::new(FileShare::start()?);

    let mut random = vec![0u8; LARGEST];
    StdRng::seed_from_u64(0).fill_bytes(&mut random);
    let body = Bytes::from(random);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;

    let mut rows = Vec::new();
    let mut failed = [false; SIDES.len()];
    for factor in factors {
        if failed.iter().all(|f| *f) {
            break;
        }
        let plan = Plan::new(factor, secs);
        let offered = (
            plan.uploads.len() as f64 / secs as f64,
            plan.downloads() as f64 / secs as f64,
        );
        eprintln!(
            "×{factor}: {} uploads ({:.1}/s, mean {:.1} kB), {} downloads ({:.1}/s) in {secs} s",
            plan.uploads.len(),
            offered.0,
            plan.mean_size() / 1e3,
            plan.downloads(),
            offered.1
        );
        for (side, failed) in failed.iter_mut().enumerate() {
            if *failed {
                continue;
            }
            // Tokens last an hour: new ones for each step.
            let (target, stored) = match side {
                0 => (Target::node(&node)?, node.server_dir.join("files")),
                1 => (
                    Target::Nginx {
                        base: format!("http://127.0.0.1:{}", nginx.port),
                    },
                    nginx.server_dir.clone(),
                ),
                _ => (Target::Prosody(share.clone()), share.store()),
            };
            let name = target.name();
            // Each step starts with the disk idle, the previous step's files gone.
            delete_files(&stored)?;
            run(&mut Command::new("sync"))?;
            let before = cpu_ticks();
            let started = std::time::Instant::now();
            let mut outcome = runtime.block_on(replay(target, client.clone(), body.clone(), &plan));
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = cores(&before, &cpu_ticks(), elapsed);
            let up_p99 = quantile(&mut outcome.uploads, 0.99);
            let passed = outcome.errors() == 0 && up_p99.is_some_and(|p| p <= P99_LIMIT);
            *failed = !passed;
            let row = Row {
                factor,
                side: name,
                offered,
                achieved: (
                    outcome.uploads.len() as f64 / secs as f64,
                    outcome.downloads.len() as f64 / secs as f64,
                ),
                outcome,
                cpu,
                passed,
            };
            eprintln!(
                "  {name}: {:.1} up/s, {:.1} down/s, errors {}, upload p99 {}, {:.0} s; CPU cores: {}",
                row.achieved.0,
                row.achieved.1,
                row.outcome.error_text(),
                ms(up_p99),
                elapsed,
                row.cpu
            );
            rows.push(row);
        }
    }
    delete_files(&node.server_dir.join("files"))?;
    delete_files(&nginx.server_dir)?;
    delete_files(&share.store())?;

    println!("\n| factor | offered up/s + down/s | side | achieved up/s + down/s | errors | upload p50 / p99 | download p99 | pass |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in &mut rows {
        println!(
            "| ×{} | {:.0} + {:.0} | {} | {:.0} + {:.0} | {} | {} / {} | {} | {} |",
            row.factor,
            row.offered.0,
            row.offered.1,
            row.side,
            row.achieved.0,
            row.achieved.1,
            row.outcome.error_text(),
            ms(quantile(&mut row.outcome.uploads, 0.5)),
            ms(quantile(&mut row.outcome.uploads, 0.99)),
            ms(quantile(&mut row.outcome.downloads, 0.99)),
            if row.passed { "yes" } else { "no" }
        );
    }
    println!("\n| factor | side | CPU cores per process tree (of 2) |");
    println!("|---|---|---|");
    for row in &rows {
        println!("| ×{} | {} | {} |", row.factor, row.side, row.cpu);
    }
    println!();
    for side in SIDES {
        let best = rows
            .iter()
            .filter(|r| r.side == side && r.passed)
            .map(|r| r.factor)
            .max();
        match best {
            Some(f) => println!("{side}: highest passing factor ×{f} ({} users)", f * 12_000),
            None => println!("{side}: no factor passed"),
        }
    }
    Ok(())
}
