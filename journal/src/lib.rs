//! The operations pieces shared by the node's daemons (fsd, logd, httpd): logging, alarms,
//! troubleshooting checks, the reachability probe and durable file writes. Each is plain code
//! with no daemon's types in it.
//!
//! - [`init`] installs one `log` backend for the whole process: under systemd (`$JOURNAL_STREAM`
//!   names our stderr) native journal entries, where each key-value pair of a record becomes a
//!   journal field (`jid = …` → `JID=`); otherwise one readable line per record on stderr, with
//!   the pairs appended as `key=value`. Code logs through the `log` macros only and never knows
//!   which.
//! - [`alarm`]: the conditions an operator is paged for ([`Alarm`]), and the latch that raises and
//!   clears each once per transition ([`AlarmLatch`]).
//! - [`check`]: a troubleshooting test's outcome ([`CheckResult`]) and its `PASS`/`FAIL` line.
//! - [`probe`]: the TCP reachability probe of the `reachable` checks.
//! - [`durable`]: replacing a file atomically and durably (temporary file, fsync, rename, fsync
//!   of the directory).

pub mod alarm;
pub mod check;
pub mod durable;
pub mod probe;

pub use alarm::{Alarm, AlarmLatch, Transition};
pub use check::CheckResult;

use std::fmt::Write as _;
use std::io::Write as _;

use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Record};
use mft_config::LogLevel;

/// Where [`init`] sent the process's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Journal,
    Stderr,
}

/// Installs the process's logger at `level`. Call once, first thing in `main` after the
/// configuration is loaded (errors before that go to stderr as plain messages).
pub fn init(program: &str, level: LogLevel) -> Output {
    let filter = level_filter(level);
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = systemd_journal_logger::JournalLog::new() {
            let journal = journal.with_syslog_identifier(program.to_owned());
            if journal.install().is_ok() {
                log::set_max_level(filter);
                return Output::Journal;
            }
        }
    }
    let program = program.to_owned();
    let _ = env_logger::Builder::new()
        .filter_level(filter)
        .format(move |out, record| writeln!(out, "{}", line(&program, record)))
        .try_init();
    Output::Stderr
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// One stderr line: UTC time, level, program, message, then the record's `key=value` pairs
/// (values with spaces or quotes are quoted).
pub fn line(program: &str, record: &Record) -> String {
    struct Pairs(String);
    impl<'kvs> VisitSource<'kvs> for Pairs {
        fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
            let value = value.to_string();
            if value.is_empty() || value.contains([' ', '"', '=']) {
                let _ = write!(self.0, " {key}={value:?}");
            } else {
                let _ = write!(self.0, " {key}={value}");
            }
            Ok(())
        }
    }
    let mut pairs = Pairs(String::new());
    let _ = record.key_values().visit(&mut pairs);
    format!(
        "{} {:<5} {program}: {}{}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        record.level(),
        record.args(),
        pairs.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_carry_the_structured_fields() {
        let pairs: [(&str, Value); 3] = [
            ("jid", Value::from("alice@example.com")),
            ("real_name", Value::from("my report.pdf")),
            ("bytes", Value::from(1024u64)),
        ];
        let text = line(
            "httpd",
            &Record::builder()
                .level(log::Level::Info)
                .args(format_args!("upload stored"))
                .key_values(&pairs)
                .build(),
        );
        assert!(
            text.ends_with(" INFO  httpd: upload stored jid=alice@example.com real_name=\"my report.pdf\" bytes=1024"),
            "{text}"
        );
        assert!(
            text.starts_with("20") && text.as_bytes()[10] == b'T',
            "{text}"
        );
    }

    #[test]
    fn log_levels_map_one_to_one() {
        assert_eq!(level_filter(LogLevel::Error), LevelFilter::Error);
        assert_eq!(level_filter(LogLevel::Trace), LevelFilter::Trace);
        assert_eq!(level_filter(LogLevel::Info), LevelFilter::Info);
    }
}
