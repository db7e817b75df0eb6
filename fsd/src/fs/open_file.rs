//! An open file: its server handle, what is read ahead of it ([`read_ahead`](super::read_ahead))
//! and, once written to, its write-behind queue ([`write_behind`](super::write_behind)), which
//! is built here: each queued write is one counted request to the server.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::backend::{SftpBackend, SftpResult};
use crate::fs::inode::Ino;
use crate::fs::read_ahead::{Budget, Prefetch, ReadAhead};
use crate::fs::traffic::Traffic;
use crate::fs::write_behind::WriteBehind;

/// One read ahead: the server's answer to a read.
type ReadAheadOf = Prefetch<SftpResult<Vec<u8>>>;

pub struct OpenFile<B: SftpBackend> {
    pub ino: Ino,
    pub handle: Arc<B::Handle>,
    writes: OnceLock<WriteBehind>,
    ahead: Mutex<ReadAhead<ReadAheadOf>>,
}

impl<B: SftpBackend> OpenFile<B> {
    /// The file `ino`, open on the server as `handle`, reading up to `depth` requests ahead.
    pub fn new(ino: Ino, handle: B::Handle, depth: usize) -> Self {
        Self {
            ino,
            handle: Arc::new(handle),
            writes: OnceLock::new(),
            ahead: Mutex::new(ReadAhead::new(depth)),
        }
    }

    fn ahead(&self) -> MutexGuard<'_, ReadAhead<ReadAheadOf>> {
        self.ahead.lock().expect("read-ahead lock")
    }

    /// The write-behind queue, started at the first write: it sends to `server`, with up to
    /// `window` bytes queued or in flight, counting requests and acknowledged bytes in
    /// `traffic`.
    pub fn writes(&self, window: u32, server: &Arc<B>, traffic: &Arc<Traffic>) -> &WriteBehind {
        self.writes.get_or_init(|| {
            let (server, handle, traffic) = (server.clone(), self.handle.clone(), traffic.clone());
            WriteBehind::start(window, move |offset, data| {
                let (server, handle, traffic) = (server.clone(), handle.clone(), traffic.clone());
                async move {
                    traffic.request();
                    let len = data.len() as u64;
                    let written = server.write(&handle, offset, data).await;
                    if written.is_ok() {
                        traffic.written(len);
                    }
                    written
                }
            })
        })
    }

    /// The write-behind queue, if the file was written to.
    pub fn written(&self) -> Option<&WriteBehind> {
        self.writes.get()
    }

    /// Whether writes of this file are queued or in flight.
    pub fn is_writing(&self) -> bool {
        self.writes.get().is_some_and(WriteBehind::is_busy)
    }

    /// A read of `size` bytes at `offset` arrived: starts the reads ahead it makes wanted
    /// (each a counted request to `server`, within `budget`) and returns the one already
    /// under way for it, if any.
    pub fn read_ahead(
        &self,
        offset: u64,
        size: u32,
        server: &Arc<B>,
        traffic: &Traffic,
        budget: &Budget,
    ) -> Option<ReadAheadOf> {
        let plan = self.ahead().plan(offset, size);
        drop(plan.dropped);
        if !plan.wanted.is_empty() {
            self.ahead().start(plan.wanted, budget, |at, n| {
                traffic.request();
                let (server, handle) = (server.clone(), self.handle.clone());
                async move { server.read(&handle, at, n).await }
            });
        }
        plan.hit
    }

    /// A read found the end of the file at `at`: nothing beyond it is read ahead.
    pub fn end_of_file(&self, at: u64) {
        let beyond = self.ahead().end_of_file(at);
        drop(beyond);
    }

    /// Drops what was read ahead (the file's data changes, or it is closed).
    pub fn drop_read_ahead(&self) {
        let dropped = self.ahead().clear();
        drop(dropped);
    }

    /// Reads ahead under way.
    #[cfg(test)]
    pub fn reading_ahead(&self) -> usize {
        self.ahead().pending()
    }
}
