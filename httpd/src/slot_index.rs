//! The slot index: which stored file each filled upload slot names, so that the slot URL serves
//! it, a second `PUT` to it is told apart from the first (see [`Reserved`]), and the file is
//! purged once the slot's `expires` passes.
//! A purged slot's record stays, marked `purged`, until its token's `exp` has passed too, so that
//! the slot cannot be filled again while its token is still valid.
//!
//! One small JSON file per slot, `.slots/<sha256 of the slot path>.json` under the node's
//! directory: beside `files/`, so the seed's layout and the tools that walk it never see it, and
//! on the file server with the files, so it survives restarts and is unavailable (503) exactly
//! when the files are (a [`RecordDir`]). Slots being uploaded are also held in memory
//! ([`InFlight`]), so two concurrent `PUT`s to one slot cannot both store a file (one httpd
//! serves a node's directory).
//!
//! [`purgeable`] is the pure expiry rule; this module does not remove stored files itself.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::{FileLocation, FileName, HourDir, FILES_DIR};
use crate::records::{Held, InFlight, RecordDir};
use crate::slot::{Scheme, SlotError, SlotPath};
use crate::store::{Store, StoreError};

pub use mft_config::SLOTS_DIR;

/// One filled slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// The decoded slot path after `/upload/`.
    pub slot: String,
    pub scheme: Scheme,
    /// `files/<chat_type>/<YYYYMMDD>/<HH[.n]>/<file_name>`.
    pub location: String,
    pub real_name: String,
    pub size: u64,
    pub uploader: Option<String>,
    pub stored: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    /// Until when the slot's token could be presented (see [`crate::slot::SlotGrant`]).
    #[serde(default)]
    pub token_expires: Option<DateTime<Utc>>,
    /// The file was purged; the record stays as a tombstone while the token is valid.
    #[serde(default)]
    pub purged: bool,
    /// The chats the slot's URL was shared in (see [`crate::share`]), first share first: the
    /// first is the Post row's `to_jid`, each other has a `Share` row.
    #[serde(default)]
    pub shares: Vec<String>,
    /// The stored file's SHA-256, lowercase hex (`None` in records from before it was kept):
    /// a retried `PUT` with the same bytes is answered as the first was.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl SlotRecord {
    /// The stored file, if the record names a place in the layout (anything else is ignored).
    pub fn file_location(&self) -> Option<FileLocation> {
        let segments: Vec<&str> = self.location.split('/').collect();
        let [FILES_DIR, chat_type, date, hour, file_name] = segments[..] else {
            return None;
        };
        Some(FileLocation {
            dir: HourDir::parse(chat_type.parse().ok()?, date, hour)?,
            file_name: FileName::parse(file_name)?,
        })
    }

    /// Whether the slot's file may no longer be served at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.purged || self.expires.is_some_and(|expires| expires <= now)
    }

    /// Whether the record must stay at `now` once its file is gone: while the token that filled
    /// the slot could still fill it again (a MAC scheme's slot URL never expires).
    pub fn needs_tombstone(&self, now: DateTime<Utc>) -> bool {
        self.token_expires.is_none_or(|exp| exp > now)
    }
}

/// The expired records whose files may be purged at `now`: never a file of the current UTC hour
/// (the seed's rule for purges).
pub fn purgeable(records: &[SlotRecord], now: DateTime<Utc>) -> Vec<&SlotRecord> {
    records
        .iter()
        .filter(|r| !r.purged && r.is_expired(now))
        .filter(|r| match r.file_location() {
            Some(location) => {
                (location.dir.date, location.dir.hour) != (now.date_naive(), now.hour())
            }
            None => true,
        })
        .collect()
}

/// The index on the mount, with the slots being uploaded.
#[derive(Debug, Clone)]
pub struct SlotIndex {
    store: Arc<Store>,
    records: RecordDir,
    in_flight: InFlight,
}

/// What [`SlotIndex::reserve`] found, the slot held either way.
#[derive(Debug)]
pub enum Reserved {
    /// Not filled yet: fill it.
    Free(Held),
    /// Filled before, as this record says.
    Filled(Held, SlotRecord),
}

impl SlotIndex {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            records: RecordDir::new(store.clone(), SLOTS_DIR),
            store,
            in_flight: InFlight::default(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.store.root().join(SLOTS_DIR)
    }

    /// The record's name: the SHA-256 of the slot path.
    fn record_name(slot: &str) -> String {
        hex::encode(Sha256::digest(slot.as_bytes()))
    }

    /// Holds `slot` for one upload, or one check of a retried upload: 409 if it is held already.
    pub async fn reserve(&self, slot: &SlotPath) -> Result<Reserved, crate::Error> {
        let reservation = self
            .in_flight
            .hold(slot.as_str())
            .ok_or(SlotError::AlreadyUsed)?;
        Ok(match self.get(slot.as_str()).await? {
            Some(record) => Reserved::Filled(reservation, record),
            None => Reserved::Free(reservation),
        })
    }

    /// The record of `slot`, if it was filled.
    pub async fn get(&self, slot: &str) -> Result<Option<SlotRecord>, StoreError> {
        self.records.get(&Self::record_name(slot)).await
    }

    /// Writes `record` durably.
    pub async fn put(&self, record: &SlotRecord) -> Result<(), StoreError> {
        self.records
            .put(&Self::record_name(&record.slot), record)
            .await
    }

    /// Deletes the record of `slot` (a slot whose upload was undone, or whose file was purged).
    pub async fn remove(&self, slot: &str) -> Result<(), StoreError> {
        self.records.remove(&Self::record_name(slot)).await
    }

    /// Every record (unreadable ones are skipped, with a log line).
    pub async fn all(&self) -> Result<Vec<SlotRecord>, StoreError> {
        let dir = self.dir();
        self.store
            .blocking(move |store| {
                store.check_root()?;
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                };
                let mut records = Vec::new();
                for entry in entries {
                    let path = entry?.path();
                    if path.extension().is_none_or(|e| e != "json")
                        || path
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    {
                        continue;
                    }
                    match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
                        Ok(Ok(record)) => records.push(record),
                        Ok(Err(e)) => log::warn!(
                            "skipping the unreadable slot record {}: {e}",
                            path.display()
                        ),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(records)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::store::Mount;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2014, 8, 11, hour, minute, 0).unwrap()
    }

    fn record(slot: &str, hour: &str, expires: Option<DateTime<Utc>>) -> SlotRecord {
        SlotRecord {
            slot: slot.into(),
            scheme: Scheme::FileShare,
            location: format!("files/im/20140811/{hour}/abcdefghijklmnopqrstuvwxyz"),
            real_name: "a.png".into(),
            size: 1,
            uploader: None,
            stored: at(10, 0),
            expires,
            token_expires: None,
            purged: false,
            shares: Vec::new(),
            sha256: None,
        }
    }

    #[test]
    fn expired_files_outside_the_current_hour_are_purgeable() {
        let records = [
            record("old/a", "10", Some(at(11, 0))),
            record("never/a", "10", None),
            record("later/a", "10", Some(at(16, 0))),
            record("this-hour/a", "15", Some(at(15, 1))),
            record("rolled/a", "14.2", Some(at(15, 0))),
        ];
        let slots: Vec<&str> = purgeable(&records, at(15, 30))
            .iter()
            .map(|r| r.slot.as_str())
            .collect();
        assert_eq!(slots, ["old/a", "rolled/a"]);
        let slots: Vec<&str> = purgeable(&records, at(16, 0))
            .iter()
            .map(|r| r.slot.as_str())
            .collect();
        assert_eq!(slots, ["old/a", "later/a", "this-hour/a", "rolled/a"]);
    }

    #[test]
    fn locations_outside_the_layout_are_not_files() {
        let mut r = record("x/a", "10", None);
        assert!(r.file_location().is_some());
        for bad in [
            "../../etc/passwd",
            "files/im/20140811/10/../../x",
            "files/im/20140811/10/ABC",
            "other/im/20140811/10/abcdefghijklmnopqrstuvwxyz",
        ] {
            r.location = bad.into();
            assert_eq!(r.file_location(), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn records_round_trip_and_slots_are_reserved_once() {
        let mount = tempfile::tempdir().unwrap();
        let index = SlotIndex::new(Arc::new(Store::new(mount.path(), Mount::Directory)));
        let slot = SlotPath::parse("abc/a.png").unwrap();
        let held = index.reserve(&slot).await.unwrap();
        assert!(matches!(held, Reserved::Free(_)));
        assert!(matches!(
            index.reserve(&slot).await,
            Err(crate::Error::Slot(SlotError::AlreadyUsed))
        ));
        drop(held);
        let r = record("abc/a.png", "10", Some(at(11, 0)));
        index.put(&r).await.unwrap();
        assert_eq!(index.get("abc/a.png").await.unwrap(), Some(r.clone()));
        let held = index.reserve(&slot).await.unwrap();
        assert!(
            matches!(&held, Reserved::Filled(_, found) if *found == r),
            "{held:?}"
        );
        assert!(matches!(
            index.reserve(&slot).await,
            Err(crate::Error::Slot(SlotError::AlreadyUsed))
        ));
        drop(held);
        assert_eq!(index.all().await.unwrap(), [r]);
        let names: Vec<_> = std::fs::read_dir(mount.path().join(SLOTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        index.remove("abc/a.png").await.unwrap();
        assert_eq!(index.get("abc/a.png").await.unwrap(), None);
        assert!(matches!(index.reserve(&slot).await, Ok(Reserved::Free(_))));
    }
}
