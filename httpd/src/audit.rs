//! The audit log: where httpd reports each transfer before it answers (`aft_log`, through logd).
//!
//! [`AuditLog`] is the small interface the transfer logic needs; [`logd::LogdClient`] is the real
//! implementation, and tests use an in-memory double. Every call returns only after logd has
//! committed the row (or failed), so callers can make the answer depend on it.

use futures_util::future::BoxFuture;
use logd::{Amendment, FileMark, LogdClient, LogdError, Transfer};

/// Records uploads and downloads in `aft_log`.
pub trait AuditLog: Send + Sync + 'static {
    /// Records a finished upload (a `Post` row); returns its `aft_index`.
    fn post<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>>;

    /// Records the start of a download (a `Get` row, 0 bytes transferred); returns its `aft_index`.
    fn get_start<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>>;

    /// The same, addressed to the recipient of the file's upload: the row's `to_jid` is the one
    /// of the Post row of `transfer.filename` (`transfer.to_jid` if there is none); returns the
    /// `aft_index` and that `to_jid`.
    fn get_start_to_post_recipient<'a>(
        &'a self,
        transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<(i64, String), LogdError>>;

    /// Records how many bytes a download actually moved.
    fn get_end(
        &self,
        aft_index: i64,
        bytes_transferred: i64,
    ) -> BoxFuture<'_, Result<(), LogdError>>;

    /// Records that a stored file was shared in one more chat (a `Share` row).
    fn share<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>>;

    /// Records a file's first share in its Post row (recipient, chat type, path).
    fn amend_post<'a>(&'a self, amendment: &'a Amendment) -> BoxFuture<'a, Result<i64, LogdError>>;

    /// Marks the Post row of a stored file removed on purpose (`file_state`); its `aft_index`,
    /// or `None` if there is no Post row of that file name and path.
    fn mark_file<'a>(&'a self, mark: &'a FileMark)
        -> BoxFuture<'a, Result<Option<i64>, LogdError>>;

    /// The `aft_index` of the row written by the event `event_id`, or `None` if there is none.
    fn lookup<'a>(&'a self, event_id: &'a str) -> BoxFuture<'a, Result<Option<i64>, LogdError>>;
}

impl AuditLog for LogdClient {
    fn post<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>> {
        Box::pin(LogdClient::post(self, transfer))
    }

    fn get_start<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>> {
        Box::pin(LogdClient::get_start(self, transfer))
    }

    fn get_start_to_post_recipient<'a>(
        &'a self,
        transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<(i64, String), LogdError>> {
        Box::pin(LogdClient::get_start_to_post_recipient(self, transfer))
    }

    fn get_end(
        &self,
        aft_index: i64,
        bytes_transferred: i64,
    ) -> BoxFuture<'_, Result<(), LogdError>> {
        Box::pin(LogdClient::get_end(self, aft_index, bytes_transferred))
    }

    fn share<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>> {
        Box::pin(LogdClient::share(self, transfer))
    }

    fn amend_post<'a>(&'a self, amendment: &'a Amendment) -> BoxFuture<'a, Result<i64, LogdError>> {
        Box::pin(LogdClient::amend_post(self, amendment))
    }

    fn mark_file<'a>(
        &'a self,
        mark: &'a FileMark,
    ) -> BoxFuture<'a, Result<Option<i64>, LogdError>> {
        Box::pin(LogdClient::mark_file(self, mark))
    }

    fn lookup<'a>(&'a self, event_id: &'a str) -> BoxFuture<'a, Result<Option<i64>, LogdError>> {
        Box::pin(LogdClient::lookup(self, event_id))
    }
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`AuditLog`] that keeps every row, records an event id once, as logd does,
    //! and can be told to fail, or to lose its answers after committing.

    use std::sync::Mutex;

    use logd::{FileState, Method};

    use super::*;

    /// One `aft_log` row as the double keeps it.
    #[derive(Debug, Clone)]
    pub struct Row {
        pub method: Method,
        pub transfer: Transfer,
        /// The `file_state` column (Post rows).
        pub file_state: Option<FileState>,
    }

    /// Answers still to lose after recording, and the error that replaces them.
    type LostAnswers = (usize, Option<fn() -> LogdError>);

    #[derive(Debug, Default)]
    pub struct MemoryAuditLog {
        rows: Mutex<Vec<Row>>,
        failure: Mutex<Option<fn() -> LogdError>>,
        lost_answers: Mutex<LostAnswers>,
    }

    impl MemoryAuditLog {
        pub fn rows(&self) -> Vec<Row> {
            self.rows.lock().unwrap().clone()
        }

        /// Makes every later call fail with `error()`.
        pub fn fail_with(&self, error: fn() -> LogdError) {
            *self.failure.lock().unwrap() = Some(error);
        }

        /// Makes later calls succeed again.
        pub fn recover(&self) {
            *self.failure.lock().unwrap() = None;
        }

        /// Makes the next `count` events be recorded and then answered `Unavailable`, as when
        /// logd dies between its commit and its answer.
        pub fn lose_answers(&self, count: usize) {
            self.lose_answers_with(count, || {
                LogdError::Unavailable("the answer was lost".into())
            });
        }

        /// Makes the next `count` events be recorded and then answered `error()`: `Database`, as
        /// when the database dies after making a COMMIT durable and before saying so.
        pub fn lose_answers_with(&self, count: usize, error: fn() -> LogdError) {
            *self.lost_answers.lock().unwrap() = (count, Some(error));
        }

        fn record(&self, method: Method, transfer: &Transfer) -> Result<i64, LogdError> {
            self.check()?;
            let mut rows = self.rows.lock().unwrap();
            let recorded = transfer
                .event_id
                .as_deref()
                .and_then(|id| row_of_event(&rows, id));
            let aft_index = match recorded {
                Some(aft_index) => aft_index,
                None => {
                    rows.push(Row {
                        method,
                        transfer: transfer.clone(),
                        file_state: None,
                    });
                    rows.len() as i64
                }
            };
            if let (count @ 1.., Some(error)) = &mut *self.lost_answers.lock().unwrap() {
                *count -= 1;
                return Err(error());
            }
            Ok(aft_index)
        }

        fn check(&self) -> Result<(), LogdError> {
            match *self.failure.lock().unwrap() {
                Some(error) => Err(error()),
                None => Ok(()),
            }
        }
    }

    /// The `aft_index` of the row written by the event `event_id`, if any.
    fn row_of_event(rows: &[Row], event_id: &str) -> Option<i64> {
        let index = rows
            .iter()
            .position(|r| r.transfer.event_id.as_deref() == Some(event_id))?;
        Some(index as i64 + 1)
    }

    impl AuditLog for MemoryAuditLog {
        fn post<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>> {
            Box::pin(async move { self.record(Method::Post, transfer) })
        }

        fn get_start<'a>(
            &'a self,
            transfer: &'a Transfer,
        ) -> BoxFuture<'a, Result<i64, LogdError>> {
            Box::pin(async move { self.record(Method::Get, transfer) })
        }

        fn get_start_to_post_recipient<'a>(
            &'a self,
            transfer: &'a Transfer,
        ) -> BoxFuture<'a, Result<(i64, String), LogdError>> {
            Box::pin(async move {
                let post = self
                    .rows()
                    .into_iter()
                    .find(|r| r.method == Method::Post && r.transfer.filename == transfer.filename);
                let to_jid = post.map_or_else(|| transfer.to_jid.clone(), |p| p.transfer.to_jid);
                let aft_index = self.record(
                    Method::Get,
                    &Transfer {
                        to_jid: to_jid.clone(),
                        ..transfer.clone()
                    },
                )?;
                Ok((aft_index, to_jid))
            })
        }

        fn share<'a>(&'a self, transfer: &'a Transfer) -> BoxFuture<'a, Result<i64, LogdError>> {
            Box::pin(async move { self.record(Method::Share, transfer) })
        }

        fn amend_post<'a>(
            &'a self,
            amendment: &'a Amendment,
        ) -> BoxFuture<'a, Result<i64, LogdError>> {
            Box::pin(async move {
                self.check()?;
                let mut rows = self.rows.lock().unwrap();
                let index = rows.iter().position(|r| {
                    r.method == Method::Post && r.transfer.filename == amendment.filename
                });
                let Some(index) = index else {
                    return Err(LogdError::Invalid {
                        field: "filename".into(),
                        message: format!("no Post row of {}", amendment.filename),
                    });
                };
                let t = &mut rows[index].transfer;
                t.to_jid.clone_from(&amendment.to_jid);
                t.chat_type = amendment.chat_type;
                t.file_path.clone_from(&amendment.file_path);
                Ok(index as i64 + 1)
            })
        }

        fn mark_file<'a>(
            &'a self,
            mark: &'a FileMark,
        ) -> BoxFuture<'a, Result<Option<i64>, LogdError>> {
            Box::pin(async move {
                self.check()?;
                let mut rows = self.rows.lock().unwrap();
                let mut first = None;
                for (index, row) in rows.iter_mut().enumerate() {
                    if row.method == Method::Post
                        && row.transfer.filename == mark.filename
                        && row.transfer.file_path == mark.file_path
                    {
                        row.file_state = Some(mark.file_state);
                        first = first.or(Some(index as i64 + 1));
                    }
                }
                Ok(first)
            })
        }

        fn lookup<'a>(
            &'a self,
            event_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<i64>, LogdError>> {
            Box::pin(async move {
                self.check()?;
                Ok(row_of_event(&self.rows.lock().unwrap(), event_id))
            })
        }

        fn get_end(
            &self,
            aft_index: i64,
            bytes_transferred: i64,
        ) -> BoxFuture<'_, Result<(), LogdError>> {
            Box::pin(async move {
                self.check()?;
                let mut rows = self.rows.lock().unwrap();
                let row = usize::try_from(aft_index - 1)
                    .ok()
                    .and_then(|i| rows.get_mut(i));
                match row {
                    Some(row) if row.method == Method::Get => {
                        row.transfer.bytes_transferred = bytes_transferred;
                        Ok(())
                    }
                    _ => Err(LogdError::Invalid {
                        field: "aft_index".into(),
                        message: format!("no Get row {aft_index}"),
                    }),
                }
            })
        }
    }
}
