//! The waits between tries of a call to logd that failed for want of logd or its database: from
//! [`FIRST`] doubling to at most [`MAX`]. Used by [`crate::post_log`] (a Post sent again, an
//! unresolved Post looked up) and [`crate::download_log`] (a download's final count).

use std::time::Duration;

/// The first wait.
pub const FIRST: Duration = Duration::from_millis(250);
/// The longest wait.
pub const MAX: Duration = Duration::from_secs(10);

/// The waits of one series of tries.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    waited: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST,
            waited: Duration::ZERO,
        }
    }
}

impl Backoff {
    /// Sleeps the next wait, and doubles it (up to [`MAX`]).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.waited += self.next;
        self.next = (self.next * 2).min(MAX);
    }

    /// The time slept so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_up_to_the_most() {
        let mut backoff = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let started = tokio::time::Instant::now();
            backoff.wait().await;
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff.waited(), Duration::from_millis(35_750));
    }
}
