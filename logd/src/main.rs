//! `logd`: the node's audit writer.
//! - `logd [--config PATH]` reads the node configuration, opens and verifies the `aft_log`
//!   database, serves the socket until SIGTERM or SIGINT;
//! - `logd check` runs the seed's database tests against the configured database;
//! - `logd purge` purges rows (and files) as `logd::purge` describes;
//! - `logd reconcile` compares the file server with `aft_log` as `logd::reconcile` describes.
//!
//! Only argument parsing and output live here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};

/// Records the node's transfers in the aft_log database for httpd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node configuration file.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/mft/node.toml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the database tests (reachable, connected, schema verified) directly against the
    /// configured database, one line each; exits 1 if any fails.
    Check,
    /// Purges aft_log rows (and, with --delete-files, the uploaded files): lists what would go
    /// unless --execute. Nothing of the current UTC hour is ever touched.
    Purge(PurgeArgs),
    /// Compares the node's files (through the mount) with aft_log: partial uploads, files
    /// without a Post row, Post rows without their file or with another size (or SHA-256, with
    /// --verify-content), slot records without their file. Reports unless --execute; raises
    /// MftAuditDriftWarn when it finds drift, and exits 1 while drift remains.
    Reconcile(ReconcileArgs),
}

#[derive(Debug, clap::Args)]
struct ReconcileArgs {
    /// Repair: remove the orphaned files and records, mark the rows (aft_log.drift).
    #[arg(long)]
    execute: bool,
    /// Also re-read every file with a recorded SHA-256 and compare.
    #[arg(long)]
    verify_content: bool,
    /// Never remove what was modified less than MINUTES ago (nor anything of the current UTC
    /// hour): an upload may still be in flight.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    grace_minutes: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Reconcile as if it were this time (RFC 3339): for tests, whose files are all of the
    /// current hour. Never use it on a node that is serving.
    #[arg(long, hide = true)]
    now: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, clap::Args)]
struct PurgeArgs {
    /// Only uploads (post) or downloads (get).
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Only rows whose jid starts with PATTERN, e.g. alice@example.com.
    #[arg(long, value_name = "PATTERN")]
    jid: Option<String>,
    /// Only rows of this chat type.
    #[arg(long, value_parser = ["im", "groupchat", "persistent"])]
    chat_type: Option<String>,
    /// Only rows older than TIME (UTC, "YYYY-MM-DD HH:MM:SS" or RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = logd::purge::parse_time)]
    before: Option<chrono::NaiveDateTime>,
    /// Only rows newer than TIME (UTC, "YYYY-MM-DD HH:MM:SS" or RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = logd::purge::parse_time)]
    after: Option<chrono::NaiveDateTime>,
    /// Every row (older than the current UTC hour) when no other selector is given.
    #[arg(long)]
    all: bool,
    /// Delete; without it, only list what would be deleted.
    #[arg(long)]
    execute: bool,
    /// Also delete the files of the purged Post rows, through the mount (file_server.mount_point).
    #[arg(long)]
    delete_files: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Method {
    Post,
    Get,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match mft_config::NodeConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("logd: {e}");
            return ExitCode::FAILURE;
        }
    };
    mft_journal::init("logd", config.log.level);
    let outcome = match args.command {
        None => serve(&config),
        Some(Command::Check) => Ok(check(&config)),
        Some(Command::Purge(purge_args)) => purge(&config, purge_args),
        Some(Command::Reconcile(reconcile_args)) => reconcile(&config, reconcile_args),
    };
    outcome.unwrap_or_else(|e| {
        // Every error message here already includes its cause.
        log::error!("{e:#}");
        ExitCode::FAILURE
    })
}

fn serve(config: &mft_config::NodeConfig) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => log::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
            }
        };
        match logd::server::run(&config.database, &config.logd, shutdown).await {
            Err(logd::server::ServerError::Database(e @ logd::db::DbError::Connect { .. })) => {
                mft_journal::Alarm::MftDbConnectError.raise(&e);
                Ok(ExitCode::FAILURE)
            }
            other => other.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        }
    })
}

fn check(config: &mft_config::NodeConfig) -> ExitCode {
    let checks = logd::checks::run_direct(&config.database);
    for check in &checks {
        println!("{}", check.line());
    }
    match checks.iter().all(|c| c.ok) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn purge(config: &mft_config::NodeConfig, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let selection = logd::purge::Selection {
        method: args.method.map(|m| {
            match m {
                Method::Post => "Post",
                Method::Get => "Get",
            }
            .to_owned()
        }),
        jid_prefix: args.jid,
        chat_type: args.chat_type,
        before: args.before,
        after: args.after,
        all: args.all,
    };
    let mount = args
        .delete_files
        .then(|| logd::mount::Mount::of(&config.file_server));
    // Pages are printed as they are done, so any number of rows takes constant memory. The
    // JSON form is one object: the pages' lists under "pages", then the totals.
    let mut pages = 0usize;
    if args.json {
        print!("{{\"pages\":[");
    }
    let outcome = logd::purge::run_pages(
        &config.database,
        &selection,
        mount.as_ref(),
        args.execute,
        chrono::Utc::now(),
        logd::purge::PAGE_ROWS,
        |page| {
            if args.json {
                let separator = if pages == 0 { "" } else { "," };
                let page = serde_json::to_string(&page).expect("a page always serializes");
                print!("{separator}{page}");
            } else {
                print!("{}", page.text(args.execute));
            }
            pages += 1;
        },
    )?;
    if args.json {
        let outcome = serde_json::to_string(&outcome)?;
        println!("],{}", &outcome[1..]);
    } else {
        print!("{}", outcome.text());
    }
    Ok(ExitCode::SUCCESS)
}

fn reconcile(config: &mft_config::NodeConfig, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let options = logd::reconcile::Options {
        execute: args.execute,
        verify_content: args.verify_content,
        grace: chrono::Duration::minutes(args.grace_minutes.into()),
    };
    let mount = logd::mount::Mount::of(&config.file_server);
    let now = args.now.unwrap_or_else(chrono::Utc::now);
    let report = logd::reconcile::run(&config.database, &mount, &options, now)?;
    match args.json {
        true => println!("{}", serde_json::to_string(&report)?),
        false => print!("{}", report.text()),
    }
    let summary = &report.summary;
    if summary.drift > 0 {
        let next = if summary.remaining == 0 {
            "see the report"
        } else if args.execute {
            "see the report for what could not be repaired"
        } else {
            "run logd reconcile --execute"
        };
        let text = format!("{} disagreements between the file server and aft_log found, {} repaired, {} remain; {next}", summary.drift, summary.repaired, summary.remaining);
        mft_journal::Alarm::MftAuditDriftWarn.raise(&text);
    }
    Ok(if summary.remaining == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
