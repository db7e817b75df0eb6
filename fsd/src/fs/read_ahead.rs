//! Read-ahead: once reads of an open file come in sequence, the next `depth` requests of the
//! same size are asked of the server before the kernel asks for them, within a budget of bytes
//! per file and over all files.
//!
//! [`ReadAhead`] only plans; the caller starts the reads it wants (each a `T`, a pending read)
//! and hands them back with [`ReadAhead::started`]. A read elsewhere (a seek) drops what was
//! read ahead; so do writes and close ([`ReadAhead::clear`]). Dropping a `T` must cancel it.
//! [`Prefetch`] is such a `T`: a task holding its [`Share`] of the [`Budget`], and
//! [`ReadAhead::start`] starts the wanted reads the budget has room for.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Reads larger than this are not read ahead.
pub const MAX_CHUNK: u32 = 1024 * 1024;

pub struct ReadAhead<T> {
    depth: usize,
    /// Where the next read is expected if reads are sequential.
    next: Option<u64>,
    /// Size of the reads in the current sequence (0: no sequence).
    chunk: u32,
    /// Where the next read ahead would start.
    end: u64,
    /// Reads ahead by offset, with their size.
    ahead: BTreeMap<u64, (u32, T)>,
    /// The end of the file, once a read ahead found it.
    eof: Option<u64>,
}

/// What to do for one read.
pub struct Plan<T> {
    /// The read, already under way.
    pub hit: Option<T>,
    /// Reads ahead no longer wanted (drop them).
    pub dropped: Vec<T>,
    /// Reads ahead to start now: offset and size.
    pub wanted: Vec<(u64, u32)>,
}

impl<T> ReadAhead<T> {
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            next: None,
            chunk: 0,
            end: 0,
            ahead: BTreeMap::new(),
            eof: None,
        }
    }

    /// Drops everything read ahead and forgets the sequence.
    pub fn clear(&mut self) -> Vec<T> {
        self.next = None;
        self.chunk = 0;
        self.end = 0;
        self.eof = None;
        std::mem::take(&mut self.ahead)
            .into_values()
            .map(|(_, t)| t)
            .collect()
    }

    /// A read of `size` bytes at `offset` arrived.
    pub fn plan(&mut self, offset: u64, size: u32) -> Plan<T> {
        let mut dropped = Vec::new();
        let hit = match self.ahead.remove(&offset) {
            Some((n, t)) if n == size => Some(t),
            Some((_, t)) => {
                dropped.push(t);
                None
            }
            None => None,
        };
        let sequential = hit.is_some() || self.next == Some(offset);
        let in_window = self.chunk > 0
            && offset
                >= self
                    .next
                    .unwrap_or(0)
                    .saturating_sub(u64::from(self.chunk) * self.depth as u64)
            && offset < self.end;
        if !sequential && !in_window {
            // A seek (or the first read): start over from here.
            dropped.extend(self.clear());
            self.next = Some(offset + u64::from(size));
            return Plan {
                hit,
                dropped,
                wanted: Vec::new(),
            };
        }
        if !sequential {
            // A read that overtook another inside the window: served directly, nothing changes.
            return Plan {
                hit,
                dropped,
                wanted: Vec::new(),
            };
        }
        let read_end = offset + u64::from(size);
        // Reads ahead the kernel went well past are no longer wanted (those just behind may
        // still be asked for by reads that were overtaken).
        let behind = offset.saturating_sub(u64::from(size) * self.depth as u64);
        let kept = self.ahead.split_off(&behind);
        dropped.extend(
            std::mem::replace(&mut self.ahead, kept)
                .into_values()
                .map(|(_, t)| t),
        );
        if self.chunk != size {
            dropped.extend(
                std::mem::take(&mut self.ahead)
                    .into_values()
                    .map(|(_, t)| t),
            );
            self.chunk = size;
            self.end = read_end;
        }
        self.next = Some(self.next.map_or(read_end, |n| n.max(read_end)));
        self.end = self.end.max(read_end);
        let mut wanted = Vec::new();
        if size > 0 && size <= MAX_CHUNK {
            let limit = read_end + u64::from(size) * self.depth as u64;
            let mut at = self.end;
            while at < limit && self.eof.is_none_or(|eof| at < eof) {
                wanted.push((at, size));
                at += u64::from(size);
            }
        }
        Plan {
            hit,
            dropped,
            wanted,
        }
    }

    /// The read ahead at `offset` was started.
    pub fn started(&mut self, offset: u64, size: u32, read: T) {
        self.ahead.insert(offset, (size, read));
        self.end = self.end.max(offset + u64::from(size));
    }

    /// A read found the end of the file at `at`: nothing beyond it is read ahead.
    pub fn end_of_file(&mut self, at: u64) -> Vec<T> {
        self.eof = Some(at);
        let beyond = self.ahead.split_off(&at);
        beyond.into_values().map(|(_, t)| t).collect()
    }

    /// Reads ahead under way.
    pub fn pending(&self) -> usize {
        self.ahead.len()
    }
}

impl<T: Send + 'static> ReadAhead<Prefetch<T>> {
    /// Starts the `wanted` reads ahead (`read(offset, size)`) in order, as long as `budget`
    /// has room for them.
    pub fn start<F>(
        &mut self,
        wanted: Vec<(u64, u32)>,
        budget: &Budget,
        mut read: impl FnMut(u64, u32) -> F,
    ) where
        F: Future<Output = T> + Send + 'static,
    {
        for (at, n) in wanted {
            let Some(share) = budget.take(self.pending(), u64::from(n)) else {
                break;
            };
            self.started(at, n, Prefetch::spawn(read(at, n), share));
        }
    }
}

/// The bytes that may be read ahead: per open file, and over all of them.
pub struct Budget {
    per_file: u64,
    total: u64,
    used: Arc<AtomicU64>,
}

impl Budget {
    pub fn new(per_file: u64, total: u64) -> Self {
        Self {
            per_file,
            total,
            used: Arc::default(),
        }
    }

    /// Room for one more read ahead of `bytes` for a file with `pending` under way, if both
    /// bounds allow it.
    pub fn take(&self, pending: usize, bytes: u64) -> Option<Share> {
        if (pending as u64 + 1) * bytes > self.per_file {
            return None;
        }
        if self.used.fetch_add(bytes, Ordering::Relaxed) + bytes > self.total {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(Share {
            bytes,
            used: self.used.clone(),
        })
    }

    /// Bytes read ahead or being read ahead now, over all open files.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// One read ahead's bytes of the [`Budget`], given back when dropped.
pub struct Share {
    bytes: u64,
    used: Arc<AtomicU64>,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// One read ahead under way; dropping it cancels it and gives its bytes back to the budget.
pub struct Prefetch<T> {
    task: tokio::task::JoinHandle<T>,
    _share: Share,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Runs `read` in a task of its own, holding `share`.
    pub fn spawn(read: impl Future<Output = T> + Send + 'static, share: Share) -> Self {
        Self {
            task: tokio::spawn(read),
            _share: share,
        }
    }

    /// What the read answered (`None` if its task failed).
    pub async fn answer(mut self) -> Option<T> {
        (&mut self.task).await.ok()
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u32 = 128 * 1024;

    /// Reads `offset`, starting whatever is wanted; returns (hit, wanted offsets).
    fn read(ra: &mut ReadAhead<u64>, offset: u64) -> (bool, Vec<u64>) {
        let plan = ra.plan(offset, K);
        let wanted: Vec<u64> = plan.wanted.iter().map(|&(o, _)| o).collect();
        for &(o, n) in &plan.wanted {
            ra.started(o, n, o);
        }
        (plan.hit == Some(offset), wanted)
    }

    fn k(n: u64) -> u64 {
        n * u64::from(K)
    }

    #[test]
    fn sequential_reads_keep_depth_requests_ahead() {
        let mut ra = ReadAhead::new(4);
        assert_eq!(
            read(&mut ra, 0),
            (false, vec![]),
            "one read is no sequence yet"
        );
        assert_eq!(read(&mut ra, k(1)), (false, vec![k(2), k(3), k(4), k(5)]));
        assert_eq!(read(&mut ra, k(2)), (true, vec![k(6)]));
        assert_eq!(read(&mut ra, k(3)), (true, vec![k(7)]));
        assert_eq!(ra.pending(), 4);
    }

    #[test]
    fn a_seek_drops_what_was_read_ahead() {
        let mut ra = ReadAhead::new(4);
        read(&mut ra, 0);
        read(&mut ra, k(1));
        let plan = ra.plan(k(100), K);
        assert!(plan.hit.is_none());
        assert_eq!(plan.dropped.len(), 4);
        assert!(plan.wanted.is_empty());
        assert_eq!(ra.pending(), 0);
        // A new sequence from there.
        assert_eq!(
            read(&mut ra, k(101)),
            (false, vec![k(102), k(103), k(104), k(105)])
        );
    }

    #[test]
    fn an_overtaking_read_inside_the_window_changes_nothing() {
        let mut ra = ReadAhead::new(4);
        read(&mut ra, 0);
        read(&mut ra, k(1));
        // k(3) arrives before k(2): served from what is read ahead.
        assert_eq!(read(&mut ra, k(3)), (true, vec![k(6), k(7)]));
        assert_eq!(read(&mut ra, k(2)), (true, vec![]));
        assert_eq!(ra.pending(), 4);
    }

    #[test]
    fn clear_and_end_of_file_bound_it() {
        let mut ra = ReadAhead::new(4);
        read(&mut ra, 0);
        read(&mut ra, k(1));
        assert_eq!(ra.end_of_file(k(3)).len(), 3);
        assert_eq!(read(&mut ra, k(2)), (true, vec![]), "nothing past the end");
        assert_eq!(ra.clear().len(), 0);
        assert_eq!(ra.pending(), 0);
        let plan = ra.plan(0, MAX_CHUNK + 1);
        assert!(plan.wanted.is_empty());
    }

    #[test]
    fn the_budget_bounds_each_file_and_all_files() {
        let budget = Budget::new(4 * u64::from(K), 6 * u64::from(K));
        let bytes = u64::from(K);
        let first: Vec<Share> = (0..4)
            .map(|pending| budget.take(pending, bytes).expect("room"))
            .collect();
        assert!(
            budget.take(4, bytes).is_none(),
            "a fifth for one file is past its bound"
        );
        let second: Vec<Share> = (0..2)
            .map(|pending| budget.take(pending, bytes).expect("room"))
            .collect();
        assert!(budget.take(2, bytes).is_none(), "past the total");
        assert_eq!(budget.used(), 6 * bytes);
        drop(first);
        assert_eq!(
            budget.used(),
            2 * bytes,
            "shares are given back when dropped"
        );
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn started_reads_hold_their_share_until_answered_or_dropped() {
        let budget = Budget::new(2 * u64::from(K), u64::MAX);
        let mut ra = ReadAhead::new(4);
        ra.plan(0, K);
        let plan = ra.plan(k(1), K);
        ra.start(plan.wanted, &budget, |at, _| async move { at });
        assert_eq!(ra.pending(), 2, "the file's bound stopped the other two");
        assert_eq!(budget.used(), 2 * u64::from(K));
        let plan = ra.plan(k(2), K);
        assert_eq!(plan.hit.expect("read ahead").answer().await, Some(k(2)));
        drop(plan.dropped);
        assert_eq!(budget.used(), u64::from(K));
        drop(ra.clear());
        assert_eq!(budget.used(), 0);
    }
}
