//! Conversions between fsd's backend types and russh-sftp's wire types: attributes, open
//! flags, status codes and client errors, times, and the strings of OpenSSH's extension
//! requests. Pure functions; nothing here sends anything.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh_sftp::client::error::Error as ClientError;
use russh_sftp::protocol::{self, FileAttributes, OpenFlags};

use crate::backend::{Attributes, FileKind, OpenOptions, SetAttributes, SftpError, StatusCode};

pub const POSIX_RENAME: &str = "posix-rename@openssh.com";
pub const FSYNC: &str = "fsync@openssh.com";
pub const STATVFS: &str = "statvfs@openssh.com";
pub const HARDLINK: &str = "hardlink@openssh.com";
pub const LIMITS: &str = "limits@openssh.com";

/// A russh-sftp client error as fsd's.
pub fn client_error(error: ClientError) -> SftpError {
    match error {
        ClientError::Status(status) => status_error(status),
        ClientError::Timeout => SftpError::Timeout,
        ClientError::Limited(message) => SftpError::Protocol(message),
        ClientError::UnexpectedPacket => SftpError::Protocol("unexpected packet".into()),
        // The session's channel is gone ("session closed", "sender dropped") or broke.
        ClientError::IO(message) | ClientError::UnexpectedBehavior(message) => {
            SftpError::Disconnected(message)
        }
    }
}

pub fn status_error(status: protocol::Status) -> SftpError {
    let code = match status.status_code {
        protocol::StatusCode::Ok => {
            return SftpError::Protocol(format!(
                "an OK status reported as an error: {}",
                status.error_message
            ))
        }
        protocol::StatusCode::Eof => StatusCode::Eof,
        protocol::StatusCode::NoSuchFile => StatusCode::NoSuchFile,
        protocol::StatusCode::PermissionDenied => StatusCode::PermissionDenied,
        protocol::StatusCode::Failure => StatusCode::Failure,
        protocol::StatusCode::BadMessage => StatusCode::BadMessage,
        protocol::StatusCode::NoConnection => StatusCode::NoConnection,
        protocol::StatusCode::ConnectionLost => StatusCode::ConnectionLost,
        protocol::StatusCode::OpUnsupported => StatusCode::OpUnsupported,
    };
    SftpError::Status {
        code,
        message: status.error_message,
    }
}

fn from_sftp_time(seconds: Option<u32>) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.unwrap_or(0).into())
}

fn to_sftp_time(time: SystemTime) -> u32 {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

pub fn attributes(attrs: &FileAttributes) -> Attributes {
    let mode = attrs.permissions.unwrap_or(0);
    Attributes {
        kind: FileKind::from_mode(mode),
        perm: (mode & 0o7777) as u16,
        size: attrs.size.unwrap_or(0),
        uid: attrs.uid.unwrap_or(0),
        gid: attrs.gid.unwrap_or(0),
        atime: from_sftp_time(attrs.atime),
        mtime: from_sftp_time(attrs.mtime),
    }
}

pub fn file_attributes(attrs: SetAttributes) -> FileAttributes {
    FileAttributes {
        size: attrs.size,
        uid: attrs.owner.map(|(uid, _)| uid),
        gid: attrs.owner.map(|(_, gid)| gid),
        permissions: attrs.perm.map(u32::from),
        atime: attrs.times.map(|(atime, _)| to_sftp_time(atime)),
        mtime: attrs.times.map(|(_, mtime)| to_sftp_time(mtime)),
        ..FileAttributes::empty()
    }
}

/// SFTP `pflags` for an open.
pub fn open_flags(options: OpenOptions) -> OpenFlags {
    let mut flags = OpenFlags::empty();
    for (wanted, flag) in [
        (options.read, OpenFlags::READ),
        (options.write, OpenFlags::WRITE),
        (options.append, OpenFlags::APPEND),
        (options.create, OpenFlags::CREATE),
        (options.truncate, OpenFlags::TRUNCATE),
        (options.exclusive, OpenFlags::EXCLUDE),
    ] {
        flags.set(flag, wanted);
    }
    flags
}

/// The attributes an open sends: the permission bits of a file it creates.
pub fn open_attributes(options: OpenOptions, perm: u16) -> FileAttributes {
    FileAttributes {
        permissions: options.create.then_some(u32::from(perm)),
        ..FileAttributes::empty()
    }
}

/// SSH wire strings (`uint32` length, then the bytes), for extension requests.
pub fn ssh_strings(strings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_strings_are_length_prefixed() {
        assert_eq!(
            ssh_strings(&["ab", ""]),
            vec![0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]
        );
    }
}
