//! `scripts/bench fsd`: fsd against sshfs (default options, and with AES-GCM) on one OpenSSH
//! server, side by side: sequential write of 1 GiB with fsync, sequential read of 1 GiB with the
//! client's page cache dropped, 2,000 creates of 4 KiB files, `ls -lR` over 10,000 files, and
//! fsd's peak RSS. Medians of 5 runs, printed as a markdown table with ratios, one table per
//! network: the server on loopback; in a network namespace behind a link of 5 ms each way
//! ([`mft_tests::netem`]); the same with 0.1 % loss. Over the link a run makes 200 files.
//!
//! `FSD_BENCH_MIB` scales the large rows for a quick run (default 1024). `FSD_BENCH_ROWS` picks
//! rows by a comma-separated list of `write`, `read`, `creates`, `ls` (default: all); `read`
//! without `write` still writes its file first, untimed. `FSD_BENCH_NET` picks networks:
//! `loopback`, `netem`, `loss` (default: all). Needs root, /dev/fuse, /dev/net/tun, sshfs; run
//! in release (`cargo bench -p fsd --bench fsd`).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mft_tests::netem::Impairment;
use mft_tests::{FuseMount, NodeToml, Process, Sshd};

/// Runs per row and client: the large rows wait on the VM's shared disk, and single runs vary
/// by 30 % or more; the median of five is steadier than of three.
const RUNS: usize = 5;
const SMALL_FILES: usize = 2_000;
const LINK_SMALL_FILES: usize = 200;
const TREE_DIRS: usize = 10;
const TREE_FILES_PER_DIR: usize = 1_000;

/// One mounted client of the server.
struct Client {
    name: &'static str,
    mount: FuseMount,
}

fn mount_fsd(sshd: &Sshd, dir: &Path) -> Result<Client> {
    let mount_point = dir.join("fsd");
    let mut toml = NodeToml::new(sshd, "node_1", dir)?;
    toml.mount_point = mount_point.clone();
    // NodeToml names the server 127.0.0.1; one behind a link has the link's address.
    let loopback = r#"host = "127.0.0.1""#;
    let text = toml.text();
    ensure!(text.matches(loopback).count() == 1, "one file server host");
    let config = dir.join("node.toml");
    fs::write(
        &config,
        text.replace(loopback, &format!(r#"host = "{}""#, sshd.host)),
    )?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsd"));
    cmd.arg("--config").arg(&config);
    let process = Process::spawn("fsd", &mut cmd, &dir.join("fsd.log"))?;
    Ok(Client {
        name: "fsd",
        mount: FuseMount::wait("fsd", process, mount_point)?,
    })
}

fn mount_sshfs(sshd: &Sshd, dir: &Path, name: &'static str, extra: &[&str]) -> Result<Client> {
    let server_dir = sshd.node_directory("node_1")?;
    Ok(Client {
        name,
        mount: mft_tests::mount_sshfs(sshd, &server_dir, dir, name, extra)?,
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

fn create_small(dir: &Path, files: usize) -> Result<()> {
    fs::create_dir(dir)?;
    let data = vec![1u8; 4096];
    for i in 0..files {
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

/// Where the server is: loopback, or behind a link in a network namespace.
struct Network {
    name: &'static str,
    title: &'static str,
    link: Option<Impairment>,
    /// Small files created per run: over the link each create waits on round trips of 10 ms.
    small_files: usize,
}

const NETWORKS: [Network; 3] = [
    Network {
        name: "loopback",
        title: "one loopback OpenSSH server",
        link: None,
        small_files: SMALL_FILES,
    },
    Network {
        name: "netem",
        title: "OpenSSH server behind a link of 5 ms each way (10 ms round trip)",
        link: Some(Impairment {
            delay: Duration::from_millis(5),
            loss: 0.0,
        }),
        small_files: LINK_SMALL_FILES,
    },
    Network {
        name: "loss",
        title: "OpenSSH server behind a link of 5 ms each way and 0.1 % loss",
        link: Some(Impairment {
            delay: Duration::from_millis(5),
            loss: 0.001,
        }),
        small_files: LINK_SMALL_FILES,
    },
];

fn main() -> Result<()> {
    // cargo bench passes --bench; nothing else is taken.
    let mib: usize = std::env::var("FSD_BENCH_MIB")
        .ok()
        .map(|v| v.parse().context("FSD_BENCH_MIB"))
        .transpose()?
        .unwrap_or(1024);
    let listed = |var: &str| {
        let list = std::env::var(var).unwrap_or_default();
        move |item: &str| list.trim().is_empty() || list.split(',').any(|r| r.trim() == item)
    };
    let wanted = listed("FSD_BENCH_ROWS");
    let networks = listed("FSD_BENCH_NET");
    let mut tables = Vec::new();
    for network in NETWORKS.iter().filter(|n| networks(n.name)) {
        eprintln!("== {}", network.title);
        tables.push(bench(network, mib, &wanted)?);
    }
    for table in tables {
        print!("{table}");
    }
    Ok(())
}

/// Runs the rows `wanted` on fsd and both sshfs against one server on `network`; returns the
/// table.
fn bench(network: &Network, mib: usize, wanted: &dyn Fn(&str) -> bool) -> Result<String> {
    let sshd = match network.link {
        None => Sshd::start()?,
        Some(impairment) => Sshd::start_behind(impairment)?,
    };
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
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut measure = |label: String,
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
    let big = |client: &Client| {
        client
            .mount
            .mount_point
            .join(format!("big-{}", client.name))
    };
    if wanted("write") {
        measure("write+fsync".into(), &|c, _| {
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
        measure("read (cold)".into(), &|c, _| {
            drop_caches();
            timed(|| read_big(&big(c), mib))
        })?;
    }
    if wanted("creates") {
        let files = network.small_files;
        measure(format!("{files} creates of 4 KiB"), &|c, run| {
            let dir = c.mount.mount_point.join(format!("small-{}-{run}", c.name));
            timed(|| create_small(&dir, files))
        })?;
    }
    if wanted("ls") {
        measure("ls -lR, 10,000 files".into(), &|c, run| {
            drop_caches();
            timed(|| list_tree(&c.mount.mount_point.join(format!("tree-{}-{run}", c.name))))
        })?;
    }
    let rss = clients[0].mount.process.pid().and_then(peak_rss_kib);

    let mut out = String::new();
    writeln!(
        out,
        "\nfsd vs sshfs, {}, {} CPUs, medians of {RUNS}; large rows {mib} MiB{}\n",
        network.title,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cold {
            ""
        } else {
            " (page cache NOT dropped: no permission)"
        }
    )?;
    writeln!(
        out,
        "| test | fsd | sshfs default | sshfs AES-GCM | fsd vs default | fsd vs AES-GCM |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for (label, times) in &rows {
        let show = |t: Duration| {
            if label.starts_with("write") || label.starts_with("read") {
                format!("{:.0} MB/s", (mib << 20) as f64 / 1e6 / t.as_secs_f64())
            } else {
                format!("{:.2} s", t.as_secs_f64())
            }
        };
        let ratio = |other: Duration| other.as_secs_f64() / times[0].as_secs_f64();
        writeln!(
            out,
            "| {label} | {} | {} | {} | {:.2}× | {:.2}× |",
            show(times[0]),
            show(times[1]),
            show(times[2]),
            ratio(times[1]),
            ratio(times[2])
        )?;
    }
    match rss {
        Some(kib) => writeln!(
            out,
            "| fsd peak RSS (VmHWM) | {:.1} MiB | | | | |",
            kib as f64 / 1024.0
        )?,
        None => writeln!(out, "| fsd peak RSS | unknown | | | | |")?,
    }
    Ok(out)
}
