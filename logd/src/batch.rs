//! The group-commit policy: how many events one transaction takes and how long the writer waits
//! for more after the first. Pure logic over counts and durations; the writer loop asks it and
//! only moves data.

use std::time::Duration;

/// `[database] batch_max_events` and `batch_max_wait_ms`, as a decision rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchPolicy {
    max_events: usize,
    max_wait: Duration,
}

impl BatchPolicy {
    /// `max_events` is at least 1 (a batch always has its first event).
    pub fn new(max_events: usize, max_wait: Duration) -> Self {
        Self {
            max_events: max_events.max(1),
            max_wait,
        }
    }

    pub fn from_config(db: &mft_config::Database) -> Self {
        Self::new(
            db.batch_max_events,
            Duration::from_millis(db.batch_max_wait_ms),
        )
    }

    /// With `len` events taken, the first `since_first` ago: `None` to commit now (full), or how
    /// long to wait for one more event. Past the deadline the wait is zero: the writer still
    /// takes events already queued, up to the limit, but never waits for new ones.
    pub fn wait_for_more(&self, len: usize, since_first: Duration) -> Option<Duration> {
        (len < self.max_events).then(|| self.max_wait.saturating_sub(since_first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_batch_commits_at_once() {
        let p = BatchPolicy::new(3, 10 * MS);
        assert_eq!(p.wait_for_more(3, Duration::ZERO), None);
        assert_eq!(p.wait_for_more(4, Duration::ZERO), None);
    }

    #[test]
    fn waits_only_what_is_left_of_the_deadline() {
        let p = BatchPolicy::new(3, 10 * MS);
        assert_eq!(p.wait_for_more(1, Duration::ZERO), Some(10 * MS));
        assert_eq!(p.wait_for_more(2, 4 * MS), Some(6 * MS));
        assert_eq!(p.wait_for_more(2, 10 * MS), Some(Duration::ZERO));
        assert_eq!(p.wait_for_more(2, 50 * MS), Some(Duration::ZERO));
    }

    #[test]
    fn zero_wait_takes_only_what_is_queued() {
        let p = BatchPolicy::new(256, Duration::ZERO);
        assert_eq!(p.wait_for_more(1, Duration::ZERO), Some(Duration::ZERO));
    }

    #[test]
    fn one_event_batches_never_wait() {
        let p = BatchPolicy::new(0, 10 * MS);
        assert_eq!(p.wait_for_more(1, Duration::ZERO), None);
    }

    #[test]
    fn built_from_the_configuration() {
        let db = mft_config::Database {
            batch_max_events: 7,
            batch_max_wait_ms: 3,
            ..Default::default()
        };
        assert_eq!(BatchPolicy::from_config(&db), BatchPolicy::new(7, 3 * MS));
    }
}
