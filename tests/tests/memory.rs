//! Constant memory: httpd's resident set stays at most 64 MiB while a 4 GiB file (the default
//! `http.max_file_size`, exactly) is uploaded through it to the file server and downloaded back,
//! on a whole node (sshd, fsd, logd on SQLite, httpd). The body streams from a sparse file and
//! back to /dev/null with `curl`, so neither end holds it; httpd's VmRSS is sampled every 100 ms.
//!
//! It moves 8 GiB through fsd: about a minute or two on the release binaries
//! (`MFT_BIN_DIR=target/release`), several minutes on the debug ones.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mft_tests::{run, wait_until, Database, Node, Sshd};

const SIZE: u64 = 4 << 30;
const RSS_LIMIT_KIB: u64 = 64 << 10;
const NEEDED_FREE: u64 = 10 << 30;

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Samples VmRSS of `pid` every 100 ms until dropped; `peak` is the largest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// `curl` with the node's token, printing `-w` fields; fails on a transport error.
fn curl(args: &[&str]) -> Result<String> {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "1800"])
        .args(args))
}

#[test]
fn httpd_streams_a_4_gib_file_both_ways_in_constant_memory() -> Result<()> {
    let sshd = Sshd::start()?;
    let free = nix::sys::statvfs::statvfs(&sshd.root)?;
    let available = free.blocks_available() as u64 * free.fragment_size() as u64;
    println!(
        "free space under the file server's root {}: {} MiB",
        sshd.root.display(),
        available >> 20
    );
    if available < NEEDED_FREE {
        println!(
            "SKIPPED: the file server needs 10 GiB free for a 4 GiB file, has {} MiB",
            available >> 20
        );
        return Ok(());
    }
    let node = Node::start(&sshd, "node_mem", Database::Sqlite)?;
    let pid = node.httpd_pid().context("httpd is running")?;
    let source = node.dir.path().join("big.bin");
    std::fs::File::create(&source)?.set_len(SIZE)?; // sparse: reading it costs no disk
    let upload = node.upload_token("alice@example.com", "bob@example.com", "im")?;
    let download = node.download_token("bob@example.com")?;

    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    // -T streams the file (--data-binary @file would read it all into curl first).
    let answer = curl(&[
        "-X",
        "POST",
        "-T",
        &source.to_string_lossy(),
        "-H",
        &format!("Authorization: Bearer {upload}"),
        "-H",
        "Content-Type: application/octet-stream",
        "-w",
        "\n%{http_code}",
        &node.url("/files?name=big.bin"),
    ])?;
    let uploaded = started.elapsed();
    let (body, status) = answer.rsplit_once('\n').context("curl's answer")?;
    ensure!(
        status == "201",
        "upload answered {status}: {body}\n{}",
        node.logs()
    );
    let reply: serde_json::Value = serde_json::from_str(body)?;
    ensure!(reply["size"] == SIZE, "stored {}", reply["size"]);
    let uri = reply["uri"].as_str().context("uri")?;

    let sent = curl(&[
        "-H",
        &format!("Authorization: Bearer {download}"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        uri,
    ])?;
    let peak = sampler.peak_kib();
    let total = started.elapsed();
    ensure!(
        sent == format!("200 {SIZE}"),
        "download: {sent}\n{}",
        node.logs()
    );
    println!(
        "4 GiB up in {:.1} s, down in {:.1} s; httpd peak VmRSS {:.1} MiB (limit 64 MiB)",
        uploaded.as_secs_f64(),
        (total - uploaded).as_secs_f64(),
        peak as f64 / 1024.0
    );
    ensure!(peak > 0, "no VmRSS sample of httpd (pid {pid})");
    ensure!(
        peak <= RSS_LIMIT_KIB,
        "httpd's peak VmRSS was {peak} KiB, over {RSS_LIMIT_KIB} KiB"
    );

    // The transfers were counted: the metrics show both directions' 4 GiB.
    // (The download is counted when httpd drops its body, just after curl has it all.)
    let counted = |metrics: &str| {
        ["mft_bytes_uploaded_total", "mft_bytes_downloaded_total"]
            .iter()
            .all(|series| metrics.contains(&format!("\n{series} {SIZE}\n")))
    };
    let mut metrics = String::new();
    let _ = wait_until(Duration::from_secs(5), "the transfers in /metrics", || {
        metrics = curl(&[&node.url("/metrics")]).unwrap_or_default();
        counted(&metrics)
    });
    ensure!(counted(&metrics), "4 GiB each way in:\n{metrics}");
    let status: serde_json::Value = serde_json::from_str(&curl(&[&node.url("/status")])?)?;
    ensure!(
        status["fsd"]["state"] == "running" && status["logd"]["reachable"] == true,
        "{status:#}"
    );
    Ok(())
}
