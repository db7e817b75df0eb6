//! The filesystem logic: inodes, open files, directory listings and caches over an
//! [`SftpBackend`].
//!
//! [`Filesystem`] is async and knows nothing of FUSE: it takes inode numbers, names and POSIX
//! open flags, and answers with attributes, data or an [`FsError`]. `fuse.rs` only translates.
//! Each operation here only orchestrates: it asks the server and tells the parts what happened.
//!
//! - [`superblock`]: the metadata (inodes, cached attributes, known directories), kept right
//!   by one event per change ([`superblock::Superblock::created`], `removed`, `renamed`, …).
//! - [`open_file`]: an open file with its read-ahead ([`read_ahead`], budgeted in bytes per
//!   file and in all) and write-behind queue ([`write_behind`]).
//! - [`failure`]: what an `SSH_FX_FAILURE` meant; [`error`]: every failure's errno.
//! - [`traffic`]: the requests and bytes counted for fsd's status.
//!
//! Behaviour:
//!
//! - Every request to the server is bounded by the backend's deadline (the SSH backend's
//!   [`REQUEST_DEADLINE`](crate::backend::ssh::REQUEST_DEADLINE), then
//!   [`ETIMEDOUT`](libc::ETIMEDOUT)); the filesystem has no timer of its own and waits on nothing
//!   else, so no caller waits long on a server that stopped answering.
//! - Writes are write-behind: acknowledged once queued, sent in order with up to
//!   [`WRITE_WINDOW`] bytes in flight per open file; the first failure is returned by the next
//!   write, flush, fsync or release. Anything that must see the written data (a read, `stat`,
//!   truncate, fsync) first waits for the file's queued writes.
//! - Attributes from listings and from fsd's own operations are kept for [`CACHE_TTL`]
//!   ([`attr_cache`]); the kernel caches attributes and names for [`ATTR_TTL`] on top.
//! - A directory is listed once per `opendir`, at its first `readdir` (opened only to be
//!   fsynced, it is not listed); `readdirplus` hands the kernel each name with the listing's
//!   attributes, so listing a directory with attributes costs no request per name.
//! - An open tells the kernel to keep the file's cached pages when the server shows the size
//!   and modification time of the previous open and no handle wrote since
//!   ([`superblock::Superblock::opened`]).
//! - A file unlinked while open has no name any more: its handles answer for it (`nlink` 0).
//!
//! Locks: the superblock, the open files and the open directories each have one, taken for
//! synchronous steps only and never one inside another; an open file's read-ahead has its
//! own (reads of different files do not contend), and so does the `statfs` answer.

pub mod attr_cache;
pub mod error;
pub mod failure;
pub mod inode;
pub mod known_dirs;
pub mod open_file;
pub mod read_ahead;
pub mod superblock;
pub mod traffic;
pub mod write_behind;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

pub use error::{FsError, FsResult};
pub use inode::{Ino, ROOT};
pub use superblock::{InodeAttributes, ListedEntry, UNKNOWN_INO};
pub use traffic::Traffic;

use crate::backend::{
    Attributes, FsStats, OpenOptions, SetAttributes, SftpBackend, SftpError, SftpResult, StatusCode,
};
use attr_cache::AttrCache;
use failure::Attempt;
use known_dirs::KnownDirs;
use open_file::OpenFile;
use read_ahead::Budget;
use superblock::{Lookup, Superblock};

/// How long the kernel may trust attributes and names before asking again. The directory can
/// change on the server behind fsd's back (another node, a purge), so this stays short.
pub const ATTR_TTL: Duration = Duration::from_secs(1);

/// How long fsd trusts attributes it learned from a listing or its own operations.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a `statfs` answer is reused: httpd checks the mount with `statfs` before every
/// transfer, and `df` numbers a second old are as good.
pub const STATFS_TTL: Duration = Duration::from_secs(1);

/// Bytes of one open file's writes that may be queued or in flight at once.
pub const WRITE_WINDOW: u32 = 8 * 1024 * 1024;

/// Directories whose every name fsd knows answer lookups of other names for this long
/// ([`known_dirs`]); at most this many directories of at most this many names are kept.
pub const KNOWN_DIR_TTL: Duration = CACHE_TTL;
pub const KNOWN_DIRS: usize = 64;
pub const KNOWN_DIR_NAMES: usize = 16_384;

/// Read-ahead ([`read_ahead`]): requests kept in flight ahead of sequential reads of one open
/// file, and the bytes they may take, per open file and in all. A file is read at most
/// `READ_AHEAD_PER_FILE` per round trip: 8 MiB keeps 800 MB/s on a 10 ms round trip (16
/// requests of the kernel's 128 KiB, 2 MiB, held one file to 190 MB/s there).
pub const READ_AHEAD_DEPTH: usize = 64;
pub const READ_AHEAD_PER_FILE: u64 = 8 * 1024 * 1024;
pub const READ_AHEAD_TOTAL: u64 = 64 * 1024 * 1024;

/// The longest name a directory entry may have (the server's `name_max` on Linux).
pub const NAME_MAX: usize = 255;

/// Attribute changes asked by `setattr`; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributeChanges {
    pub size: Option<u64>,
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// An open directory: the listing, taken at its first `readdir` (a directory opened only to be
/// fsynced, as after a rename, costs the server nothing).
#[derive(Clone)]
struct Listing {
    dir: Ino,
    entries: Arc<tokio::sync::OnceCell<Arc<[ListedEntry]>>>,
}

/// The node directory on the file server, as a filesystem.
pub struct Filesystem<B: SftpBackend> {
    backend: Arc<B>,
    /// The node directory's absolute path on the server.
    root: String,
    superblock: Mutex<Superblock>,
    /// Open files by FUSE file handle; a request in flight holds its own reference.
    files: Mutex<HashMap<u64, Arc<OpenFile<B>>>>,
    listings: Mutex<HashMap<u64, Listing>>,
    /// The last `statfs` answer and when it came, for [`STATFS_TTL`].
    stats: Mutex<Option<(FsStats, Instant)>>,
    read_ahead: Budget,
    next_handle: AtomicU64,
    traffic: Arc<Traffic>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("filesystem state lock")
}

/// A name as SFTP can carry it: at most [`NAME_MAX`] bytes (checked first, as a local file
/// system would), UTF-8.
fn entry_name(name: &OsStr) -> FsResult<&str> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong(name.len()));
    }
    name.to_str()
        .ok_or_else(|| FsError::InvalidName(name.to_owned()))
}

/// SFTP `pflags` for POSIX open flags.
fn open_options(flags: i32) -> OpenOptions {
    let access = flags & libc::O_ACCMODE;
    OpenOptions {
        read: access == libc::O_RDONLY || access == libc::O_RDWR,
        write: access == libc::O_WRONLY || access == libc::O_RDWR,
        append: flags & libc::O_APPEND != 0,
        truncate: flags & libc::O_TRUNC != 0,
        ..OpenOptions::default()
    }
}

impl<B: SftpBackend> Filesystem<B> {
    /// The filesystem of the directory `root` (an absolute server path) on `backend`.
    pub fn new(backend: B, root: &str) -> Self {
        let root = match root.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        let superblock = Superblock::new(
            root,
            AttrCache::new(CACHE_TTL),
            KnownDirs::new(KNOWN_DIR_TTL, KNOWN_DIRS, KNOWN_DIR_NAMES),
        );
        Self {
            backend: Arc::new(backend),
            root: root.to_owned(),
            superblock: Mutex::new(superblock),
            files: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            stats: Mutex::new(None),
            read_ahead: Budget::new(READ_AHEAD_PER_FILE, READ_AHEAD_TOTAL),
            next_handle: AtomicU64::new(1),
            traffic: Arc::new(Traffic::default()),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The node directory on the server.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Files open now.
    pub fn open_files(&self) -> usize {
        lock(&self.files).len()
    }

    fn superblock(&self) -> MutexGuard<'_, Superblock> {
        lock(&self.superblock)
    }

    /// Sends one request, counted.
    async fn call<T>(&self, request: impl Future<Output = SftpResult<T>>) -> SftpResult<T> {
        self.traffic.request();
        request.await
    }

    /// The failure `error` of `attempt`, explained ([`failure`]).
    async fn explain(&self, error: SftpError, attempt: Attempt<'_>) -> FsError {
        failure::explain(&*self.backend, &self.root, &self.traffic, error, attempt).await
    }

    /// The server path of inode `ino`.
    fn path(&self, ino: Ino) -> FsResult<String> {
        self.superblock().path(ino)
    }

    fn new_handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    fn open_file(&self, fh: u64) -> FsResult<Arc<OpenFile<B>>> {
        lock(&self.files)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))
    }

    fn add_open_file(&self, ino: Ino, handle: B::Handle) -> u64 {
        let fh = self.new_handle();
        let file = OpenFile::new(ino, handle, READ_AHEAD_DEPTH);
        lock(&self.files).insert(fh, Arc::new(file));
        fh
    }

    /// The open files of `ino` for which `pick` holds.
    fn open_files_of(
        &self,
        ino: Ino,
        pick: impl Fn(&OpenFile<B>) -> bool,
    ) -> Vec<Arc<OpenFile<B>>> {
        lock(&self.files)
            .values()
            .filter(|f| f.ino == ino && pick(f))
            .cloned()
            .collect()
    }

    /// `lstat`, answered from the cache when it can be.
    async fn lstat(&self, path: &str) -> SftpResult<Attributes> {
        if let Some(attrs) = self.superblock().attributes(path, Instant::now()) {
            return Ok(attrs);
        }
        let attrs = self.call(self.backend.lstat(path)).await?;
        self.superblock()
            .seen(path.to_owned(), attrs, Instant::now());
        Ok(attrs)
    }

    /// Drops what was read ahead of every open file of `ino` (its data changes).
    fn drop_read_ahead(&self, ino: Ino) {
        for file in self.open_files_of(ino, |_| true) {
            file.drop_read_ahead();
        }
    }

    /// Waits for the queued writes of every open file of `ino`.
    async fn wait_for_writes(&self, ino: Ino) -> FsResult<()> {
        for file in self.open_files_of(ino, OpenFile::is_writing) {
            self.drain(&file).await?;
        }
        Ok(())
    }

    /// Waits for the queued writes of one open file; fails if any failed.
    async fn drain(&self, file: &OpenFile<B>) -> FsResult<()> {
        match file.written() {
            Some(writes) => match writes.drain().await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.explain(e, Attempt::Space).await),
            },
            None => Ok(()),
        }
    }

    /// Looks `name` up in `parent`; the kernel now holds one more reference to the result.
    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<InodeAttributes> {
        let name = entry_name(name)?;
        let mut lookup = self.superblock().lookup(parent, name, Instant::now())?;
        if let Lookup::Relist(path) = lookup {
            // Listed again unless a file in it is being written (the listing would wait for
            // its writes); a failed listing leaves the lookup to ask.
            lookup = match self.writing_in(parent).is_empty() && self.list(parent).await.is_ok() {
                true => self.superblock().lookup(parent, name, Instant::now())?,
                false => Lookup::Ask(path),
            };
        }
        let path = match lookup {
            Lookup::Found(found) => return Ok(found),
            Lookup::Ask(path) | Lookup::Relist(path) => path,
        };
        let attrs = self.call(self.backend.lstat(&path)).await?;
        Ok(self
            .superblock()
            .looked_up(parent, name, path, attrs, Instant::now()))
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: Ino, count: u64) {
        self.superblock().forget(ino, count);
    }

    /// The open file `fh`; for an inode without a name (unlinked while open, so only its
    /// handles reach it), any open file of `ino` if the kernel names none (`fstat` after
    /// `unlink` sends no handle).
    fn open_file_for(&self, ino: Ino, fh: Option<u64>, named: bool) -> Option<Arc<OpenFile<B>>> {
        let files = lock(&self.files);
        fh.and_then(|fh| files.get(&fh))
            .or_else(|| {
                (!named)
                    .then(|| files.values().find(|f| f.ino == ino))
                    .flatten()
            })
            .cloned()
    }

    /// The attributes of `ino`, through the open file `fh` if the kernel names one. A file
    /// unlinked while open answers through one of its handles, with `nlink` 0.
    pub async fn getattr(&self, ino: Ino, fh: Option<u64>) -> FsResult<InodeAttributes> {
        self.wait_for_writes(ino).await?;
        let path = self.path(ino);
        let nlink = u32::from(path.is_ok());
        if let Some(open) = self.open_file_for(ino, fh, path.is_ok()) {
            match self.call(self.backend.fstat(&open.handle)).await {
                // The handle died with a lost connection: the name, if any, still answers.
                Err(SftpError::HandleLost) if path.is_ok() => {}
                answer => {
                    return Ok(InodeAttributes {
                        ino,
                        attrs: answer?,
                        nlink,
                    })
                }
            }
        }
        let attrs = self.lstat(&path?).await?;
        Ok(InodeAttributes { ino, attrs, nlink })
    }

    /// Changes attributes of `ino` (truncation, mode, owner, times) and returns the new ones.
    pub async fn setattr(
        &self,
        ino: Ino,
        fh: Option<u64>,
        changes: AttributeChanges,
    ) -> FsResult<InodeAttributes> {
        self.wait_for_writes(ino).await?;
        if changes.size.is_some() {
            self.drop_read_ahead(ino);
        }
        // SFTP sets owner and group together, and both times together: fill in the other half.
        let partial_owner = changes.uid.is_some() != changes.gid.is_some();
        let partial_times = changes.atime.is_some() != changes.mtime.is_some();
        let current = if partial_owner || partial_times {
            Some(self.getattr(ino, fh).await?.attrs)
        } else {
            None
        };
        let owner = (changes.uid.is_some() || changes.gid.is_some()).then(|| {
            (
                changes.uid.or(current.map(|a| a.uid)).unwrap_or_default(),
                changes.gid.or(current.map(|a| a.gid)).unwrap_or_default(),
            )
        });
        let times = (changes.atime.is_some() || changes.mtime.is_some()).then(|| {
            (
                changes
                    .atime
                    .or(current.map(|a| a.atime))
                    .unwrap_or_else(SystemTime::now),
                changes
                    .mtime
                    .or(current.map(|a| a.mtime))
                    .unwrap_or_else(SystemTime::now),
            )
        });
        let set = SetAttributes {
            size: changes.size,
            perm: changes.perm.map(|p| p & 0o7777),
            owner,
            times,
        };
        let path = self.path(ino);
        let open = self.open_file_for(ino, fh, path.is_ok());
        let answer = match (&open, &path) {
            (Some(open), _) => self.call(self.backend.fsetstat(&open.handle, set)).await,
            (None, Ok(path)) => self.call(self.backend.setstat(path, set)).await,
            (None, Err(_)) => return Err(FsError::StaleInode(ino)),
        };
        if let Err(e) = answer {
            return Err(self.explain(e, Attempt::Space).await);
        }
        self.superblock().changed(ino);
        self.getattr(ino, fh).await
    }

    /// Makes the directory `name` in `parent` with permission bits `perm`.
    pub async fn mkdir(&self, parent: Ino, name: &OsStr, perm: u16) -> FsResult<InodeAttributes> {
        let name = entry_name(name)?;
        let path = self.superblock().child_path(parent, name)?;
        let made = self.call(self.backend.mkdir(&path, perm & 0o7777)).await;
        self.entry_made(parent, name, path, made, true).await
    }

    /// Creates (with `O_EXCL` in `flags`: only if it does not exist) and opens the file `name`
    /// in `parent`. Returns its inode and the open file's handle.
    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        perm: u16,
        flags: i32,
    ) -> FsResult<(InodeAttributes, u64)> {
        let name = entry_name(name)?;
        let path = self.superblock().child_path(parent, name)?;
        let options = OpenOptions {
            create: true,
            exclusive: flags & libc::O_EXCL != 0,
            ..open_options(flags)
        };
        let opened = self
            .call(self.backend.open_stat(&path, options, perm & 0o7777))
            .await;
        let (handle, attrs) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.superblock().not_made(parent);
                let attempt = match options.exclusive {
                    true => Attempt::Make { path: &path },
                    false => Attempt::Space,
                };
                return Err(self.explain(e, attempt).await);
            }
        };
        let entry = self
            .superblock()
            .created(parent, name, path, attrs, Instant::now());
        let fh = self.add_open_file(entry.ino, handle);
        Ok((entry, fh))
    }

    /// `mknod(2)`: makes the empty regular file `name` in `parent`, only if it does not exist,
    /// and closes it again. SFTP cannot make FIFOs, sockets or device nodes: for any `kind`
    /// (`mode & S_IFMT`) but `S_IFREG` nothing is sent and the answer is EPERM, as from a
    /// filesystem on disk that cannot hold them.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: u32,
        perm: u16,
    ) -> FsResult<InodeAttributes> {
        if kind != libc::S_IFREG {
            return Err(FsError::SpecialFile(kind));
        }
        let (entry, fh) = self
            .create(parent, name, perm, libc::O_WRONLY | libc::O_EXCL)
            .await?;
        self.release(fh).await?;
        Ok(entry)
    }

    /// Opens `ino` with POSIX open `flags`; returns the handle for reads and writes, and whether
    /// the kernel may keep the pages it cached of the file: yes when the server shows the same
    /// size and modification time as at the last open, and no handle wrote to it since.
    pub async fn open(&self, ino: Ino, flags: i32) -> FsResult<(u64, bool)> {
        let path = self.path(ino)?;
        let options = open_options(flags);
        if options.truncate {
            self.wait_for_writes(ino).await?;
            self.drop_read_ahead(ino);
            self.superblock().changed(ino);
        }
        let (handle, attrs) = self.call(self.backend.open_stat(&path, options, 0)).await?;
        let keep_cache = self.superblock().opened(ino, path, attrs, Instant::now());
        Ok((self.add_open_file(ino, handle), keep_cache))
    }

    /// Up to `size` bytes at `offset` (fewer only at the end of the file).
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let open = self.open_file(fh)?;
        self.wait_for_writes(open.ino).await?;
        let ahead = open.read_ahead(offset, size, &self.backend, &self.traffic, &self.read_ahead);
        let ahead_data = match ahead {
            // A failed read ahead is asked again, so its error is the request's own.
            Some(prefetch) => prefetch.answer().await.and_then(Result::ok),
            None => None,
        };
        let data = match ahead_data {
            Some(data) => data,
            None => {
                self.call(self.backend.read(&open.handle, offset, size))
                    .await?
            }
        };
        if data.len() < size as usize {
            open.end_of_file(offset + data.len() as u64);
        }
        self.traffic.read(data.len() as u64);
        Ok(data)
    }

    /// Queues `data` for `offset` (see the module documentation); fails with the error of an
    /// earlier write of this file if one failed.
    pub async fn write(&self, fh: u64, offset: u64, data: Vec<u8>) -> FsResult<u32> {
        let open = self.open_file(fh)?;
        let len = data.len() as u32;
        self.drop_read_ahead(open.ino);
        self.superblock().changed(open.ino);
        let writes = open.writes(WRITE_WINDOW, &self.backend, &self.traffic);
        match writes.write(offset, data).await {
            Ok(()) => Ok(len),
            Err(e) => Err(self.explain(e, Attempt::Space).await),
        }
    }

    /// `close(2)` of one descriptor: waits for the file's queued writes and reports the first
    /// that failed.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let open = self.open_file(fh)?;
        self.drain(&open).await
    }

    /// Makes the file's data durable on the server's disk.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let open = self.open_file(fh)?;
        self.drain(&open).await?;
        Ok(self.call(self.backend.fsync(&open.handle)).await?)
    }

    /// The last descriptor of `fh` is closed: send what is queued and close the file on the
    /// server. A write that failed is reported here too.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let open = lock(&self.files)
            .remove(&fh)
            .ok_or(FsError::BadHandle(fh))?;
        open.drop_read_ahead();
        if open.written().is_some() {
            self.superblock().write_closed(open.ino);
        }
        let written = self.drain(&open).await;
        let closed = self.call(self.backend.close(&open.handle)).await;
        written?;
        Ok(closed?)
    }

    /// Opens the directory `ino`; the first `readdir` or `readdirplus` lists it ([`Self::list`])
    /// and later calls page through that one listing.
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        self.path(ino)?;
        let fh = self.new_handle();
        lock(&self.listings).insert(
            fh,
            Listing {
                dir: ino,
                entries: Arc::default(),
            },
        );
        Ok(fh)
    }

    /// Lists the directory `ino` on the server, after the queued writes of files in it are sent,
    /// and learns the names and attributes it sees.
    async fn list(&self, ino: Ino) -> FsResult<Arc<[ListedEntry]>> {
        let path = self.path(ino)?;
        for child in self.writing_in(ino) {
            self.wait_for_writes(child).await?;
        }
        let asked = Instant::now();
        let entries = self.call(self.backend.read_dir(&path)).await?;
        Ok(self
            .superblock()
            .listed(ino, &path, entries, asked, Instant::now()))
    }

    /// The files of the directory `dir` whose writes are queued or in flight.
    fn writing_in(&self, dir: Ino) -> Vec<Ino> {
        let writing: Vec<Ino> = lock(&self.files)
            .values()
            .filter(|f| f.is_writing())
            .map(|f| f.ino)
            .collect();
        let superblock = self.superblock();
        writing
            .into_iter()
            .filter(|&child| superblock.parent(child) == Some(dir))
            .collect()
    }

    /// The listing of the open directory `fh` (the kernel pages through it by index), taken
    /// now if this is the first call.
    pub async fn readdir(&self, fh: u64) -> FsResult<Arc<[ListedEntry]>> {
        Ok(self.listed(fh).await?.1)
    }

    /// The directory of the open directory `fh` and its listing, taken now if not yet.
    async fn listed(&self, fh: u64) -> FsResult<(Ino, Arc<[ListedEntry]>)> {
        let listing = self.listing(fh)?;
        let entries = listing
            .entries
            .get_or_try_init(|| self.list(listing.dir))
            .await?;
        Ok((listing.dir, entries.clone()))
    }

    fn listing(&self, fh: u64) -> FsResult<Listing> {
        lock(&self.listings)
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))
    }

    /// READDIRPLUS: hands the entries of the open directory `fh` from index `offset` on to
    /// `add(next offset, name, inode and attributes)` until it answers that the reply is full.
    /// The attributes are the listing's, so `ls -l` needs no LOOKUP per name. Each name handed
    /// over counts as one kernel reference, as a LOOKUP would (the kernel keeps the inode);
    /// `.` and `..` do not (the kernel takes nothing of them but their inode numbers).
    pub async fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, &str, &InodeAttributes) -> bool,
    ) -> FsResult<()> {
        let (dir, entries) = self.listed(fh).await?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, entry) in entries.iter().enumerate().skip(start) {
            // The offset of an entry is where the next call starts.
            let next = index as u64 + 1;
            if index < 2 {
                let dot = InodeAttributes {
                    ino: entry.ino,
                    attrs: entry.attrs,
                    nlink: 1,
                };
                if add(next, &entry.name, &dot) {
                    break;
                }
                continue;
            }
            let found = self.superblock().remember(dir, &entry.name, entry.attrs);
            if add(next, &entry.name, &found) {
                // It did not fit: the kernel never saw it.
                self.forget(found.ino, 1);
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        lock(&self.listings)
            .remove(&fh)
            .map(drop)
            .ok_or(FsError::BadHandle(fh))
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`. An existing target is replaced
    /// atomically, unless `no_replace` (then it is an error).
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> FsResult<()> {
        let (name, new_name) = (entry_name(name)?, entry_name(new_name)?);
        let (from, to) = {
            let superblock = self.superblock();
            (
                superblock.child_path(parent, name)?,
                superblock.child_path(new_parent, new_name)?,
            )
        };
        let result = self
            .call(self.backend.rename(&from, &to, !no_replace))
            .await;
        if let Err(e) = result {
            self.superblock()
                .not_renamed(parent, name, new_parent, new_name);
            return Err(self
                .explain(
                    e,
                    Attempt::Rename {
                        to: &to,
                        no_replace,
                    },
                )
                .await);
        }
        self.superblock()
            .renamed(parent, name, new_parent, new_name);
        Ok(())
    }

    /// Removes the file `name` from `parent`.
    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let name = entry_name(name)?;
        let path = self.superblock().child_path(parent, name)?;
        if let Err(e) = self.call(self.backend.remove(&path)).await {
            self.superblock().not_removed(parent, name);
            return Err(e.into());
        }
        self.superblock().removed(parent, name);
        Ok(())
    }

    /// Removes the empty directory `name` from `parent`.
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let name = entry_name(name)?;
        let path = self.superblock().child_path(parent, name)?;
        if let Err(e) = self.call(self.backend.rmdir(&path)).await {
            self.superblock().not_removed(parent, name);
            return Err(self.explain(e, Attempt::RemoveDir { path: &path }).await);
        }
        self.superblock().removed(parent, name);
        Ok(())
    }

    /// Makes `name` in `parent` a symbolic link to `target`.
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
    ) -> FsResult<InodeAttributes> {
        let name = entry_name(name)?;
        let target = target
            .to_str()
            .ok_or_else(|| FsError::InvalidName(target.to_owned()))?;
        let path = self.superblock().child_path(parent, name)?;
        let made = self.call(self.backend.symlink(target, &path)).await;
        self.entry_made(parent, name, path, made, false).await
    }

    /// Finishes making `name` in `parent` (at `path`; a directory if `new_dir`) once the server
    /// answered `made`: tells the superblock, explains a failure, and returns the new entry's
    /// attributes. Shared by mkdir, symlink and link.
    async fn entry_made<T>(
        &self,
        parent: Ino,
        name: &str,
        path: String,
        made: Result<T, SftpError>,
        new_dir: bool,
    ) -> FsResult<InodeAttributes> {
        if let Err(e) = made {
            self.superblock().not_made(parent);
            return Err(self.explain(e, Attempt::Make { path: &path }).await);
        }
        self.superblock()
            .made(parent, name, new_dir, Instant::now());
        let attrs = self.lstat(&path).await?;
        Ok(self.superblock().remember(parent, name, attrs))
    }

    /// The target of the symbolic link `ino`.
    pub async fn readlink(&self, ino: Ino) -> FsResult<String> {
        Ok(self.call(self.backend.readlink(&self.path(ino)?)).await?)
    }

    /// Makes `new_name` in `new_parent` another name of the file `ino`.
    pub async fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &OsStr,
    ) -> FsResult<InodeAttributes> {
        let new_name = entry_name(new_name)?;
        let existing = self.path(ino)?;
        let path = self.superblock().child_path(new_parent, new_name)?;
        let made = self.call(self.backend.hardlink(&existing, &path)).await;
        self.entry_made(new_parent, new_name, path, made, false)
            .await
    }

    /// Space and inode counts of the server's file system, at most [`STATFS_TTL`] old. A server
    /// without `statvfs@openssh.com` gets zeros (`df` shows the mount, with no numbers).
    pub async fn statfs(&self) -> FsResult<FsStats> {
        if let Some((stats, at)) = *lock(&self.stats) {
            if at.elapsed() < STATFS_TTL {
                return Ok(stats);
            }
        }
        let stats = match self.call(self.backend.statvfs(&self.root)).await {
            Err(e) if e.is_status(StatusCode::OpUnsupported) => FsStats {
                block_size: 4096,
                name_max: NAME_MAX as u64,
                ..FsStats::default()
            },
            other => other?,
        };
        *lock(&self.stats) = Some((stats, Instant::now()));
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;
    use crate::backend::fault::FaultyBackend;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::FileKind;
    use superblock::below;

    const ROOT_DIR: &str = "/srv/node_1";

    fn fs() -> Filesystem<MemoryBackend> {
        Filesystem::new(MemoryBackend::new(ROOT_DIR), ROOT_DIR)
    }

    /// A filesystem whose server can be disconnected ([`FaultyBackend::disconnect`]).
    fn faulty_fs() -> Filesystem<FaultyBackend<MemoryBackend>> {
        Filesystem::new(FaultyBackend::new(MemoryBackend::new(ROOT_DIR)), ROOT_DIR)
    }

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    async fn write_file(
        fs: &Filesystem<MemoryBackend>,
        parent: Ino,
        file: &str,
        data: &[u8],
    ) -> Ino {
        let (entry, fh) = fs
            .create(parent, name(file), 0o644, libc::O_WRONLY)
            .await
            .unwrap();
        assert_eq!(
            fs.write(fh, 0, data.to_vec()).await.unwrap(),
            data.len() as u32
        );
        fs.fsync(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        entry.ino
    }

    async fn read_all(fs: &Filesystem<MemoryBackend>, ino: Ino) -> Vec<u8> {
        let (fh, _) = fs.open(ino, libc::O_RDONLY).await.unwrap();
        let mut out = Vec::new();
        loop {
            let chunk = fs.read(fh, out.len() as u64, 7).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
        }
        fs.release(fh).await.unwrap();
        out
    }

    async fn names_in(fs: &Filesystem<MemoryBackend>, dir: Ino) -> Vec<String> {
        let fh = fs.opendir(dir).await.unwrap();
        let names = fs
            .readdir(fh)
            .await
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        fs.releasedir(fh).unwrap();
        names
    }

    #[tokio::test]
    async fn lookups_in_a_directory_fsd_just_made_need_no_request() {
        let fs = fs();
        let dir = fs.mkdir(ROOT, name("d"), 0o755).await.unwrap().ino;
        let ops = fs.traffic().requests.load(Ordering::Relaxed);
        let missing = fs.lookup(dir, name("new")).await.unwrap_err();
        assert_eq!(missing.errno(), libc::ENOENT);
        assert_eq!(
            fs.traffic().requests.load(Ordering::Relaxed),
            ops,
            "no request"
        );
        write_file(&fs, dir, "new", b"x").await;
        fs.lookup(dir, name("new")).await.unwrap();
        // Made behind fsd's back: unknown until the window ends (the server then answers).
        fs.backend()
            .mkdir(&format!("{ROOT_DIR}/d/other"), 0o755)
            .await
            .unwrap();
        assert_eq!(
            fs.lookup(dir, name("other")).await.unwrap_err().errno(),
            libc::ENOENT
        );
        let path = format!("{ROOT_DIR}/d");
        fs.superblock().expire(&path);
        fs.lookup(dir, name("other")).await.unwrap();
        // A listing makes the directory known again, with what it lists.
        names_in(&fs, dir).await;
        fs.lookup(dir, name("other")).await.unwrap();
        fs.unlink(dir, name("new")).await.unwrap();
        let ops = fs.traffic().requests.load(Ordering::Relaxed);
        assert_eq!(
            fs.lookup(dir, name("new")).await.unwrap_err().errno(),
            libc::ENOENT
        );
        assert_eq!(fs.traffic().requests.load(Ordering::Relaxed), ops);
        fs.rename(dir, name("other"), dir, name("moved"), false)
            .await
            .unwrap();
        assert_eq!(
            fs.lookup(dir, name("other")).await.unwrap_err().errno(),
            libc::ENOENT
        );
        fs.lookup(dir, name("moved")).await.unwrap();
    }

    #[tokio::test]
    async fn sequential_reads_are_served_from_read_ahead_and_writes_drop_it() {
        let fs = fs();
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| i as u8).collect();
        let ino = write_file(&fs, ROOT, "big", &data).await;
        let (fh, _) = fs.open(ino, libc::O_RDWR).await.unwrap();
        let mut out = Vec::new();
        for _ in 0..4 {
            out.extend(fs.read(fh, out.len() as u64, 4096).await.unwrap());
        }
        assert!(
            fs.open_file(fh).unwrap().reading_ahead() > 0,
            "reading ahead"
        );
        assert!(fs.read_ahead.used() > 0);
        // A write drops what was read ahead: the next read sees it.
        fs.write(fh, 4 * 4096, vec![0xee; 10]).await.unwrap();
        assert_eq!(fs.open_file(fh).unwrap().reading_ahead(), 0);
        loop {
            let chunk = fs.read(fh, out.len() as u64, 4096).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
        }
        let mut expected = data.clone();
        expected[4 * 4096..4 * 4096 + 10].fill(0xee);
        assert_eq!(out, expected);
        // A seek back reads the right bytes too.
        assert_eq!(fs.read(fh, 100, 4).await.unwrap(), &expected[100..104]);
        fs.release(fh).await.unwrap();
        assert_eq!(fs.read_ahead.used(), 0, "budget given back");
    }

    #[tokio::test]
    async fn create_write_read_and_the_server_has_the_bytes() {
        let fs = fs();
        let ino = write_file(&fs, ROOT, "a.txt", b"hello, file server").await;
        assert_eq!(read_all(&fs, ino).await, b"hello, file server");
        assert_eq!(fs.getattr(ino, None).await.unwrap().attrs.size, 18);
        let server = fs.backend();
        assert_eq!(
            server.file_content("/srv/node_1/a.txt").unwrap(),
            b"hello, file server"
        );
        assert_eq!(server.fsync_count(), 1);
        assert_eq!(server.open_handles(), 0, "release closed every handle");
    }

    #[tokio::test]
    async fn exclusive_create_of_an_existing_file_is_eexist() {
        let fs = fs();
        write_file(&fs, ROOT, "a", b"1").await;
        let err = fs
            .create(ROOT, name("a"), 0o644, libc::O_WRONLY | libc::O_EXCL)
            .await
            .unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST, "{err}");
        // Without O_EXCL, create opens the existing file.
        let (_, fh) = fs
            .create(ROOT, name("a"), 0o644, libc::O_WRONLY)
            .await
            .unwrap();
        fs.release(fh).await.unwrap();
    }

    #[tokio::test]
    async fn mknod_makes_empty_regular_files_only() {
        let fs = fs();
        let entry = fs
            .mknod(ROOT, name("n"), libc::S_IFREG, 0o640)
            .await
            .unwrap();
        assert_eq!((entry.attrs.size, entry.attrs.perm), (0, 0o640));
        let server = fs.backend();
        assert_eq!(server.file_content("/srv/node_1/n").unwrap(), b"");
        assert_eq!(server.open_handles(), 0, "closed again");
        let err = fs
            .mknod(ROOT, name("n"), libc::S_IFREG, 0o640)
            .await
            .unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST, "{err}");
        for kind in [libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK] {
            let err = fs
                .mknod(ROOT, name("special"), kind, 0o640)
                .await
                .unwrap_err();
            assert_eq!(err.errno(), libc::EPERM, "{err}");
        }
        assert_eq!(names_in(&fs, ROOT).await, [".", "..", "n"]);
    }

    #[tokio::test]
    async fn rename_replaces_the_target_and_keeps_the_inode() {
        let fs = fs();
        let old = write_file(&fs, ROOT, "final", b"old").await;
        let tmp = write_file(&fs, ROOT, ".tmp", b"new content").await;
        fs.rename(ROOT, name(".tmp"), ROOT, name("final"), false)
            .await
            .unwrap();
        let looked_up = fs.lookup(ROOT, name("final")).await.unwrap();
        assert_eq!(looked_up.ino, tmp, "the renamed file keeps its inode");
        assert_ne!(looked_up.ino, old);
        assert_eq!(read_all(&fs, tmp).await, b"new content");
        assert_eq!(
            fs.getattr(old, None).await.unwrap_err().errno(),
            libc::ENOENT
        );
        assert_eq!(names_in(&fs, ROOT).await, vec![".", "..", "final"]);
    }

    #[tokio::test]
    async fn rename_noreplace_refuses_an_existing_target() {
        let fs = fs();
        write_file(&fs, ROOT, "a", b"a").await;
        write_file(&fs, ROOT, "b", b"b").await;
        let err = fs
            .rename(ROOT, name("a"), ROOT, name("b"), true)
            .await
            .unwrap_err();
        assert_eq!(err.errno(), libc::EEXIST, "{err}");
        assert_eq!(fs.backend().file_content("/srv/node_1/b").unwrap(), b"b");
    }

    #[tokio::test]
    async fn renaming_a_directory_keeps_the_inodes_below_it() {
        let fs = fs();
        let dir = fs.mkdir(ROOT, name("d"), 0o755).await.unwrap().ino;
        let file = write_file(&fs, dir, "f", b"x").await;
        fs.rename(ROOT, name("d"), ROOT, name("e"), false)
            .await
            .unwrap();
        assert_eq!(fs.lookup(ROOT, name("e")).await.unwrap().ino, dir);
        assert_eq!(fs.lookup(dir, name("f")).await.unwrap().ino, file);
        assert_eq!(read_all(&fs, file).await, b"x");
        assert_eq!(
            fs.lookup(ROOT, name("d")).await.unwrap_err().errno(),
            libc::ENOENT
        );
    }

    #[tokio::test]
    async fn mkdir_rmdir_and_their_errors() {
        let fs = fs();
        let a = fs.mkdir(ROOT, name("a"), 0o755).await.unwrap();
        assert_eq!(a.attrs.kind, FileKind::Directory);
        assert_eq!(
            fs.mkdir(ROOT, name("a"), 0o755).await.unwrap_err().errno(),
            libc::EEXIST
        );
        let b = fs.mkdir(a.ino, name("b"), 0o755).await.unwrap();
        assert_eq!(
            fs.rmdir(ROOT, name("a")).await.unwrap_err().errno(),
            libc::ENOTEMPTY
        );
        fs.rmdir(a.ino, name("b")).await.unwrap();
        fs.rmdir(ROOT, name("a")).await.unwrap();
        assert_eq!(
            fs.getattr(b.ino, None).await.unwrap_err().errno(),
            libc::ENOENT
        );
        assert_eq!(
            fs.rmdir(ROOT, name("a")).await.unwrap_err().errno(),
            libc::ENOENT
        );
        assert_eq!(
            fs.mkdir(b.ino, name("c"), 0o755).await.unwrap_err().errno(),
            libc::ENOENT
        );
    }

    #[tokio::test]
    async fn readdir_lists_dot_entries_and_known_inodes() {
        let fs = fs();
        let dir = fs.mkdir(ROOT, name("d"), 0o755).await.unwrap().ino;
        let known = write_file(&fs, dir, "known", b"").await;
        fs.backend()
            .mkdir("/srv/node_1/d/made-on-the-server", 0o755)
            .await
            .unwrap();
        let fh = fs.opendir(dir).await.unwrap();
        let listing = fs.readdir(fh).await.unwrap();
        fs.releasedir(fh).unwrap();
        let by_name = |n: &str| listing.iter().find(|e| e.name == n).cloned().unwrap();
        assert_eq!(listing.len(), 4);
        assert_eq!(by_name(".").ino, dir);
        assert_eq!(by_name("..").ino, ROOT);
        assert_eq!(by_name("known").ino, known);
        assert_eq!(by_name("known").attrs.kind, FileKind::RegularFile);
        assert_eq!(by_name("made-on-the-server").ino, UNKNOWN_INO);
        assert_eq!(
            by_name("made-on-the-server").attrs.kind,
            FileKind::Directory
        );
        assert_eq!(fs.readdir(fh).await.unwrap_err().errno(), libc::EBADF);
    }

    #[tokio::test]
    async fn the_kernel_keeps_its_cached_pages_only_of_an_unchanged_file() {
        let fs = fs();
        let ino = write_file(&fs, ROOT, "f", b"first").await;
        let open_keeps = |flags| {
            let fs = &fs;
            async move {
                let (fh, keep) = fs.open(ino, flags).await.unwrap();
                fs.release(fh).await.unwrap();
                keep
            }
        };
        assert!(
            !open_keeps(libc::O_RDONLY).await,
            "written through fsd since the last open"
        );
        assert!(
            open_keeps(libc::O_RDONLY).await,
            "unchanged since the last open"
        );
        assert!(open_keeps(libc::O_RDONLY).await);

        // Changed on the server by someone else: another size.
        let server = fs.backend();
        let handle = server
            .open(
                &below(ROOT_DIR, "f"),
                OpenOptions {
                    write: true,
                    ..OpenOptions::default()
                },
                0,
            )
            .await
            .unwrap();
        server
            .write(&handle, 5, b" and more".to_vec())
            .await
            .unwrap();
        server.close(&handle).await.unwrap();
        fs.superblock().expire(&below(ROOT_DIR, "f"));
        assert!(
            !open_keeps(libc::O_RDONLY).await,
            "the server's size changed"
        );
        assert!(open_keeps(libc::O_RDONLY).await);

        // A handle that wrote (a write may have failed on the server after the kernel cached it).
        let (fh, _) = fs.open(ino, libc::O_WRONLY).await.unwrap();
        fs.write(fh, 0, b"F".to_vec()).await.unwrap();
        fs.release(fh).await.unwrap();
        assert!(!open_keeps(libc::O_RDONLY).await, "a handle wrote since");
        assert_eq!(read_all(&fs, ino).await, b"First and more");
    }

    #[tokio::test]
    async fn a_directory_opened_only_to_be_fsynced_is_not_listed() {
        let fs = faulty_fs();
        let dir = fs.mkdir(ROOT, name("d"), 0o755).await.unwrap().ino;
        fs.backend().disconnect();
        let fh = fs
            .opendir(dir)
            .await
            .expect("opendir asks the server nothing");
        fs.releasedir(fh).unwrap();
        let fh = fs.opendir(dir).await.unwrap();
        assert!(fs.readdir(fh).await.is_err(), "the first readdir lists");
        fs.backend().reconnect();
        assert_eq!(
            fs.readdir(fh).await.unwrap().len(),
            2,
            "a failed listing is taken again"
        );
        fs.releasedir(fh).unwrap();
    }

    #[tokio::test]
    async fn readdirplus_hands_out_the_listings_attributes_and_counts_only_what_fit() {
        let fs = fs();
        let server = fs.backend();
        for (file, len) in [("a", 3), ("b", 5), ("c", 7)] {
            let options = OpenOptions {
                write: true,
                create: true,
                ..OpenOptions::default()
            };
            let handle = server
                .open(&below(ROOT_DIR, file), options, 0o640)
                .await
                .unwrap();
            server.write(&handle, 0, vec![1; len]).await.unwrap();
            server.close(&handle).await.unwrap();
        }
        let fh = fs.opendir(ROOT).await.unwrap();
        let mut seen = Vec::new();
        // A reply with room for three entries, then one with room for the rest.
        for (offset, room) in [(0, 3), (3, usize::MAX)] {
            let mut room = room;
            fs.readdirplus(fh, offset, |next, name, entry| {
                if room == 0 {
                    return true;
                }
                room -= 1;
                seen.push((next, name.to_owned(), *entry));
                false
            })
            .await
            .unwrap();
        }
        fs.releasedir(fh).unwrap();
        let names: Vec<(u64, &str)> = seen
            .iter()
            .map(|(n, name, _)| (*n, name.as_str()))
            .collect();
        assert_eq!(names, [(1, "."), (2, ".."), (3, "a"), (4, "b"), (5, "c")]);
        assert_eq!((seen[0].2.ino, seen[1].2.ino), (ROOT, ROOT));
        for (_, name, entry) in &seen[2..] {
            let looked_up = fs.lookup(ROOT, OsStr::new(name)).await.unwrap();
            assert_eq!(
                *entry, looked_up,
                "{name}: the listing's attributes, the same inode"
            );
            assert_eq!(entry.attrs.perm, 0o640);
        }
        // Each name is held twice (readdirplus, lookup): "b", offered to the full first reply,
        // was taken back.
        for (_, _, entry) in &seen[2..] {
            fs.forget(entry.ino, 1);
            assert!(fs.superblock().path(entry.ino).is_ok());
            fs.forget(entry.ino, 1);
        }
        assert_eq!(fs.superblock().inodes(), 1, "only the root is left");
    }

    #[tokio::test]
    async fn an_unlinked_open_file_answers_through_its_handle_with_nlink_0() {
        let fs = fs();
        let ino = write_file(&fs, ROOT, "f", b"still here").await;
        let (fh, _) = fs.open(ino, libc::O_RDWR).await.unwrap();
        assert_eq!(fs.getattr(ino, None).await.unwrap().nlink, 1);
        fs.unlink(ROOT, name("f")).await.unwrap();
        assert_eq!(
            fs.lookup(ROOT, name("f")).await.unwrap_err().errno(),
            libc::ENOENT
        );
        // fstat(2) after unlink(2): the kernel names no handle.
        let attrs = fs.getattr(ino, None).await.unwrap();
        assert_eq!((attrs.nlink, attrs.attrs.size), (0, 10));
        assert_eq!(fs.getattr(ino, Some(fh)).await.unwrap().nlink, 0);
        fs.write(fh, 10, b", and more".to_vec()).await.unwrap();
        assert_eq!(fs.read(fh, 0, 100).await.unwrap(), b"still here, and more");
        let changed = fs
            .setattr(
                ino,
                None,
                AttributeChanges {
                    size: Some(5),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((changed.nlink, changed.attrs.size), (0, 5));
        fs.release(fh).await.unwrap();
        assert_eq!(
            fs.getattr(ino, None).await.unwrap_err().errno(),
            libc::ENOENT
        );
        assert_eq!(
            fs.unlink(ROOT, name("f")).await.unwrap_err().errno(),
            libc::ENOENT
        );
    }

    #[tokio::test]
    async fn adding_or_removing_a_name_shows_in_the_parents_times_at_once() {
        let fs = fs();
        let dir = fs.mkdir(ROOT, name("d"), 0o755).await.unwrap().ino;
        let file = write_file(&fs, dir, "f", b"x").await;
        fs.mkdir(dir, name("sub"), 0o755).await.unwrap();
        for step in ["symlink", "link", "rename", "unlink", "rmdir"] {
            let before = fs.getattr(dir, None).await.unwrap().attrs.mtime;
            match step {
                "symlink" => drop(fs.symlink(dir, name("l"), name("f")).await.unwrap()),
                "link" => drop(fs.link(file, dir, name("g")).await.unwrap()),
                "rename" => fs
                    .rename(dir, name("g"), dir, name("h"), false)
                    .await
                    .unwrap(),
                "unlink" => fs.unlink(dir, name("h")).await.unwrap(),
                _ => fs.rmdir(dir, name("sub")).await.unwrap(),
            }
            let after = fs.getattr(dir, None).await.unwrap().attrs.mtime;
            assert!(after > before, "{step} shows in the directory's mtime");
        }
    }

    #[tokio::test]
    async fn setattr_truncates_and_fills_in_half_given_pairs() {
        let fs = fs();
        let ino = write_file(&fs, ROOT, "f", b"0123456789").await;
        let attrs = fs
            .setattr(
                ino,
                None,
                AttributeChanges {
                    size: Some(4),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(attrs.attrs.size, 4);
        assert_eq!(read_all(&fs, ino).await, b"0123");
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let attrs = fs
            .setattr(
                ino,
                None,
                AttributeChanges {
                    mtime: Some(mtime),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(attrs.attrs.mtime, mtime);
    }

    #[tokio::test]
    async fn released_handles_and_bad_names_are_refused() {
        let fs = fs();
        let ino = write_file(&fs, ROOT, "f", b"x").await;
        let (fh, _) = fs.open(ino, libc::O_RDONLY).await.unwrap();
        fs.release(fh).await.unwrap();
        assert_eq!(fs.read(fh, 0, 1).await.unwrap_err().errno(), libc::EBADF);
        assert_eq!(fs.flush(fh).await.unwrap_err().errno(), libc::EBADF);
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"\xff");
        assert_eq!(
            fs.lookup(ROOT, bad).await.unwrap_err().errno(),
            libc::EINVAL
        );
        let long_and_bad = OsStr::from_bytes(&[0xff; NAME_MAX + 1]);
        assert_eq!(
            fs.lookup(ROOT, long_and_bad).await.unwrap_err().errno(),
            libc::ENAMETOOLONG,
            "the length is checked first"
        );
    }

    #[tokio::test]
    async fn statfs_reports_the_servers_numbers() {
        let fs = fs();
        let stats = fs.statfs().await.unwrap();
        assert!(stats.blocks > 0 && stats.block_size == 4096 && stats.name_max == 255);
    }

    #[tokio::test]
    async fn statfs_answers_are_reused_for_a_second() {
        let fs = faulty_fs();
        let first = fs.statfs().await.unwrap();
        fs.backend().disconnect();
        assert_eq!(
            fs.statfs().await.unwrap(),
            first,
            "within STATFS_TTL, from the last answer"
        );
        *lock(&fs.stats) = Some((first, Instant::now() - STATFS_TTL));
        assert!(
            fs.statfs().await.is_err(),
            "past STATFS_TTL the server is asked again"
        );
    }

    #[tokio::test]
    async fn forgotten_inodes_leave_the_table() {
        let fs = fs();
        let dir = fs.mkdir(ROOT, name("d"), 0o755).await.unwrap().ino;
        let file = write_file(&fs, dir, "f", b"x").await;
        assert_eq!(fs.superblock().inodes(), 3);
        fs.forget(file, 1);
        fs.forget(dir, 1);
        assert_eq!(fs.superblock().inodes(), 1);
        // Looked up again, the names get new inodes and still work.
        let dir = fs.lookup(ROOT, name("d")).await.unwrap().ino;
        let file = fs.lookup(dir, name("f")).await.unwrap().ino;
        assert_eq!(read_all(&fs, file).await, b"x");
    }
}
