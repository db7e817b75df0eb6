//! The group-commit writer: one thread that takes events from the socket connections through a
//! `crossbeam-channel`, gathers them into batches as [`BatchPolicy`] says, commits each batch in
//! one transaction through an [`AftStore`], and only then replies to each event.
//!
//! The reply policy lives here and nowhere else: a committed event gets its `aft_index`; if the
//! transaction fails, no event of it gets an acknowledgement. When the database refused the
//! batch itself (a statement failed, the connection is fine), the events are retried one per
//! transaction so that one bad row cannot fail the others; when the database is unreachable or
//! full, every event of the batch gets a `database` error at once, and when it is unreachable so
//! does every event already queued behind it (they would only wait to fail). While the database
//! is unreachable and no events come, the writer probes it every [`PROBE_INTERVAL`], so the
//! alarm clears when it is back even without traffic. Every attempt is reported to the
//! [`Monitor`], which raises and clears the alarms and counts.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::mpsc::UnboundedSender;

use crate::batch::BatchPolicy;
use crate::health::{Monitor, Observation};
use crate::protocol::{Outcome, Reply};
use crate::row::Invalid;
use crate::store::{AftStore, Command, CommitError, Done};

/// How often an idle writer checks whether an unreachable database is back.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One event on its way to the writer, with where its reply goes.
pub(crate) struct Job {
    pub command: Command,
    pub reply: Responder,
    /// When it was queued: the batch's wait counts from its first event's arrival, so an event
    /// that queued while the previous batch committed has already used up part of it.
    pub queued: Instant,
}

/// Sends the reply for one request back to its connection.
pub(crate) struct Responder {
    pub id: u64,
    pub to: UnboundedSender<Reply>,
}

impl Responder {
    pub fn send(self, outcome: Outcome) {
        // The connection may be gone (client hung up); the event is committed all the same.
        let _ = self.to.send(Reply {
            id: Some(self.id),
            outcome,
        });
    }
}

/// Runs until every sender of `jobs` is dropped and the queue is empty.
pub(crate) fn run(
    jobs: Receiver<Job>,
    store: &mut dyn AftStore,
    policy: BatchPolicy,
    monitor: &Monitor,
) {
    loop {
        let first = if monitor.unreachable() {
            match jobs.recv_timeout(PROBE_INTERVAL) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    let probed = store.probe();
                    match &probed {
                        Ok(()) => monitor.observe(Observation::Reached, &"the database answers"),
                        Err(e) => monitor.observe(Observation::of(e), e),
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let started = first.queued;
        let mut batch = vec![first];
        while let Some(wait) = policy.wait_for_more(batch.len(), started.elapsed()) {
            match jobs.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (commands, responders): (Vec<Command>, Vec<Responder>) = batch
            .into_iter()
            .map(|job| (job.command, job.reply))
            .unzip();
        let committing = Instant::now();
        let (outcomes, failure) = commit_batch(store, &commands, monitor);
        log::debug!(
            "batch of {} events answered: first queued {:?} before its commit, which took {:?}",
            commands.len(),
            committing - started,
            committing.elapsed()
        );
        for (responder, outcome) in responders.into_iter().zip(outcomes) {
            responder.send(outcome);
        }
        if let Some(e @ CommitError::Unreachable(_)) = failure {
            let queued: Vec<Job> = jobs.try_iter().collect();
            if !queued.is_empty() {
                log::warn!("{} queued events not recorded: {e}", queued.len());
                monitor.failed(queued.len());
            }
            for job in queued {
                job.reply.send(Outcome::Database {
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Commits `commands` and says what to reply to each; also the error that failed them all, if
/// one did.
fn commit_batch(
    store: &mut dyn AftStore,
    commands: &[Command],
    monitor: &Monitor,
) -> (Vec<Outcome>, Option<CommitError>) {
    match store.commit(commands) {
        Ok(results) => {
            monitor.observe(Observation::Committed, &"a transaction committed");
            monitor.committed(commands, &results);
            let outcomes = results
                .into_iter()
                .map(|result| match result {
                    Ok(Done { aft_index, to_jid }) => Outcome::Ok { aft_index, to_jid },
                    Err(Invalid { field, message }) => Outcome::Invalid { field, message },
                })
                .collect();
            (outcomes, None)
        }
        Err(e @ CommitError::Refused(_)) if commands.len() > 1 => {
            monitor.observe(Observation::of(&e), &e);
            log::warn!("{e}; retrying its {} events one by one", commands.len());
            let outcomes = commands
                .iter()
                .flat_map(|c| commit_batch(store, std::slice::from_ref(c), monitor).0)
                .collect();
            (outcomes, None)
        }
        Err(e) => {
            monitor.observe(Observation::of(&e), &e);
            monitor.failed(commands.len());
            log::warn!("{} events not recorded: {e}", commands.len());
            let outcomes = vec![
                Outcome::Database {
                    message: e.to_string()
                };
                commands.len()
            ];
            (outcomes, Some(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use crate::row::{Method, Transfer};
    use crate::sample;

    /// An in-memory store: rows in a Vec, aft_index = position + 1. Rows whose jid is "poison"
    /// make the whole transaction fail as a refused statement would; `down` fails everything.
    #[derive(Default)]
    struct MemoryStore {
        rows: Vec<Stored>,
        down: Arc<AtomicBool>,
        transactions: Vec<usize>,
        probes: usize,
    }

    /// What the double keeps of a row.
    #[derive(Clone)]
    struct Stored {
        method: Method,
        bytes_transferred: i64,
    }

    impl MemoryStore {
        fn down() -> Self {
            Self {
                down: Arc::new(AtomicBool::new(true)),
                ..Default::default()
            }
        }

        fn check(&self) -> Result<(), CommitError> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(CommitError::Unreachable("connection refused".into())),
                false => Ok(()),
            }
        }
    }

    impl AftStore for MemoryStore {
        fn probe(&mut self) -> Result<(), CommitError> {
            self.probes += 1;
            self.check()
        }

        fn commit(
            &mut self,
            commands: &[Command],
        ) -> Result<Vec<Result<Done, Invalid>>, CommitError> {
            self.transactions.push(commands.len());
            self.check()?;
            let mut rows = self.rows.clone();
            let mut results = Vec::new();
            for command in commands {
                results.push(match command {
                    Command::Insert(row) if row.transfer().jid == "poison" => {
                        return Err(CommitError::Refused("index row too large".into()))
                    }
                    Command::Insert(row) | Command::InsertToPostRecipient(row) => {
                        rows.push(Stored {
                            method: row.method(),
                            bytes_transferred: row.transfer().bytes_transferred,
                        });
                        Ok(Done::row(rows.len() as i64))
                    }
                    Command::AmendPost(_) | Command::MarkFile(_) | Command::Lookup(_) => Err(
                        Invalid::new("filename", "this double amends, marks and finds nothing"),
                    ),
                    Command::GetEnd {
                        aft_index,
                        bytes_transferred,
                    } => match rows.get_mut(*aft_index as usize - 1) {
                        Some(row) if row.method == Method::Get => {
                            row.bytes_transferred = *bytes_transferred;
                            Ok(Done::row(*aft_index))
                        }
                        _ => Err(Invalid::new("aft_index", "no such Get row")),
                    },
                });
            }
            self.rows = rows;
            Ok(results)
        }
    }

    fn insert(jid: &str, method: Method) -> Command {
        let transfer = Transfer {
            jid: jid.into(),
            bytes_transferred: 0,
            ..sample::transfer()
        };
        Command::Insert(sample::row(method, transfer))
    }

    /// Queues `commands` (as request ids 0..), runs the writer to the end, returns the replies by id.
    fn run_all(
        store: &mut MemoryStore,
        policy: BatchPolicy,
        commands: Vec<Command>,
    ) -> Vec<Outcome> {
        run_monitored(store, policy, commands, &Monitor::new())
    }

    fn run_monitored(
        store: &mut MemoryStore,
        policy: BatchPolicy,
        commands: Vec<Command>,
        monitor: &Monitor,
    ) -> Vec<Outcome> {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (to, mut replies) = tokio::sync::mpsc::unbounded_channel();
        let n = commands.len();
        for (id, command) in commands.into_iter().enumerate() {
            jobs.send(Job {
                command,
                reply: Responder {
                    id: id as u64,
                    to: to.clone(),
                },
                queued: Instant::now(),
            })
            .unwrap();
        }
        drop(jobs);
        run(queue, store, policy, monitor);
        let mut outcomes = vec![None; n];
        while let Ok(reply) = replies.try_recv() {
            outcomes[reply.id.unwrap() as usize] = Some(reply.outcome);
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every event gets a reply"))
            .collect()
    }

    #[test]
    fn queued_events_are_committed_in_batches_of_at_most_max_events() {
        let mut store = MemoryStore::default();
        let outcomes = run_all(
            &mut store,
            BatchPolicy::new(4, Duration::ZERO),
            (0..10).map(|_| insert("a@x", Method::Post)).collect(),
        );
        assert_eq!(store.transactions, [4, 4, 2]);
        let indexes: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Ok { aft_index, .. } => *aft_index,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(indexes, (1..=10).collect::<Vec<i64>>());
    }

    #[test]
    fn a_failed_transaction_acknowledges_nothing() {
        let mut store = MemoryStore::down();
        let outcomes = run_all(
            &mut store,
            BatchPolicy::new(100, Duration::ZERO),
            vec![
                insert("a@x", Method::Post),
                Command::GetEnd {
                    aft_index: 1,
                    bytes_transferred: 1,
                },
            ],
        );
        assert_eq!(
            store.transactions,
            [2],
            "an unreachable database is not retried row by row"
        );
        for o in outcomes {
            assert_eq!(
                o,
                Outcome::Database {
                    message: "cannot reach the database: connection refused".into()
                }
            );
        }
        assert!(store.rows.is_empty());
    }

    #[test]
    fn a_refused_batch_is_retried_one_event_at_a_time() {
        let mut store = MemoryStore::default();
        let outcomes = run_all(
            &mut store,
            BatchPolicy::new(100, Duration::ZERO),
            vec![
                insert("a@x", Method::Post),
                insert("poison", Method::Post),
                insert("c@x", Method::Get),
            ],
        );
        assert_eq!(store.transactions, [3, 1, 1, 1]);
        assert_eq!(
            outcomes[0],
            Outcome::Ok {
                aft_index: 1,
                to_jid: None
            }
        );
        assert_eq!(
            outcomes[1],
            Outcome::Database {
                message: "the database refused the transaction: index row too large".into()
            }
        );
        assert_eq!(
            outcomes[2],
            Outcome::Ok {
                aft_index: 2,
                to_jid: None
            }
        );
        assert_eq!(store.rows.len(), 2);
    }

    #[test]
    fn a_get_end_for_no_get_row_is_refused_alone() {
        let mut store = MemoryStore::default();
        let outcomes = run_all(
            &mut store,
            BatchPolicy::new(100, Duration::ZERO),
            vec![
                insert("a@x", Method::Get),
                Command::GetEnd {
                    aft_index: 1,
                    bytes_transferred: 3,
                },
                Command::GetEnd {
                    aft_index: 9,
                    bytes_transferred: 3,
                },
            ],
        );
        assert_eq!(store.transactions, [3]);
        assert_eq!(
            outcomes[1],
            Outcome::Ok {
                aft_index: 1,
                to_jid: None
            }
        );
        assert_eq!(
            outcomes[2],
            Outcome::Invalid {
                field: "aft_index".into(),
                message: "no such Get row".into()
            }
        );
        assert_eq!(store.rows[0].bytes_transferred, 3);
    }

    #[test]
    fn the_writer_waits_for_more_events_until_the_deadline() {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (to, mut replies) = tokio::sync::mpsc::unbounded_channel();
        let writer = std::thread::spawn(move || {
            let mut store = MemoryStore::default();
            run(
                queue,
                &mut store,
                BatchPolicy::new(100, Duration::from_millis(300)),
                &Monitor::new(),
            );
            store.transactions
        });
        jobs.send(Job {
            command: insert("a@x", Method::Post),
            reply: Responder {
                id: 1,
                to: to.clone(),
            },
            queued: Instant::now(),
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            replies.try_recv().is_err(),
            "no reply before the batch commits"
        );
        jobs.send(Job {
            command: insert("b@x", Method::Post),
            reply: Responder { id: 2, to },
            queued: Instant::now(),
        })
        .unwrap();
        drop(jobs);
        assert_eq!(writer.join().unwrap(), [2]);
        assert_eq!(replies.try_recv().unwrap().id, Some(1));
        assert_eq!(replies.try_recv().unwrap().id, Some(2));
    }

    #[test]
    fn an_unreachable_database_fails_the_whole_queue_at_once_and_counts_it() {
        let mut store = MemoryStore::down();
        let monitor = Monitor::new();
        let outcomes = run_monitored(
            &mut store,
            BatchPolicy::new(2, Duration::ZERO),
            (0..10).map(|_| insert("a@x", Method::Post)).collect(),
            &monitor,
        );
        assert_eq!(
            store.transactions,
            [2],
            "the queue behind the failed batch is not tried"
        );
        assert!(outcomes.iter().all(
            |o| matches!(o, Outcome::Database { message } if message.contains("connection refused"))
        ));
        let (alarms, counters) = monitor.snapshot();
        assert_eq!(alarms, ["MftDbConnectError"]);
        assert_eq!((counters.failed_events, counters.batches), (10, 0));
    }

    #[test]
    fn an_idle_writer_probes_until_the_database_is_back() {
        let mut store = MemoryStore::down();
        let down = store.down.clone();
        let monitor = Arc::new(Monitor::new());
        monitor.observe(Observation::Unreachable, &"connection refused");
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let writer = {
            let monitor = monitor.clone();
            std::thread::spawn(move || {
                run(
                    queue,
                    &mut store,
                    BatchPolicy::new(1, Duration::ZERO),
                    &monitor,
                );
                store.probes
            })
        };
        std::thread::sleep(PROBE_INTERVAL + PROBE_INTERVAL / 2);
        assert!(monitor.unreachable(), "still down");
        down.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + 5 * PROBE_INTERVAL;
        while monitor.unreachable() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!monitor.unreachable(), "the probe clears the alarm");
        drop(jobs);
        assert!(writer.join().unwrap() >= 2);
    }

    #[test]
    fn committed_events_are_counted() {
        let mut store = MemoryStore::default();
        let monitor = Monitor::new();
        run_monitored(
            &mut store,
            BatchPolicy::new(3, Duration::ZERO),
            vec![
                insert("a@x", Method::Post),
                insert("b@x", Method::Get),
                insert("c@x", Method::Post),
                insert("d@x", Method::Post),
            ],
            &monitor,
        );
        let counters = monitor.snapshot().1;
        assert_eq!(
            (counters.committed.post, counters.committed.get_start),
            (3, 1)
        );
        assert_eq!(
            (
                counters.batches,
                counters.last_batch_size,
                counters.failed_events
            ),
            (2, 1, 0)
        );
    }
}
