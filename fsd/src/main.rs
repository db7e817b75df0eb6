//! `fsd --config PATH`: connects to the file server, mounts the node directory, publishes its
//! status, and serves it until SIGTERM or SIGINT, then unmounts and exits 0.
//! `fsd check`: runs the seed's seven file-server checks. `fsd keygen`: makes the node key pair.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use fsd::backend::ssh::{ConnectOptions, Link, SshBackend};
use fsd::backend::SftpBackend;
use fsd::fs::Filesystem;
use fsd::health;
use fsd::keys::{self, KeyType};
use fsd::status::{Check, CheckResult, FileServerUse, FsdStatus};
use mft_config::NodeConfig;
use mft_journal::{Alarm, AlarmLatch};
use tokio::signal::unix::{signal, SignalKind};

/// How long a stop waits for files still open on the detached mount.
const UNMOUNT_GRACE: Duration = Duration::from_secs(10);
/// How often the running fsd checks the server and rewrites its status file.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Mounts the node's directory on the file server through SSH/SFTP and FUSE.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The node configuration file.
    #[arg(long, global = true, default_value = "/etc/mft/node.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the seven file-server checks; one PASS/FAIL line each, exit 1 if any fails.
    Check,
    /// Generates the node key pair (file_server.private_key and .pub) and prints the
    /// authorized_keys line for the file server.
    Keygen {
        #[arg(long = "type", value_enum, default_value = "ed25519")]
        kind: KeyKind,
        /// RSA key size (at least 2048).
        #[arg(long, default_value_t = 3072)]
        bits: usize,
        /// Replace an existing key (the old one is kept as <key>.old).
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyKind {
    Ed25519,
    Rsa,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match NodeConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fsd: {e}");
            return ExitCode::FAILURE;
        }
    };
    mft_journal::init("fsd", config.log.level);
    let result = match args.command {
        None => serve(&config),
        Some(Command::Check) => check(&config),
        Some(Command::Keygen { kind, bits, rotate }) => keygen(&config, kind, bits, rotate),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime's worker threads. One: fsd's network work is one SSH connection whose session
/// task (framing, encryption) runs on one thread whatever the count, and every further worker
/// adds hand-offs between threads, each a sleep and a wake-up (see "Threads" in
/// docs/fsd-semantics.md for the measurements).
const RUNTIME_WORKERS: usize = 1;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .thread_name("fsd")
        .build()
        .context("cannot start the async runtime")
}

fn connect_options(config: &NodeConfig) -> ConnectOptions {
    ConnectOptions {
        keepalive: Duration::from_secs(config.fsd.keepalive_secs),
    }
}

fn keygen(
    config: &NodeConfig,
    kind: KeyKind,
    bits: usize,
    rotate: bool,
) -> anyhow::Result<ExitCode> {
    let path = &config.file_server.private_key;
    let kind = match kind {
        KeyKind::Ed25519 => KeyType::Ed25519,
        KeyKind::Rsa => KeyType::Rsa { bits },
    };
    let comment = format!("mft-node-{}", config.node.id);
    let made = keys::generate(path, kind, &comment, rotate)?;
    println!(
        "wrote {} (mode 0600) and {}.pub",
        path.display(),
        path.display()
    );
    println!(
        "append this line to ~{}/.ssh/authorized_keys on {}:",
        config.file_server.user, config.file_server.host
    );
    println!("{}", made.authorized_key);
    if let Some(previous) = made.previous {
        println!(
            "the previous key is kept as {}.old; once fsd works with the new key, remove its line \
             from authorized_keys:",
            path.display()
        );
        println!("{previous}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `fsd check`: every check, against the server and the local mount.
fn check(config: &NodeConfig) -> anyhow::Result<ExitCode> {
    let server = &config.file_server;
    let mut results = vec![
        health::reachable(&server.host, server.port),
        health::listening(&server.host, server.port),
    ];
    let runtime = runtime()?;
    let connected = runtime.block_on(SshBackend::connect(server, connect_options(config)));
    let failure = connected
        .as_ref()
        .err()
        .map(|e| (e.failed_check(), e.to_string()));
    results.extend(health::key_checks(failure.as_ref()));
    match &connected {
        Ok(backend) => {
            let directory = backend.directory();
            results.push(runtime.block_on(health::directory(backend, directory)));
        }
        Err(e) if e.failed_check() == Check::Directory => {
            results.push(CheckResult::fail(Check::Directory, e.to_string()));
        }
        Err(_) => results.push(CheckResult::fail(
            Check::Directory,
            "not tested: no connection to the file server",
        )),
    }
    results.push(health::mounted(&server.mount_point));
    results.push(match &connected {
        Ok(backend) => {
            let stats = runtime.block_on(backend.statvfs(backend.directory()));
            health::free_space(stats, config.fsd.free_space_warn_percent)
        }
        Err(_) => CheckResult::fail(
            Check::FreeSpace,
            "not tested: no connection to the file server",
        ),
    });
    for result in &results {
        println!("{}", result.line());
    }
    drop(connected);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Tells systemd about a state change, if fsd runs under it.
fn notify_systemd(state: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        if let Err(e) = fsd::notify::notify(&socket.to_string_lossy(), state) {
            log::warn!("cannot tell systemd {state}: {e}");
        }
    }
}

fn serve(config: &NodeConfig) -> anyhow::Result<ExitCode> {
    let server = &config.file_server;
    let mount_point = &server.mount_point;
    let runtime = runtime()?;
    let backend = match runtime.block_on(SshBackend::connect(server, connect_options(config))) {
        Ok(backend) => backend,
        Err(e) => {
            // The alarm's line carries the reason: logging the error again would say it twice.
            Alarm::MftExtFsMountError.raise(&e);
            return Ok(ExitCode::FAILURE);
        }
    };
    let directory = backend.directory().to_owned();
    if fsd::fuse::detach_stale(mount_point)
        .with_context(|| format!("cannot detach the stale mount at {}", mount_point.display()))?
    {
        log::warn!(
            "detached the stale mount at {} left by an fsd that was killed",
            mount_point.display()
        );
    }
    std::fs::create_dir_all(mount_point)
        .with_context(|| format!("cannot create the mount point {}", mount_point.display()))?;
    let fs = Arc::new(Filesystem::new(backend, &directory));
    let mounted = fsd::fuse::mount(fs.clone(), runtime.handle().clone(), mount_point)
        .with_context(|| format!("cannot mount at {}", mount_point.display()))?;
    log::info!(
        "fsd mounted {}@{}:{} at {}",
        server.user,
        server.host,
        server.directory,
        mount_point.display()
    );
    // Before READY=1: a SIGTERM sent as soon as systemd hears it must find the handlers in
    // place, not the default action (which would kill fsd without unmounting).
    let (mut term, mut int) = {
        let _runtime = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    notify_systemd("READY=1");
    let mounted = Arc::new(mounted);
    let status = runtime.spawn(publish_status(fs, mounted.clone(), config.clone()));

    let stop = runtime.block_on(async {
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok::<_, std::io::Error>(Some("SIGTERM")),
                _ = int.recv() => return Ok(Some("SIGINT")),
                _ = check.tick() => if !mounted.is_serving() {
                    return Ok(None);
                },
            }
        }
    })?;
    match stop {
        Some(signal) => {
            notify_systemd("STOPPING=1");
            log::info!("{signal}: unmounting {}", mount_point.display());
            // The status task holds the other reference to the mount.
            status.abort();
            let _ = runtime.block_on(status);
            let mounted = Arc::into_inner(mounted).context("the mount is still in use")?;
            mounted.unmount(UNMOUNT_GRACE).context("cannot unmount")?;
            runtime.shutdown_timeout(Duration::from_secs(1));
            log::info!("fsd unmounted {}", mount_point.display());
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "the mount at {} went away without fsd unmounting it",
            mount_point.display()
        ),
    }
}

/// Keeps the alarms and the status file up to date: at every change of the connection and every
/// [`STATUS_INTERVAL`].
async fn publish_status(
    fs: Arc<Filesystem<SshBackend>>,
    mounted: Arc<fsd::fuse::Mounted>,
    config: NodeConfig,
) {
    let server = &config.file_server;
    let mut link = fs.backend().link();
    let mut alarms = AlarmLatch::default();
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    let mut store_failed = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = link.changed() => if changed.is_err() { return },
        }
        let now: Link = link.borrow_and_update().clone();
        let loss = (!now.connected).then(|| {
            now.problem
                .as_ref()
                .map_or_else(|| "not connected".to_owned(), |(_, why)| why.clone())
        });
        alarms.report(Alarm::MftExtFsMountError, loss);

        let (host, port) = (server.host.clone(), server.port);
        let probes = tokio::task::spawn_blocking(move || {
            (!now.connected).then(|| {
                [
                    health::reachable(&host, port),
                    health::listening(&host, port),
                ]
            })
        });
        let directory = health::directory(fs.backend(), fs.root()).await;
        let stats = fs.backend().statvfs(fs.root()).await;
        let free_space = health::free_space(stats.clone(), config.fsd.free_space_warn_percent);
        if stats.is_ok() {
            let low = (!free_space.ok).then(|| free_space.detail.clone());
            alarms.report(Alarm::MftExtFsFreeSpaceWarn, low);
        }
        let Ok(network) = probes.await else {
            continue;
        };
        let mount = health::serving(&server.mount_point, mounted.is_serving());
        let connected = link.borrow().connected;
        let network = network.unwrap_or_else(|| {
            [
                CheckResult::pass(Check::Reachable, "connected to the file server"),
                CheckResult::pass(Check::Listening, "the SSH connection is up"),
            ]
        });
        let problem = if connected {
            None
        } else {
            link.borrow().problem.clone()
        };
        let checks = network
            .into_iter()
            .chain(health::key_checks(problem.as_ref()))
            .chain([directory, mount, free_space])
            .collect();
        let traffic = fs.traffic();
        let status = FsdStatus {
            updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            mount_point: server.mount_point.display().to_string(),
            connected,
            checks,
            alarms: alarms.names(),
            counters: FileServerUse {
                bytes_read: traffic
                    .bytes_read
                    .load(std::sync::atomic::Ordering::Relaxed),
                bytes_written: traffic
                    .bytes_written
                    .load(std::sync::atomic::Ordering::Relaxed),
                ops: traffic.requests.load(std::sync::atomic::Ordering::Relaxed),
                reconnects: link.borrow().reconnects,
                open_handles: fs.open_files() as u64,
                sessions: fs.backend().sessions() as u64,
            },
        };
        match status.store(&config.fsd.status_file) {
            Ok(()) => store_failed = false,
            Err(e) if !store_failed => {
                store_failed = true;
                log::warn!("{e}");
            }
            Err(_) => {}
        }
    }
}
