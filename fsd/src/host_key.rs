//! The file server's pinned host key: parsed from the configured `ssh-keyscan` line and compared
//! with the key the server presents, so fsd never talks to a server it was not told to trust.

use std::fmt;

use russh::keys::{HashAlg, PublicKey};

/// The `file_server.host_key` line could not be used.
#[derive(Debug, thiserror::Error)]
#[error("file_server.host_key is not a usable ssh-keyscan line: {0}")]
pub struct InvalidHostKey(String);

/// The key the server presented is not the pinned one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "host key mismatch for {server}: expected {expected} ({expected_type}, pinned in file_server.host_key) \
     but the server presented {presented} ({presented_type}); refusing to connect"
)]
pub struct HostKeyMismatch {
    pub server: String,
    pub expected: String,
    pub expected_type: String,
    pub presented: String,
    pub presented_type: String,
}

/// The host key fsd trusts.
#[derive(Clone)]
pub struct PinnedHostKey {
    key: PublicKey,
}

impl fmt::Debug for PinnedHostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PinnedHostKey({} {})",
            self.key.algorithm(),
            fingerprint(&self.key)
        )
    }
}

/// A key's fingerprint as OpenSSH prints it: `SHA256:<unpadded base64>`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl PinnedHostKey {
    /// Parses an `ssh-keyscan` line, `<host> <type> <base64 key> [comment]`.
    pub fn from_keyscan_line(line: &str) -> Result<Self, InvalidHostKey> {
        let mut fields = line.split_whitespace();
        let (Some(_host), Some(kind), Some(base64)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(InvalidHostKey(
                "expected `<host> <key type> <base64 key>`".into(),
            ));
        };
        let key = russh::keys::parse_public_key_base64(base64)
            .map_err(|e| InvalidHostKey(e.to_string()))?;
        if key.algorithm().as_str() != kind {
            return Err(InvalidHostKey(format!(
                "the line says {kind} but the key is {}",
                key.algorithm()
            )));
        }
        Ok(Self { key })
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Accepts `presented` if it is the pinned key (comments do not count).
    pub fn verify(&self, server: &str, presented: &PublicKey) -> Result<(), HostKeyMismatch> {
        if presented.key_data() == self.key.key_data() {
            return Ok(());
        }
        Err(HostKeyMismatch {
            server: server.to_owned(),
            expected: fingerprint(&self.key),
            expected_type: self.key.algorithm().to_string(),
            presented: fingerprint(presented),
            presented_type: presented.algorithm().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two ed25519 public keys (from `ssh-keygen -t ed25519`).
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJlYoYiJmLRUBSbIqcbNhCeSj+sodiLv4sk9DPxw981e";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIP7yOBBUtUcD6HfnnfHTmDfgwp28QoymLNGyTS7CP4At";

    #[test]
    fn accepts_the_pinned_key_and_names_both_fingerprints_otherwise() {
        let pinned =
            PinnedHostKey::from_keyscan_line(&format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}"))
                .unwrap();
        let same = russh::keys::parse_public_key_base64(KEY_A).unwrap();
        let other = russh::keys::parse_public_key_base64(KEY_B).unwrap();
        assert_eq!(pinned.verify("127.0.0.1:2222", &same), Ok(()));

        let mismatch = pinned.verify("127.0.0.1:2222", &other).unwrap_err();
        assert_eq!(mismatch.expected, fingerprint(&same));
        assert_eq!(mismatch.presented, fingerprint(&other));
        let message = mismatch.to_string();
        assert!(
            message.starts_with("host key mismatch for 127.0.0.1:2222: expected SHA256:"),
            "{message}"
        );
        assert!(
            message.contains(&format!("presented {}", fingerprint(&other))),
            "{message}"
        );
        // What `ssh-keygen -lf` prints for KEY_A.
        assert_eq!(
            fingerprint(&same),
            "SHA256:XTrjoSdqp7lbwC4FsvSAo8xFoDBmKwO52VHv30gzpBM"
        );
    }

    #[test]
    fn refuses_lines_that_are_not_keys() {
        for line in [
            "127.0.0.1 ssh-ed25519",
            "127.0.0.1 ssh-ed25519 not-base64!",
            &format!("127.0.0.1 ssh-rsa {KEY_A}"),
        ] {
            assert!(PinnedHostKey::from_keyscan_line(line).is_err(), "{line}");
        }
    }
}
