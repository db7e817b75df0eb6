//! fsd: the node's own SSHFS. It mounts the node's directory on the external file server
//! (`file_server.directory`) at `file_server.mount_point`, through FUSE, over one SSH connection
//! carrying SFTP, and keeps it working across losses of the server.
//!
//! - [`status`]: the status document fsd publishes (serde types and the atomic write of the
//!   file; always compiled, for httpd).
//! - [`contract`]: the fsd ↔ httpd contract: the errno classes a caller of the mount sorts
//!   answers into, and what the mount does and does not do (always compiled, for httpd).
//! - [`backend`]: the file server behind the [`backend::SftpBackend`] trait; the real SSH/SFTP
//!   implementation (reconnecting), an in-memory double and a fault-injecting wrapper.
//! - [`host_key`], [`keys`]: the pinned host key; the node's key pair (load, generate, rotate).
//! - [`fs`]: the filesystem logic (inodes, write-behind, caches, errors to errno), FUSE-free.
//! - [`fuse`]: the thin `fuser` glue and the mount.
//! - [`health`]: the seed's seven file-server checks (the alarms' latch is `mft_journal`'s).
//! - [`notify`]: systemd's readiness protocol.
//!
//! Error policy: library modules return typed errors (`thiserror`); only `main` uses `anyhow`.
//! Semantics and limits are in `docs/fsd-semantics.md`.

pub mod contract;
pub mod status;

#[cfg(feature = "daemon")]
pub mod backend;
#[cfg(feature = "daemon")]
pub mod fs;
#[cfg(feature = "daemon")]
pub mod fuse;
#[cfg(feature = "daemon")]
pub mod health;
#[cfg(feature = "daemon")]
pub mod host_key;
#[cfg(feature = "daemon")]
pub mod keys;
#[cfg(feature = "daemon")]
pub mod notify;
