//! What an `SSH_FX_FAILURE` meant. OpenSSH's `sftp-server` folds EEXIST, ENOTEMPTY, ENOSPC and
//! more into that one status; the operation that failed ([`Attempt`]) tells which it may have
//! been, and one or two requests to the server ([`explain`]) tell which it was. Any other
//! failure is mapped as it is.

use crate::backend::{SftpBackend, SftpError, StatusCode};
use crate::fs::error::FsError;
use crate::fs::traffic::Traffic;

/// What fsd was doing when the server answered `SSH_FX_FAILURE`.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// Something that needed space (a write, a truncation, a create): ENOSPC if the server's
    /// disk has no block left.
    Space,
    /// Making the name `path` (an exclusive create, mkdir, symlink, link): EEXIST if it exists,
    /// else as [`Attempt::Space`].
    Make { path: &'a str },
    /// A rename to `to`: EEXIST if `no_replace` and `to` exists, ENOTEMPTY if `to` is a
    /// directory with entries.
    Rename { to: &'a str, no_replace: bool },
    /// Removing the directory `path`: ENOTEMPTY if it has entries.
    RemoveDir { path: &'a str },
}

/// The error `error` of `attempt` stands for, asking `server` (each request counted in
/// `traffic`) what it needs to know; `root` is the node directory, for the space left.
pub async fn explain<B: SftpBackend>(
    server: &B,
    root: &str,
    traffic: &Traffic,
    error: SftpError,
    attempt: Attempt<'_>,
) -> FsError {
    if !error.is_status(StatusCode::Failure) {
        return error.into();
    }
    match attempt {
        Attempt::Make { path } if exists(server, traffic, path).await => {
            FsError::AlreadyExists(path.to_owned())
        }
        Attempt::Space | Attempt::Make { .. } if full(server, root, traffic).await => {
            FsError::NoSpace(error)
        }
        Attempt::Rename {
            to,
            no_replace: true,
        } if exists(server, traffic, to).await => FsError::AlreadyExists(to.to_owned()),
        Attempt::Rename { to: path, .. } | Attempt::RemoveDir { path }
            if has_entries(server, traffic, path).await =>
        {
            FsError::NotEmpty(path.to_owned())
        }
        _ => error.into(),
    }
}

async fn exists<B: SftpBackend>(server: &B, traffic: &Traffic, path: &str) -> bool {
    traffic.request();
    server.lstat(path).await.is_ok()
}

async fn has_entries<B: SftpBackend>(server: &B, traffic: &Traffic, path: &str) -> bool {
    traffic.request();
    server
        .read_dir(path)
        .await
        .is_ok_and(|entries| !entries.is_empty())
}

/// Whether the server's file system holding `root` has no block left for us.
async fn full<B: SftpBackend>(server: &B, root: &str, traffic: &Traffic) -> bool {
    traffic.request();
    server
        .statvfs(root)
        .await
        .is_ok_and(|stats| stats.blocks > 0 && stats.blocks_avail == 0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::OpenOptions;

    const ROOT: &str = "/srv/n";

    fn failure() -> SftpError {
        SftpError::Status {
            code: StatusCode::Failure,
            message: "Failure".into(),
        }
    }

    async fn errno(server: &MemoryBackend, error: SftpError, attempt: Attempt<'_>) -> libc::c_int {
        explain(server, ROOT, &Traffic::default(), error, attempt)
            .await
            .errno()
    }

    #[tokio::test]
    async fn a_failure_is_explained_by_what_was_attempted() {
        let server = MemoryBackend::new(ROOT);
        server.mkdir("/srv/n/full", 0o755).await.unwrap();
        server.mkdir("/srv/n/empty", 0o755).await.unwrap();
        let create = OpenOptions {
            write: true,
            create: true,
            ..OpenOptions::default()
        };
        let handle = server.open("/srv/n/full/f", create, 0o644).await.unwrap();
        server.close(&handle).await.unwrap();

        let make = |path| Attempt::Make { path };
        assert_eq!(
            errno(&server, failure(), make("/srv/n/full")).await,
            libc::EEXIST
        );
        assert_eq!(
            errno(&server, failure(), make("/srv/n/new")).await,
            libc::EIO
        );
        assert_eq!(
            errno(&server, failure(), Attempt::Space).await,
            libc::EIO,
            "space is left"
        );
        let rename = |to, no_replace| Attempt::Rename { to, no_replace };
        assert_eq!(
            errno(&server, failure(), rename("/srv/n/empty", true)).await,
            libc::EEXIST
        );
        assert_eq!(
            errno(&server, failure(), rename("/srv/n/empty", false)).await,
            libc::EIO
        );
        assert_eq!(
            errno(&server, failure(), rename("/srv/n/full", false)).await,
            libc::ENOTEMPTY
        );
        let rmdir = |path| Attempt::RemoveDir { path };
        assert_eq!(
            errno(&server, failure(), rmdir("/srv/n/full")).await,
            libc::ENOTEMPTY
        );
        assert_eq!(
            errno(&server, failure(), rmdir("/srv/n/empty")).await,
            libc::EIO
        );
    }

    #[tokio::test]
    async fn other_errors_are_mapped_as_they_are_without_a_request() {
        let server = MemoryBackend::new(ROOT);
        let traffic = Traffic::default();
        let missing = SftpError::Status {
            code: StatusCode::NoSuchFile,
            message: String::new(),
        };
        let error = explain(
            &server,
            ROOT,
            &traffic,
            missing,
            Attempt::Make { path: ROOT },
        )
        .await;
        assert_eq!(error.errno(), libc::ENOENT);
        assert_eq!(traffic.requests.load(Ordering::Relaxed), 0);
    }
}
