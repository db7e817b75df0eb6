//! Logging for the node's daemons, and the seed's alarms.
//!
//! [`init`] installs one `log` backend for the whole process: under systemd (`$JOURNAL_STREAM`
//! names our stderr) native journal entries, where each key-value pair of a record becomes a
//! journal field (`jid = …` → `JID=`); otherwise one readable line per record on stderr, with the
//! pairs appended as `key=value`. Code logs through the `log` macros only and never knows which.
//!
//! [`Alarm`] names the conditions an operator is paged for. Raising one logs it at error or
//! warning level with the field `ALARM=<name>`; clearing it logs `ALARM_CLEARED=<name>`, so
//! `journalctl ALARM=MftDbConnectError` lists every occurrence.

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

/// The node's alarms, by their stable names: the seed's four, which the daemons latch (raised
/// once, cleared once) and export, and the reconcile command's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alarm {
    /// fsd lost (or cannot reach) the file server.
    MftExtFsMountError,
    /// Free space on the file server fell under the configured threshold.
    MftExtFsFreeSpaceWarn,
    /// logd cannot reach the database.
    MftDbConnectError,
    /// The database's disk or tablespace is full.
    MftDbFullError,
    /// `logd reconcile` found the file server and `aft_log` disagreeing: raised by each run that
    /// leaves drift, never latched or exported (no daemon holds it).
    MftAuditDriftWarn,
}

impl Alarm {
    /// The seed's alarms, which the daemons latch and `/metrics` exports.
    pub const SEED: [Alarm; 4] = [
        Alarm::MftExtFsMountError,
        Alarm::MftExtFsFreeSpaceWarn,
        Alarm::MftDbConnectError,
        Alarm::MftDbFullError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Alarm::MftExtFsMountError => "MftExtFsMountError",
            Alarm::MftExtFsFreeSpaceWarn => "MftExtFsFreeSpaceWarn",
            Alarm::MftDbConnectError => "MftDbConnectError",
            Alarm::MftDbFullError => "MftDbFullError",
            Alarm::MftAuditDriftWarn => "MftAuditDriftWarn",
        }
    }

    fn level(self) -> log::Level {
        match self {
            Alarm::MftExtFsFreeSpaceWarn | Alarm::MftAuditDriftWarn => log::Level::Warn,
            Alarm::MftExtFsMountError | Alarm::MftDbConnectError | Alarm::MftDbFullError => log::Level::Error,
        }
    }

    /// Logs that the alarm is raised, with why.
    pub fn raise(self, reason: &dyn std::fmt::Display) {
        log::log!(target: "alarm", self.level(), alarm = self.name(); "{} raised: {reason}", self.name());
    }

    /// Logs that the condition is over.
    pub fn clear(self) {
        log::info!(target: "alarm", alarm_cleared = self.name(); "{} cleared", self.name());
    }
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
        assert!(text.starts_with("20") && text.as_bytes()[10] == b'T', "{text}");
    }

    #[test]
    fn alarms_have_the_seeds_names_and_levels() {
        let names: Vec<_> = Alarm::SEED.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["MftExtFsMountError", "MftExtFsFreeSpaceWarn", "MftDbConnectError", "MftDbFullError"]);
        assert_eq!(Alarm::MftAuditDriftWarn.level(), log::Level::Warn);
        assert_eq!(Alarm::MftExtFsFreeSpaceWarn.level(), log::Level::Warn);
        assert_eq!(Alarm::MftDbFullError.level(), log::Level::Error);
    }

    #[test]
    fn log_levels_map_one_to_one() {
        assert_eq!(level_filter(LogLevel::Error), LevelFilter::Error);
        assert_eq!(level_filter(LogLevel::Trace), LevelFilter::Trace);
        assert_eq!(level_filter(LogLevel::Info), LevelFilter::Info);
    }
}
