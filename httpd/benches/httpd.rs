//! `scripts/bench httpd`: the whole node against what an operator would otherwise assemble, on
//! one loopback OpenSSH server, with the same load generator on both sides.
//!
//! - **node**: curl/wrk → httpd → fsd → sshd, each upload fsynced and its `aft_log` row
//!   committed by logd on PostgreSQL with `fsync=on` (a server started here, as the `postgres`
//!   user) before the answer; each download's `Get` row committed before its first byte.
//! - **nginx-on-sshfs**: Debian's nginx accepting WebDAV `PUT` (`dav_methods PUT`,
//!   `create_full_put_path on`) and serving `GET` from an sshfs mount (default options) of the
//!   same server: no fsync, no database.
//!
//! Rows: one 1 GiB upload with curl (MB/s, median of 3); 100 KiB uploads, then 100 KiB
//! downloads (round robin over 100 files), at concurrency 32 for 30 s with wrk (requests/s,
//! p50/p99 latency), each after a `sync`. Prints a markdown table with ratios node / nginx. Needs root, /dev/fuse,
//! sshfs, nginx, wrk, PostgreSQL, and the release binaries (`cargo build --release --bins`).
//! `HTTPD_BENCH_SECS` shortens the 30 s rows for a quick run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mft_tests::{free_port, is_mounted, run, wait_until, Database, Node, Postgres, Process, Sshd};

const RUNS: usize = 3;
const BIG: u64 = 1 << 30;
const SMALL: usize = 100 * 1024;
const CONCURRENCY: u32 = 32;
const DOWNLOAD_FILES: usize = 100;

/// The wrk script: `BENCH_METHOD` to paths from `BENCH_PATHS` (one per line, round robin), or
/// to `BENCH_PREFIX<thread>-<n>` (a new name per request); a 100 KiB random body for PUT/POST.
const WRK_SCRIPT: &str = r#"
local method = os.getenv("BENCH_METHOD")
local auth = os.getenv("BENCH_AUTH")
local prefix = os.getenv("BENCH_PREFIX")
local list = os.getenv("BENCH_PATHS")
local threads, counter, paths, body = 0, 0, {}, nil
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  if list then for line in io.lines(list) do paths[#paths + 1] = line end end
  if method ~= "GET" then
    local chunk = {}
    for i = 1, 102400 do chunk[i] = string.char(math.random(0, 255)) end
    body = table.concat(chunk)
  end
end
function request()
  counter = counter + 1
  local path
  if #paths > 0 then path = paths[(counter + tid * 7) % #paths + 1]
  else path = prefix .. tid .. "-" .. counter end
  local headers = {}
  if auth then headers["Authorization"] = auth end
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
    /// curl arguments that upload the file at `path` (as a new file named after `n`).
    fn upload_args(&self, path: &Path, n: usize) -> Vec<String>;
    /// The wrk environment for the small-upload row.
    fn upload_env(&self) -> WrkEnv;
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
        "node (httpd → fsd, PostgreSQL fsync)"
    }
    fn port(&self) -> u16 {
        self.node.http_port
    }
    fn upload_args(&self, path: &Path, n: usize) -> Vec<String> {
        vec![
            "-X".into(),
            "POST".into(),
            "-T".into(),
            path.display().to_string(),
            "-H".into(),
            format!("Authorization: Bearer {}", self.upload),
            self.node.url(&format!("/files?name=big-{n}.bin")),
        ]
    }
    fn upload_env(&self) -> WrkEnv {
        vec![
            ("BENCH_METHOD", "POST".into()),
            ("BENCH_AUTH", format!("Bearer {}", self.upload)),
            ("BENCH_PREFIX", "/files?name=small-".into()),
        ]
    }
    fn prepare_downloads(&self, body: &Path, count: usize) -> Result<(Vec<String>, WrkEnv)> {
        let mut paths = Vec::new();
        for n in 0..count {
            let mut args = self.upload_args(body, n);
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
    port: u16,
    _nginx: Process,
    _sshfs: SshfsMount,
}

impl Side for NginxSide {
    fn name(&self) -> &'static str {
        "nginx WebDAV on sshfs"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn upload_args(&self, path: &Path, n: usize) -> Vec<String> {
        vec![
            "-T".into(),
            path.display().to_string(),
            format!("http://127.0.0.1:{}/big/big-{n}.bin", self.port),
        ]
    }
    fn upload_env(&self) -> WrkEnv {
        vec![
            ("BENCH_METHOD", "PUT".into()),
            ("BENCH_PREFIX", "/small/f-".into()),
        ]
    }
    fn prepare_downloads(&self, body: &Path, count: usize) -> Result<(Vec<String>, WrkEnv)> {
        let mut paths = Vec::new();
        for n in 0..count {
            let path = format!("/dl/f-{n}.bin");
            curl(&[
                "-T".into(),
                body.display().to_string(),
                format!("http://127.0.0.1:{}{path}", self.port),
            ])?;
            paths.push(path);
        }
        Ok((paths, vec![("BENCH_METHOD", "GET".into())]))
    }
}

/// An sshfs mount, unmounted when dropped.
struct SshfsMount {
    process: Process,
    mount_point: PathBuf,
}

impl Drop for SshfsMount {
    fn drop(&mut self) {
        self.process.stop();
        mft_tests::unmount_if_mounted(&self.mount_point);
    }
}

fn start_nginx(sshd: &Sshd, dir: &Path) -> Result<NginxSide> {
    let mount_point = dir.join("sshfs");
    fs::create_dir_all(&mount_point)?;
    let known = dir.join("known_hosts");
    fs::write(&known, format!("{}\n", sshd.host_key_line))?;
    let mut cmd = Command::new("sshfs");
    cmd.arg("-f")
        .arg(format!(
            "root@127.0.0.1:{}",
            sshd.node_directory("nginx_dav")?.display()
        ))
        .arg(&mount_point)
        .arg("-o")
        .arg(format!(
            "port={},IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking=yes,BatchMode=yes",
            sshd.port,
            sshd.client_key.display(),
            known.display()
        ));
    let process = Process::spawn("sshfs", &mut cmd, &dir.join("sshfs.log"))?;
    wait_until(Duration::from_secs(20), "sshfs to mount", || {
        is_mounted(&mount_point)
    })?;
    let sshfs = SshfsMount {
        process,
        mount_point,
    };
    let port = free_port();
    // Debian's defaults where they matter (sendfile on); the request body's temporary file on
    // the mount, so that a stored PUT is a rename on the file server, as DAV setups do.
    let config = format!(
        "user root;\nworker_processes auto;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  client_max_body_size 0;\n\
         client_body_temp_path {mnt}/.nginx-tmp;\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {mnt};\n\
         location / {{ dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n",
        dir = dir.display(),
        mnt = sshfs.mount_point.display(),
    );
    let conf = dir.join("nginx.conf");
    fs::write(&conf, config)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(dir);
    let nginx = Process::spawn("nginx", &mut cmd, &dir.join("nginx.log"))?;
    wait_until(Duration::from_secs(10), "nginx to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .with_context(|| nginx.log_text())?;
    Ok(NginxSide {
        port,
        _nginx: nginx,
        _sshfs: sshfs,
    })
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
        let started = Instant::now();
        curl(&side.upload_args(big, n))?;
        rates.push(BIG as f64 / 1e6 / started.elapsed().as_secs_f64());
        eprintln!("  {:.0} MB/s", rates[n]);
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[RUNS / 2])
}

/// What wrk measured.
struct Load {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn wrk(side: &dyn Side, script: &Path, env: &[(&'static str, String)], secs: u64) -> Result<Load> {
    // Each row starts with the disk idle: the previous row's writes (three 1 GiB uploads) are
    // on disk, not still being written back under this row's fsyncs.
    run(&mut Command::new("sync"))?;
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        "2",
        "-c",
        &CONCURRENCY.to_string(),
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
    let out = run(&mut cmd)?;
    ensure!(
        !out.contains("Non-2xx"),
        "{}: requests failed:\n{out}",
        side.name()
    );
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
            .with_context(|| format!("no {label:?} in wrk's output:\n{out}"))
    };
    eprintln!("{out}");
    Ok(Load {
        per_sec: field("Requests/sec:")?.parse()?,
        p50: duration(&field("50%")?)?,
        p99: duration(&field("99%")?)?,
    })
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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<()> {
    let secs: u64 = std::env::var("HTTPD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let work = tempfile::Builder::new()
        .prefix("mft-bench-httpd-")
        .tempdir()?;
    let big = work.path().join("big.bin");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("head -c {BIG} /dev/urandom > {}", big.display())))?;
    let small = work.path().join("small.bin");
    run(Command::new("sh").arg("-c").arg(format!(
        "head -c {SMALL} /dev/urandom > {}",
        small.display()
    )))?;
    let script = work.path().join("bench.lua");
    fs::write(&script, WRK_SCRIPT)?;

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
    let nginx = start_nginx(&sshd, work.path())?;
    let sides: [&dyn Side; 2] = [&node, &nginx];

    let mut results = Vec::new();
    for side in sides {
        eprintln!("{}: 1 GiB uploads", side.name());
        let mb_s = big_upload(side, &big)?;
        eprintln!(
            "{}: 100 KiB uploads, {CONCURRENCY} at a time, {secs} s",
            side.name()
        );
        let up = wrk(side, &script, &side.upload_env(), secs)?;
        let (paths, mut env) = side.prepare_downloads(&small, DOWNLOAD_FILES)?;
        let list = work.path().join(format!("paths-{}", results.len()));
        fs::write(&list, paths.join("\n") + "\n")?;
        env.push(("BENCH_PATHS", list.display().to_string()));
        eprintln!(
            "{}: 100 KiB downloads, {CONCURRENCY} at a time, {secs} s",
            side.name()
        );
        let down = wrk(side, &script, &env, secs)?;
        results.push((mb_s, up, down));
    }

    let [(node_mb, node_up, node_down), (nginx_mb, nginx_up, nginx_down)] =
        <[_; 2]>::try_from(results).ok().context("two sides")?;
    println!("\n| row | node (httpd → fsd, fsync + aft_log on PostgreSQL) | nginx WebDAV on sshfs | node / nginx |");
    println!("|---|---|---|---|");
    println!(
        "| 1 GiB upload (median of {RUNS}) | {node_mb:.0} MB/s | {nginx_mb:.0} MB/s | {:.2}× |",
        node_mb / nginx_mb
    );
    for (what, node, nginx) in [
        ("uploads", &node_up, &nginx_up),
        ("downloads", &node_down, &nginx_down),
    ] {
        println!(
            "| 100 KiB {what}, c={CONCURRENCY}, {secs} s | {:.0}/s | {:.0}/s | {:.2}× |",
            node.per_sec,
            nginx.per_sec,
            node.per_sec / nginx.per_sec
        );
        println!(
            "| 100 KiB {what}: p50 / p99 latency | {} / {} | {} / {} | {:.2}× / {:.2}× (lower is better) |",
            ms(node.p50),
            ms(node.p99),
            ms(nginx.p50),
            ms(nginx.p99),
            node.p50.as_secs_f64() / nginx.p50.as_secs_f64(),
            node.p99.as_secs_f64() / nginx.p99.as_secs_f64()
        );
    }
    Ok(())
}
