//! Small JSON records on the mount, beside `files/` (so the seed's layout and the tools that walk
//! it never see them, and they survive restarts and are unavailable exactly when the files are),
//! and the names of those being worked on in this process.
//!
//! A [`RecordDir`] keeps one JSON file per record, `<dir>/<name>.json` under the node's
//! directory, written under a temporary name, fsynced and renamed into place
//! ([`mft_journal::durable`]). [`InFlight`] holds
//! a name for one request at a time (one httpd serves a node's directory).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{in_new_dir, Store, StoreError};

/// One directory of records under the node's directory.
#[derive(Debug, Clone)]
pub struct RecordDir {
    store: Arc<Store>,
    dir: &'static str,
}

impl RecordDir {
    pub fn new(store: Arc<Store>, dir: &'static str) -> Self {
        Self { store, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.store
            .root()
            .join(self.dir)
            .join(format!("{name}.json"))
    }

    /// The record `name`, if there is one (an unreadable one is none).
    pub async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let path = self.path(name);
        self.store
            .blocking(move |store| {
                store.check_root()?;
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    /// Writes the record `name` durably ([`mft_journal::durable::replace`]: temporary name,
    /// fsync, rename; then [`Store::sync_dir`]), making its directory if it is missing.
    pub async fn put(&self, name: &str, record: &impl Serialize) -> Result<(), StoreError> {
        let (dir, name) = (self.store.root().join(self.dir), format!("{name}.json"));
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Io(e.into()))?;
        self.store
            .blocking(move |store| {
                store.check_root()?;
                let path = dir.join(name);
                in_new_dir(&dir, || mft_journal::durable::replace(&path, &bytes, None))?;
                Ok(store.sync_dir(&dir)?)
            })
            .await
    }

    /// Deletes the records (and any temporary file a crash left) last written more than `age`
    /// ago; how many went.
    pub async fn remove_older_than(&self, age: std::time::Duration) -> Result<usize, StoreError> {
        let dir = self.store.root().join(self.dir);
        self.store
            .blocking(move |store| {
                store.check_root()?;
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                    Err(e) => return Err(e.into()),
                };
                let mut removed = 0;
                for entry in entries {
                    let entry = entry?;
                    let written = entry.metadata()?.modified()?;
                    if written.elapsed().is_ok_and(|elapsed| elapsed > age) {
                        match std::fs::remove_file(entry.path()) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                return Err(e.into())
                            }
                            _ => removed += 1,
                        }
                    }
                }
                Ok(removed)
            })
            .await
    }

    /// Deletes the record `name`, if there is one.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        self.store
            .blocking(move |_| match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            })
            .await
    }
}

/// The names held by requests of this process.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<String>>>);

/// A name held by one request; released on drop.
#[derive(Debug)]
pub struct Held {
    name: String,
    in_flight: InFlight,
}

impl InFlight {
    /// Holds `name`, unless another request holds it.
    pub fn hold(&self, name: &str) -> Option<Held> {
        let fresh = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
        fresh.then(|| Held {
            name: name.to_owned(),
            in_flight: self.clone(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.in_flight
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Mount;

    #[tokio::test]
    async fn records_round_trip() {
        let mount = tempfile::tempdir().unwrap();
        let records = RecordDir::new(
            Arc::new(Store::new(mount.path(), Mount::Directory)),
            ".test",
        );
        assert_eq!(records.get::<Vec<u32>>("a").await.unwrap(), None);
        records.put("a", &vec![1, 2]).await.unwrap();
        assert_eq!(
            records.get::<Vec<u32>>("a").await.unwrap(),
            Some(vec![1, 2])
        );
        let names: Vec<_> = std::fs::read_dir(mount.path().join(".test"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"], "no temporary file left");
        records.remove("a").await.unwrap();
        records.remove("a").await.unwrap();
        assert_eq!(records.get::<Vec<u32>>("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn records_older_than_an_age_are_removed() {
        let mount = tempfile::tempdir().unwrap();
        let records = RecordDir::new(
            Arc::new(Store::new(mount.path(), Mount::Directory)),
            ".test",
        );
        assert_eq!(
            records.remove_older_than(Duration::ZERO).await.unwrap(),
            0,
            "no directory yet"
        );
        records.put("old", &1).await.unwrap();
        records.put("new", &2).await.unwrap();
        let old = std::fs::File::options()
            .write(true)
            .open(mount.path().join(".test/old.json"))
            .unwrap();
        old.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            records
                .remove_older_than(Duration::from_secs(60))
                .await
                .unwrap(),
            1
        );
        assert_eq!(records.get::<u32>("old").await.unwrap(), None);
        assert_eq!(records.get::<u32>("new").await.unwrap(), Some(2));
    }

    #[test]
    fn a_name_is_held_once_until_released() {
        let in_flight = InFlight::default();
        let held = in_flight.hold("k").unwrap();
        assert!(in_flight.hold("k").is_none());
        assert!(in_flight.hold("other").is_some());
        drop(held);
        assert!(in_flight.hold("k").is_some());
    }
}
