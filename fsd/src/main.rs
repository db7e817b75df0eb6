//! `fsd --config PATH`: connects to the file server, mounts the node directory, and serves it
//! until SIGTERM or SIGINT, then unmounts and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use fsd::backend::ssh::SshBackend;
use fsd::fs::Filesystem;
use mft_config::NodeConfig;
use tokio::signal::unix::{signal, SignalKind};

/// How long a stop waits for files still open on the detached mount.
const UNMOUNT_GRACE: Duration = Duration::from_secs(10);

/// Mounts the node's directory on the file server through SSH/SFTP and FUSE.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The node configuration file.
    #[arg(long, default_value = "/etc/mft/node.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = NodeConfig::load(&args.config)?;
    let server = config.file_server;
    let mount_point = &server.mount_point;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fsd")
        .build()
        .context("cannot start the async runtime")?;

    let backend = runtime.block_on(SshBackend::connect(&server))?;
    let directory = backend.directory().to_owned();
    std::fs::create_dir_all(mount_point)
        .with_context(|| format!("cannot create the mount point {}", mount_point.display()))?;
    let fs = Arc::new(Filesystem::new(backend, &directory));
    let mounted = fsd::fuse::mount(fs, runtime.handle().clone(), mount_point)
        .with_context(|| format!("cannot mount at {}", mount_point.display()))?;
    log::info!(
        "fsd mounted {}@{}:{} at {}",
        server.user,
        server.host,
        server.directory,
        mount_point.display()
    );

    let stop = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
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
            log::info!("{signal}: unmounting {}", mount_point.display());
            mounted.unmount(UNMOUNT_GRACE).context("cannot unmount")?;
            runtime.shutdown_timeout(Duration::from_secs(1));
            log::info!("fsd unmounted {}", mount_point.display());
            Ok(())
        }
        None => bail!(
            "the mount at {} went away without fsd unmounting it",
            mount_point.display()
        ),
    }
}
