//! `scripts/bench fsd`: fsd against sshfs (default options, and with AES-GCM) on one loopback
//! OpenSSH server, side by side: sequential write of 1 GiB with fsync, sequential read of 1 GiB
//! with the client's page cache dropped, 2,000 creates of 4 KiB files, `ls -lR` over 10,000
//! files, and fsd's peak RSS. Medians of 5 runs, printed as a markdown table with ratios.
//!
//! `FSD_BENCH_MIB` scales the large rows for a quick run (default 1024). `FSD_BENCH_ROWS` picks
//! rows by a comma-separated list of `write`, `read`, `creates`, `ls` (default: all); `read`
//! without `write` still writes its file first, untimed. Needs root, /dev/fuse,
//! sshfs; run in release (`cargo bench -p fsd --bench fsd`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mft_tests::{is_mounted, wait_until, NodeToml, Process, Sshd};

/// Runs per row and client: the large rows wait on the VM's shared disk, and single runs vary
/// by 30 % or more; the median of five is steadier than of three.
const RUNS: usize = 5;
const SMALL_FILES: usize = 2_000;
const TREE_DIRS: usize = 10;
const TREE_FILES_PER_DIR: usize = 1_000;

/// One mounted client of the server.
struct Client {
    name: &'static str,
    process: Process,
    mount_point: PathBuf,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.process.stop();
        mft_tests::unmount_if_mounted(&self.mount_point);
    }
}

fn mount_fsd(sshd: &Sshd, dir: &Path) -> Result<Client> {
    let mount_point = dir.join("fsd");
    let mut toml = NodeToml::new(sshd, "node_1", dir)?;
    toml.mount_point = mount_point.clone();
    let config = toml.write()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsd"));
    cmd.arg("--config").arg(&config);
    let process = Process::spawn("fsd", &mut cmd, &dir.join("fsd.log"))?;
    wait_until(Duration::from_secs(20), "fsd to mount", || {
        is_mounted(&mount_point)
    })?;
    Ok(Client {
        name: "fsd",
        process,
        mount_point,
    })
}

fn mount_sshfs(sshd: &Sshd, dir: &Path, name: &'static str, extra: &[&str]) -> Result<Client> {
    let mount_point = dir.join(name);
    fs::create_dir_all(&mount_point)?;
    let known = dir.join("known_hosts");
    fs::write(&known, format!("{}\n", sshd.host_key_line))?;
    let mut cmd = Command::new("sshfs");
    cmd.arg("-f")
        .arg(format!(
            "root@127.0.0.1:{}",
            sshd.node_directory("node_1")?.display()
        ))
        .arg(&mount_point)
        .arg("-o")
        .arg(format!(
            "port={},IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking=yes,BatchMode=yes",
            sshd.port,
            sshd.client_key.display(),
            known.display()
        ));
    for option in extra {
        cmd.args(["-o", option]);
    }
    let process = Process::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))?;
    wait_until(Duration::from_secs(20), "sshfs to mount", || {
        is_mounted(&mount_point)
    })?;
    Ok(Client {
        name,
        process,
        mount_point,
    })
}

/// Writes every dirty page to disk, the server's included (it runs on this machine).
fn sync() {
    let _ = Command::new("sync").status();
}

/// Drops the page cache (so reads go to the server), if this machine lets us.
fn drop_caches() -> bool {
    sync();
    fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn timed(run: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    run()?;
    Ok(started.elapsed())
}

fn write_big(path: &Path, mib: usize) -> Result<()> {
    let block = vec![0x5au8; 1 << 20];
    let mut file = File::create(path)?;
    for _ in 0..mib {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    Ok(())
}

fn read_big(path: &Path, mib: usize) -> Result<()> {
    let mut block = vec![0u8; 1 << 20];
    let mut file = File::open(path)?;
    let mut total = 0;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    ensure!(total == mib << 20, "read {total} bytes");
    Ok(())
}

fn create_small(dir: &Path) -> Result<()> {
    fs::create_dir(dir)?;
    let data = vec![1u8; 4096];
    for i in 0..SMALL_FILES {
        let mut file = File::create(dir.join(format!("f{i}")))?;
        file.write_all(&data)?;
    }
    Ok(())
}

/// Makes a tree of 10,000 empty files on the server side, outside any mount.
fn make_tree(root: &Path) -> Result<()> {
    for d in 0..TREE_DIRS {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir)?;
        for f in 0..TREE_FILES_PER_DIR {
            File::create(dir.join(format!("file-{f}.dat")))?;
        }
    }
    Ok(())
}

fn list_tree(root: &Path) -> Result<()> {
    let out = Command::new("ls").arg("-lR").arg(root).output()?;
    ensure!(out.status.success(), "ls -lR failed");
    let lines = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"-"))
        .count();
    ensure!(
        lines == TREE_DIRS * TREE_FILES_PER_DIR,
        "ls listed {lines} files"
    );
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() -> Result<()> {
    // cargo bench passes --bench; nothing else is taken.
    let mib: usize = std::env::var("FSD_BENCH_MIB")
        .ok()
        .map(|v| v.parse().context("FSD_BENCH_MIB"))
        .transpose()?
        .unwrap_or(1024);
    let rows_wanted = std::env::var("FSD_BENCH_ROWS").unwrap_or_default();
    let wanted = |row: &str| {
        rows_wanted.trim().is_empty() || rows_wanted.split(',').any(|r| r.trim() == row)
    };
    let sshd = Sshd::start()?;
    let server_dir = sshd.node_directory("node_1")?;
    let dir = tempfile::Builder::new()
        .prefix("mft-fsd-bench-")
        .tempdir()?;
    let clients = [
        mount_fsd(&sshd, dir.path())?,
        mount_sshfs(&sshd, dir.path(), "sshfs", &[])?,
        mount_sshfs(
            &sshd,
            dir.path(),
            "sshfs-gcm",
            &["Ciphers=aes128-gcm@openssh.com"],
        )?,
    ];
    if wanted("ls") {
        eprintln!(
            "preparing {} trees of 10,000 files on the server",
            RUNS * clients.len()
        );
        for client in &clients {
            for run in 0..RUNS {
                make_tree(&server_dir.join(format!("tree-{}-{run}", client.name)))?;
            }
        }
    }
    let cold = drop_caches();
    let mut rows: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut measure = |label: &'static str,
                       f: &dyn Fn(&Client, usize) -> Result<Duration>|
     -> Result<()> {
        let mut per_client = vec![Vec::new(); clients.len()];
        // Runs interleaved, the order turned by one every run, so that a slow moment of the
        // machine, and what one client leaves behind for the next (blocks to free, pages to
        // write back), hit every client alike.
        for run in 0..RUNS {
            for turn in 0..clients.len() {
                let i = (turn + run) % clients.len();
                let client = &clients[i];
                let took = f(client, run).with_context(|| format!("{label} on {}", client.name))?;
                eprintln!("{label:<28} {:<10} run {run}: {took:.2?}", client.name);
                per_client[i].push(took);
            }
        }
        rows.push((label, per_client.into_iter().map(median).collect()));
        Ok(())
    };
    let big = |client: &Client| client.mount_point.join(format!("big-{}", client.name));
    if wanted("write") {
        measure("write+fsync", &|c, _| {
            // The previous run's file goes first, untimed, and `sync` lets the server's disk
            // free (and discard) its blocks: the row times writing, not truncating 1 GiB.
            match fs::remove_file(big(c)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => sync(),
            }
            timed(|| write_big(&big(c), mib))
        })?;
    }
    if wanted("read") {
        if !wanted("write") {
            for client in &clients {
                write_big(&big(client), mib)?;
            }
        }
        measure("read (cold)", &|c, _| {
            drop_caches();
            timed(|| read_big(&big(c), mib))
        })?;
    }
    if wanted("creates") {
        measure("2,000 creates of 4 KiB", &|c, run| {
            timed(|| create_small(&c.mount_point.join(format!("small-{}-{run}", c.name))))
        })?;
    }
    if wanted("ls") {
        measure("ls -lR, 10,000 files", &|c, run| {
            drop_caches();
            timed(|| list_tree(&c.mount_point.join(format!("tree-{}-{run}", c.name))))
        })?;
    }
    let rss = clients[0].process.pid().and_then(peak_rss_kib);

    println!();
    println!(
        "fsd vs sshfs, one loopback OpenSSH server, {} CPUs, medians of {RUNS}; large rows {mib} MiB{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cold { "" } else { " (page cache NOT dropped: no permission)" }
    );
    println!();
    println!("| test | fsd | sshfs default | sshfs AES-GCM | fsd vs default | fsd vs AES-GCM |");
    println!("|---|---|---|---|---|---|");
    for (label, times) in &rows {
        let show = |t: Duration| {
            if label.starts_with("write") || label.starts_with("read") {
                format!("{:.0} MB/s", (mib << 20) as f64 / 1e6 / t.as_secs_f64())
            } else {
                format!("{:.2} s", t.as_secs_f64())
            }
        };
        let ratio = |other: Duration| other.as_secs_f64() / times[0].as_secs_f64();
        println!(
            "| {label} | {} | {} | {} | {:.2}× | {:.2}× |",
            show(times[0]),
            show(times[1]),
            show(times[2]),
            ratio(times[1]),
            ratio(times[2])
        );
    }
    match rss {
        Some(kib) => println!(
            "| fsd peak RSS (VmHWM) | {:.1} MiB | | | | |",
            kib as f64 / 1024.0
        ),
        None => println!("| fsd peak RSS | unknown | | | | |"),
    }
    Ok(())
}
