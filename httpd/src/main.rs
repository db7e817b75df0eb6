//! `httpd`: runs the node's HTTP front, or prints a token for testing and operations.
//!
//! - `httpd [--config PATH]` serves on `http.listen` until SIGTERM or SIGINT; SIGHUP re-reads
//!   the token and slot secrets and the TLS certificate and key ([`httpd::reload`]).
//! - `httpd token upload --from A --to B --chat-type im [--max-size BYTES] [--ttl-secs N]` prints an
//!   upload token.
//! - `httpd token download --as B [--ttl-secs N]` prints a download token.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{ensure, Context};
use chrono::{Duration, Utc};
use clap::{Parser, Subcommand};
use httpd::auth::{is_valid_jid, Credentials, DownloadGrant, UploadGrant};
use httpd::layout::ChatType;
use httpd::metrics;
use httpd::ops::{self, Ops};
use httpd::store::Mount;
use httpd::{SystemClock, TransferService};
use mft_config::NodeConfig;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The MFT node's HTTP front: uploads, downloads, tokens"
)]
struct Cli {
    /// The node configuration file.
    #[arg(long, global = true, default_value = "/etc/mft/node.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints a bearer token signed with the first of http.token_secrets.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// A token that lets --from upload a file for --to.
    Upload {
        /// The sender's JID.
        #[arg(long)]
        from: String,
        /// The recipient's JID or the room.
        #[arg(long)]
        to: String,
        /// im, groupchat or persistent.
        #[arg(long)]
        chat_type: ChatType,
        /// The largest file the token allows, in bytes (the node's limit applies too).
        #[arg(long)]
        max_size: Option<u64>,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u32,
    },
    /// A token that lets --as download files.
    Download {
        /// The downloader's JID.
        #[arg(long = "as")]
        downloader: String,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = NodeConfig::load(&cli.config)?;
    mft_journal::init("httpd", config.log.level);
    match cli.command {
        Some(Command::Token(command)) => {
            println!(
                "{}",
                token(&Credentials::new(&config.http.token_secrets), command)?
            );
            Ok(())
        }
        None => {
            allow_a_descriptor_per_client();
            actix_web::rt::System::new().block_on(serve(config, cli.config))
        }
    }
}

/// Raises the soft limit of open files to the hard one: each client connection holds a
/// descriptor, and systemd's default soft limit (1,024) is low only for programs that use
/// select(2), which httpd does not (its default hard limit is 524,288). Failing is logged.
fn allow_a_descriptor_per_client() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let raised = getrlimit(Resource::RLIMIT_NOFILE)
        .and_then(|(_, hard)| setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map(|()| hard));
    match raised {
        Ok(limit) => log::info!("up to {limit} open files (client connections)"),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
}

fn token(credentials: &Credentials, command: TokenCommand) -> anyhow::Result<String> {
    let expires = |ttl_secs| Utc::now() + Duration::seconds(i64::from(ttl_secs));
    let check = |jid: &str| {
        ensure!(
            is_valid_jid(jid),
            "{jid:?} is not a JID (local@domain or domain)"
        );
        Ok(())
    };
    Ok(match command {
        TokenCommand::Upload {
            from,
            to,
            chat_type,
            max_size,
            ttl_secs,
        } => {
            check(&from)?;
            check(&to)?;
            credentials.issue_upload(
                &UploadGrant {
                    from,
                    to,
                    chat_type,
                    max_size,
                },
                expires(ttl_secs),
            )
        }
        TokenCommand::Download {
            downloader,
            ttl_secs,
        } => {
            check(&downloader)?;
            credentials.issue_download(&DownloadGrant { downloader }, expires(ttl_secs))
        }
    })
}

async fn serve(config: NodeConfig, config_file: PathBuf) -> anyhow::Result<()> {
    let addr = config.http.listen;
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (http.listen)"))?;
    let audit = Arc::new(logd::LogdClient::new(config.logd.socket.clone()));
    let probe = Arc::new(
        logd::LogdClient::new(config.logd.socket.clone()).with_timeout(ops::PROBE_TIMEOUT),
    );
    let transfers = Arc::new(TransferService::new(
        config.clone(),
        Mount::Fuse,
        audit,
        Arc::new(SystemClock),
    ));
    let admission = transfers.admission().clone();
    let ops = Arc::new(Ops::new(
        &config,
        Mount::Fuse,
        probe,
        metrics::TRANSFER_COUNTERS.clone(),
        admission.clone(),
    ));
    // Looks at the node between status requests, so that uploads are refused soon after the
    // file server or logd goes down, and admitted again when it is back.
    let watcher = ops.clone();
    actix_web::rt::spawn(async move {
        loop {
            watcher.status().await;
            actix_web::rt::time::sleep(admission.next_look()).await;
        }
    });
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // SIGHUP (systemctl reload): re-read the secrets and the certificate, keep serving.
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let secrets = transfers.secrets().clone();
    actix_web::rt::spawn(async move {
        while hangup.recv().await.is_some() {
            secrets.reload_logged(&config_file);
        }
    });
    println!("httpd listening on {}", listener.local_addr()?);
    httpd::run(listener, transfers, ops, async move {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM received"),
            _ = interrupt.recv() => log::info!("SIGINT received"),
        }
    })
    .await
    .context("the HTTP server failed")
}
