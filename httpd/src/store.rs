//! The file store: the node's directory on the file server, as fsd mounts it locally.
//!
//! [`Store`] writes a new file under a temporary name in its final hour directory, fsyncs it and
//! renames it into place, so neither a reader nor a crash ever sees a partial file under a real
//! name; a [`PartialFile`] that is not committed is deleted, whatever stopped it (an error, a
//! limit, or a client that went away). It opens stored files for reading.
//!
//! Each stored file's real name (the user's name for it) is kept beside it as a symbolic link,
//! `.names/<file_name>` → `<real name>` under the node's directory (outside the seed's layout,
//! like `.slots/`): one call to make, one to read, and the name is never followed as a path.
//! A download names the file and its real name; [`StoredFile::real_name`] lets the caller refuse
//! a name that is not the stored one. It does not know about
//! HTTP, credentials or the audit log. Directories are created only when a file is stored.
//!
//! A partial file that no process will finish (httpd, fsd or the file server died mid-upload)
//! is removed by [`Store::sweep_partials`], which httpd runs once the store is first there after
//! it starts: it takes every `.part` under `files/` but those this process is writing.
//!
//! Errors are classed once, by fsd's contract ([`fsd::contract`], `docs/fsd-contract.md`). The
//! contract also says a directory fsync is a no-op on fsd's mount (SFTP cannot sync a
//! directory), so the store fsyncs directories after its renames only on plain directories
//! ([`Mount::Directory`]): on the mount each would cost three FUSE requests and add nothing.
//! Directories are made only when a call finds them missing, not checked before each file.
//!
//! All file system calls run on tokio's blocking pool. An upload's body is gathered into writes
//! of [`WRITE_SIZE`], the next gathered while the last is written; a file smaller than that is
//! written whole by its commit, in the same call to the pool as its fsync.

use std::collections::HashSet;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use fsd::contract::ErrnoClass;
use mft_journal::durable::sync_dir;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::layout::{ChatType, FileLocation, FileName, HourAllocator, FILES_DIR};
use crate::real_name::RealName;

pub use mft_config::NAMES_DIR;

/// The most an upload gathers before it writes to the mount: a file of the seed's usual sizes
/// (100 KB on average) reaches the file server in one write, whatever the size of the chunks
/// it came in, and a transfer holds at most two such buffers (one being written, one filling),
/// 512 KiB, however many run at once. A quarter of fsd's largest write
/// ([`fsd::contract::MAX_WRITE`]).
pub const WRITE_SIZE: usize = fsd::contract::MAX_WRITE as usize / 4;

/// A failed file system operation on the mount, classified by what it means for the client.
/// The OS error is the `source`, not part of the message: log with the cause chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The mount reports no space (or quota) left.
    #[error("the file server is full")]
    Full(#[source] io::Error),
    /// The mount is gone, the connection behind it failed, or the file server takes no more
    /// open files now.
    #[error("the file server is unavailable")]
    Unavailable(#[source] io::Error),
    /// Anything else.
    #[error("file store error")]
    Io(#[source] io::Error),
}

/// The one mapping of a failed call on the mount, by the class fsd's contract gives its errno
/// ([`ErrnoClass`]): a missing file and a refused call are [`StoreError::Io`] (the caller looks
/// at a missing file's kind where that is an answer).
impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        match ErrnoClass::of_io(&e) {
            ErrnoClass::Full => StoreError::Full(e),
            ErrnoClass::Unavailable | ErrnoClass::Busy => StoreError::Unavailable(e),
            ErrnoClass::NotFound | ErrnoClass::Refused => StoreError::Io(e),
        }
    }
}

/// What the store's root must be before a file is written or read there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// A FUSE mount (fsd's). Anything else means the file server is not mounted, and writing
    /// would put files on the node's own disk.
    Fuse,
    /// Any existing directory (tests, and stores that are not mounted by fsd).
    Directory,
}

impl Mount {
    /// Fails with [`StoreError::Unavailable`] unless `root` is there as this requires: the one
    /// check made before every write and read, and by the status report.
    pub fn check(self, root: &Path) -> Result<(), StoreError> {
        match self {
            Mount::Fuse => {
                let fs = nix::sys::statfs::statfs(root)
                    .map_err(|e| StoreError::Unavailable(e.into()))?;
                if fs.filesystem_type() != nix::sys::statfs::FUSE_SUPER_MAGIC {
                    return Err(StoreError::Unavailable(io::Error::new(
                        io::ErrorKind::NotConnected,
                        format!("{} is not a FUSE mount: fsd is not running", root.display()),
                    )));
                }
            }
            Mount::Directory => {
                std::fs::metadata(root).map_err(StoreError::Unavailable)?;
            }
        }
        Ok(())
    }
}

/// The node's directory, mounted at `root`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    mount: Mount,
    /// The device number of the FUSE mount last found at `root` (0: none yet); see
    /// [`Store::check_root`].
    mounted_dev: AtomicU64,
    allocator: HourAllocator,
    in_flight: Arc<InFlight>,
}

/// The partial files this process is writing, which a sweep leaves alone.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashSet<PathBuf>>);

impl InFlight {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.0.lock().expect("the in-flight lock is never poisoned")
    }
}

/// Keeps a partial file's path in [`InFlight`] for as long as it lives.
#[derive(Debug)]
struct Registration {
    in_flight: Arc<InFlight>,
    part: PathBuf,
}

impl Registration {
    fn new(in_flight: &Arc<InFlight>, part: &Path) -> Self {
        in_flight.set().insert(part.to_owned());
        Self {
            in_flight: in_flight.clone(),
            part: part.to_owned(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.in_flight.set().remove(&self.part);
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub bytes: u64,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>, mount: Mount) -> Self {
        let root = root.into();
        Self {
            allocator: HourAllocator::new(root.clone()),
            root,
            mount,
            mounted_dev: AtomicU64::new(0),
            in_flight: Arc::default(),
        }
    }

    /// The node's directory as mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs blocking file system work for this store on tokio's blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        blocking(move || f(&store)).await
    }

    /// Fails with [`StoreError::Unavailable`] unless the root is there as [`Mount`] requires.
    /// Never creates the root: if it is missing, the file server is not there.
    ///
    /// On a FUSE mount, a root with the device number of the mount last found there is that
    /// mount still (each mount has a device number of its own; an unmounted root has its parent
    /// file system's): a `stat` the kernel answers from its cache, where [`Mount::check`]'s
    /// `statfs` would be a request to fsd on every transfer.
    pub(crate) fn check_root(&self) -> Result<(), StoreError> {
        let dev = || std::fs::metadata(&self.root).map(|meta| meta.dev()).ok();
        if self.mount == Mount::Fuse
            && dev().is_some_and(|dev| dev == self.mounted_dev.load(Ordering::Relaxed))
        {
            return Ok(());
        }
        self.mount.check(&self.root)?;
        if let Some(dev) = dev() {
            self.mounted_dev.store(dev, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether renames here need their directory fsynced: not on fsd's mount, whose contract
    /// makes a directory fsync a no-op.
    fn syncs_dirs(&self) -> bool {
        self.mount == Mount::Directory
    }

    /// Fsyncs `dir` after a rename in it, where that adds durability ([`Store::syncs_dirs`]).
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.syncs_dirs() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Starts a new file for `chat_type` at `now`: picks its hour directory and a fresh random
    /// name, creates the directory if needed and opens `.<file_name>.part` in it.
    ///
    /// The [`PartialFile`] is made on the blocking thread as soon as the file exists, so that if
    /// this future is dropped meanwhile (the client's connection broke), dropping the finished
    /// task's result deletes the file.
    pub async fn create(
        self: &std::sync::Arc<Self>,
        chat_type: ChatType,
        now: DateTime<Utc>,
    ) -> Result<PartialFile, StoreError> {
        let store = self.clone();
        blocking(move || {
            store.check_root()?;
            let location = FileLocation {
                dir: store.allocator.allocate(chat_type, now)?,
                file_name: FileName::random(),
            };
            let dir = store.root.join(location.dir.relative());
            let part = dir.join(location.file_name.partial());
            // Registered before it exists, so that a sweep never sees it unregistered.
            let registration = Registration::new(&store.in_flight, &part);
            let file = in_new_dir(&dir, || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&part)
            })?;
            Ok(PartialFile {
                writer: Writer::Idle(file),
                pending: Vec::new(),
                spare: Vec::new(),
                content: ContentDigest::default(),
                _registration: registration,
                part,
                dir,
                names: store.root.join(NAMES_DIR),
                syncs_dirs: store.syncs_dirs(),
                location,
                finished: false,
            })
        })
        .await
    }

    /// Removes every partial file under `files/` that this process is not writing: those of
    /// uploads cut off by a crash of httpd, fsd or the file server. A directory that cannot be
    /// read is logged and skipped.
    pub async fn sweep_partials(self: &Arc<Self>) -> Result<Swept, StoreError> {
        self.blocking(|store| {
            store.check_root()?;
            let mut swept = Swept::default();
            let mut dirs = vec![store.root.join(FILES_DIR)];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        log::warn!("cannot look for partial uploads in {}: {e}", dir.display());
                        continue;
                    }
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    if kind.is_dir() {
                        dirs.push(path);
                    } else if kind.is_file()
                        && entry.file_name().to_str().is_some_and(FileName::is_partial)
                        && !store.in_flight.set().contains(&path)
                    {
                        let bytes = entry.metadata().map_or(0, |m| m.len());
                        match std::fs::remove_file(&path) {
                            Ok(()) => {
                                swept.files += 1;
                                swept.bytes += bytes;
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => log::warn!(
                                "cannot remove the partial upload {}: {e}",
                                path.display()
                            ),
                        }
                    }
                }
            }
            Ok(swept)
        })
        .await
    }

    /// Opens a stored file for reading; `None` if there is no such file.
    pub async fn open(
        self: &std::sync::Arc<Self>,
        location: &FileLocation,
    ) -> Result<Option<StoredFile>, StoreError> {
        let (store, path, name_link) = (
            self.clone(),
            self.path_of(location),
            self.name_link(location),
        );
        let opened = blocking(move || {
            store.check_root()?;
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            let modified = meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or(DateTime::UNIX_EPOCH);
            let real_name = match std::fs::read_link(&name_link) {
                Ok(target) => target.into_os_string().into_string().ok(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            Ok(meta
                .is_file()
                .then_some((file, meta.len(), modified, real_name)))
        })
        .await;
        match opened {
            Ok(found) => Ok(found.map(|(file, size, modified, real_name)| StoredFile {
                file: tokio::fs::File::from_std(file),
                size,
                modified,
                real_name,
            })),
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a stored file (an upload whose audit record failed, an expired slot's file) and
    /// its real-name link.
    pub async fn remove(&self, location: &FileLocation) -> Result<(), StoreError> {
        let (path, name_link) = (self.path_of(location), self.name_link(location));
        blocking(move || {
            std::fs::remove_file(path)?;
            remove_file_logged(&name_link, "real-name link");
            Ok(())
        })
        .await
    }

    /// Moves a stored file to the hour directory of `chat_type` for the time it was `stored`
    /// (the seed's layout dates a file by its upload), keeping its resource name and real-name
    /// link; returns where it lies now.
    pub async fn relocate(
        self: &std::sync::Arc<Self>,
        from: &FileLocation,
        chat_type: ChatType,
        stored: DateTime<Utc>,
    ) -> Result<FileLocation, StoreError> {
        let (store, from) = (self.clone(), from.clone());
        blocking(move || {
            store.check_root()?;
            let to = FileLocation {
                dir: store.allocator.allocate(chat_type, stored)?,
                file_name: from.file_name.clone(),
            };
            store.rename(&from, &to)?;
            Ok(to)
        })
        .await
    }

    /// Moves a stored file from one place in the layout to another (undoing a [`Store::relocate`]).
    pub async fn relocate_to(
        self: &std::sync::Arc<Self>,
        from: &FileLocation,
        to: &FileLocation,
    ) -> Result<(), StoreError> {
        let (store, from, to) = (self.clone(), from.clone(), to.clone());
        blocking(move || store.rename(&from, &to)).await
    }

    /// Renames `from` to `to`, creating `to`'s directory, and makes both directories durable.
    fn rename(&self, from: &FileLocation, to: &FileLocation) -> Result<(), StoreError> {
        let (old, new) = (self.path_of(from), self.path_of(to));
        let dir = new.parent().expect("a file in the layout has a directory");
        in_new_dir(dir, || std::fs::rename(&old, &new))?;
        self.sync_dir(dir)?;
        Ok(self.sync_dir(old.parent().expect("a file in the layout has a directory"))?)
    }

    fn path_of(&self, location: &FileLocation) -> PathBuf {
        self.root.join(location.relative())
    }

    fn name_link(&self, location: &FileLocation) -> PathBuf {
        self.root.join(NAMES_DIR).join(location.file_name.as_str())
    }
}

/// A stored file opened for reading.
#[derive(Debug)]
pub struct StoredFile {
    pub file: tokio::fs::File,
    pub size: u64,
    pub modified: DateTime<Utc>,
    /// The real name it was stored with; `None` if it has no name link (or a name that is not
    /// UTF-8, which the store never writes).
    pub real_name: Option<String>,
}

/// A file made durable under its resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub location: FileLocation,
    pub size: u64,
    /// The SHA-256 of what was written, lowercase hex.
    pub sha256: String,
}

/// The byte count and SHA-256 of content as it streams past: a file being stored, or a retried
/// upload's body that is only compared with a stored file.
#[derive(Debug, Default)]
pub struct ContentDigest {
    sha256: Sha256,
    bytes: u64,
}

impl ContentDigest {
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        self.bytes += chunk.len() as u64;
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The SHA-256 of the bytes seen, lowercase hex.
    pub fn hex(self) -> String {
        hex::encode(self.sha256.finalize())
    }
}

/// A file being written. Commit it, or it is deleted.
#[derive(Debug)]
pub struct PartialFile {
    writer: Writer,
    /// Bytes taken but not yet handed to a write.
    pending: Vec<u8>,
    /// The buffer of the last write, empty, for the next.
    spare: Vec<u8>,
    /// Of every byte taken so far.
    content: ContentDigest,
    _registration: Registration,
    part: PathBuf,
    dir: PathBuf,
    /// `.names/` under the node's directory.
    names: PathBuf,
    /// Whether the commit fsyncs the directories of its rename and link ([`Store::syncs_dirs`]).
    syncs_dirs: bool,
    location: FileLocation,
    /// Committed or discarded: dropping it leaves the file alone.
    finished: bool,
}

/// A write on the blocking pool, which gives the file back with its buffer emptied.
type InFlightWrite = JoinHandle<io::Result<(std::fs::File, Vec<u8>)>>;

/// The open partial file, or the write that has it now.
#[derive(Debug)]
enum Writer {
    Idle(std::fs::File),
    Writing(InFlightWrite),
    /// Taken by the commit, or lost with a failed write.
    Closed,
}

impl PartialFile {
    /// Where the file will be once committed.
    pub fn location(&self) -> &FileLocation {
        &self.location
    }

    /// Bytes taken so far.
    pub fn written(&self) -> u64 {
        self.content.bytes()
    }

    /// Takes `chunk`; once [`WRITE_SIZE`] bytes are gathered, waits for the previous write and
    /// starts theirs.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        assert!(
            !self.finished,
            "a PartialFile is written only before commit or discard"
        );
        self.content.update(chunk);
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= WRITE_SIZE {
            let file = self.idle_file().await?;
            let bytes = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
            self.writer = Writer::Writing(tokio::task::spawn_blocking(move || {
                let mut bytes = bytes;
                (&file).write_all(&bytes)?;
                bytes.clear();
                Ok((file, bytes))
            }));
        }
        Ok(())
    }

    /// The file once no write has it; the writer is [`Writer::Closed`] until it is put back,
    /// and stays so if the write failed. The write is awaited in place: if this future is
    /// dropped (the client went away), it stays for [`Drop`] to wait for before removing the file.
    async fn idle_file(&mut self) -> Result<std::fs::File, StoreError> {
        if let Writer::Writing(write) = &mut self.writer {
            let written = write.await;
            self.writer = Writer::Closed;
            let (file, spare) = written.map_err(|e| StoreError::Io(io::Error::other(e)))??;
            self.spare = spare;
            return Ok(file);
        }
        match std::mem::replace(&mut self.writer, Writer::Closed) {
            Writer::Idle(file) => Ok(file),
            Writer::Writing(_) | Writer::Closed => Err(StoreError::Io(io::Error::other(
                "an earlier write of this file failed",
            ))),
        }
    }

    /// Makes the file durable under its resource name, with `real_name` linked to it: the last
    /// bytes written, fsync, the name link, rename (and fsync both directories where that adds
    /// durability). On failure the partial file (and the link) is deleted.
    pub async fn commit(mut self, real_name: &RealName) -> Result<Committed, StoreError> {
        self.finished = true;
        let done = match self.idle_file().await {
            Ok(file) => {
                let (part, dir, names, location) = (
                    self.part.clone(),
                    self.dir.clone(),
                    self.names.clone(),
                    self.location.clone(),
                );
                let (bytes, syncs_dirs) = (std::mem::take(&mut self.pending), self.syncs_dirs);
                let real_name = real_name.as_str().to_owned();
                blocking(move || {
                    (&file).write_all(&bytes)?;
                    file.sync_all()?;
                    let link = names.join(location.file_name.as_str());
                    in_new_dir(&names, || std::os::unix::fs::symlink(&real_name, &link))?;
                    if let Err(e) = std::fs::rename(&part, dir.join(location.file_name.as_str())) {
                        remove_file_logged(&link, "real-name link");
                        return Err(e.into());
                    }
                    if syncs_dirs {
                        sync_dir(&names)?;
                        sync_dir(&dir)?;
                    }
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => Ok(Committed {
                location: self.location.clone(),
                size: self.content.bytes(),
                sha256: std::mem::take(&mut self.content).hex(),
            }),
            Err(e) => {
                remove_quietly(self.part.clone(), None).await;
                Err(e)
            }
        }
    }

    /// Deletes the partial file now (rather than in the background on drop), once a write in
    /// flight is done.
    pub async fn discard(mut self) {
        self.finished = true;
        let write = self.close();
        remove_quietly(self.part.clone(), write).await;
    }

    /// Closes the file: the write still in flight, if any, for the caller to wait for.
    fn close(&mut self) -> Option<InFlightWrite> {
        match std::mem::replace(&mut self.writer, Writer::Closed) {
            Writer::Writing(write) => Some(write),
            Writer::Idle(_) | Writer::Closed => None,
        }
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        // Dropped before commit or discard: the request was cancelled mid-upload.
        if !self.finished {
            let (part, write) = (self.part.clone(), self.close());
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(remove_quietly(part, write))),
                Err(_) => remove_file_logged(&part, "partial upload"),
            }
        }
    }
}

/// Runs `make` (a call that makes a name in `dir`); if `dir` is missing, makes it (and its
/// parents) and runs `make` again.
pub(crate) fn in_new_dir<T>(dir: &Path, make: impl Fn() -> io::Result<T>) -> io::Result<T> {
    match make() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            make()
        }
        made => made,
    }
}

/// Deletes a partial file, after the `write` still in flight on it; failing to is logged here,
/// since nobody else can act on it.
async fn remove_quietly(part: PathBuf, write: Option<InFlightWrite>) {
    if let Some(write) = write {
        let _ = write.await;
    }
    if let Err(e) =
        tokio::task::spawn_blocking(move || remove_file_logged(&part, "partial upload")).await
    {
        log::error!("removing a partial upload panicked: {e}");
    }
}

/// Deletes `what` at `path`; failing to is logged here (`logd reconcile` finds what is left).
fn remove_file_logged(path: &Path, what: &str) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::error!("cannot remove the {what} {}: {e}", path.display()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Io(io::Error::other(e))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::layout::HourDir;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2014, 8, 11, 15, 30, 0).unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// A sweep takes the partial files an earlier process left, in any hour directory, and
    /// leaves the uploads in flight and the stored files alone.
    #[tokio::test]
    async fn a_sweep_removes_orphaned_partial_files_only() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        let mut stored = store.create(ChatType::Im, now()).await.unwrap();
        stored.write(b"kept").await.unwrap();
        let location = stored
            .commit(&RealName::parse("a.txt").unwrap())
            .await
            .unwrap()
            .location;
        let mut in_flight = store.create(ChatType::Im, now()).await.unwrap();
        in_flight.write(b"still coming").await.unwrap();
        let old_hour = mount.path().join("files/persistent/20140101/03.1");
        std::fs::create_dir_all(&old_hour).unwrap();
        std::fs::write(old_hour.join(".AbCdEf.part"), vec![0u8; 1000]).unwrap();
        std::fs::write(
            mount.path().join("files/im/20140811/15/.GhIjKl.part"),
            b"12345",
        )
        .unwrap();

        assert_eq!(
            store.sweep_partials().await.unwrap(),
            Swept {
                files: 2,
                bytes: 1005
            }
        );
        assert_eq!(entries(&old_hour), Vec::<String>::new());
        let hour_dir = mount.path().join("files/im/20140811/15");
        let in_flight_name = format!(".{}.part", in_flight.location().file_name);
        assert_eq!(entries(&hour_dir), {
            let mut kept = vec![location.file_name.to_string(), in_flight_name];
            kept.sort();
            kept
        });
        in_flight.discard().await;
        assert_eq!(store.sweep_partials().await.unwrap(), Swept::default());
    }

    #[tokio::test]
    async fn commit_renames_into_place() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        let mut part = store.create(ChatType::Im, now()).await.unwrap();
        let name = part.location().file_name.to_string();
        let hour_dir = mount.path().join("files/im/20140811/15");
        assert_eq!(entries(&hour_dir), [format!(".{name}.part")]);
        part.write(b"hello ").await.unwrap();
        part.write(b"world").await.unwrap();
        let Committed {
            location,
            size,
            sha256,
        } = part
            .commit(&RealName::parse("Größe (2) ..txt").unwrap())
            .await
            .unwrap();
        // sha256sum of "hello world".
        assert_eq!(
            sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(size, 11);
        assert_eq!(location.relative(), format!("files/im/20140811/15/{name}"));
        assert_eq!(entries(&hour_dir), std::slice::from_ref(&name));
        let stored = store.open(&location).await.unwrap().unwrap();
        assert_eq!(
            (stored.size, stored.real_name.as_deref()),
            (11, Some("Größe (2) ..txt"))
        );
        assert_eq!(entries(&mount.path().join(NAMES_DIR)), [name]);
        store.remove(&location).await.unwrap();
        assert!(store.open(&location).await.unwrap().is_none());
        assert!(
            entries(&mount.path().join(NAMES_DIR)).is_empty(),
            "the name link goes with the file"
        );
    }

    /// An upload's chunks reach the mount in writes of [`WRITE_SIZE`] (the rest with the
    /// commit), not one write per chunk.
    #[tokio::test]
    async fn chunks_are_gathered_into_writes_of_write_size() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        let mut part = store.create(ChatType::Im, now()).await.unwrap();
        let on_disk = mount
            .path()
            .join("files/im/20140811/15")
            .join(part.location().file_name.partial());
        let size = || std::fs::metadata(&on_disk).unwrap().len();
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..WRITE_SIZE / chunk.len() - 1 {
            part.write(&chunk).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            size(),
            0,
            "nothing written before WRITE_SIZE bytes are gathered"
        );
        part.write(&chunk).await.unwrap();
        part.write(b"tail").await.unwrap();
        let _ = part
            .idle_file()
            .await
            .map(|file| part.writer = Writer::Idle(file));
        assert_eq!(size(), WRITE_SIZE as u64, "one write of WRITE_SIZE bytes");
        let committed = part
            .commit(&RealName::parse("a.bin").unwrap())
            .await
            .unwrap();
        let stored = std::fs::read(mount.path().join(committed.location.relative())).unwrap();
        assert_eq!(stored.len(), WRITE_SIZE + 4);
        assert!(stored.ends_with(b"\x07tail"));
        assert_eq!(committed.size, stored.len() as u64);
    }

    /// `.names/` (or an hour directory) removed behind the store's back is made again.
    #[tokio::test]
    async fn missing_directories_are_made_again() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        for _ in 0..2 {
            let _ = std::fs::remove_dir_all(mount.path().join(NAMES_DIR));
            let _ = std::fs::remove_dir_all(mount.path().join("files"));
            let mut part = store.create(ChatType::Im, now()).await.unwrap();
            part.write(b"x").await.unwrap();
            let location = part
                .commit(&RealName::parse("x.txt").unwrap())
                .await
                .unwrap()
                .location;
            let stored = store.open(&location).await.unwrap().unwrap();
            assert_eq!(stored.real_name.as_deref(), Some("x.txt"));
        }
    }

    /// A partial file dropped while one of its writes is in flight is removed once it is done.
    #[tokio::test]
    async fn a_file_dropped_mid_write_is_deleted() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        let hour_dir = mount.path().join("files/im/20140811/15");
        let mut part = store.create(ChatType::Im, now()).await.unwrap();
        part.write(&vec![1u8; WRITE_SIZE]).await.unwrap();
        assert!(matches!(part.writer, Writer::Writing(_)));
        drop(part);
        for _ in 0..200 {
            if entries(&hour_dir).is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("left behind: {:?}", entries(&hour_dir));
    }

    #[tokio::test]
    async fn discarded_and_dropped_files_are_deleted() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        let hour_dir = mount.path().join("files/groupchat/20140811/15");
        let mut part = store.create(ChatType::Groupchat, now()).await.unwrap();
        part.write(b"partial").await.unwrap();
        part.discard().await;
        assert!(entries(&hour_dir).is_empty());

        let part = store.create(ChatType::Groupchat, now()).await.unwrap();
        drop(part);
        for _ in 0..100 {
            if entries(&hour_dir).is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "the dropped partial file is still there: {:?}",
            entries(&hour_dir)
        );
    }

    /// Defect 3 of issue 15: an upload cancelled while its file is being created (the
    /// connection broke) leaves no `.part` file behind.
    #[tokio::test]
    async fn a_create_cancelled_midway_leaves_no_part_file() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Directory));
        let mut create = Box::pin(store.create(ChatType::Im, now()));
        assert!(
            futures_util::poll!(&mut create).is_pending(),
            "the create runs on the blocking pool"
        );
        drop(create);
        let hour_dir = mount.path().join("files/im/20140811/15");
        for _ in 0..200 {
            if hour_dir.exists() && entries(&hour_dir).is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "left behind: {:?}",
            hour_dir.exists().then(|| entries(&hour_dir))
        );
    }

    #[tokio::test]
    async fn a_missing_mount_is_not_created() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(
            mount.path().join("not-mounted"),
            Mount::Directory,
        ));
        let err = store.create(ChatType::Im, now()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(ref e) if e.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(!mount.path().join("not-mounted").exists());
    }

    #[tokio::test]
    async fn a_plain_directory_is_not_taken_for_the_fuse_mount() {
        let mount = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(mount.path(), Mount::Fuse));
        let err = store.create(ChatType::Im, now()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(ref e) if e.to_string().contains("not a FUSE mount")),
            "{err:?}"
        );
        let location = FileLocation {
            dir: HourDir::parse(ChatType::Im, "20140811", "15").unwrap(),
            file_name: FileName::random(),
        };
        assert!(matches!(
            store.open(&location).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(
            std::fs::read_dir(mount.path()).unwrap().count(),
            0,
            "nothing written to the local disk"
        );
    }

    #[test]
    fn errors_are_classified_by_errno() {
        let class = |errno| match StoreError::from(io::Error::from_raw_os_error(errno)) {
            StoreError::Full(_) => "full",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Io(_) => "io",
        };
        assert_eq!(class(libc::ENOSPC), "full");
        assert_eq!(class(libc::EDQUOT), "full");
        assert_eq!(class(libc::ENOTCONN), "unavailable");
        assert_eq!(class(libc::EIO), "unavailable");
        assert_eq!(class(libc::EACCES), "io");
        assert_eq!(
            class(libc::ENFILE),
            "unavailable",
            "a capacity condition, not an internal error"
        );
    }
}
