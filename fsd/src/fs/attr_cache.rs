//! A short-lived cache of attributes by server path, filled by directory listings and by fsd's
//! own operations, so `ls -l` of a directory costs one listing instead of one `LSTAT` per name.
//!
//! Entries live for [`AttrCache::ttl`]; fsd's own changes update or drop the entries they touch
//! (a rename or a removed directory drops everything below it). Changes made on the server by
//! someone else show after at most the TTL, like the kernel's own attribute cache.
//!
//! Kept ordered by path, so the entries below a directory are one contiguous range: dropping a
//! tree costs its own size, not the cache's (every upload's rename drops one).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::backend::Attributes;

/// The most entries kept; past it the cache starts over (a listing of a huge directory).
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug)]
pub struct AttrCache {
    ttl: Duration,
    entries: BTreeMap<String, (Attributes, Instant)>,
}

impl AttrCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: BTreeMap::new(),
        }
    }

    /// The attributes of `path`, if known and younger than the TTL at `now`.
    pub fn get(&self, path: &str, now: Instant) -> Option<Attributes> {
        self.entries
            .get(path)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(attrs, _)| *attrs)
    }

    pub fn put(&mut self, path: String, attrs: Attributes, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(path, (attrs, now));
    }

    /// Drops `path`.
    pub fn forget(&mut self, path: &str) {
        self.entries.remove(path);
    }

    /// Drops `path` and everything below it.
    pub fn forget_tree(&mut self, path: &str) {
        self.entries.remove(path);
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let below: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in below {
            self.entries.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::backend::FileKind;

    fn attrs(size: u64) -> Attributes {
        Attributes {
            kind: FileKind::RegularFile,
            perm: 0o644,
            size,
            uid: 0,
            gid: 0,
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn entries_expire_and_trees_are_dropped_whole() {
        let t0 = Instant::now();
        let mut cache = AttrCache::new(Duration::from_secs(2));
        cache.put("/d/a".into(), attrs(1), t0);
        cache.put("/d/sub/b".into(), attrs(2), t0);
        cache.put("/dx".into(), attrs(3), t0);
        cache.put("/d.txt".into(), attrs(4), t0);
        cache.put("/d0".into(), attrs(5), t0);
        assert_eq!(
            cache.get("/d/a", t0 + Duration::from_secs(1)),
            Some(attrs(1))
        );
        assert_eq!(cache.get("/d/a", t0 + Duration::from_secs(2)), None);
        cache.forget_tree("/d");
        assert_eq!(cache.get("/d/sub/b", t0), None);
        assert_eq!(cache.get("/d/a", t0), None);
        for (sibling, size) in [("/dx", 3), ("/d.txt", 4), ("/d0", 5)] {
            assert_eq!(
                cache.get(sibling, t0),
                Some(attrs(size)),
                "{sibling}, a sibling with the same prefix, stays"
            );
        }
        cache.forget("/dx");
        assert_eq!(cache.get("/dx", t0), None);
    }
}
