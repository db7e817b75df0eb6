//! Write-behind for one open file: writes are acknowledged to the caller once queued, sent in
//! order with many in flight, and bounded by a window of bytes; the first failure is kept and
//! returned by every later write, drain (flush, fsync, release), so it is never lost.
//!
//! A task per file sends the queued writes in the order they were queued (SFTP requests on one
//! session are served in order, so overlapping writes land as the caller made them) and collects
//! the answers. [`WriteBehind::drain`] waits until every queued write has been answered.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::backend::SftpError;

/// One queued write, holding its share of the window until it is answered.
struct Queued {
    offset: u64,
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// The queue and window of one open file.
pub struct WriteBehind {
    window: Arc<Semaphore>,
    capacity: u32,
    queue: mpsc::UnboundedSender<Queued>,
    error: Arc<Mutex<Option<SftpError>>>,
}

impl WriteBehind {
    /// Starts the sending task: `send(offset, data)` writes to the server. At most `capacity`
    /// bytes are queued or in flight at once (a larger write waits for the whole window).
    pub fn start<S, F>(capacity: u32, send: S) -> Self
    where
        S: Fn(u64, Vec<u8>) -> F + Send + 'static,
        F: Future<Output = Result<(), SftpError>> + Send + 'static,
    {
        let (queue, mut queued) = mpsc::unbounded_channel::<Queued>();
        let error = Arc::new(Mutex::new(None));
        let first_error = error.clone();
        tokio::spawn(async move {
            let mut in_flight = FuturesUnordered::new();
            loop {
                tokio::select! {
                    // Answers first; a newly queued write is then polled (sent) before the next
                    // is taken from the queue, so writes go out in queue order.
                    biased;
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                    next = queued.recv() => match next {
                        Some(write) => {
                            let Queued { offset, data, _permit } = write;
                            let sent = send(offset, data);
                            let first_error = first_error.clone();
                            in_flight.push(async move {
                                if let Err(e) = sent.await {
                                    first_error.lock().expect("write error lock").get_or_insert(e);
                                }
                                drop(_permit);
                            });
                        }
                        None => break,
                    },
                }
            }
            while in_flight.next().await.is_some() {}
        });
        Self {
            window: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            queue,
            error,
        }
    }

    /// The first write that failed, if one did.
    pub fn error(&self) -> Option<SftpError> {
        self.error.lock().expect("write error lock").clone()
    }

    /// Queues `data` for `offset`, waiting while the window is full. Fails with an earlier
    /// write's error instead of queuing.
    pub async fn write(&self, offset: u64, data: Vec<u8>) -> Result<(), SftpError> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        let share = u32::try_from(data.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        let permit = self
            .window
            .clone()
            .acquire_many_owned(share)
            .await
            .expect("the window is never closed");
        self.queue
            .send(Queued {
                offset,
                data,
                _permit: permit,
            })
            .map_err(|_| SftpError::Protocol("the write queue stopped".into()))
    }

    /// Whether writes are queued or in flight.
    pub fn is_busy(&self) -> bool {
        self.window.available_permits() < self.capacity as usize
    }

    /// Waits until every queued write is answered; then fails if any write did.
    pub async fn drain(&self) -> Result<(), SftpError> {
        drop(
            self.window
                .acquire_many(self.capacity)
                .await
                .expect("the window is never closed"),
        );
        match self.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::backend::StatusCode;

    #[tokio::test]
    async fn writes_go_out_in_order_within_the_window_and_drain_waits_for_all() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (l, f, m) = (log.clone(), in_flight.clone(), most.clone());
        let writer = WriteBehind::start(4, move |offset, data| {
            l.lock().unwrap().push((offset, data.len()));
            let (f, m) = (f.clone(), m.clone());
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        });
        for i in 0..12 {
            writer.write(i, vec![0; 1]).await.unwrap();
        }
        writer.drain().await.unwrap();
        assert!(!writer.is_busy());
        let offsets: Vec<u64> = log.lock().unwrap().iter().map(|w| w.0).collect();
        assert_eq!(offsets, (0..12).collect::<Vec<_>>(), "sent in queue order");
        let most = most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} in flight at once");
    }

    #[tokio::test]
    async fn the_first_error_is_kept_and_returned_by_every_later_call() {
        let failure = SftpError::Status {
            code: StatusCode::Failure,
            message: "disk full".into(),
        };
        let answer = failure.clone();
        let writer = WriteBehind::start(1 << 20, move |offset, _| {
            let answer = answer.clone();
            async move {
                if offset >= 10 {
                    Err(answer)
                } else {
                    Ok(())
                }
            }
        });
        writer.write(0, vec![1; 10]).await.unwrap();
        writer.write(10, vec![1; 10]).await.unwrap();
        assert_eq!(writer.drain().await, Err(failure.clone()));
        assert_eq!(writer.write(20, vec![1]).await, Err(failure.clone()));
        assert_eq!(writer.drain().await, Err(failure));
    }
}
