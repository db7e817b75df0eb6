//! Whether the node takes uploads now. While the file server or logd is known to be down, an
//! upload is refused with 503 before a byte of its body is read, instead of being received in
//! full and refused at the end.
//!
//! [`Admission`] keeps the verdict of the latest-started status report ([`Admission::observe`], called
//! by every [`crate::ops::Ops::status`]: the `/status` and `/readyz` endpoints, and httpd's
//! watcher every [`WATCH_INTERVAL`], or [`RECHECK_INTERVAL`] while uploads are refused). The verdict is narrower than `/readyz`: an alarm such as
//! low free space leaves uploads open; only what makes an upload fail for certain closes them.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use logd::{LogdError, CONNECTED};

use crate::error::Error;
use crate::node_status::{NodeStatus, UploadsReport};
use crate::store::StoreError;

/// How often httpd looks at the node when nobody asks for its status, while uploads are
/// admitted: about the longest an upload can be admitted (and then fail) after the file server
/// or logd went down.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// The same while uploads are refused: about the longest they stay refused once the file
/// server and logd are back.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What keeps uploads out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Down {
    /// The mount does not answer, or fsd has lost the file server.
    #[error("the file server: {0}")]
    FileServer(String),
    /// logd does not answer, or its database does not.
    #[error("logd: {0}")]
    Logd(String),
}

impl Down {
    /// Why a status report closes uploads, if it does.
    pub fn of(report: &NodeStatus) -> Option<Down> {
        if !report.mount.mounted {
            return Some(Down::FileServer(format!(
                "{} is not mounted",
                report.mount.path
            )));
        }
        if report.fsd.connected == Some(false) {
            return Some(Down::FileServer(
                "fsd is not connected to the file server".into(),
            ));
        }
        if !report.logd.reachable {
            let error = report.logd.error.as_deref().unwrap_or("no reply");
            return Some(Down::Logd(error.to_owned()));
        }
        report
            .logd
            .checks
            .iter()
            .find(|check| check.name == CONNECTED && !check.ok)
            .map(|check| Down::Logd(format!("logd cannot reach its database: {}", check.detail)))
    }
}

impl From<Down> for Error {
    fn from(down: Down) -> Self {
        match down {
            Down::FileServer(detail) => {
                Error::Store(StoreError::Unavailable(io::Error::other(detail)))
            }
            Down::Logd(detail) => Error::Audit(LogdError::Unavailable(detail)),
        }
    }
}

/// The latest verdict; open until a report says otherwise.
#[derive(Debug, Default)]
pub struct Admission {
    /// Handed to each report as it starts ([`Admission::turn`]).
    turns: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The turn of the report the verdict is from.
    turn: u64,
    down: Option<Down>,
}

/// When a report started, among all of them: reports end out of order (one waits on a hung
/// mount while a later one finds it mounted again), and only the latest-started counts.
#[derive(Debug, Clone, Copy)]
pub struct Turn(u64);

impl Admission {
    /// Taken by a report before it looks at the node.
    pub fn turn(&self) -> Turn {
        Turn(self.turns.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Takes the verdict of `report`, made in `turn`, unless a report started later was taken
    /// already; a change is logged.
    pub fn observe(&self, turn: Turn, report: &NodeStatus) {
        let verdict = Down::of(report);
        let mut state = self.lock();
        if turn.0 < state.turn {
            return;
        }
        state.turn = turn.0;
        if state.down != verdict {
            match &verdict {
                Some(why) => log::warn!("uploads refused until the node recovers: {why:?}"),
                None => log::info!("uploads admitted again: the file server and logd answer"),
            }
            state.down = verdict;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the admission lock is never poisoned")
    }

    /// How long to wait before the next look: [`WATCH_INTERVAL`] while admitting, else
    /// [`RECHECK_INTERVAL`].
    pub fn next_look(&self) -> Duration {
        if self.lock().down.is_some() {
            RECHECK_INTERVAL
        } else {
            WATCH_INTERVAL
        }
    }

    /// The verdict now, for a status report.
    pub fn report(&self) -> UploadsReport {
        let down = self.lock().down.clone();
        UploadsReport {
            admitted: down.is_none(),
            refused_because: down.map(|why| why.to_string()),
        }
    }

    /// `Ok` while uploads are admitted; else the error the upload is refused with.
    pub fn check(&self) -> Result<(), Error> {
        match self.lock().down.clone() {
            None => Ok(()),
            Some(down) => Err(down.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_status::tests::{fsd_status, healthy, logd_status};
    use crate::node_status::Observations;

    fn verdict(seen: Observations) -> Option<Down> {
        Down::of(&NodeStatus::assemble(seen))
    }

    fn logd_down() -> Observations {
        Observations {
            logd: Err(LogdError::Unavailable("connect: refused".into())),
            ..healthy()
        }
    }

    #[test]
    fn a_healthy_node_admits_uploads() {
        assert_eq!(verdict(healthy()), None);
    }

    #[test]
    fn an_unmounted_file_server_or_a_disconnected_fsd_closes_uploads() {
        let unmounted = verdict(Observations {
            mounted: false,
            ..healthy()
        });
        assert!(
            matches!(unmounted, Some(Down::FileServer(_))),
            "{unmounted:?}"
        );
        // fsd_status reports itself disconnected when it raises an alarm.
        let disconnected = verdict(Observations {
            fsd: Ok(fsd_status(
                "2025-03-01T11:59:55Z",
                &["MftExtFsConnectError"],
            )),
            ..healthy()
        });
        assert!(
            matches!(disconnected, Some(Down::FileServer(_))),
            "{disconnected:?}"
        );
    }

    #[test]
    fn an_unreachable_logd_or_its_database_closes_uploads() {
        assert_eq!(
            verdict(logd_down()),
            Some(Down::Logd("logd is unavailable: connect: refused".into()))
        );
        let mut status = logd_status(&[]);
        for check in &mut status.checks {
            if check.name == CONNECTED {
                check.ok = false;
                check.detail = "connection refused".into();
            }
        }
        let no_database = verdict(Observations {
            logd: Ok(status),
            ..healthy()
        });
        assert!(
            matches!(&no_database, Some(Down::Logd(why)) if why.contains("connection refused")),
            "{no_database:?}"
        );
    }

    #[test]
    fn an_alarm_alone_leaves_uploads_open() {
        let mut status = fsd_status("2025-03-01T11:59:55Z", &["MftExtFsFreeSpaceWarn"]);
        status.connected = true;
        assert_eq!(
            verdict(Observations {
                fsd: Ok(status),
                ..healthy()
            }),
            None
        );
    }

    #[test]
    fn the_verdict_follows_the_latest_report_and_maps_to_503() {
        let admission = Admission::default();
        assert!(admission.check().is_ok());
        assert_eq!(admission.next_look(), WATCH_INTERVAL);
        admission.observe(admission.turn(), &NodeStatus::assemble(logd_down()));
        assert_eq!(admission.next_look(), RECHECK_INTERVAL);
        let refused = admission.check().unwrap_err();
        assert_eq!(
            refused.status_and_code(),
            (
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable"
            )
        );
        admission.observe(admission.turn(), &NodeStatus::assemble(healthy()));
        assert!(admission.check().is_ok());
    }

    /// A report that started before the latest one taken, and ends after it, changes nothing;
    /// what the admission reports is its verdict, not the overtaken report's.
    #[test]
    fn a_report_overtaken_by_a_later_one_is_ignored() {
        let admission = Admission::default();
        let (slow, quick) = (admission.turn(), admission.turn());
        admission.observe(
            quick,
            &NodeStatus::assemble(Observations {
                mounted: false,
                ..healthy()
            }),
        );
        admission.observe(slow, &NodeStatus::assemble(healthy()));
        assert!(admission.check().is_err());
        let report = admission.report();
        assert!(!report.admitted);
        assert!(report.refused_because.is_some_and(
            |why| why.starts_with("the file server: ") && why.ends_with("is not mounted")
        ));
        admission.observe(admission.turn(), &NodeStatus::assemble(healthy()));
        assert_eq!(
            admission.report(),
            UploadsReport {
                admitted: true,
                refused_because: None
            }
        );
    }
}
