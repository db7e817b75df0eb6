//! The node's alarms ([`Alarm`]) and the latch that raises each once per transition
//! ([`AlarmLatch`]), so that a condition seen on every tick is logged when it starts and when it
//! ends, never in between.
//!
//! Raising an alarm logs it at error or warning level with the field `ALARM=<name>`; clearing it
//! logs `ALARM_CLEARED=<name>`, so `journalctl ALARM=MftDbConnectError` lists every occurrence.

use std::collections::BTreeMap;
use std::fmt::Display;

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
            Alarm::MftExtFsMountError | Alarm::MftDbConnectError | Alarm::MftDbFullError => {
                log::Level::Error
            }
        }
    }

    /// Logs that the alarm is raised, with why.
    pub fn raise(self, reason: &dyn Display) {
        log::log!(target: "alarm", self.level(), alarm = self.name(); "{} raised: {reason}", self.name());
    }

    /// Logs that the condition is over.
    pub fn clear(self) {
        log::info!(target: "alarm", alarm_cleared = self.name(); "{} cleared", self.name());
    }
}

/// How an alarm changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raised,
    Cleared,
}

impl Transition {
    /// Logs this transition of `alarm` (`reason`: why it was raised; unused for a clearing).
    pub fn log(self, alarm: Alarm, reason: &dyn Display) {
        match self {
            Transition::Raised => alarm.raise(reason),
            Transition::Cleared => alarm.clear(),
        }
    }
}

/// Which alarms are raised. [`AlarmLatch::set`] answers a transition only when the state
/// changes: a raised alarm is not raised again, a clear one not cleared again.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlarmLatch {
    /// By name, so that [`AlarmLatch::active`] lists them in a stable order.
    raised: BTreeMap<&'static str, Alarm>,
}

impl AlarmLatch {
    /// Sets whether `alarm`'s condition holds; the transition, if this is one. Logs nothing:
    /// a caller holding a lock logs the transition after releasing it ([`Transition::log`]).
    pub fn set(&mut self, alarm: Alarm, condition: bool) -> Option<Transition> {
        match (condition, self.raised.contains_key(alarm.name())) {
            (true, false) => {
                self.raised.insert(alarm.name(), alarm);
                Some(Transition::Raised)
            }
            (false, true) => {
                self.raised.remove(alarm.name());
                Some(Transition::Cleared)
            }
            _ => None,
        }
    }

    /// Raises `alarm` with `problem`, or clears it with `None`, logging the transition if this
    /// is one (a raised alarm is not raised again, whatever the new reason).
    pub fn report(&mut self, alarm: Alarm, problem: Option<impl Display>) -> Option<Transition> {
        let transition = self.set(alarm, problem.is_some())?;
        match problem {
            Some(problem) => transition.log(alarm, &problem),
            None => transition.log(alarm, &""),
        }
        Some(transition)
    }

    pub fn is_raised(&self, alarm: Alarm) -> bool {
        self.raised.contains_key(alarm.name())
    }

    /// The raised alarms, by name.
    pub fn active(&self) -> Vec<Alarm> {
        self.raised.values().copied().collect()
    }

    /// The names of the raised alarms, in order.
    pub fn names(&self) -> Vec<String> {
        self.raised.keys().map(|name| (*name).to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_have_the_seeds_names_and_levels() {
        let names: Vec<_> = Alarm::SEED.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            [
                "MftExtFsMountError",
                "MftExtFsFreeSpaceWarn",
                "MftDbConnectError",
                "MftDbFullError"
            ]
        );
        assert_eq!(Alarm::MftAuditDriftWarn.level(), log::Level::Warn);
        assert_eq!(Alarm::MftExtFsFreeSpaceWarn.level(), log::Level::Warn);
        assert_eq!(Alarm::MftDbFullError.level(), log::Level::Error);
    }

    #[test]
    fn an_alarm_changes_once_per_transition() {
        let mut latch = AlarmLatch::default();
        let mount = Alarm::MftExtFsMountError;
        assert_eq!(latch.report(mount, None::<String>), None);
        assert_eq!(latch.report(mount, Some("lost")), Some(Transition::Raised));
        assert_eq!(latch.report(mount, Some("still lost".to_owned())), None);
        assert_eq!(latch.names(), ["MftExtFsMountError"]);
        assert_eq!(
            latch.report(Alarm::MftExtFsFreeSpaceWarn, Some("3%")),
            Some(Transition::Raised)
        );
        assert_eq!(
            latch.report(mount, None::<String>),
            Some(Transition::Cleared)
        );
        assert_eq!(latch.report(mount, None::<String>), None);
        assert_eq!(latch.names(), ["MftExtFsFreeSpaceWarn"]);
        assert!(!latch.is_raised(mount) && latch.is_raised(Alarm::MftExtFsFreeSpaceWarn));
    }

    #[test]
    fn raised_alarms_are_listed_by_name() {
        let mut latch = AlarmLatch::default();
        assert_eq!(
            latch.set(Alarm::MftDbFullError, true),
            Some(Transition::Raised)
        );
        assert_eq!(
            latch.set(Alarm::MftDbConnectError, true),
            Some(Transition::Raised)
        );
        assert_eq!(latch.set(Alarm::MftDbConnectError, true), None);
        assert_eq!(
            latch.active(),
            [Alarm::MftDbConnectError, Alarm::MftDbFullError]
        );
        assert_eq!(latch.names(), ["MftDbConnectError", "MftDbFullError"]);
        assert_eq!(
            latch.set(Alarm::MftDbConnectError, false),
            Some(Transition::Cleared)
        );
        assert_eq!(latch.set(Alarm::MftDbConnectError, false), None);
        assert_eq!(latch.active(), [Alarm::MftDbFullError]);
    }
}
