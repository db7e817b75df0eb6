//! Why a filesystem operation failed, and the one mapping of every failure to an errno.
//!
//! SFTP version 3 has few status codes and OpenSSH folds most errnos into `SSH_FX_FAILURE`, so
//! the filesystem refines a failure where the operation tells what it meant (a failed `mkdir` of
//! a name that exists is [`FsError::AlreadyExists`], a failed `rmdir` of a directory with entries
//! is [`FsError::NotEmpty`]). [`FsError::errno`] has no catch-all arm: a new variant must be
//! given its errno.

use std::ffi::OsString;

use crate::backend::{SftpError, StatusCode};
use crate::fs::inode::Ino;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Sftp(#[from] SftpError),
    #[error("inode {0} has no name (forgotten, removed or replaced)")]
    StaleInode(Ino),
    #[error("file handle {0} is not open")]
    BadHandle(u64),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("directory {0} is not empty")]
    NotEmpty(String),
    #[error("file name {0:?} is not UTF-8, which SFTP paths must be here")]
    InvalidName(OsString),
    #[error("a name of {0} bytes is longer than the 255 a directory entry may have")]
    NameTooLong(usize),
    #[error("the file server's disk is full ({0})")]
    NoSpace(SftpError),
    #[error("rename flags {0:#x} are not supported")]
    UnsupportedRename(u32),
    #[error("SFTP cannot make a file of type {0:#o} (only regular files)")]
    SpecialFile(u32),
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// The errno the kernel hands to the caller.
    pub fn errno(&self) -> libc::c_int {
        match self {
            Self::Sftp(SftpError::Status { code, .. }) => match code {
                // Reads turn end of file into a short read; anywhere else it is an I/O error.
                StatusCode::Eof => libc::EIO,
                StatusCode::NoSuchFile => libc::ENOENT,
                StatusCode::PermissionDenied => libc::EACCES,
                StatusCode::Failure => libc::EIO,
                StatusCode::BadMessage => libc::EINVAL,
                StatusCode::NoConnection | StatusCode::ConnectionLost => libc::ENOTCONN,
                // Not ENOSYS: the kernel would take that as "never call this again" (for fsync,
                // it would then report success without asking).
                StatusCode::OpUnsupported => libc::EOPNOTSUPP,
            },
            Self::Sftp(SftpError::Disconnected(_)) => libc::ENOTCONN,
            // The server closed the file with the lost connection: like a file on a disk that
            // went away.
            Self::Sftp(SftpError::HandleLost) => libc::EIO,
            Self::Sftp(SftpError::Timeout) => libc::ETIMEDOUT,
            Self::Sftp(SftpError::TooManyOpenFiles) => libc::ENFILE,
            Self::Sftp(SftpError::Protocol(_)) => libc::EIO,
            Self::StaleInode(_) => libc::ENOENT,
            Self::BadHandle(_) => libc::EBADF,
            Self::AlreadyExists(_) => libc::EEXIST,
            Self::NotEmpty(_) => libc::ENOTEMPTY,
            Self::InvalidName(_) => libc::EINVAL,
            Self::NameTooLong(_) => libc::ENAMETOOLONG,
            Self::NoSpace(_) => libc::ENOSPC,
            Self::UnsupportedRename(_) => libc::EINVAL,
            Self::SpecialFile(_) => libc::EPERM,
        }
    }

    /// Whether this is an answer a caller expects in normal use (a missing name, an existing
    /// one, a denied permission) rather than a fault of fsd or the file server.
    pub fn is_expected(&self) -> bool {
        matches!(
            self.errno(),
            libc::ENOENT
                | libc::EEXIST
                | libc::ENOTEMPTY
                | libc::EACCES
                | libc::EPERM
                | libc::EINVAL
                | libc::ENAMETOOLONG
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: StatusCode) -> FsError {
        FsError::Sftp(SftpError::Status {
            code,
            message: String::new(),
        })
    }

    #[test]
    fn every_failure_has_its_errno() {
        let cases = [
            (status(StatusCode::Eof), libc::EIO),
            (status(StatusCode::NoSuchFile), libc::ENOENT),
            (status(StatusCode::PermissionDenied), libc::EACCES),
            (status(StatusCode::Failure), libc::EIO),
            (status(StatusCode::BadMessage), libc::EINVAL),
            (status(StatusCode::NoConnection), libc::ENOTCONN),
            (status(StatusCode::ConnectionLost), libc::ENOTCONN),
            (status(StatusCode::OpUnsupported), libc::EOPNOTSUPP),
            (
                FsError::Sftp(SftpError::Disconnected("eof".into())),
                libc::ENOTCONN,
            ),
            (FsError::Sftp(SftpError::HandleLost), libc::EIO),
            (FsError::Sftp(SftpError::Timeout), libc::ETIMEDOUT),
            (FsError::Sftp(SftpError::TooManyOpenFiles), libc::ENFILE),
            (FsError::Sftp(SftpError::Protocol("?".into())), libc::EIO),
            (FsError::StaleInode(7), libc::ENOENT),
            (FsError::BadHandle(7), libc::EBADF),
            (FsError::AlreadyExists("/x".into()), libc::EEXIST),
            (FsError::NotEmpty("/x".into()), libc::ENOTEMPTY),
            (FsError::InvalidName("\u{fffd}".into()), libc::EINVAL),
            (FsError::NameTooLong(300), libc::ENAMETOOLONG),
            (
                FsError::NoSpace(SftpError::Status {
                    code: StatusCode::Failure,
                    message: String::new(),
                }),
                libc::ENOSPC,
            ),
            (FsError::UnsupportedRename(2), libc::EINVAL),
            (FsError::SpecialFile(libc::S_IFIFO), libc::EPERM),
        ];
        for (error, errno) in cases {
            assert_eq!(error.errno(), errno, "{error:?}");
        }
        assert!(status(StatusCode::NoSuchFile).is_expected());
        assert!(!FsError::Sftp(SftpError::Timeout).is_expected());
    }
}
