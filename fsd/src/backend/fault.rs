//! A fault-injecting wrapper around any backend, for tests: it cuts the connection, slows
//! replies down, and fails writes, the way a dying or overloaded file server does.
//!
//! [`FaultyBackend::disconnect`] makes every request fail with [`SftpError::Disconnected`]: those
//! waiting at that moment at once, new ones until [`FaultyBackend::reconnect`]. Handles opened
//! before a disconnect stay invalid afterwards ([`SftpError::HandleLost`]), as with the real
//! server, whose handles die with the connection. [`FaultyBackend::set_delay`] makes every
//! request wait before it reaches the wrapped backend; with [`FaultyBackend::with_deadline`], a
//! request not served within the deadline fails with [`SftpError::Timeout`], as the SSH
//! backend's do.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::{
    Attributes, DirEntry, FsStats, OpenOptions, SetAttributes, SftpBackend, SftpError, SftpResult,
    StatusCode,
};

/// `B` with faults on demand.
pub struct FaultyBackend<B> {
    inner: B,
    /// The connection's generation, and whether it is up.
    link: watch::Sender<(u64, bool)>,
    delay: Mutex<Duration>,
    deadline: Option<Duration>,
    /// Writes that succeed before every later write fails with `SSH_FX_FAILURE`.
    writes_left: Mutex<Option<u64>>,
}

/// A handle of the wrapped backend, and the connection generation it was opened on.
pub struct FaultyHandle<H> {
    inner: H,
    generation: u64,
}

impl<B: SftpBackend> FaultyBackend<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            link: watch::Sender::new((0, true)),
            delay: Mutex::new(Duration::ZERO),
            deadline: None,
            writes_left: Mutex::new(None),
        }
    }

    /// Requests not served within `deadline` fail with [`SftpError::Timeout`].
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Cuts the connection: requests waiting now and from now on fail.
    pub fn disconnect(&self) {
        self.link.send_modify(|(generation, up)| {
            *generation += 1;
            *up = false;
        });
    }

    /// Restores the connection (handles from before stay lost).
    pub fn reconnect(&self) {
        self.link.send_modify(|(_, up)| *up = true);
    }

    /// Every request waits `delay` before it is served.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("delay lock") = delay;
    }

    /// After `count` more successful writes, every write fails (like a full disk).
    pub fn fail_writes_after(&self, count: u64) {
        *self.writes_left.lock().expect("writes lock") = Some(count);
    }

    /// Runs `request` on the wrapped backend after the delay, unless the connection is (or goes)
    /// down or the deadline passes first.
    async fn serve<T>(
        &self,
        request: impl std::future::Future<Output = SftpResult<T>>,
    ) -> SftpResult<T> {
        let mut link = self.link.subscribe();
        let (generation, up) = *link.borrow_and_update();
        let lost = || SftpError::Disconnected("connection cut by the fault injector".into());
        if !up {
            return Err(lost());
        }
        let delay = *self.delay.lock().expect("delay lock");
        let cut = link.wait_for(|&(g, _)| g != generation);
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cut => Err(lost()),
            () = deadline => Err(SftpError::Timeout),
            answer = async {
                tokio::time::sleep(delay).await;
                request.await
            } => answer,
        }
    }

    fn check<H>(&self, handle: &FaultyHandle<H>) -> SftpResult<()> {
        if handle.generation == self.link.borrow().0 {
            Ok(())
        } else {
            Err(SftpError::HandleLost)
        }
    }
}

impl<B: SftpBackend> SftpBackend for FaultyBackend<B> {
    type Handle = FaultyHandle<B::Handle>;

    async fn lstat(&self, path: &str) -> SftpResult<Attributes> {
        self.serve(self.inner.lstat(path)).await
    }

    async fn read_dir(&self, path: &str) -> SftpResult<Vec<DirEntry>> {
        self.serve(self.inner.read_dir(path)).await
    }

    async fn open(&self, path: &str, options: OpenOptions, perm: u16) -> SftpResult<Self::Handle> {
        let generation = self.link.borrow().0;
        let inner = self.serve(self.inner.open(path, options, perm)).await?;
        Ok(FaultyHandle { inner, generation })
    }

    async fn fstat(&self, handle: &Self::Handle) -> SftpResult<Attributes> {
        self.check(handle)?;
        self.serve(self.inner.fstat(&handle.inner)).await
    }

    async fn read(&self, handle: &Self::Handle, offset: u64, len: u32) -> SftpResult<Vec<u8>> {
        self.check(handle)?;
        self.serve(self.inner.read(&handle.inner, offset, len))
            .await
    }

    async fn write(&self, handle: &Self::Handle, offset: u64, data: Vec<u8>) -> SftpResult<()> {
        self.check(handle)?;
        self.serve(async {
            if let Some(left) = self.writes_left.lock().expect("writes lock").as_mut() {
                if *left == 0 {
                    return Err(SftpError::Status {
                        code: StatusCode::Failure,
                        message: "Failure".into(),
                    });
                }
                *left -= 1;
            }
            self.inner.write(&handle.inner, offset, data).await
        })
        .await
    }

    async fn fsync(&self, handle: &Self::Handle) -> SftpResult<()> {
        self.check(handle)?;
        self.serve(self.inner.fsync(&handle.inner)).await
    }

    async fn close(&self, handle: &Self::Handle) -> SftpResult<()> {
        // A handle of a lost connection is already closed on the server.
        if self.check(handle).is_err() {
            return Ok(());
        }
        self.serve(self.inner.close(&handle.inner)).await
    }

    async fn setstat(&self, path: &str, attrs: SetAttributes) -> SftpResult<()> {
        self.serve(self.inner.setstat(path, attrs)).await
    }

    async fn fsetstat(&self, handle: &Self::Handle, attrs: SetAttributes) -> SftpResult<()> {
        self.check(handle)?;
        self.serve(self.inner.fsetstat(&handle.inner, attrs)).await
    }

    async fn mkdir(&self, path: &str, perm: u16) -> SftpResult<()> {
        self.serve(self.inner.mkdir(path, perm)).await
    }

    async fn rmdir(&self, path: &str) -> SftpResult<()> {
        self.serve(self.inner.rmdir(path)).await
    }

    async fn remove(&self, path: &str) -> SftpResult<()> {
        self.serve(self.inner.remove(path)).await
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> SftpResult<()> {
        self.serve(self.inner.rename(from, to, replace)).await
    }

    async fn statvfs(&self, path: &str) -> SftpResult<FsStats> {
        self.serve(self.inner.statvfs(path)).await
    }

    async fn symlink(&self, target: &str, path: &str) -> SftpResult<()> {
        self.serve(self.inner.symlink(target, path)).await
    }

    async fn readlink(&self, path: &str) -> SftpResult<String> {
        self.serve(self.inner.readlink(path)).await
    }

    async fn hardlink(&self, existing: &str, new: &str) -> SftpResult<()> {
        self.serve(self.inner.hardlink(existing, new)).await
    }
}
