//! Negative lookups: directories whose every name fsd knows, for a short while.
//!
//! When fsd made a directory itself (`mkdir`), or listed it (`opendir`), it knows all of the
//! directory's names at that moment; the names fsd's own operations add or remove since are
//! kept up to date here. For [`KnownDirs`]'s TTL from that moment, a lookup of a name the
//! directory does not have is answered "no such file" without asking the server — the
//! kernel's LOOKUP of a new name before CREATE then costs no round trip. A name made on the
//! server by someone else within that window stays invisible until it ends, as a cached
//! attribute does.
//!
//! Bounded: at most `max_dirs` directories of at most `max_names` names each; a directory that
//! grows past that is no longer known (lookups ask the server again).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

struct Known {
    since: Instant,
    names: HashSet<String>,
}

pub struct KnownDirs {
    ttl: Duration,
    max_dirs: usize,
    max_names: usize,
    dirs: HashMap<String, Known>,
}

impl KnownDirs {
    pub fn new(ttl: Duration, max_dirs: usize, max_names: usize) -> Self {
        Self {
            ttl,
            max_dirs,
            max_names,
            dirs: HashMap::new(),
        }
    }

    /// The directory `dir` has exactly `names` as of `now`.
    pub fn known<'a>(&mut self, dir: &str, names: impl IntoIterator<Item = &'a str>, now: Instant) {
        let names: HashSet<String> = names.into_iter().map(str::to_owned).collect();
        if names.len() > self.max_names {
            self.dirs.remove(dir);
            return;
        }
        self.dirs
            .retain(|_, k| now.saturating_duration_since(k.since) < self.ttl);
        if self.dirs.len() >= self.max_dirs && !self.dirs.contains_key(dir) {
            // Make room: the oldest knowledge goes first.
            if let Some(oldest) = self
                .dirs
                .iter()
                .min_by_key(|(_, k)| k.since)
                .map(|(d, _)| d.clone())
            {
                self.dirs.remove(&oldest);
            }
        }
        self.dirs
            .insert(dir.to_owned(), Known { since: now, names });
    }

    /// Whether `name` is certainly not in `dir` (known, and the knowledge is fresh).
    pub fn absent(&mut self, dir: &str, name: &str, now: Instant) -> bool {
        match self.dirs.get(dir) {
            Some(k) if now.saturating_duration_since(k.since) < self.ttl => !k.names.contains(name),
            Some(_) => {
                self.dirs.remove(dir);
                false
            }
            None => false,
        }
    }

    /// fsd made `name` in `dir`.
    pub fn added(&mut self, dir: &str, name: &str) {
        if let Some(k) = self.dirs.get_mut(dir) {
            if k.names.len() >= self.max_names {
                self.dirs.remove(dir);
            } else {
                k.names.insert(name.to_owned());
            }
        }
    }

    /// fsd removed `name` from `dir`.
    pub fn removed(&mut self, dir: &str, name: &str) {
        if let Some(k) = self.dirs.get_mut(dir) {
            k.names.remove(name);
        }
    }

    /// What fsd knows of `dir` is in doubt (an operation in it failed oddly).
    pub fn forget(&mut self, dir: &str) {
        self.dirs.remove(dir);
    }

    /// `path` and everything below it moved or went away.
    pub fn forget_tree(&mut self, path: &str) {
        let prefix = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        self.dirs
            .retain(|d, _| d != path && !d.starts_with(&prefix));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.dirs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    #[test]
    fn a_known_directory_answers_absent_names_until_the_ttl() {
        let mut k = KnownDirs::new(TTL, 4, 10);
        let t = Instant::now();
        assert!(
            !k.absent("/d", "a", t),
            "unknown directories ask the server"
        );
        k.known("/d", ["x"], t);
        assert!(k.absent("/d", "a", t));
        assert!(!k.absent("/d", "x", t));
        assert!(k.absent("/d", "a", t + Duration::from_millis(1999)));
        assert!(!k.absent("/d", "a", t + TTL));
        assert_eq!(k.len(), 0, "stale knowledge is dropped");
    }

    #[test]
    fn own_operations_keep_the_names_up_to_date() {
        let mut k = KnownDirs::new(TTL, 4, 10);
        let t = Instant::now();
        k.known("/d", [], t);
        k.added("/d", "new");
        assert!(!k.absent("/d", "new", t));
        k.removed("/d", "new");
        assert!(k.absent("/d", "new", t));
        k.added("/other", "n");
        assert!(!k.absent("/other", "n", t));
    }

    #[test]
    fn renamed_or_removed_trees_are_forgotten() {
        let mut k = KnownDirs::new(TTL, 8, 10);
        let t = Instant::now();
        for d in ["/a", "/a/b", "/ab", "/c"] {
            k.known(d, [], t);
        }
        k.forget_tree("/a");
        assert!(!k.absent("/a", "x", t));
        assert!(!k.absent("/a/b", "x", t));
        assert!(k.absent("/ab", "x", t));
        k.forget("/c");
        assert!(!k.absent("/c", "x", t));
    }

    #[test]
    fn bounded_in_directories_and_names() {
        let mut k = KnownDirs::new(TTL, 2, 3);
        let t = Instant::now();
        k.known("/1", [], t);
        k.known("/2", [], t + Duration::from_millis(1));
        k.known("/3", [], t + Duration::from_millis(2));
        assert_eq!(k.len(), 2);
        assert!(!k.absent("/1", "x", t), "the oldest made room");
        k.known("/big", ["a", "b", "c", "d"], t);
        assert!(!k.absent("/big", "x", t), "too many names to keep");
        k.known("/3", ["a", "b", "c"], t);
        k.added("/3", "d");
        assert!(
            !k.absent("/3", "x", t),
            "grew past the bound: no longer known"
        );
    }
}
