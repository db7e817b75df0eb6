//! `logd --config PATH`: the node's audit writer daemon. Reads the node configuration, opens
//! and verifies the `aft_log` database, serves the socket until SIGTERM or SIGINT.

use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

/// Records the node's transfers in the aft_log database for httpd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node configuration file.
    #[arg(long, value_name = "PATH", default_value = "/etc/mft/node.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run(Args::parse()).await {
        // Every error message here already includes its cause.
        log::error!("{e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = mft_config::NodeConfig::load(&args.config)?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot watch SIGTERM: {e}"))?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
        }
    };
    logd::server::run(&config.database, &config.logd, shutdown).await?;
    Ok(())
}
