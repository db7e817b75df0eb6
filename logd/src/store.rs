//! What the writer asks of the database, as an interface both sides depend on: the
//! [`Command`]s a batch carries, what each [`Done`], the [`AftStore`] that commits a batch (the
//! database in `db`, an in-memory double in the writer's tests), and the [`CommitError`] of a
//! transaction that did not commit. Types only; no I/O.

use crate::row::{Amendment, FileMark, Invalid, Row};

/// What the writer does with one event.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every command is an insert; a box would only add an allocation"
)]
pub(crate) enum Command {
    /// `post`, `get_start` or `share`: insert this row (unless a row has its `event_id`).
    Insert(Row),
    /// `get_start` with `to_jid_of_post`: insert this Get row with the `to_jid` of the Post row
    /// of the same `filename` (its own `to_jid` when there is none).
    InsertToPostRecipient(Row),
    /// `get_end`: set `bytes_transferred` of the Get row `aft_index`.
    GetEnd {
        aft_index: i64,
        bytes_transferred: i64,
    },
    /// `amend_post`: a file's first share names its recipient and chat type, and where the file
    /// now lies, in its Post row.
    AmendPost(Amendment),
    /// `mark_file`: a stored file was removed on purpose; its Post row says so in `file_state`.
    MarkFile(FileMark),
    /// `lookup`: the row written by the event with this id, if any.
    Lookup(String),
}

/// What one committed command did: the `aft_index` of the row it inserted or changed, and for
/// an [`Command::InsertToPostRecipient`] the `to_jid` the row took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Done {
    pub aft_index: i64,
    pub to_jid: Option<String>,
}

impl Done {
    pub fn row(aft_index: i64) -> Self {
        Self {
            aft_index,
            to_jid: None,
        }
    }
}

/// Where batches are committed: the database, or a test double.
pub(crate) trait AftStore {
    /// Applies all `commands` in one transaction. On success, one result per command, in order:
    /// the row's `aft_index`, or why that command alone was refused (a `get_end` naming no Get
    /// row); on error, nothing was committed.
    fn commit(&mut self, commands: &[Command]) -> Result<Vec<Result<Done, Invalid>>, CommitError>;

    /// Checks that the database answers, without writing; fails as a commit would.
    fn probe(&mut self) -> Result<(), CommitError>;
}

/// A transaction (or probe) that did not commit, by what the operator must do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CommitError {
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    #[error("the database is full: {0}")]
    Full(String),
    #[error("the database refused the transaction: {0}")]
    Refused(String),
}
