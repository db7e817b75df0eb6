//! The group-commit writer: one thread that takes events from the socket connections through a
//! `crossbeam-channel`, gathers them into batches as [`BatchPolicy`] says, commits each batch in
//! one transaction through an [`AftStore`], and only then replies to each event.
//!
//! The reply policy lives here and nowhere else: a committed event gets its `aft_index`; if the
//! transaction fails, no event of it gets an acknowledgement. When the database refused the
//! batch itself (a statement failed, the connection is fine), the events are retried one per
//! transaction so that one bad row cannot fail the others; when the database is unreachable or
//! full, every event of the batch gets a `database` error at once.

use std::time::Instant;

use crossbeam_channel::Receiver;
use tokio::sync::mpsc::UnboundedSender;

use crate::batch::BatchPolicy;
use crate::protocol::{Outcome, Reply};
use crate::request::{Command, Invalid};

/// Where batches are committed: the database, or a test double.
pub(crate) trait AftStore {
    /// Applies all `commands` in one transaction. On success, one result per command, in order:
    /// the row's `aft_index`, or why that command alone was refused (a `get_end` naming no Get
    /// row); on error, nothing was committed.
    fn commit(&mut self, commands: &[Command]) -> Result<Vec<Result<i64, Invalid>>, StoreError>;
}

/// A transaction that did not commit, by what the operator must do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    #[error("the database is full: {0}")]
    Full(String),
    #[error("the database refused the transaction: {0}")]
    Refused(String),
}

impl StoreError {
    /// The alarm this error raises (DESIGN.md, "Alarms"), logged as the message's first word.
    pub fn alarm(&self) -> Option<&'static str> {
        match self {
            Self::Unreachable(_) => Some("MftDbConnectError"),
            Self::Full(_) => Some("MftDbFullError"),
            Self::Refused(_) => None,
        }
    }
}

/// One event on its way to the writer, with where its reply goes.
pub(crate) struct Job {
    pub command: Command,
    pub reply: Responder,
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
pub(crate) fn run(jobs: Receiver<Job>, store: &mut dyn AftStore, policy: BatchPolicy) {
    while let Ok(first) = jobs.recv() {
        let started = Instant::now();
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
        let outcomes = settle(store, &commands);
        log::debug!("batch of {} events settled", commands.len());
        for (responder, outcome) in responders.into_iter().zip(outcomes) {
            responder.send(outcome);
        }
    }
}

/// Commits `commands` and says what to reply to each.
fn settle(store: &mut dyn AftStore, commands: &[Command]) -> Vec<Outcome> {
    match store.commit(commands) {
        Ok(results) => results
            .into_iter()
            .map(|result| match result {
                Ok(aft_index) => Outcome::Ok { aft_index },
                Err(Invalid { field, message }) => Outcome::Invalid { field, message },
            })
            .collect(),
        Err(e @ StoreError::Refused(_)) if commands.len() > 1 => {
            log::warn!("{e}; retrying its {} events one by one", commands.len());
            commands
                .iter()
                .flat_map(|c| settle(store, std::slice::from_ref(c)))
                .collect()
        }
        Err(e) => {
            let alarm = e.alarm().map(|a| format!("{a}: ")).unwrap_or_default();
            log::error!("{alarm}{e}; {} events not recorded", commands.len());
            vec![
                Outcome::Database {
                    message: e.to_string()
                };
                commands.len()
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::db::schema::AftRecord;

    /// An in-memory store: rows in a Vec, aft_index = position + 1. Rows whose jid is "poison"
    /// make the whole transaction fail as a refused statement would; `down` fails everything.
    #[derive(Default)]
    struct MemoryStore {
        rows: Vec<AftRecord>,
        down: bool,
        transactions: Vec<usize>,
    }

    impl AftStore for MemoryStore {
        fn commit(
            &mut self,
            commands: &[Command],
        ) -> Result<Vec<Result<i64, Invalid>>, StoreError> {
            self.transactions.push(commands.len());
            if self.down {
                return Err(StoreError::Unreachable("connection refused".into()));
            }
            let mut rows = self.rows.clone();
            let mut results = Vec::new();
            for command in commands {
                results.push(match command {
                    Command::Insert(row) if row.jid == "poison" => {
                        return Err(StoreError::Refused("index row too large".into()))
                    }
                    Command::Insert(row) => {
                        rows.push(row.clone());
                        Ok(rows.len() as i64)
                    }
                    Command::GetEnd {
                        aft_index,
                        bytes_transferred,
                    } => match rows.get_mut(*aft_index as usize - 1) {
                        Some(row) if row.method == "Get" => {
                            row.bytes_transferred = *bytes_transferred;
                            Ok(*aft_index)
                        }
                        _ => Err(Invalid::new("aft_index", "no such Get row")),
                    },
                });
            }
            self.rows = rows;
            Ok(results)
        }
    }

    fn insert(jid: &str, method: &str) -> Command {
        Command::Insert(AftRecord {
            jid: jid.into(),
            to_jid: "b@x".into(),
            method: method.into(),
            filename: "f".into(),
            real_filename: "f".into(),
            file_type: "txt".into(),
            chat_type: "im".into(),
            file_server: "fs".into(),
            file_path: "/f".into(),
            file_size: 3,
            bytes_transferred: 0,
            timestampvalue: chrono::DateTime::UNIX_EPOCH.naive_utc(),
        })
    }

    /// Queues `commands` (as request ids 0..), runs the writer to the end, returns the replies by id.
    fn run_all(
        store: &mut MemoryStore,
        policy: BatchPolicy,
        commands: Vec<Command>,
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
            })
            .unwrap();
        }
        drop(jobs);
        run(queue, store, policy);
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
            (0..10).map(|_| insert("a@x", "Post")).collect(),
        );
        assert_eq!(store.transactions, [4, 4, 2]);
        let indexes: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Ok { aft_index } => *aft_index,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(indexes, (1..=10).collect::<Vec<i64>>());
    }

    #[test]
    fn a_failed_transaction_acknowledges_nothing() {
        let mut store = MemoryStore {
            down: true,
            ..Default::default()
        };
        let outcomes = run_all(
            &mut store,
            BatchPolicy::new(100, Duration::ZERO),
            vec![
                insert("a@x", "Post"),
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
                insert("a@x", "Post"),
                insert("poison", "Post"),
                insert("c@x", "Get"),
            ],
        );
        assert_eq!(store.transactions, [3, 1, 1, 1]);
        assert_eq!(outcomes[0], Outcome::Ok { aft_index: 1 });
        assert_eq!(
            outcomes[1],
            Outcome::Database {
                message: "the database refused the transaction: index row too large".into()
            }
        );
        assert_eq!(outcomes[2], Outcome::Ok { aft_index: 2 });
        assert_eq!(store.rows.len(), 2);
    }

    #[test]
    fn a_get_end_for_no_get_row_is_refused_alone() {
        let mut store = MemoryStore::default();
        let outcomes = run_all(
            &mut store,
            BatchPolicy::new(100, Duration::ZERO),
            vec![
                insert("a@x", "Get"),
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
        assert_eq!(outcomes[1], Outcome::Ok { aft_index: 1 });
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
            );
            store.transactions
        });
        jobs.send(Job {
            command: insert("a@x", "Post"),
            reply: Responder {
                id: 1,
                to: to.clone(),
            },
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            replies.try_recv().is_err(),
            "no reply before the batch commits"
        );
        jobs.send(Job {
            command: insert("b@x", "Post"),
            reply: Responder { id: 2, to },
        })
        .unwrap();
        drop(jobs);
        assert_eq!(writer.join().unwrap(), [2]);
        assert_eq!(replies.try_recv().unwrap().id, Some(1));
        assert_eq!(replies.try_recv().unwrap().id, Some(2));
    }
}
