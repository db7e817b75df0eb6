//! What the running fsd publishes about itself: the seed's seven file-server checks, the active
//! alarms and the counters, as one JSON document ([`FsdStatus`]) in `fsd.status_file`.
//!
//! fsd rewrites the file atomically and durably (`mft_journal::durable`: a temporary file in the
//! same directory, fsync, then `rename`) on every change and every 10 s, so a reader never sees
//! half a document; httpd deserializes it for its status page. This module needs only serde and
//! `mft_journal`: httpd uses it with `default-features = false` and pulls in none of FUSE or SSH.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The seed's file-server troubleshooting tests, in the seed's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Reachable,
    Listening,
    HostKey,
    NodeKey,
    Directory,
    Mounted,
    FreeSpace,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::Reachable,
        Check::Listening,
        Check::HostKey,
        Check::NodeKey,
        Check::Directory,
        Check::Mounted,
        Check::FreeSpace,
    ];

    /// The name `fsd check` prints and the JSON carries.
    pub fn name(self) -> &'static str {
        match self {
            Check::Reachable => "reachable",
            Check::Listening => "listening",
            Check::HostKey => "host_key",
            Check::NodeKey => "node_key",
            Check::Directory => "directory",
            Check::Mounted => "mounted",
            Check::FreeSpace => "free_space",
        }
    }

    /// The seed's wording of the test.
    pub fn title(self) -> &'static str {
        match self {
            Check::Reachable => "Verify external file server reachability",
            Check::Listening => "Verify that external file server is listening for connections",
            Check::HostKey => "Verify external file server public key is correct",
            Check::NodeKey => {
                "Verify node public key is configured correctly on the external file server"
            }
            Check::Directory => "Verify external file server directory is valid",
            Check::Mounted => "Verify external file server has been mounted successfully",
            Check::FreeSpace => "Verify that free disk space is available on the file server",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One check's outcome and why; its `line()` is one line of `fsd check`.
pub type CheckResult = mft_journal::CheckResult<Check>;

/// fsd's use of the file server: bytes and requests since it started, reconnections, and what
/// it holds open now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileServerUse {
    /// Bytes read from files through the mount.
    pub bytes_read: u64,
    /// Bytes written to files through the mount (acknowledged by the server).
    pub bytes_written: u64,
    /// Requests sent to the file server.
    pub ops: u64,
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Files and directory listings open on the file server now.
    pub open_handles: u64,
    /// SFTP sessions (SSH channels) on the current connection.
    pub sessions: u64,
}

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsdStatus {
    /// When fsd wrote this, RFC 3339 UTC.
    pub updated_at: String,
    pub mount_point: String,
    /// Whether fsd is connected to the file server now.
    pub connected: bool,
    /// The seven checks, in [`Check::ALL`] order.
    pub checks: Vec<CheckResult>,
    /// Names of the alarms raised now (`MftExtFsMountError`, `MftExtFsFreeSpaceWarn`).
    pub alarms: Vec<String>,
    pub counters: FileServerUse,
}

/// The status file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read or write the fsd status file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the fsd status file {path} is not a status document: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
}

impl FsdStatus {
    /// Whether every check passed.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Reads the status fsd last published at `path`.
    pub fn load(path: &Path) -> Result<Self, StatusError> {
        let io = |source| StatusError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = std::fs::read(path).map_err(io)?;
        serde_json::from_slice(&text).map_err(|source| StatusError::Format {
            path: path.display().to_string(),
            source,
        })
    }

    /// Replaces the file at `path` with this status, atomically and durably
    /// ([`mft_journal::durable::write_atomic`]), making its directory if needed. The file is world-readable (0644, whatever the umask:
    /// fsd runs as root with `UMask=0077`, httpd reads it as `mft`): it holds no secret.
    pub fn store(&self, path: &Path) -> Result<(), StatusError> {
        let io = |source| StatusError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_vec_pretty(self).expect("a status always serializes");
        mft_journal::durable::write_atomic(path, &text, Some(0o644)).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_status_loads_back_and_names_its_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/fsd-status.json");
        let status = FsdStatus {
            updated_at: "2025-01-01T13:00:00Z".into(),
            mount_point: "/var/lib/mft/store".into(),
            connected: false,
            checks: Check::ALL
                .iter()
                .map(|&c| CheckResult::pass(c, "ok"))
                .chain([CheckResult::fail(Check::FreeSpace, "3% available")])
                .collect(),
            alarms: vec!["MftExtFsFreeSpaceWarn".into()],
            counters: FileServerUse {
                reconnects: 2,
                ..FileServerUse::default()
            },
        };
        status.store(&path).unwrap();
        assert_eq!(FsdStatus::load(&path).unwrap(), status);
        assert!(!status.healthy());
        let json = std::fs::read_to_string(&path).unwrap();
        assert!(json.contains("\"name\": \"free_space\""), "{json}");
        assert!(!dir.path().join("sub/.fsd-status.json.part").exists());
        assert_eq!(
            status.checks.last().unwrap().line(),
            "FAIL free_space: 3% available"
        );
        assert!(FsdStatus::load(&dir.path().join("absent")).is_err());
    }

    /// Under systemd fsd runs with `UMask=0077`; httpd, another user, must still read the file.
    #[cfg(feature = "daemon")]
    #[test]
    fn the_status_file_is_readable_by_others_under_a_strict_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fsd-status.json");
        let status = FsdStatus {
            updated_at: "2025-01-01T13:00:00Z".into(),
            mount_point: "/var/lib/mft/store".into(),
            connected: true,
            checks: Vec::new(),
            alarms: Vec::new(),
            counters: FileServerUse::default(),
        };
        // SAFETY: umask only sets the process's file-mode mask; it is restored right after.
        let old = unsafe { libc::umask(0o077) };
        let stored = status.store(&path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        stored.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{mode:o}");
    }
}
