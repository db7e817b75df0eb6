//! The file server as the filesystem logic sees it: an async, SFTP-shaped trait.
//!
//! [`SftpBackend`] is the only door to the file server. [`ssh::SshBackend`] is the real one (one
//! SSH connection carrying SFTP sessions); [`memory::MemoryBackend`] is an in-memory double that
//! answers like OpenSSH's `sftp-server` does (same status codes for the same faults), so the
//! filesystem logic is tested without a server. The trait speaks in absolute server paths and
//! plain data types; it knows nothing of inodes, FUSE or errno.

pub mod fault;
pub mod memory;
mod sftp;
pub mod ssh;

use std::future::Future;
use std::time::SystemTime;

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    RegularFile,
    Symlink,
    /// A device, FIFO or socket: listed, never opened.
    Other,
}

impl FileKind {
    /// The kind encoded in the `S_IFMT` bits of a POSIX mode.
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Self::Directory,
            libc::S_IFREG => Self::RegularFile,
            libc::S_IFLNK => Self::Symlink,
            _ => Self::Other,
        }
    }
}

/// The attributes SFTP (version 3) carries for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    pub kind: FileKind,
    /// Permission bits (`0o7777`), without the file type.
    pub perm: u16,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
}

/// One name in a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub attrs: Attributes,
}

/// How to open a file: SFTP's `pflags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    pub create: bool,
    pub truncate: bool,
    /// With `create`: fail if the file exists (`O_EXCL`).
    pub exclusive: bool,
}

/// Attributes to change; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttributes {
    pub size: Option<u64>,
    pub perm: Option<u16>,
    /// User and group id: SFTP sets them together.
    pub owner: Option<(u32, u32)>,
    /// Access and modification time: SFTP sets them together.
    pub times: Option<(SystemTime, SystemTime)>,
}

/// File system statistics (`statvfs@openssh.com`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// The unit of the block counts, in bytes (`f_frsize`).
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    /// Free blocks available to unprivileged users.
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u64,
}

/// The SFTP status codes a request can fail with (version 3; `SSH_FX_OK` is not a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Eof,
    NoSuchFile,
    PermissionDenied,
    /// `SSH_FX_FAILURE`: anything else (OpenSSH sends it for EEXIST, ENOTEMPTY, ENOSPC, …).
    Failure,
    BadMessage,
    NoConnection,
    ConnectionLost,
    OpUnsupported,
}

/// Why a backend request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SftpError {
    /// The server answered with an error status.
    #[error("the file server answered {code:?}: {message}")]
    Status { code: StatusCode, message: String },
    /// The SSH connection or the SFTP session is gone.
    #[error("the connection to the file server is lost: {0}")]
    Disconnected(String),
    /// The file was opened on a connection that has since been lost; the server closed it.
    #[error("the file was opened on a connection to the file server that was lost")]
    HandleLost,
    /// The server did not answer in time.
    #[error("the file server did not answer in time")]
    Timeout,
    /// Every SFTP session has as many open handles as it safely can.
    #[error("too many files open on the file server at once")]
    TooManyOpenFiles,
    /// The server answered something the protocol does not allow.
    #[error("SFTP protocol error: {0}")]
    Protocol(String),
}

impl SftpError {
    /// Whether this is the server's answer `code`.
    pub fn is_status(&self, code: StatusCode) -> bool {
        matches!(self, Self::Status { code: c, .. } if *c == code)
    }
}

pub type SftpResult<T> = Result<T, SftpError>;

/// The file server. Paths are absolute paths on the server, `/`-separated, UTF-8.
///
/// Implementations must be safe to call concurrently: the filesystem runs many requests at once.
pub trait SftpBackend: Send + Sync + 'static {
    /// An open file on the server.
    type Handle: Send + Sync + 'static;

    /// The attributes of `path`, not following a final symlink.
    fn lstat(&self, path: &str) -> impl Future<Output = SftpResult<Attributes>> + Send;

    /// Every entry of the directory `path`, without `.` and `..`.
    fn read_dir(&self, path: &str) -> impl Future<Output = SftpResult<Vec<DirEntry>>> + Send;

    /// Opens (or creates, with permission bits `perm`) the file `path`.
    fn open(
        &self,
        path: &str,
        options: OpenOptions,
        perm: u16,
    ) -> impl Future<Output = SftpResult<Self::Handle>> + Send;

    /// Opens `path` like [`open`](Self::open) and returns the attributes the file has right
    /// after. A backend may send both requests at once (the SSH backend does: one round trip).
    fn open_stat(
        &self,
        path: &str,
        options: OpenOptions,
        perm: u16,
    ) -> impl Future<Output = SftpResult<(Self::Handle, Attributes)>> + Send {
        async move {
            let handle = self.open(path, options, perm).await?;
            match self.fstat(&handle).await {
                Ok(attrs) => Ok((handle, attrs)),
                Err(e) => {
                    // Nothing else will ever close it. The fstat error is the one that counts.
                    let _ = self.close(&handle).await;
                    Err(e)
                }
            }
        }
    }

    /// The attributes of an open file (it may have been renamed or unlinked since it was opened).
    fn fstat(&self, handle: &Self::Handle) -> impl Future<Output = SftpResult<Attributes>> + Send;

    /// Up to `len` bytes at `offset`; fewer only at the end of the file, none past it.
    fn read(
        &self,
        handle: &Self::Handle,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = SftpResult<Vec<u8>>> + Send;

    /// Writes all of `data` at `offset`; returns once the server has acknowledged it. `data`
    /// is taken whole, so that it can be sent without a copy.
    fn write(
        &self,
        handle: &Self::Handle,
        offset: u64,
        data: Vec<u8>,
    ) -> impl Future<Output = SftpResult<()>> + Send;

    /// Makes the file's data durable on the server's disk (`fsync@openssh.com`).
    fn fsync(&self, handle: &Self::Handle) -> impl Future<Output = SftpResult<()>> + Send;

    /// Closes an open file. Requests still in flight on it fail; the handle's resources go when
    /// it is dropped.
    fn close(&self, handle: &Self::Handle) -> impl Future<Output = SftpResult<()>> + Send;

    fn setstat(
        &self,
        path: &str,
        attrs: SetAttributes,
    ) -> impl Future<Output = SftpResult<()>> + Send;

    fn fsetstat(
        &self,
        handle: &Self::Handle,
        attrs: SetAttributes,
    ) -> impl Future<Output = SftpResult<()>> + Send;

    fn mkdir(&self, path: &str, perm: u16) -> impl Future<Output = SftpResult<()>> + Send;

    fn rmdir(&self, path: &str) -> impl Future<Output = SftpResult<()>> + Send;

    /// Removes a file (not a directory).
    fn remove(&self, path: &str) -> impl Future<Output = SftpResult<()>> + Send;

    /// Renames `from` to `to`. With `replace`, an existing `to` is replaced atomically (POSIX
    /// `rename`); without it, an existing `to` makes the rename fail.
    fn rename(
        &self,
        from: &str,
        to: &str,
        replace: bool,
    ) -> impl Future<Output = SftpResult<()>> + Send;

    /// Statistics of the file system holding `path`.
    fn statvfs(&self, path: &str) -> impl Future<Output = SftpResult<FsStats>> + Send;

    /// Makes `path` a symbolic link to `target` (stored as given, not resolved).
    fn symlink(&self, target: &str, path: &str) -> impl Future<Output = SftpResult<()>> + Send;

    /// The target of the symbolic link `path`.
    fn readlink(&self, path: &str) -> impl Future<Output = SftpResult<String>> + Send;

    /// Makes `new` another name of the file `existing` (`hardlink@openssh.com`).
    fn hardlink(&self, existing: &str, new: &str) -> impl Future<Output = SftpResult<()>> + Send;
}
