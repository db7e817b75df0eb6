//! The contract between fsd and the programs that use its mount (httpd): which errnos a call on
//! the mount answers and what each means for the caller ([`ErrnoClass`]), and what the mount
//! does and does not do. Always compiled (httpd uses fsd with `default-features = false`);
//! `docs/fsd-contract.md` says the same for people.
//!
//! What the mount does:
//! - A file `fsync` returns once the file server has the data on its disk
//!   (`fsync@openssh.com`); `close` returns the first failed write of the file (write-behind
//!   failures are never lost).
//! - `rename` replaces its target atomically (`posix-rename@openssh.com`).
//! - Every call is answered within 10 s of the server's last answer to it, or fails
//!   (`ETIMEDOUT`); while the file server is lost, calls fail at once (`ENOTCONN`). The mount
//!   stays in place meanwhile, so the mount point never turns back into a local directory.
//!
//! What it does not do:
//! - A directory `fsync` is answered as success without asking the server: SFTP cannot sync a
//!   directory. A rename or create is as durable as the server's journaling file system makes
//!   it. A caller that fsyncs a directory after a rename would pay the kernel's `OPENDIR`,
//!   `FSYNCDIR` and `RELEASEDIR` requests to fsd and get no further durability: httpd does not.
//! - No special files (FIFOs, sockets, devices: `EPERM`), no `RENAME_EXCHANGE` (`EINVAL`),
//!   no names that are not UTF-8 (`EINVAL`).

/// The largest write the mount takes in one request (the kernel splits larger ones): a caller
/// that gathers its writes to this size sends the file server the fewest requests.
pub const MAX_WRITE: u32 = 1024 * 1024;

/// What a failed call on the mount means for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrnoClass {
    /// The file server cannot serve the call now: fsd lost it (or is not running), the call got
    /// no answer in time, the file was opened on a lost connection. Retry later.
    Unavailable,
    /// The file server takes no more open files now (every SFTP session is full): a capacity
    /// condition, not a fault. Retry later.
    Busy,
    /// No space (or quota) left on the file server.
    Full,
    /// No such file or directory.
    NotFound,
    /// The call itself is refused (the name exists, a directory is not empty, permission denied,
    /// a bad name or argument, an unsupported operation): a fault of the caller or of the
    /// configuration, which retrying does not cure. Also any errno fsd does not answer.
    Refused,
}

/// Every errno fsd answers (`FsError::errno` in `fs/error.rs`), and the ones the kernel answers
/// for a FUSE mount whose daemon is gone, with their class.
pub const ERRNOS: &[(i32, ErrnoClass)] = &[
    // fsd: the connection lost or not yet back; the kernel: fsd gone (its FUSE connection aborted).
    (libc::ENOTCONN, ErrnoClass::Unavailable),
    // No answer within the request deadline; the outcome of the call is unknown.
    (libc::ETIMEDOUT, ErrnoClass::Unavailable),
    // A file opened before the connection was lost, a protocol violation, a failure the server
    // did not explain (SSH_FX_FAILURE).
    (libc::EIO, ErrnoClass::Unavailable),
    // The kernel, for a mount that went away under an open file or directory.
    (libc::ENODEV, ErrnoClass::Unavailable),
    (libc::ESTALE, ErrnoClass::Unavailable),
    // Network errnos a networked file system may pass on.
    (libc::ECONNRESET, ErrnoClass::Unavailable),
    (libc::ECONNABORTED, ErrnoClass::Unavailable),
    (libc::ESHUTDOWN, ErrnoClass::Unavailable),
    (libc::EHOSTUNREACH, ErrnoClass::Unavailable),
    (libc::ENETUNREACH, ErrnoClass::Unavailable),
    // Every SFTP session full of open files (the server's MaxSessions reached).
    (libc::ENFILE, ErrnoClass::Busy),
    (libc::ENOSPC, ErrnoClass::Full),
    (libc::EDQUOT, ErrnoClass::Full),
    (libc::ENOENT, ErrnoClass::NotFound),
    (libc::EEXIST, ErrnoClass::Refused),
    (libc::ENOTEMPTY, ErrnoClass::Refused),
    (libc::EACCES, ErrnoClass::Refused),
    (libc::EPERM, ErrnoClass::Refused),
    (libc::EINVAL, ErrnoClass::Refused),
    (libc::ENAMETOOLONG, ErrnoClass::Refused),
    (libc::EOPNOTSUPP, ErrnoClass::Refused),
    (libc::EBADF, ErrnoClass::Refused),
    (libc::ENOTTY, ErrnoClass::Refused),
];

impl ErrnoClass {
    /// The class of `errno` ([`ERRNOS`]); [`ErrnoClass::Refused`] for one not listed.
    pub fn of(errno: i32) -> Self {
        ERRNOS
            .iter()
            .find(|(listed, _)| *listed == errno)
            .map_or(ErrnoClass::Refused, |(_, class)| *class)
    }

    /// The class of a failed call's error: by its errno, or [`ErrnoClass::Refused`] for an error
    /// that carries none.
    pub fn of_io(error: &std::io::Error) -> Self {
        error.raw_os_error().map_or(ErrnoClass::Refused, Self::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_have_their_classes() {
        assert_eq!(
            ErrnoClass::of(libc::ENFILE),
            ErrnoClass::Busy,
            "a capacity condition, not a fault"
        );
        for errno in [libc::ENOTCONN, libc::ETIMEDOUT, libc::EIO] {
            assert_eq!(ErrnoClass::of(errno), ErrnoClass::Unavailable, "{errno}");
        }
        assert_eq!(ErrnoClass::of(libc::ENOSPC), ErrnoClass::Full);
        assert_eq!(ErrnoClass::of(libc::EDQUOT), ErrnoClass::Full);
        assert_eq!(ErrnoClass::of(libc::ENOENT), ErrnoClass::NotFound);
        assert_eq!(ErrnoClass::of(libc::EACCES), ErrnoClass::Refused);
        assert_eq!(
            ErrnoClass::of(libc::EMFILE),
            ErrnoClass::Refused,
            "not listed"
        );
        assert_eq!(
            ErrnoClass::of_io(&std::io::Error::other("no errno")),
            ErrnoClass::Refused
        );
        assert_eq!(
            ErrnoClass::of_io(&std::io::Error::from_raw_os_error(libc::ENOSPC)),
            ErrnoClass::Full
        );
    }

    #[test]
    fn each_errno_is_listed_once() {
        let mut errnos: Vec<_> = ERRNOS.iter().map(|(errno, _)| *errno).collect();
        errnos.sort_unstable();
        errnos.dedup();
        assert_eq!(errnos.len(), ERRNOS.len());
    }
}
