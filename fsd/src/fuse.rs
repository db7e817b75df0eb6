//! The FUSE glue: `fuser::Filesystem` callbacks that translate to [`Filesystem`] and back.
//!
//! Every callback does the same four things: trace the call, run the operation, reply, or map
//! the error to an errno ([`FsError::errno`]). Operations that touch the network run as tasks on
//! the tokio runtime and reply from there (fuser's `Reply*` types are `Send`), so fuser's one
//! dispatch thread never waits for the file server and many requests are in flight at once.
//! Nothing here decides anything about files.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::backend::{FileKind, SftpBackend};
use crate::contract::MAX_WRITE;
use crate::fs::{AttributeChanges, Filesystem, FsError, FsResult, InodeAttributes, ATTR_TTL};

/// How much the kernel reads ahead of a sequential reader.
const MAX_READAHEAD: u32 = 1024 * 1024;
/// Asynchronous requests (read-ahead) the kernel keeps in flight.
const MAX_BACKGROUND: u16 = 64;

/// A [`Filesystem`] served to the kernel.
pub struct FuseFilesystem<B: SftpBackend> {
    fs: Arc<Filesystem<B>>,
    runtime: tokio::runtime::Handle,
}

/// A mounted filesystem, served by fuser's background thread.
pub struct Mounted {
    session: fuser::BackgroundSession,
    mount_point: PathBuf,
}

/// Mounts `fs` at `mount_point` and serves it from a background thread until
/// [`Mounted::unmount`].
///
/// Mount options: `allow_other` (httpd may run as another user than fsd), `auto_unmount` (a
/// helper `fusermount3` unmounts when fsd dies, even by SIGKILL), `nodev`, `nosuid`. No
/// `default_permissions`: the file server checks permissions as the SSH user.
pub fn mount<B: SftpBackend>(
    fs: Arc<Filesystem<B>>,
    runtime: tokio::runtime::Handle,
    mount_point: &Path,
) -> io::Result<Mounted> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("mft-fsd".into()),
        MountOption::Subtype("mft-fsd".into()),
        MountOption::AutoUnmount,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.acl = SessionACL::All;
    let session = fuser::spawn_mount(FuseFilesystem { fs, runtime }, mount_point, &config)?;
    Ok(Mounted {
        session,
        mount_point: mount_point.to_owned(),
    })
}

/// Detaches a mount left at `mount_point` by an fsd that died together with its `fusermount3`
/// auto-unmount helper, as when systemd kills the whole unit after a `kill -9` of fsd: the kernel
/// answers ENOTCONN for that directory, and fsd could neither create nor mount over it. Returns
/// whether there was such a mount.
pub fn detach_stale(mount_point: &Path) -> io::Result<bool> {
    match std::fs::metadata(mount_point) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            detach(mount_point)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `fusermount3 -u -z mount_point`: the mount goes away now, files still open keep working.
fn detach(mount_point: &Path) -> io::Result<()> {
    let status = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mount_point)
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "fusermount3 -u -z {} failed ({status})",
            mount_point.display()
        )));
    }
    Ok(())
}

impl Mounted {
    /// Whether the kernel still talks to fsd (false once someone else unmounted it).
    pub fn is_serving(&self) -> bool {
        !self.session.guard.is_finished()
    }

    /// Detaches the mount (`fusermount3 -u -z`: fusermount3's auto-unmount acts only once fsd
    /// is dead, so a clean stop unmounts itself). Files still open keep working until closed;
    /// fsd waits for that up to `grace`, then leaves them to fail with ENOTCONN.
    pub fn unmount(self, grace: Duration) -> io::Result<()> {
        detach(&self.mount_point)?;
        let deadline = Instant::now() + grace;
        while self.is_serving() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_serving() {
            log::warn!(
                "files are still open on the detached mount {} after {grace:?}; they will fail",
                self.mount_point.display()
            );
            return Ok(());
        }
        self.session.join()
    }
}

impl<B: SftpBackend> FuseFilesystem<B> {
    /// Runs `op` with the filesystem; it replies when done. It is polled once here, on the
    /// dispatch thread: an operation answered without waiting (from fsd's caches, or a write
    /// queued behind) replies at once, with no switch to a runtime thread; one that waits for
    /// the server has sent its request by then, and finishes as a task on the runtime.
    fn run<F, Fut>(&self, op: F)
    where
        F: FnOnce(Arc<Filesystem<B>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let _in_runtime = self.runtime.enter();
        let mut operation = Box::pin(op(self.fs.clone()));
        // A future registers the waker of its latest poll: the task's, once spawned.
        let mut first_poll = Context::from_waker(Waker::noop());
        if operation.as_mut().poll(&mut first_poll).is_pending() {
            self.runtime.spawn(operation);
        }
    }
}

/// The errno for a failed operation, logged once here where it is handled.
fn fail(op: &str, error: &FsError) -> Errno {
    if error.is_expected() {
        log::debug!("{op}: {error}");
    } else {
        log::warn!("{op} failed: {error}");
    }
    Errno::from_i32(error.errno())
}

fn file_attr(entry: &InodeAttributes) -> FileAttr {
    let a = &entry.attrs;
    FileAttr {
        ino: INodeNo(entry.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        // SFTP version 3 has no change time; the modification time is the closest.
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        // 1 means "not counted": tools like find then do not skip subdirectories; 0 for a
        // file unlinked while open.
        nlink: entry.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        // Tools size their buffers by this: one buffer, one FUSE write.
        blksize: MAX_WRITE,
        flags: 0,
    }
}

fn file_type(kind: FileKind) -> fuser::FileType {
    match kind {
        FileKind::Directory => fuser::FileType::Directory,
        FileKind::RegularFile => fuser::FileType::RegularFile,
        FileKind::Symlink => fuser::FileType::Symlink,
        FileKind::Other => fuser::FileType::NamedPipe,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// Answers an operation that made a name (mkdir, mknod, symlink, link) with its entry.
fn reply_entry(reply: ReplyEntry, op: &str, made: FsResult<InodeAttributes>) {
    match made {
        Ok(entry) => reply.entry(&ATTR_TTL, &file_attr(&entry), Generation(0)),
        Err(e) => reply.error(fail(op, &e)),
    }
}

/// Permission bits of a new file: `mode` without the type and without `umask`.
fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl<B: SftpBackend> fuser::Filesystem for FuseFilesystem<B> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each setter answers the nearest acceptable value when it refuses one.
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        // READDIRPLUS for every listing (not only the first, as with READDIRPLUS_AUTO): the
        // attributes come with the listing, so `ls -l` and `find` cost no LOOKUP per name.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            log::info!("the kernel lacks {missing:?}: listings without attributes");
        }
        // Symbolic links kept in the page cache: a download reads its real-name link each time,
        // and only the first read of a link asks the file server. A link made anew is a new
        // inode; one replaced behind fsd's back has new attributes, which drop the cached target
        // when the kernel next asks for them (ATTR_TTL).
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS) {
            log::info!("the kernel lacks {missing:?}: every readlink asks the file server");
        }
        Ok(())
    }

    // Extended attributes, access(2) and copy_file_range are not supported. ENOSYS (which
    // fuser's defaults also answer, with a warning each) makes the kernel stop asking: it then
    // answers EOPNOTSUPP for xattrs, lets the file server decide on access, and copies by
    // reading and writing.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    // A file on the server is not a device: every ioctl is "inappropriate" (ENOTTY), which is
    // what `isatty(3)` expects. The kernel asks for each call (it does not remember an
    // ENOSYS here, unlike the xattrs above), and Python's `open()` calls `isatty` on every
    // file it opens: this answers quietly, where fuser's default logs a warning each time.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        log::trace!("lookup(parent {parent}, {name:?})");
        let name = name.to_owned();
        self.run(|fs| async move {
            match fs.lookup(parent.0, &name).await {
                Ok(entry) => reply.entry(&ATTR_TTL, &file_attr(&entry), Generation(0)),
                // Inode 0 with a timeout: the kernel keeps the name as absent for ATTR_TTL
                // (a negative dentry) instead of asking again at once.
                Err(e) if e.errno() == libc::ENOENT => {
                    let none = InodeAttributes {
                        ino: 0,
                        attrs: crate::backend::Attributes {
                            kind: crate::backend::FileKind::RegularFile,
                            perm: 0,
                            size: 0,
                            uid: 0,
                            gid: 0,
                            atime: std::time::SystemTime::UNIX_EPOCH,
                            mtime: std::time::SystemTime::UNIX_EPOCH,
                        },
                        nlink: 0,
                    };
                    reply.entry(&ATTR_TTL, &file_attr(&none), Generation(0));
                }
                Err(e) => reply.error(fail("lookup", &e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        log::trace!("forget(inode {ino}, {nlookup})");
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        log::trace!("getattr(inode {ino}, fh {fh:?})");
        self.run(|fs| async move {
            match fs.getattr(ino.0, fh.map(|fh| fh.0)).await {
                Ok(entry) => reply.attr(&ATTR_TTL, &file_attr(&entry)),
                Err(e) => reply.error(fail("getattr", &e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        log::trace!("setattr(inode {ino}, mode {mode:?}, uid {uid:?}, gid {gid:?}, size {size:?}, fh {fh:?})");
        let changes = AttributeChanges {
            size,
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        self.run(|fs| async move {
            match fs.setattr(ino.0, fh.map(|fh| fh.0), changes).await {
                Ok(entry) => reply.attr(&ATTR_TTL, &file_attr(&entry)),
                Err(e) => reply.error(fail("setattr", &e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        log::trace!("mkdir(parent {parent}, {name:?}, {mode:o})");
        let name = name.to_owned();
        self.run(|fs| async move {
            reply_entry(
                reply,
                "mkdir",
                fs.mkdir(parent.0, &name, perm(mode, umask)).await,
            );
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        log::trace!("mknod(parent {parent}, {name:?}, {mode:o})");
        let name = name.to_owned();
        self.run(|fs| async move {
            let made = fs
                .mknod(parent.0, &name, mode & libc::S_IFMT, perm(mode, umask))
                .await;
            reply_entry(reply, "mknod", made);
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        log::trace!("symlink(parent {parent}, {link_name:?} -> {target:?})");
        let (name, target) = (link_name.to_owned(), target.as_os_str().to_owned());
        self.run(|fs| async move {
            reply_entry(reply, "symlink", fs.symlink(parent.0, &name, &target).await);
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        log::trace!("readlink(inode {ino})");
        self.run(|fs| async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(target.as_bytes()),
                Err(e) => reply.error(fail("readlink", &e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        log::trace!("link(inode {ino}, parent {newparent}, {newname:?})");
        let name = newname.to_owned();
        self.run(|fs| async move {
            reply_entry(reply, "link", fs.link(ino.0, newparent.0, &name).await);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        log::trace!("unlink(parent {parent}, {name:?})");
        let name = name.to_owned();
        self.run(|fs| async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("unlink", &e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        log::trace!("rmdir(parent {parent}, {name:?})");
        let name = name.to_owned();
        self.run(|fs| async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("rmdir", &e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        log::trace!("rename(parent {parent}, {name:?}, parent {newparent}, {newname:?}, {flags})");
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let unsupported = flags.difference(RenameFlags::RENAME_NOREPLACE);
        if !unsupported.is_empty() {
            reply.error(fail(
                "rename",
                &FsError::UnsupportedRename(unsupported.bits()),
            ));
            return;
        }
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.run(|fs| async move {
            match fs
                .rename(parent.0, &name, newparent.0, &newname, no_replace)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("rename", &e)),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        log::trace!("open(inode {ino}, {:#o})", flags.0);
        self.run(|fs| async move {
            match fs.open(ino.0, flags.0).await {
                Ok((fh, keep_cache)) => {
                    let flags = if keep_cache {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(fh), flags)
                }
                Err(e) => reply.error(fail("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        log::trace!("read(inode {ino}, fh {fh}, {size} at {offset})");
        self.run(|fs| async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(fail("read", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        log::trace!("write(inode {ino}, fh {fh}, {} at {offset})", data.len());
        let data = data.to_vec();
        self.run(|fs| async move {
            match fs.write(fh.0, offset, data).await {
                Ok(written) => reply.written(written),
                Err(e) => reply.error(fail("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        log::trace!("flush(inode {ino}, fh {fh})");
        self.run(|fs| async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("flush", &e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        log::trace!("release(inode {ino}, fh {fh})");
        self.run(|fs| async move {
            match fs.release(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("release", &e)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        log::trace!("fsync(inode {ino}, fh {fh}, datasync {datasync})");
        self.run(|fs| async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("fsync", &e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        log::trace!("opendir(inode {ino})");
        self.run(|fs| async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(fail("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        log::trace!("readdir(inode {ino}, fh {fh}, from {offset})");
        self.run(|fs| async move {
            match fs.readdir(fh.0).await {
                Ok(listing) => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    for (index, entry) in listing.iter().enumerate().skip(start) {
                        // The offset of an entry is where the next readdir starts.
                        if reply.add(
                            INodeNo(entry.ino),
                            index as u64 + 1,
                            file_type(entry.attrs.kind),
                            &entry.name,
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(fail("readdir", &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        log::trace!("readdirplus(inode {ino}, fh {fh}, from {offset})");
        self.run(|fs| async move {
            let listed = fs
                .readdirplus(fh.0, offset, |next, name, entry| {
                    reply.add(
                        INodeNo(entry.ino),
                        next,
                        name,
                        &ATTR_TTL,
                        &file_attr(entry),
                        Generation(0),
                    )
                })
                .await;
            match listed {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        log::trace!("releasedir(inode {ino}, fh {fh})");
        match self.fs.releasedir(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("releasedir", &e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // SFTP has no way to sync a directory; a rename is as durable as the server's file
        // system makes it (journaled on ext4 and XFS). See docs/fsd-semantics.md.
        log::trace!("fsyncdir(inode {ino}, fh {fh})");
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        log::trace!("statfs(inode {ino})");
        self.run(|fs| async move {
            match fs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks,
                    s.blocks_free,
                    s.blocks_avail,
                    s.files,
                    s.files_free,
                    u32::try_from(s.block_size).unwrap_or(4096),
                    u32::try_from(s.name_max).unwrap_or(255),
                    u32::try_from(s.block_size).unwrap_or(4096),
                ),
                Err(e) => reply.error(fail("statfs", &e)),
            }
        });
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        log::trace!("create(parent {parent}, {name:?}, {mode:o}, {flags:#o})");
        let name = name.to_owned();
        self.run(|fs| async move {
            match fs.create(parent.0, &name, perm(mode, umask), flags).await {
                Ok((entry, fh)) => reply.created(
                    &ATTR_TTL,
                    &file_attr(&entry),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(fail("create", &e)),
            }
        });
    }
}
