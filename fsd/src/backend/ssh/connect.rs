//! Making one SSH connection to the file server: TCP, key exchange with the server's host key
//! checked against the pinned one, and authentication with the node's key. What fails names
//! the seed's check it fails ([`ConnectError::failed_check`]). Sessions are the pool's
//! ([`super::pool`]); reconnecting is the supervisor's ([`super::supervisor`]).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mft_config::FileServer;
use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use crate::backend::SftpError;
use crate::host_key::{HostKeyMismatch, InvalidHostKey, PinnedHostKey};
use crate::keys::{self, KeyError};
use crate::status::Check;

/// How long making a connection (TCP, key exchange, authentication, sessions) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unanswered keepalives after which the connection is closed: with `keepalive_max` 2, russh
/// gives up at the third interval of silence.
const KEEPALIVE_MAX: usize = 2;

/// fsd could not establish a connection to the file server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    PinnedKey(#[from] InvalidHostKey),
    #[error(transparent)]
    PrivateKey(#[from] KeyError),
    #[error(transparent)]
    HostKeyMismatch(#[from] HostKeyMismatch),
    #[error("cannot connect to the file server {server}: {source}")]
    Connect {
        server: String,
        source: russh::Error,
    },
    #[error("the file server {server} did not complete the connection within {CONNECT_TIMEOUT:?}")]
    Timeout { server: String },
    #[error(
        "the file server {server} refused the node key for user {user:?} \
         (is the node's public key in that user's authorized_keys?)"
    )]
    AuthRejected { server: String, user: String },
    #[error("cannot start SFTP on the file server {server}: {reason}")]
    Sftp { server: String, reason: String },
    #[error("the node directory {directory} on the file server is not usable: {source}")]
    Directory {
        directory: String,
        source: SftpError,
    },
    #[error("the node directory {directory} on the file server is not a directory")]
    NotADirectory { directory: String },
}

impl ConnectError {
    /// Which of the seed's file-server checks this failure fails (the ones before it passed).
    pub fn failed_check(&self) -> Check {
        match self {
            Self::Connect { source, .. } => match source {
                russh::Error::IO(_) | russh::Error::ConnectionTimeout => Check::Reachable,
                _ => Check::Listening,
            },
            Self::Timeout { .. } => Check::Listening,
            Self::PinnedKey(_) | Self::HostKeyMismatch(_) => Check::HostKey,
            Self::PrivateKey(_) | Self::AuthRejected { .. } => Check::NodeKey,
            Self::Sftp { .. } | Self::Directory { .. } | Self::NotADirectory { .. } => {
                Check::Directory
            }
        }
    }
}

/// How fsd connects, besides `[file_server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// SSH keepalive interval; the server is declared dead after three silent intervals.
    pub keepalive: Duration,
}

/// Checks the server's host key against the pinned one and remembers what it presented.
pub struct ServerCheck {
    pinned: PinnedHostKey,
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for ServerCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Certificate algorithms are never advertised, so a server cannot present one.
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let matches = key.key_data() == self.pinned.key().key_data();
        *self.presented.lock().expect("presented key lock") = Some(key.clone());
        Ok(matches)
    }
}

/// An authenticated SSH connection to `server` (shown as `name` in errors), its host key
/// checked against the pinned one.
pub async fn establish(
    server: &FileServer,
    options: ConnectOptions,
    name: &str,
) -> Result<client::Handle<ServerCheck>, ConnectError> {
    let pinned = PinnedHostKey::from_keyscan_line(&server.host_key)?;
    let key = keys::load_private_key(&server.private_key)?;
    let presented = Arc::new(Mutex::new(None));
    let check = ServerCheck {
        pinned: pinned.clone(),
        presented: presented.clone(),
    };
    let connect_error = |source| ConnectError::Connect {
        server: name.to_owned(),
        source,
    };
    let config = Arc::new(client_config(pinned.key().algorithm(), options.keepalive));
    let connected = client::connect(config, (server.host.as_str(), server.port), check).await;
    let mut ssh = match connected {
        Ok(ssh) => ssh,
        Err(source) => {
            let presented = presented.lock().expect("presented key lock").take();
            if let Some(presented) = presented {
                pinned.verify(name, &presented)?;
            }
            return Err(connect_error(source));
        }
    };

    let hash = if key.algorithm().is_rsa() {
        ssh.best_supported_rsa_hash()
            .await
            .map_err(connect_error)?
            .flatten()
    } else {
        None
    };
    let auth = ssh
        .authenticate_publickey(
            &server.user,
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .map_err(connect_error)?;
    if !auth.success() {
        return Err(ConnectError::AuthRejected {
            server: name.to_owned(),
            user: server.user.clone(),
        });
    }
    Ok(ssh)
}

/// russh's client configuration: only the pinned key's algorithm, a fast cipher from OpenSSH's
/// default list, no compression, keepalives.
fn client_config(pinned: Algorithm, keepalive: Duration) -> client::Config {
    client::Config {
        preferred: russh::Preferred {
            key: Cow::Owned(host_key_algorithms(pinned)),
            cipher: Cow::Borrowed(cipher_preference(aes_in_hardware())),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Default::default()
        },
        keepalive_interval: Some(keepalive),
        keepalive_max: KEEPALIVE_MAX,
        // Large enough to keep many 256 KiB requests in flight in both directions.
        window_size: 16 * 1024 * 1024,
        nodelay: true,
        ..Default::default()
    }
}

/// Whether this CPU has AES and carry-less multiply instructions (fast AES-GCM).
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Ciphers in order of preference, all from OpenSSH's default list: AES-GCM first where the CPU
/// has AES instructions, ChaCha20-Poly1305 first where it has not.
fn cipher_preference(aes_hardware: bool) -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_128_GCM, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    if aes_hardware {
        &[
            AES_128_GCM,
            AES_256_GCM,
            CHACHA20_POLY1305,
            AES_128_CTR,
            AES_256_CTR,
        ]
    } else {
        &[
            CHACHA20_POLY1305,
            AES_128_GCM,
            AES_256_GCM,
            AES_128_CTR,
            AES_256_CTR,
        ]
    }
}

/// The host key algorithms to offer: only the pinned key's, so the server presents that key.
fn host_key_algorithms(pinned: Algorithm) -> Vec<Algorithm> {
    if matches!(pinned, Algorithm::Rsa { .. }) {
        vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]
    } else {
        vec![pinned]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_gcm_leads_only_with_aes_instructions() {
        use russh::cipher::{AES_128_GCM, CHACHA20_POLY1305};
        assert_eq!(cipher_preference(true)[0], AES_128_GCM);
        assert_eq!(cipher_preference(false)[0], CHACHA20_POLY1305);
        // Every name is one OpenSSH offers by default (no CBC, no 3DES, no "none").
        for name in cipher_preference(true) {
            assert!(
                name.as_ref().contains("gcm")
                    || name.as_ref().contains("ctr")
                    || name.as_ref().starts_with("chacha20"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn connect_errors_name_the_check_they_fail() {
        let refused = ConnectError::Connect {
            server: "x:22".into(),
            source: russh::Error::IO(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert_eq!(refused.failed_check(), Check::Reachable);
        let garbage = ConnectError::Connect {
            server: "x:22".into(),
            source: russh::Error::Version,
        };
        assert_eq!(garbage.failed_check(), Check::Listening);
        let rejected = ConnectError::AuthRejected {
            server: "x:22".into(),
            user: "mft".into(),
        };
        assert_eq!(rejected.failed_check(), Check::NodeKey);
        let directory = ConnectError::NotADirectory {
            directory: "/x".into(),
        };
        assert_eq!(directory.failed_check(), Check::Directory);
    }
}
