//! `scripts/bench httpd`: the whole node against what an operator would otherwise run, with the
//! same load generator on every side.
//!
//! - **node**: curl/wrk → httpd → fsd → sshd, each upload fsynced and its `aft_log` row
//!   committed by logd on PostgreSQL with `fsync=on` (a server started here, as the `postgres`
//!   user) before the answer; each download's `Get` row committed before its first byte.
//! - **nginx-on-sshfs**: Debian's nginx accepting WebDAV `PUT` (`dav_methods PUT`,
//!   `create_full_put_path on`) and serving `GET` from an sshfs mount (default options) of the
//!   same loopback sshd: no fsync, no database.
//! - **Prosody**: Prosody 0.12's own `mod_http_file_share` storing on local disk
//!   ([`mft_tests::file_share`]): no fsync, no audit. Its endpoint is loaded directly, each upload
//!   with a slot token signed here (`PUT /file_share/<slot>/<name>`); downloads are of files
//!   uploaded in the same run, which its in-memory upload cache serves.
//!
//! Rows (`HTTPD_BENCH_ROWS`, a comma list, picks some; all by default), each side in turn:
//! - `big`: one 1 GiB upload with curl (MB/s, median of 3);
//! - `up32`, `up1`: 100 KiB uploads with wrk at concurrency 32 and 1 (requests/s, p50/p99);
//! - `idle` (node only): `up32` again while [`IDLE_CONNECTIONS`] connections opened by this
//!   process stay idle on httpd, with httpd's RSS (VmRSS, and VmHWM reset before the connections
//!   open); the rate is compared with `up32`'s (measured for it if `up32` is not picked). The
//!   connections send nothing: httpd closes a connection idle after a request within 5 s
//!   (actix's keep-alive), a silent one after `http.request_timeout_secs` (60 s), longer than
//!   the row;
//! - `down32`: 100 KiB downloads, round robin over 100 files, at concurrency 32.
//!
//! wrk rows last 30 s (`HTTPD_BENCH_SECS` shortens them), each after a `sync`; each prints the
//! server's CPU use (its process and children, from /proc) while it ran. Prints a markdown table
//! with ratios node / nginx and node / Prosody. Needs root, /dev/fuse, sshfs, nginx, wrk,
//! PostgreSQL, Prosody, and the release binaries (`cargo build --release --bins`).

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, ErrorKind, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// Shared with the seed-day bench, which uses parts this one does not (`Nginx::server_dir`).
#[allow(dead_code)]
mod common;

use anyhow::{bail, ensure, Context, Result};
use mft_tests::file_share::FileShare;
use mft_tests::{parent_pids, run, wait_until, Database, Node, Postgres, Sshd};

const RUNS: usize = 3;
const BIG: u64 = 1 << 30;
const SMALL: u64 = 100 * 1024;
const DOWNLOAD_FILES: usize = 100;
const IDLE_CONNECTIONS: usize = 10_000;
/// Idle connections opened before waiting for httpd to accept them.
const IDLE_BATCH: usize = 100;
/// Every row, in the order each side runs them.
const ROWS: [&str; 5] = ["big", "up32", "idle", "up1", "down32"];
/// Upload slots signed for each wrk thread and second of a Prosody upload row: above the
/// fastest rate seen (a thread that runs out stops with a Lua error).
const SLOTS_PER_THREAD_SECOND: u64 = 2_500;

/// The wrk script: `BENCH_METHOD` to paths from `BENCH_PATHS` (one per line, round robin), to
/// the path and `Authorization` of the next line (`<path>\t<authorization>`) of
/// `BENCH_SLOTS.<thread>` (a new slot per request), or to `BENCH_PREFIX<thread>-<n>` (a new name
/// per request); a 100 KiB random body for PUT/POST.
const WRK_SCRIPT: &str = r#"
local method = os.getenv("BENCH_METHOD")
local auth = os.getenv("BENCH_AUTH")
local prefix = os.getenv("BENCH_PREFIX")
local list = os.getenv("BENCH_PATHS")
local slots = os.getenv("BENCH_SLOTS")
local threads, counter, paths, body, next_slot = 0, 0, {}, nil, nil
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  if list then for line in io.lines(list) do paths[#paths + 1] = line end end
  if slots then next_slot = io.lines(slots .. "." .. tid) end
  if method ~= "GET" then
    local chunk = {}
    for i = 1, 102400 do chunk[i] = string.char(math.random(0, 255)) end
    body = table.concat(chunk)
  end
end
function request()
  counter = counter + 1
  local path
  local headers = {}
  if auth then headers["Authorization"] = auth end
  if next_slot then
    local line = next_slot()
    if not line then error("thread " .. tid .. " ran out of upload slots") end
    local tab = line:find("\t", 1, true)
    path = line:sub(1, tab - 1)
    headers["Authorization"] = line:sub(tab + 1)
  elseif #paths > 0 then path = paths[(counter + tid * 7) % #paths + 1]
  else path = prefix .. tid .. "-" .. counter end
  if body then headers["Content-Type"] = "application/octet-stream" end
  return wrk.format(method, path, headers, body)
end
"#;

/// Environment variables for [`WRK_SCRIPT`].
type WrkEnv = Vec<(&'static str, String)>;

/// One side of the comparison: how to upload and download over HTTP.
trait Side {
    fn name(&self) -> &'static str;
    fn port(&self) -> u16;
    /// The server's process (its CPU use is that of it and its children).
    fn pid(&self) -> Option<u32>;
    /// Whether the 1 GiB row runs on this side.
    fn big_uploads(&self) -> bool {
        true
    }
    /// curl arguments that upload the file at `path`, `size` bytes, as a new file named after `n`.
    fn upload_args(&self, path: &Path, size: u64, n: usize) -> Result<Vec<String>>;
    /// The wrk environment for a small-upload row of `secs` with `threads` wrk threads; files it
    /// needs go in `dir`, named after `row`.
    fn upload_env(&self, dir: &Path, row: &str, threads: u32, secs: u64) -> Result<WrkEnv>;
    /// Stores `count` small files and returns their paths, plus the wrk environment to get them.
    fn prepare_downloads(&self, body: &Path, count: usize) -> Result<(Vec<String>, WrkEnv)>;
}

struct NodeSide {
    node: Node,
    upload: String,
    download: String,
}

impl Side for NodeSide {
    fn name(&self) -> &'static str {
        "node"
    }
    fn port(&self) -> u16 {
        self.node.http_port
    }
    fn pid(&self) -> Option<u32> {
        self.node.httpd_pid()
    }
    fn upload_args(&self, path: &Path, _size: u64, n: usize) -> Result<Vec<String>> {
        Ok(vec![
            "-X".into(),
            "POST".into(),
            "-T".into(),
            path.display().to_string(),
            "-H".into(),
            format!("Authorization: Bearer {}", self.upload),
            self.node.url(&format!("/files?name=big-{n}.bin")),
        ])
    }
    fn upload_env(&self, _dir: &Path, _row: &str, _threads: u32, _secs: u64) -> Result<WrkEnv> {
        Ok(vec![
            ("BENCH_METHOD", "POST".into()),
            ("BENCH_AUTH", format!("Bearer {}", self.upload)),
            ("BENCH_PREFIX", "/files?name=small-".into()),
        ])
    }
    fn prepare_downloads(&self, body: &Path, count: usize) -> Result<(Vec<String>, WrkEnv)> {
        let mut paths = Vec::new();
        for n in 0..count {
            let mut args = self.upload_args(body, SMALL, n)?;
            args.push("-w".into());
            args.push("\n".into());
            let answer = curl(&args)?;
            let reply: serde_json::Value =
                serde_json::from_str(answer.trim()).with_context(|| answer.clone())?;
            let uri = reply["uri"].as_str().context("uri")?;
            let path = uri
                .strip_prefix(&self.node.url(""))
                .context("uri on this node")?;
            paths.push(path.to_owned());
        }
        let env = vec![
            ("BENCH_METHOD", "GET".into()),
            ("BENCH_AUTH", format!("Bearer {}", self.download)),
        ];
        Ok((paths, env))
    }
}

struct NginxSide {
    nginx: common::Nginx,
    /// The master's pid file (`pid` in the configuration `common` writes).
    pid_file: PathBuf,
}

impl Side for NginxSide {
    fn name(&self) -> &'static str {
        "nginx"
    }
    fn port(&self) -> u16 {
        self.nginx.port
    }
    fn pid(&self) -> Option<u32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }
    fn upload_args(&self, path: &Path, _size: u64, n: usize) -> Result<Vec<String>> {
        Ok(vec![
            "-T".into(),
            path.display().to_string(),
            format!("http://127.0.0.1:{}/big/big-{n}.bin", self.nginx.port),
        ])
    }
    fn upload_env(&self, _dir: &Path, row: &str, _threads: u32, _secs: u64) -> Result<WrkEnv> {
        Ok(vec![
            ("BENCH_METHOD", "PUT".into()),
            ("BENCH_PREFIX", format!("/small/{row}-")),
        ])
    }
    fn prepare_downloads(&self, body: &Path, count: usize) -> Result<(Vec<String>, WrkEnv)> {
        let mut paths = Vec::new();
        for n in 0..count {
            let path = format!("/dl/f-{n}.bin");
            curl(&[
                "-T".into(),
                body.display().to_string(),
                format!("http://127.0.0.1:{}{path}", self.nginx.port),
            ])?;
            paths.push(path);
        }
        Ok((paths, vec![("BENCH_METHOD", "GET".into())]))
    }
}

struct ProsodySide {
    share: FileShare,
}

impl Side for ProsodySide {
    fn name(&self) -> &'static str {
        "Prosody"
    }
    fn port(&self) -> u16 {
        self.share.port
    }
    fn pid(&self) -> Option<u32> {
        self.share.pid()
    }
    /// Not for Prosody: its network loop (`net.server_epoll`) reads a request body 8 KiB at a
    /// time with a timer of at least 1 ms between reads, 4-6 MB/s: minutes an upload.
    fn big_uploads(&self) -> bool {
        false
    }
    fn upload_args(&self, path: &Path, size: u64, n: usize) -> Result<Vec<String>> {
        let slot = self.share.slot(&format!("f-{n}.bin"), size)?;
        Ok(vec![
            "-T".into(),
            path.display().to_string(),
            "-H".into(),
            format!("Authorization: {}", slot.authorization),
            slot.url,
        ])
    }
    fn upload_env(&self, dir: &Path, row: &str, threads: u32, secs: u64) -> Result<WrkEnv> {
        let slots = dir.join(format!("slots-{row}"));
        for thread in 1..=threads {
            let file = fs::File::create(format!("{}.{thread}", slots.display()))?;
            let mut out = BufWriter::new(file);
            for n in 0..secs * SLOTS_PER_THREAD_SECOND {
                let slot = self.share.slot(&format!("{row}-{thread}-{n}.bin"), SMALL)?;
                writeln!(out, "{}\t{}", slot.path, slot.authorization)?;
            }
            out.flush()?;
        }
        Ok(vec![
            ("BENCH_METHOD", "PUT".into()),
            ("BENCH_SLOTS", slots.display().to_string()),
        ])
    }
    fn prepare_downloads(&self, body: &Path, count: usize) -> Result<(Vec<String>, WrkEnv)> {
        let mut paths = Vec::new();
        for n in 0..count {
            let slot = self.share.slot(&format!("dl-{n}.bin"), SMALL)?;
            curl(&[
                "-T".into(),
                body.display().to_string(),
                "-H".into(),
                format!("Authorization: {}", slot.authorization),
                slot.url,
            ])?;
            paths.push(slot.path);
        }
        Ok((paths, vec![("BENCH_METHOD", "GET".into())]))
    }
}

fn curl(args: &[String]) -> Result<String> {
    run(Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "600"])
        .args(args))
}

/// Median MB/s of [`RUNS`] uploads of the 1 GiB file.
fn big_upload(side: &dyn Side, big: &Path) -> Result<f64> {
    let mut rates = Vec::new();
    for n in 0..RUNS {
        let args = side.upload_args(big, BIG, n)?;
        let started = Instant::now();
        curl(&args)?;
        rates.push(BIG as f64 / 1e6 / started.elapsed().as_secs_f64());
        eprintln!("  {:.0} MB/s", rates[n]);
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[RUNS / 2])
}

/// What wrk measured.
#[derive(Clone, Copy)]
struct Load {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs wrk with `connections` for `secs` against `side`: [`WRK_SCRIPT`] with `env`.
fn wrk(side: &dyn Side, script: &Path, env: &WrkEnv, connections: u32, secs: u64) -> Result<Load> {
    // Each row starts with the disk idle: the previous row's writes (three 1 GiB uploads) are
    // on disk, not still being written back under this row's fsyncs.
    run(&mut Command::new("sync"))?;
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &wrk_threads(connections).to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{secs}s"),
        "--timeout",
        "30s",
        "--latency",
        "-s",
    ])
    .arg(script)
    .arg(format!("http://127.0.0.1:{}", side.port()));
    for (key, value) in env {
        cmd.env(key, value);
    }
    let cpu = Cpu::start(side.pid());
    let out = run(&mut cmd)?;
    eprintln!("{out}  {} CPU: {}", side.name(), cpu.report());
    for failure in ["Non-2xx", "Socket errors"] {
        ensure!(
            !out.contains(failure),
            "{}: requests failed:\n{out}",
            side.name()
        );
    }
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
            .with_context(|| format!("no {label:?} in wrk's output:\n{out}"))
    };
    Ok(Load {
        per_sec: field("Requests/sec:")?.parse()?,
        p50: duration(&field("50%")?)?,
        p99: duration(&field("99%")?)?,
    })
}

/// wrk's threads for `connections` (it needs at least one connection a thread).
fn wrk_threads(connections: u32) -> u32 {
    connections.min(2)
}

/// A small-upload row of `connections` against `side`.
fn uploads(
    side: &dyn Side,
    work: &Path,
    script: &Path,
    row: &str,
    connections: u32,
    secs: u64,
) -> Result<Load> {
    eprintln!(
        "{}: 100 KiB uploads, {connections} at a time, {secs} s",
        side.name()
    );
    let env = side.upload_env(work, row, wrk_threads(connections), secs)?;
    wrk(side, script, &env, connections, secs)
}

/// wrk's `1.23ms`, `850.00us`, `1.02s`.
fn duration(text: &str) -> Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("a unit")?;
    let value: f64 = text[..split].parse()?;
    let seconds = match &text[split..] {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        unit => bail!("unknown unit {unit:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// CPU time used by a process and its children since [`Cpu::start`], from /proc.
struct Cpu {
    pid: Option<u32>,
    started: Instant,
    ticks: u64,
}

impl Cpu {
    fn start(pid: Option<u32>) -> Self {
        Self {
            pid,
            started: Instant::now(),
            ticks: pid.map_or(0, tree_ticks),
        }
    }

    /// `87 % of one core (3 threads)`.
    fn report(&self) -> String {
        let Some(pid) = self.pid else {
            return "unknown".into();
        };
        // SAFETY: sysconf only reads a system constant.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let used = tree_ticks(pid).saturating_sub(self.ticks) as f64 / per_sec;
        let threads = fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
        format!(
            "{:.0} % of one core ({threads} threads in its main process)",
            100.0 * used / self.started.elapsed().as_secs_f64()
        )
    }
}

/// User and system clock ticks of `pid` and its children.
fn tree_ticks(pid: u32) -> u64 {
    let children = parent_pids()
        .into_iter()
        .filter(|&(_, ppid)| ppid == pid as i32)
        .map(|(child, _)| child as u32);
    std::iter::once(pid)
        .chain(children)
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: utime and stime are fields 14 and 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// A `kB` line of /proc/<pid>/status (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(pid: u32, key: &str) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// How many connections from the client ports `ports` httpd, listening on `port`, has
/// accepted: established sockets of 127.0.0.1:`port` with a file (one still in the accept queue
/// has none: inode 0 in /proc/net/tcp).
fn accepted(port: u16, ports: &HashSet<u16>) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_of = |address: &str| {
        let (_, hex) = address.rsplit_once(':')?;
        u16::from_str_radix(hex, 16).ok()
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            // sl local remote st queues timer retransmits uid timeout inode ...
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9
                && port_of(f[1]) == Some(port)
                && f[3] == "01"
                && f[9] != "0"
                && port_of(f[2]).is_some_and(|p| ports.contains(&p))
        })
        .count()
}

/// `Max open files` of /proc/<pid>/limits: `soft hard`.
fn open_files_limit(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| {
            l.lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .map(|v| v.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// What the `idle` row measured.
struct Idle {
    up: Load,
    /// `up32`'s rate without the idle connections.
    without: Load,
    rss_before: f64,
    rss: f64,
    hwm: f64,
    /// Idle connections still open after the row.
    open_after: usize,
    /// httpd's open-file limit.
    limit: String,
}

/// The `idle` row: `up32` against the node with [`IDLE_CONNECTIONS`] idle connections open.
fn idle_row(node: &NodeSide, work: &Path, script: &Path, secs: u64, without: Load) -> Result<Idle> {
    let pid = node.pid().context("httpd runs")?;
    let limit = open_files_limit(pid);
    let rss_before = status_mib(pid, "VmRSS")?;
    // Resets VmHWM to the current RSS, so that it shows this row's peak.
    fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    eprintln!(
        "node: opening {IDLE_CONNECTIONS} idle connections (httpd: {rss_before:.1} MiB resident, open files {limit})"
    );
    // In batches that httpd's accept queue holds (its listener's backlog is 128), each accepted
    // before the next is opened: the row starts with every connection held by httpd itself.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    let mut ports = HashSet::new();
    while idle.len() < IDLE_CONNECTIONS {
        for _ in 0..IDLE_BATCH.min(IDLE_CONNECTIONS - idle.len()) {
            let stream = TcpStream::connect(("127.0.0.1", node.port()))
                .context("opening an idle connection")?;
            ports.insert(stream.local_addr()?.port());
            idle.push(stream);
        }
        wait_until(
            Duration::from_secs(10),
            "httpd to accept the idle connections",
            || accepted(node.port(), &ports) == idle.len(),
        )
        .with_context(|| {
            format!(
                "httpd accepted {} of {}",
                accepted(node.port(), &ports),
                idle.len()
            )
        })?;
    }
    let up = uploads(node, work, script, "idle", 32, secs)?;
    let (rss, hwm) = (status_mib(pid, "VmRSS")?, status_mib(pid, "VmHWM")?);
    let open_after = idle.iter().filter(|s| still_open(s)).count();
    eprintln!("  httpd {rss:.1} MiB resident, peak {hwm:.1} MiB; {open_after} idle connections still open");
    Ok(Idle {
        up,
        without,
        rss_before,
        rss,
        hwm,
        open_after,
        limit,
    })
}

/// Whether the server has neither closed `stream` nor sent anything on it.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).is_ok()
        && matches!(stream.peek(&mut [0; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// What one side measured, by row.
#[derive(Default)]
struct Results {
    big: Option<f64>,
    up32: Option<Load>,
    up1: Option<Load>,
    down32: Option<Load>,
}

impl Results {
    /// The wrk row `row`'s figures.
    fn load(&self, row: &str) -> Option<Load> {
        match row {
            "up32" => self.up32,
            "up1" => self.up1,
            "down32" => self.down32,
            _ => None,
        }
    }
}

/// The rows `HTTPD_BENCH_ROWS` picks (all without it).
fn picked_rows() -> Result<BTreeSet<&'static str>> {
    let Ok(list) = std::env::var("HTTPD_BENCH_ROWS") else {
        return Ok(ROWS.into());
    };
    list.split(',')
        .map(|name| {
            ROWS.into_iter()
                .find(|row| *row == name.trim())
                .with_context(|| format!("HTTPD_BENCH_ROWS: unknown row {name:?}, rows: {ROWS:?}"))
        })
        .collect()
}

/// Runs the picked rows against `side`; the node's `idle` row too.
fn measure(
    side: &dyn Side,
    node: Option<&NodeSide>,
    rows: &BTreeSet<&str>,
    files: &Files,
    secs: u64,
) -> Result<(Results, Option<Idle>)> {
    let mut results = Results::default();
    let mut idle = None;
    let work = files.dir.as_path();
    for row in ROWS.into_iter().filter(|row| rows.contains(row)) {
        match (row, node) {
            ("big", _) if side.big_uploads() => {
                eprintln!("{}: 1 GiB uploads", side.name());
                results.big = Some(big_upload(side, &files.big)?);
            }
            ("up32", _) => results.up32 = Some(uploads(side, work, &files.script, row, 32, secs)?),
            ("idle", Some(node)) => {
                let without = match results.up32 {
                    Some(load) => load,
                    None => uploads(side, work, &files.script, "up32", 32, secs)?,
                };
                idle = Some(idle_row(node, work, &files.script, secs, without)?);
            }
            ("up1", _) => results.up1 = Some(uploads(side, work, &files.script, row, 1, secs)?),
            ("down32", _) => {
                let (paths, mut env) = side.prepare_downloads(&files.small, DOWNLOAD_FILES)?;
                let list = work.join(format!("paths-{}", side.name()));
                fs::write(&list, paths.join("\n") + "\n")?;
                env.push(("BENCH_PATHS", list.display().to_string()));
                eprintln!("{}: 100 KiB downloads, 32 at a time, {secs} s", side.name());
                results.down32 = Some(wrk(side, &files.script, &env, 32, secs)?);
            }
            _ => {}
        }
    }
    Ok((results, idle))
}

/// The bench's files: the bodies and the wrk script.
struct Files {
    dir: PathBuf,
    big: PathBuf,
    small: PathBuf,
    script: PathBuf,
}

impl Files {
    fn make(dir: &Path, rows: &BTreeSet<&str>) -> Result<Self> {
        let files = Self {
            dir: dir.to_owned(),
            big: dir.join("big.bin"),
            small: dir.join("small.bin"),
            script: dir.join("bench.lua"),
        };
        let random = |path: &Path, size: u64| {
            run(Command::new("sh")
                .arg("-c")
                .arg(format!("head -c {size} /dev/urandom > {}", path.display())))
        };
        if rows.contains("big") {
            random(&files.big, BIG)?;
        }
        random(&files.small, SMALL)?;
        fs::write(&files.script, WRK_SCRIPT)?;
        Ok(files)
    }
}

/// The table: one line per row measured, with node / nginx and node / Prosody.
fn table(sides: &[Results; 3], idle: Option<&Idle>, secs: u64) -> String {
    let [node, nginx, prosody] = sides;
    let mut out = String::new();
    let mut line = |cells: [String; 6]| {
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    };
    line([
        "row".into(),
        "node (httpd → fsd, fsync + aft_log on PostgreSQL)".into(),
        "nginx WebDAV on sshfs".into(),
        "Prosody 0.12 mod_http_file_share (local disk)".into(),
        "node / nginx".into(),
        "node / Prosody".into(),
    ]);
    line([
        "---".into(),
        "---".into(),
        "---".into(),
        "---".into(),
        "---".into(),
        "---".into(),
    ]);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a / b),
        _ => "n/a".into(),
    };
    if node.big.is_some() {
        let mb = |r: &Results| r.big.map_or("n/a".into(), |v| format!("{v:.0} MB/s"));
        line([
            format!("1 GiB upload (median of {RUNS})"),
            mb(node),
            mb(nginx),
            mb(prosody),
            ratio(node.big, nginx.big),
            ratio(node.big, prosody.big),
        ]);
    }
    for (what, row) in [
        ("uploads, c=32", "up32"),
        ("uploads, c=1", "up1"),
        ("downloads, c=32", "down32"),
    ] {
        let [n, x, p] = [node.load(row), nginx.load(row), prosody.load(row)];
        if n.is_none() {
            continue;
        }
        let rate = |l: Option<Load>| l.map_or("n/a".into(), |l| format!("{:.0}/s", l.per_sec));
        let per_sec = |l: Option<Load>| l.map(|l| l.per_sec);
        line([
            format!("100 KiB {what}, {secs} s"),
            rate(n),
            rate(x),
            rate(p),
            ratio(per_sec(n), per_sec(x)),
            ratio(per_sec(n), per_sec(p)),
        ]);
        let latency =
            |l: Option<Load>| l.map_or("n/a".into(), |l| format!("{} / {}", ms(l.p50), ms(l.p99)));
        let ratios = |other: Option<Load>| match (n, other) {
            (Some(n), Some(o)) => format!(
                "{:.2}× / {:.2}×",
                n.p50.as_secs_f64() / o.p50.as_secs_f64(),
                n.p99.as_secs_f64() / o.p99.as_secs_f64()
            ),
            _ => "n/a".into(),
        };
        line([
            format!("100 KiB {what}: p50 / p99 latency (lower is better)"),
            latency(n),
            latency(x),
            latency(p),
            ratios(x),
            ratios(p),
        ]);
    }
    if let Some(idle) = idle {
        line([
            format!("100 KiB uploads, c=32, {secs} s, {IDLE_CONNECTIONS} idle connections open to httpd"),
            format!(
                "{:.0}/s, p99 {}: {:.2}× of {:.0}/s without them (target ≥ 0.90×)",
                idle.up.per_sec,
                ms(idle.up.p99),
                idle.up.per_sec / idle.without.per_sec,
                idle.without.per_sec
            ),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        line([
            format!("httpd RSS with {IDLE_CONNECTIONS} idle connections (target ≤ 128 MiB)"),
            format!(
                "peak {:.1} MiB, {:.1} MiB after the row ({:.1} MiB before them); {} still open after the row; open files {}",
                idle.hwm, idle.rss, idle.rss_before, idle.open_after, idle.limit
            ),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    out
}

fn main() -> Result<()> {
    let secs: u64 = std::env::var("HTTPD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rows = picked_rows()?;
    let open_files = mft_tests::allow_open_files(u64::MAX)?;
    eprintln!("rows {rows:?}, {secs} s each; open-file limit {open_files}");
    let work = tempfile::Builder::new()
        .prefix("mft-bench-httpd-")
        .tempdir()?;
    let files = Files::make(work.path(), &rows)?;

    let sshd = Sshd::start()?;
    let postgres = Postgres::start_durable(work.path())?;
    let node = Node::start(
        &sshd,
        "node_bench",
        Database::Postgres(postgres.url("postgres")),
    )?;
    let node = NodeSide {
        upload: node.upload_token("alice@example.com", "bob@example.com", "im")?,
        download: node.download_token("bob@example.com")?,
        node,
    };
    let nginx = NginxSide {
        nginx: common::start_nginx(&sshd, work.path())?,
        pid_file: work.path().join("nginx.pid"),
    };
    let prosody = ProsodySide {
        share: FileShare::start()?,
    };

    let (node_results, idle) = measure(&node, Some(&node), &rows, &files, secs)?;
    let (nginx_results, _) = measure(&nginx, None, &rows, &files, secs)?;
    let (prosody_results, _) = measure(&prosody, None, &rows, &files, secs)
        .with_context(|| format!("Prosody's log:\n{}", prosody.share.log()))?;
    println!(
        "\n{}",
        table(
            &[node_results, nginx_results, prosody_results],
            idle.as_ref(),
            secs
        )
    );
    Ok(())
}
