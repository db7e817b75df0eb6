//! What logd knows about its own health: which database alarms are raised and its counters.
//! The writer reports every transaction and probe here; the `status` request reads it.
//!
//! [`AlarmBoard`] is the alarm policy (which observation raises or clears which alarm) over
//! `mft_journal`'s latch (raise once on the transition, clear on recovery), and [`tally`] the
//! counting rule; [`Monitor`] only puts them behind a lock and logs the board's transitions.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::Instant;

use mft_journal::{Alarm, AlarmLatch, Transition};

use crate::row::{Invalid, Method};
use crate::status::LogdCounters;
use crate::store::{Command, CommitError, Done};

/// What one attempt to use the database showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observation {
    /// A transaction committed: the database is reachable and has room.
    Committed,
    /// The database answered (a probe, or a statement it refused): reachable, room unknown.
    Reached,
    /// No connection could be used.
    Unreachable,
    /// The database answered that its disk or tablespace is full.
    Full,
}

impl Observation {
    /// What a failed transaction or probe shows.
    pub fn of(error: &CommitError) -> Self {
        match error {
            CommitError::Unreachable(_) => Self::Unreachable,
            CommitError::Full(_) => Self::Full,
            CommitError::Refused(_) => Self::Reached,
        }
    }
}

/// The two database alarms, raised on the first observation of their condition and cleared on
/// the first observation that it is over; repeated observations change nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AlarmBoard {
    latch: AlarmLatch,
}

impl AlarmBoard {
    /// Takes in one observation; returns the alarms raised or cleared by it, if any.
    pub fn observe(&mut self, observation: Observation) -> Vec<(Alarm, Transition)> {
        let full_now = self.latch.is_raised(Alarm::MftDbFullError);
        let (connect, full) = match observation {
            Observation::Committed => (false, false),
            Observation::Reached => (false, full_now),
            Observation::Unreachable => (true, full_now),
            Observation::Full => (false, true),
        };
        [
            (Alarm::MftDbConnectError, connect),
            (Alarm::MftDbFullError, full),
        ]
        .into_iter()
        .filter_map(|(alarm, condition)| Some((alarm, self.latch.set(alarm, condition)?)))
        .collect()
    }

    /// Whether the database is believed unreachable (`MftDbConnectError` raised).
    pub fn unreachable(&self) -> bool {
        self.latch.is_raised(Alarm::MftDbConnectError)
    }

    /// The raised alarms, by name.
    pub fn active(&self) -> Vec<Alarm> {
        self.latch.active()
    }
}

/// Counts one committed transaction: `commands` and what each came to.
pub(crate) fn tally(
    counters: &mut LogdCounters,
    commands: &[Command],
    results: &[Result<Done, Invalid>],
) {
    counters.batches += 1;
    counters.last_batch_size = commands.len() as u64;
    for (command, result) in commands.iter().zip(results) {
        if result.is_err() {
            continue;
        }
        let committed = &mut counters.committed;
        match command {
            Command::Insert(row) if row.method() == Method::Post => committed.post += 1,
            Command::Insert(row) if row.method() == Method::Share => committed.share += 1,
            Command::Insert(_) | Command::InsertToPostRecipient(_) => committed.get_start += 1,
            Command::GetEnd { .. } => committed.get_end += 1,
            Command::AmendPost(_) => committed.amend_post += 1,
            Command::MarkFile(_) => committed.mark_file += 1,
            Command::Lookup(_) => {}
        }
    }
}

/// The alarm board and counters, shared by the writer thread and the `status` requests.
pub(crate) struct Monitor {
    started: Instant,
    state: Mutex<(AlarmBoard, LogdCounters)>,
}

impl Monitor {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            state: Mutex::new(Default::default()),
        }
    }

    /// Takes in an observation; logs each alarm raised (with `reason`) or cleared.
    pub fn observe(&self, observation: Observation, reason: &dyn Display) {
        let transitions = self.lock().0.observe(observation);
        for (alarm, transition) in transitions {
            transition.log(alarm, reason);
        }
    }

    pub fn unreachable(&self) -> bool {
        self.lock().0.unreachable()
    }

    /// Counts a committed transaction.
    pub fn committed(&self, commands: &[Command], results: &[Result<Done, Invalid>]) {
        tally(&mut self.lock().1, commands, results);
    }

    /// Counts events answered `database`.
    pub fn failed(&self, events: usize) {
        self.lock().1.failed_events += events as u64;
    }

    /// The raised alarms' names and the counters, uptime included.
    pub fn snapshot(&self) -> (Vec<String>, LogdCounters) {
        let state = self.lock();
        let alarms = state
            .0
            .active()
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        let counters = LogdCounters {
            uptime_seconds: self.started.elapsed().as_secs(),
            ..state.1.clone()
        };
        (alarms, counters)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (AlarmBoard, LogdCounters)> {
        // The state stays consistent even if a holder panicked: every update is one assignment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use Alarm::{MftDbConnectError as Connect, MftDbFullError as Full};
    use Transition::{Cleared, Raised};

    #[test]
    fn an_alarm_is_raised_once_and_cleared_on_recovery() {
        let mut board = AlarmBoard::default();
        assert_eq!(board.observe(Observation::Committed), []);
        assert_eq!(board.observe(Observation::Unreachable), [(Connect, Raised)]);
        assert_eq!(board.observe(Observation::Unreachable), []);
        assert!(board.unreachable());
        assert_eq!(board.active(), [Connect]);
        assert_eq!(board.observe(Observation::Committed), [(Connect, Cleared)]);
        assert_eq!(board.observe(Observation::Committed), []);
        assert_eq!(board.active(), []);
    }

    #[test]
    fn reaching_the_database_clears_only_the_connect_alarm() {
        let mut board = AlarmBoard::default();
        board.observe(Observation::Full);
        assert_eq!(board.observe(Observation::Unreachable), [(Connect, Raised)]);
        assert_eq!(board.active(), [Connect, Full]);
        assert_eq!(board.observe(Observation::Reached), [(Connect, Cleared)]);
        assert_eq!(board.observe(Observation::Full), []);
        assert_eq!(board.observe(Observation::Committed), [(Full, Cleared)]);
    }

    #[test]
    fn a_full_database_is_a_reachable_one() {
        let mut board = AlarmBoard::default();
        board.observe(Observation::Unreachable);
        assert_eq!(
            board.observe(Observation::Full),
            [(Connect, Cleared), (Full, Raised)]
        );
        assert!(!board.unreachable());
    }

    #[test]
    fn store_errors_are_observations() {
        assert_eq!(
            Observation::of(&CommitError::Unreachable("refused".into())),
            Observation::Unreachable
        );
        assert_eq!(
            Observation::of(&CommitError::Full("disk".into())),
            Observation::Full
        );
        assert_eq!(
            Observation::of(&CommitError::Refused("bad".into())),
            Observation::Reached
        );
    }

    #[test]
    fn only_successful_commands_count_by_kind() {
        let row = |method| Command::Insert(sample::row(method, sample::transfer()));
        let end = Command::GetEnd {
            aft_index: 2,
            bytes_transferred: 0,
        };
        let mut counters = LogdCounters::default();
        tally(
            &mut counters,
            &[row(Method::Post), row(Method::Get), end.clone(), end],
            &[
                Ok(Done::row(1)),
                Ok(Done::row(2)),
                Ok(Done::row(2)),
                Err(Invalid::new("aft_index", "no such Get row")),
            ],
        );
        tally(&mut counters, &[row(Method::Post)], &[Ok(Done::row(3))]);
        assert_eq!(
            (
                counters.committed.post,
                counters.committed.get_start,
                counters.committed.get_end
            ),
            (2, 1, 1)
        );
        assert_eq!((counters.batches, counters.last_batch_size), (2, 1));
    }

    #[test]
    fn the_monitor_reports_raised_alarms_and_uptime() {
        let monitor = Monitor::new();
        monitor.observe(Observation::Unreachable, &"connection refused");
        monitor.failed(3);
        let (alarms, counters) = monitor.snapshot();
        assert_eq!(alarms, ["MftDbConnectError"]);
        assert_eq!(counters.failed_events, 3);
        assert!(monitor.unreachable());
        monitor.observe(Observation::Committed, &"");
        assert!(monitor.snapshot().0.is_empty());
    }
}
