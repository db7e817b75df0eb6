//! The node's key pair: loading it safely, generating it, rotating it.
//!
//! The private key (`file_server.private_key`, OpenSSH format) must be readable by its owner
//! only; fsd refuses one that group or others can read, as `ssh` does. [`generate`] writes a new
//! pair (mode 0600 and 0644) with russh's key types, never by running `ssh-keygen`; with
//! `rotate`, the old pair is kept as `<key>.old` and `<key>.old.pub` so the operator can remove the
//! old line from `authorized_keys` once the new one works.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::rand_core::{TryCryptoRng, TryRng};
use russh::keys::ssh_key::{private::RsaKeypair, LineEnding};
use russh::keys::{Algorithm, PrivateKey};

/// The node key could not be used or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the node private key {path} is readable by group or others (mode {mode:04o}); \
         fsd refuses it: run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot load the node private key {path}: {source}")]
    Load {
        path: PathBuf,
        source: russh::keys::Error,
    },
    #[error(
        "the node key {path} already exists; use --rotate to replace it (the old one is kept as \
         {path}.old)"
    )]
    Exists { path: PathBuf },
    #[error("RSA keys must have 2048 to 16384 bits, not {0}")]
    RsaBits(usize),
    #[error("cannot generate the key: {0}")]
    Generate(russh::keys::ssh_key::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the node's private key (no passphrase), refusing one that others can read.
pub fn load_private_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let load = |source| KeyError::Load {
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path)
        .map_err(|e| load(russh::keys::Error::IO(e)))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    russh::keys::load_secret_key(path, None).map_err(load)
}

/// The kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    Rsa { bits: usize },
}

/// What [`generate`] wrote.
#[derive(Debug)]
pub struct Generated {
    /// The new public key as an `authorized_keys` line.
    pub authorized_key: String,
    /// The replaced key's line, after a rotation.
    pub previous: Option<String>,
}

/// The operating system's random numbers, for ssh-key.
struct SystemRandom;

impl TryRng for SystemRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        // rand's thread generator is a CSPRNG seeded and reseeded from the operating system.
        rand::RngCore::fill_bytes(&mut rand::rng(), dst);
        Ok(())
    }
}

impl TryCryptoRng for SystemRandom {}

fn public_path(private: &Path) -> PathBuf {
    let mut path = private.as_os_str().to_owned();
    path.push(".pub");
    path.into()
}

fn old_path(private: &Path) -> PathBuf {
    let mut path = private.as_os_str().to_owned();
    path.push(".old");
    path.into()
}

/// The `authorized_keys` line of `key`.
pub fn authorized_key_line(key: &PrivateKey) -> Result<String, KeyError> {
    key.public_key().to_openssh().map_err(KeyError::Generate)
}

/// Generates the node key pair at `path` (and `path.pub`), commented `comment`. An existing key
/// is replaced only with `rotate`, and then kept as `path.old`.
pub fn generate(
    path: &Path,
    kind: KeyType,
    comment: &str,
    rotate: bool,
) -> Result<Generated, KeyError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Write { path, source }
    };
    let exists = path.exists();
    if exists && !rotate {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    let mut rng = SystemRandom;
    let mut key = match kind {
        KeyType::Ed25519 => {
            PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(KeyError::Generate)?
        }
        KeyType::Rsa { bits } => {
            if !(2048..=16384).contains(&bits) {
                return Err(KeyError::RsaBits(bits));
            }
            let pair = RsaKeypair::random(&mut rng, bits).map_err(KeyError::Generate)?;
            PrivateKey::from(pair)
        }
    };
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(KeyError::Generate)?;
    let authorized_key = authorized_key_line(&key)?;

    let previous = if exists {
        let old = load_private_key(path)?;
        let line = authorized_key_line(&old)?;
        fs::rename(path, old_path(path)).map_err(write_error(path))?;
        let old_public = public_path(&old_path(path));
        fs::write(&old_public, format!("{line}\n")).map_err(write_error(&old_public))?;
        Some(line)
    } else {
        None
    };
    // Written beside the final name, then renamed: never a half-written key under its name.
    mft_journal::durable::write_atomic(path, private.as_bytes(), Some(0o600))
        .map_err(write_error(path))?;
    let public = public_path(path);
    fs::write(&public, format!("{authorized_key}\n")).map_err(write_error(&public))?;
    Ok(Generated {
        authorized_key,
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_private_key_only_the_owner_reads_and_loads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        let made = generate(&path, KeyType::Ed25519, "mft-node node_1", false).unwrap();
        assert!(
            made.authorized_key.starts_with("ssh-ed25519 AAAA"),
            "{}",
            made.authorized_key
        );
        assert!(made.authorized_key.ends_with(" mft-node node_1"));
        assert!(made.previous.is_none());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_private_key(&path).unwrap();
        assert_eq!(authorized_key_line(&loaded).unwrap(), made.authorized_key);
        assert_eq!(
            fs::read_to_string(dir.path().join("node_key.pub")).unwrap(),
            format!("{}\n", made.authorized_key)
        );
    }

    #[test]
    fn refuses_to_overwrite_without_rotate_and_keeps_the_old_key_when_rotating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        let first = generate(&path, KeyType::Ed25519, "n", false).unwrap();
        let err = generate(&path, KeyType::Ed25519, "n", false).unwrap_err();
        assert!(err.to_string().contains("use --rotate"), "{err}");
        let second = generate(&path, KeyType::Ed25519, "n", true).unwrap();
        assert_ne!(second.authorized_key, first.authorized_key);
        assert_eq!(
            second.previous.as_deref(),
            Some(first.authorized_key.as_str())
        );
        let old = load_private_key(&dir.path().join("node_key.old")).unwrap();
        assert_eq!(authorized_key_line(&old).unwrap(), first.authorized_key);
        assert!(dir.path().join("node_key.old.pub").exists());
    }

    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        generate(&path, KeyType::Ed25519, "n", false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_private_key(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, KeyError::TooOpen { mode: 0o640, .. }),
            "{message}"
        );
        assert!(message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn rsa_needs_at_least_2048_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        let err = generate(&path, KeyType::Rsa { bits: 1024 }, "n", false).unwrap_err();
        assert!(matches!(err, KeyError::RsaBits(1024)), "{err}");
        let made = generate(&path, KeyType::Rsa { bits: 2048 }, "n", false).unwrap();
        assert!(
            made.authorized_key.starts_with("ssh-rsa "),
            "{}",
            made.authorized_key
        );
    }
}
