//! The node's status report (`/status`, `/readyz`), assembled from what was observed: fsd's
//! status file, logd's `status` reply, httpd's own look at the mount, and the counters.
//!
//! [`NodeStatus::assemble`] is pure: [`crate::ops`] does the observing (with timeouts) and hands
//! the results over, so every outcome (fsd not running or stale, logd unreachable, the mount
//! missing) is testable without running anything.

use std::collections::BTreeSet;
use std::io;

use chrono::{DateTime, Utc};
use fsd::status::{CheckResult, FsdStatus, StatusError};
use logd::{LogdError, LogdStatus};
use mft_config::TransferMode;
use mft_journal::Alarm;
use serde::Serialize;

use crate::metrics::TransferCounts;

/// fsd rewrites its status file at least every 10 s; older than this, it is reported stale.
pub const FSD_STALE_AFTER_SECS: i64 = 30;

/// Everything the report is made from.
pub struct Observations {
    pub node_id: String,
    pub transfer_mode: TransferMode,
    /// `file_server.mount_point`.
    pub mount_point: String,
    /// Whether the mount point is mounted as it should be (a FUSE mount, answering).
    pub mounted: bool,
    pub fsd: Result<FsdStatus, StatusError>,
    pub logd: Result<LogdStatus, LogdError>,
    pub counters: TransferCounts,
    pub now: DateTime<Utc>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Whether the node can carry managed transfers now: managed mode, the file server mounted,
    /// fsd running with its seven checks passing, logd reachable with its three checks passing,
    /// and no alarm raised.
    pub ok: bool,
    pub node_id: String,
    pub transfer_mode: &'static str,
    /// When this report was made, RFC 3339 UTC.
    pub generated_at: String,
    pub mount: MountReport,
    pub fsd: FsdReport,
    pub logd: LogdReport,
    /// The alarms raised now: fsd's (while it runs), logd's, and `MftExtFsMountError` when httpd
    /// finds the mount point not mounted.
    pub alarms: Vec<String>,
    pub counters: TransferCounts,
    /// Whether uploads are admitted after this report ([`crate::ops::Ops::status`] sets it).
    pub uploads: UploadsReport,
}

/// Whether uploads are admitted, as `/status` reports it: the admission's verdict after the
/// report (see [`crate::admission::Admission::observe`]: a report started later may overrule
/// this one's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UploadsReport {
    pub admitted: bool,
    /// Why not, while they are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_because: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MountReport {
    pub path: String,
    pub mounted: bool,
}

/// What fsd's status file says, and whether it can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsdState {
    /// The file is fresh.
    Running,
    /// The file is older than [`FSD_STALE_AFTER_SECS`]: fsd stopped or hangs.
    Stale,
    /// There is no status file.
    NotRunning,
    /// The file cannot be read or is not a status document.
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsdReport {
    pub state: FsdState,
    /// Why, in words.
    pub detail: String,
    /// When fsd last wrote its status, if it ever did.
    pub updated_at: Option<String>,
    /// Whether fsd was connected to the file server (as of `updated_at`).
    pub connected: Option<bool>,
    /// The seed's seven file-server tests, as of `updated_at`.
    pub checks: Vec<CheckResult>,
    pub counters: Option<fsd::status::FileServerUse>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogdReport {
    pub reachable: bool,
    /// Why logd could not answer, when it could not.
    pub error: Option<String>,
    /// The seed's three database tests, measured when asked.
    pub checks: Vec<logd::Check>,
    pub counters: Option<logd::LogdCounters>,
}

impl NodeStatus {
    pub fn assemble(seen: Observations) -> Self {
        let mut alarms = BTreeSet::new();
        if !seen.mounted {
            alarms.insert(Alarm::MftExtFsMountError.name().to_owned());
        }
        let (fsd, fsd_healthy) = match seen.fsd {
            Ok(status) => {
                let (state, detail) = freshness(&status.updated_at, seen.now);
                if state == FsdState::Running {
                    alarms.extend(status.alarms.iter().cloned());
                }
                let healthy = state == FsdState::Running && status.healthy();
                let report = FsdReport {
                    state,
                    detail,
                    updated_at: Some(status.updated_at),
                    connected: Some(status.connected),
                    checks: status.checks,
                    counters: Some(status.counters),
                };
                (report, healthy)
            }
            Err(e) => {
                let state = match &e {
                    StatusError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                        FsdState::NotRunning
                    }
                    _ => FsdState::Unreadable,
                };
                let report = FsdReport {
                    state,
                    detail: e.to_string(),
                    updated_at: None,
                    connected: None,
                    checks: Vec::new(),
                    counters: None,
                };
                (report, false)
            }
        };
        let (logd, logd_healthy) = match seen.logd {
            Ok(status) => {
                alarms.extend(status.alarms.iter().cloned());
                let healthy = status.healthy();
                let report = LogdReport {
                    reachable: true,
                    error: None,
                    checks: status.checks,
                    counters: Some(status.counters),
                };
                (report, healthy)
            }
            Err(e) => {
                let report = LogdReport {
                    reachable: false,
                    error: Some(e.to_string()),
                    checks: Vec::new(),
                    counters: None,
                };
                (report, false)
            }
        };
        Self {
            ok: seen.transfer_mode.is_managed()
                && seen.mounted
                && fsd_healthy
                && logd_healthy
                && alarms.is_empty(),
            node_id: seen.node_id,
            transfer_mode: seen.transfer_mode.as_str(),
            generated_at: seen.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            mount: MountReport {
                path: seen.mount_point,
                mounted: seen.mounted,
            },
            fsd,
            logd,
            alarms: alarms.into_iter().collect(),
            counters: seen.counters,
            uploads: UploadsReport::default(),
        }
    }
}

/// Whether a status written at `updated_at` (RFC 3339) is fresh at `now`, and why.
fn freshness(updated_at: &str, now: DateTime<Utc>) -> (FsdState, String) {
    match DateTime::parse_from_rfc3339(updated_at) {
        Err(e) => (
            FsdState::Unreadable,
            format!("updated_at {updated_at:?} is not a time: {e}"),
        ),
        Ok(updated) => {
            let age = (now - updated.with_timezone(&Utc)).num_seconds();
            if age > FSD_STALE_AFTER_SECS {
                let detail =
                    format!("fsd has not updated its status for {age} s: it is stopped or hung");
                (FsdState::Stale, detail)
            } else {
                (FsdState::Running, format!("updated {} s ago", age.max(0)))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use fsd::status::Check;

    use super::*;

    pub(crate) fn now() -> DateTime<Utc> {
        "2025-03-01T12:00:00Z".parse().unwrap()
    }

    pub(crate) fn fsd_status(updated_at: &str, alarms: &[&str]) -> FsdStatus {
        FsdStatus {
            updated_at: updated_at.into(),
            mount_point: "/var/lib/mft/store".into(),
            connected: alarms.is_empty(),
            checks: Check::ALL
                .iter()
                .map(|&c| CheckResult::pass(c, "fine"))
                .collect(),
            alarms: alarms.iter().map(|a| a.to_string()).collect(),
            counters: fsd::status::FileServerUse::default(),
        }
    }

    pub(crate) fn logd_status(alarms: &[&str]) -> LogdStatus {
        LogdStatus {
            checks: [logd::REACHABLE, logd::CONNECTED, logd::SCHEMA_VERIFIED]
                .iter()
                .map(|n| logd::Check {
                    name: n.to_string(),
                    ok: true,
                    detail: "fine".into(),
                })
                .collect(),
            alarms: alarms.iter().map(|a| a.to_string()).collect(),
            counters: logd::LogdCounters::default(),
        }
    }

    pub(crate) fn healthy() -> Observations {
        Observations {
            node_id: "node_1".into(),
            transfer_mode: TransferMode::Managed,
            mount_point: "/var/lib/mft/store".into(),
            mounted: true,
            fsd: Ok(fsd_status("2025-03-01T11:59:55Z", &[])),
            logd: Ok(logd_status(&[])),
            counters: TransferCounts::default(),
            now: now(),
        }
    }

    #[test]
    fn a_healthy_node_is_ok_with_every_check() {
        let status = NodeStatus::assemble(healthy());
        assert!(status.ok);
        assert_eq!(status.fsd.state, FsdState::Running);
        assert_eq!(status.fsd.checks.len(), 7);
        assert_eq!(status.logd.checks.len(), 3);
        assert!(status.alarms.is_empty());
        assert_eq!(
            (status.transfer_mode, status.generated_at.as_str()),
            ("managed", "2025-03-01T12:00:00Z")
        );
    }

    #[test]
    fn alarms_are_the_union_of_fsd_logd_and_the_mount() {
        let status = NodeStatus::assemble(Observations {
            mounted: false,
            fsd: Ok(fsd_status(
                "2025-03-01T11:59:55Z",
                &["MftExtFsFreeSpaceWarn", "MftExtFsMountError"],
            )),
            logd: Ok(logd_status(&["MftDbConnectError"])),
            ..healthy()
        });
        assert!(!status.ok);
        assert_eq!(
            status.alarms,
            [
                "MftDbConnectError",
                "MftExtFsFreeSpaceWarn",
                "MftExtFsMountError"
            ]
        );
    }

    #[test]
    fn a_stale_missing_or_broken_fsd_status_is_reported_not_believed() {
        let stale = NodeStatus::assemble(Observations {
            fsd: Ok(fsd_status(
                "2025-03-01T11:59:00Z",
                &["MftExtFsFreeSpaceWarn"],
            )),
            ..healthy()
        });
        assert_eq!(stale.fsd.state, FsdState::Stale);
        assert!(stale.fsd.detail.contains("60 s"), "{}", stale.fsd.detail);
        assert!(
            stale.alarms.is_empty(),
            "a stale file's alarms are not current"
        );
        assert!(!stale.ok);

        let missing = io::Error::from(io::ErrorKind::NotFound);
        let absent = NodeStatus::assemble(Observations {
            fsd: Err(StatusError::Io {
                path: "/run/mft/fsd-status.json".into(),
                source: missing,
            }),
            ..healthy()
        });
        assert_eq!(absent.fsd.state, FsdState::NotRunning);
        assert!(absent.fsd.detail.contains("/run/mft/fsd-status.json"));
        assert!(!absent.ok);

        let garbled = NodeStatus::assemble(Observations {
            fsd: Ok(fsd_status("yesterday", &[])),
            ..healthy()
        });
        assert_eq!(garbled.fsd.state, FsdState::Unreadable);
    }

    #[test]
    fn an_unreachable_logd_or_a_failed_check_is_not_ok() {
        let unreachable = NodeStatus::assemble(Observations {
            logd: Err(LogdError::Unavailable("no reply within 2s".into())),
            ..healthy()
        });
        assert!(!unreachable.logd.reachable && !unreachable.ok);
        assert_eq!(
            unreachable.logd.error.as_deref(),
            Some("logd is unavailable: no reply within 2s")
        );

        let mut failing = fsd_status("2025-03-01T11:59:55Z", &[]);
        failing.checks[6] = CheckResult::fail(Check::FreeSpace, "1% available");
        assert!(
            !NodeStatus::assemble(Observations {
                fsd: Ok(failing),
                ..healthy()
            })
            .ok
        );
    }

    #[test]
    fn a_node_not_in_a_managed_mode_is_not_ok() {
        let status = NodeStatus::assemble(Observations {
            transfer_mode: TransferMode::PeerToPeer,
            ..healthy()
        });
        assert_eq!(status.transfer_mode, "peer-to-peer");
        assert!(!status.ok);
    }
}
