//! fsd: the node's own SSHFS. It mounts the node's directory on the external file server
//! (`file_server.directory`) at `file_server.mount_point`, through FUSE, over one SSH connection
//! carrying SFTP.
//!
//! - [`backend`]: the file server behind the [`backend::SftpBackend`] trait; the real SSH/SFTP
//!   implementation and an in-memory double.
//! - [`host_key`]: the pinned host key and its check.
//! - [`fs`]: the filesystem logic (inodes, open files, errors to errno), async and FUSE-free.
//! - [`fuse`]: the thin `fuser` glue and the mount.
//!
//! Error policy: library modules return typed errors (`thiserror`); only `main` uses `anyhow`.
//! Semantics and limits are in `docs/fsd-semantics.md`.

pub mod backend;
pub mod fs;
pub mod fuse;
pub mod host_key;
