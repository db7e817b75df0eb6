//! What the filesystem asked of the file server since it started: the requests it sent and
//! the bytes callers read and wrote through it. Counted without locks; published in fsd's
//! status document.

use std::sync::atomic::{AtomicU64, Ordering};

/// Requests sent to the file server and bytes moved through the mount, since fsd started.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes callers read.
    pub bytes_read: AtomicU64,
    /// Bytes callers wrote that the server acknowledged.
    pub bytes_written: AtomicU64,
    /// Requests sent to the server (reads ahead and queued writes included).
    pub requests: AtomicU64,
}

impl Traffic {
    /// One request is sent.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn written(&self, bytes: u64) {
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }
}
