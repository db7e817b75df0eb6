//! Native uploads with an `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): a
//! client that sends an upload again with the same key (its answer was lost, or was a 503) gets
//! the first answer, not a second file and a second Post row.
//!
//! The key names the upload among its uploader's: the Post row's event id is derived from the
//! uploader and the key ([`IdempotencyKey::event_id`]), and logd records an event id once and
//! answers whether it has (`lookup`). logd's answer is only the row's `aft_index`, so each keyed
//! upload also keeps a [`KeyRecord`] with what its answer is made of: `.keys/<event id>.json`
//! under the node's directory ([`KeyIndex`], a [`RecordDir`]), written before its Post is sent,
//! and removed with the file when its row is known not to exist. [`crate::transfer`] decides
//! what a keyed upload gets; [`KeyIndex::hold`] keeps two uploads with one key from running at
//! once in this httpd.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::UploadGrant;
use crate::error::Error;
use crate::real_name::RealName;
use crate::records::{Held, InFlight, RecordDir};
use crate::store::{Store, StoreError};
use crate::uri::FileUri;

/// The records' directory under the node's directory.
pub const KEYS_DIR: &str = ".keys";
/// How long a key's record is kept: a retry with the key later than this gets 422, never a
/// second upload (the key's row still exists).
pub const KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// A valid `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters, sent as a
/// structured-field string (`"..."`, as the draft says) or bare; both name the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of a header value; 400 for anything else.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let key = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let visible = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\';
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.chars().all(visible) {
            return Err(Error::BadRequest(format!(
                "the Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (no quote or backslash), optionally in double quotes"
            )));
        }
        Ok(Self(key.to_owned()))
    }

    /// The event id of the Post of `uploader`'s upload with this key: a UUID (version 8) made of
    /// the SHA-256 of both, so one uploader's key never names another's upload.
    pub fn event_id(&self, uploader: &str) -> String {
        let digest = Sha256::new()
            .chain_update(b"mft Idempotency-Key\0")
            .chain_update(uploader.as_bytes())
            .chain_update(b"\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        let bytes: [u8; 16] = digest[..16].try_into().expect("a SHA-256 has 32 bytes");
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// What the first upload with a key stored, and what it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The path of the download URI it was answered (see [`FileUri`]).
    pub path: String,
    pub to: String,
    pub chat_type: String,
    pub size: u64,
    /// The stored bytes' SHA-256, lowercase hex.
    pub sha256: String,
    pub stored: DateTime<Utc>,
}

impl KeyRecord {
    /// The record of `grant`'s upload answered with `uri`.
    pub fn new(
        grant: &UploadGrant,
        uri: &FileUri,
        size: u64,
        sha256: &str,
        stored: DateTime<Utc>,
    ) -> Self {
        Self {
            path: uri.path(),
            to: grant.to.clone(),
            chat_type: grant.chat_type.to_string(),
            size,
            sha256: sha256.to_owned(),
            stored,
        }
    }

    /// The download URI it was answered, if the record holds one.
    pub fn uri(&self) -> Option<FileUri> {
        FileUri::parse(&self.path).ok()
    }

    /// Whether `grant`'s upload of `real_name` asks what the first upload asked (the bytes are
    /// compared once read).
    pub fn asks_the_same(&self, grant: &UploadGrant, real_name: &RealName) -> bool {
        self.uri().is_some_and(|uri| uri.real_name == *real_name)
            && self.to == grant.to
            && self.chat_type == grant.chat_type.to_string()
    }
}

/// The key records on the mount, with the keys being uploaded.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    records: RecordDir,
    in_flight: InFlight,
}

impl KeyIndex {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            records: RecordDir::new(store, KEYS_DIR),
            in_flight: InFlight::default(),
        }
    }

    /// Holds the upload of `event_id` for one request: 409 while another holds it.
    pub fn hold(&self, event_id: &str) -> Result<Held, Error> {
        self.in_flight.hold(event_id).ok_or(Error::KeyInFlight)
    }

    pub async fn get(&self, event_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.records.get(event_id).await
    }

    pub async fn put(&self, event_id: &str, record: &KeyRecord) -> Result<(), StoreError> {
        self.records.put(event_id, record).await
    }

    /// Forgets the keys of uploads older than [`KEY_LIFETIME`]; how many.
    pub async fn expire(&self) -> Result<usize, StoreError> {
        self.records.remove_older_than(KEY_LIFETIME).await
    }

    pub async fn remove(&self, event_id: &str) -> Result<(), StoreError> {
        self.records.remove(event_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii_quoted_or_bare() {
        let key = IdempotencyKey::parse("\"8e03978e-40d5-43e8-bc93-6894a57f9324\"").unwrap();
        assert_eq!(
            key,
            IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap()
        );
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for bad in [
            "",
            "\"\"",
            "a b",
            "é",
            "a\"b",
            "a\\b",
            "\"a",
            "a\u{7f}",
            &"k".repeat(MAX_KEY_LEN + 1),
        ] {
            assert!(
                matches!(IdempotencyKey::parse(bad), Err(Error::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn event_ids_are_uuids_of_the_uploader_and_the_key() {
        let key = IdempotencyKey::parse("k1").unwrap();
        let id = key.event_id("alice@example.com");
        assert_eq!(id, key.event_id("alice@example.com"));
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 8);
        assert_ne!(id, key.event_id("bob@example.com"));
        assert_ne!(
            id,
            IdempotencyKey::parse("k2")
                .unwrap()
                .event_id("alice@example.com")
        );
        // The separator keeps ("a", "b:c") and ("a:b", "c") apart... and so does the NUL.
        assert_ne!(
            IdempotencyKey::parse("bc").unwrap().event_id("a"),
            IdempotencyKey::parse("c").unwrap().event_id("ab")
        );
    }
}
