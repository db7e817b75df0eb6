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
//!
//! A directory busy with new names (at least [`RELIST_ANSWERED`] lookups answered from what
//! fsd knew) whose knowledge ended less than a TTL ago is to be listed again
//! ([`Knowledge::Relist`]) rather than asked about name by name: on a file server 10 ms away,
//! each lookup asked costs a round trip, a listing of up to [`RELIST_NAMES`] names a few for
//! the next TTL's lookups. The knowledge is never older than the TTL either way.
//!
//! A listing is a snapshot taken while fsd's own operations go on: a name fsd added after the
//! listing was asked for may be missing from it, so such a listing teaches nothing
//! ([`KnownDirs::known`]); otherwise a file just renamed into place could be answered absent.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Lookups answered from what fsd knew of a directory that make it worth listing again.
pub const RELIST_ANSWERED: usize = 8;
/// The most names of a directory listed again (a listing of 100 names is one round trip).
pub const RELIST_NAMES: usize = 1_000;

struct Known {
    since: Instant,
    names: HashSet<String>,
    /// Lookups of absent names answered from `names` since `since`.
    answered: usize,
}

/// What fsd knows of a name in a directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Knowledge {
    /// Certainly not there.
    Absent,
    /// Not known: ask the server.
    Unknown,
    /// Not known, but the directory is worth listing again (see the module documentation).
    Relist,
}

pub struct KnownDirs {
    ttl: Duration,
    max_dirs: usize,
    max_names: usize,
    dirs: HashMap<String, Known>,
    /// When fsd last added a name to each directory (pruned past twice the TTL): a listing
    /// asked for before then may lack it.
    added_at: HashMap<String, Instant>,
}

impl KnownDirs {
    pub fn new(ttl: Duration, max_dirs: usize, max_names: usize) -> Self {
        Self {
            ttl,
            max_dirs,
            max_names,
            dirs: HashMap::new(),
            added_at: HashMap::new(),
        }
    }

    /// The directory `dir` has exactly `names` as of `now`, unless fsd added a name to it since
    /// (a listing asked for at `now` may lack that name): then nothing is known of it.
    pub fn known<'a>(&mut self, dir: &str, names: impl IntoIterator<Item = &'a str>, now: Instant) {
        let kept = 2 * self.ttl;
        self.added_at
            .retain(|_, added| now.saturating_duration_since(*added) < kept);
        let names: HashSet<String> = names.into_iter().map(str::to_owned).collect();
        let stale = self.added_at.get(dir).is_some_and(|added| *added >= now);
        if stale || names.len() > self.max_names {
            self.dirs.remove(dir);
            return;
        }
        self.dirs
            .retain(|_, k| now.saturating_duration_since(k.since) < kept);
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
        let known = Known {
            since: now,
            names,
            answered: 0,
        };
        self.dirs.insert(dir.to_owned(), known);
    }

    /// What fsd knows at `now` of `name` in `dir`.
    pub fn look(&mut self, dir: &str, name: &str, now: Instant) -> Knowledge {
        let Some(k) = self.dirs.get_mut(dir) else {
            return Knowledge::Unknown;
        };
        let age = now.saturating_duration_since(k.since);
        if age < self.ttl {
            if k.names.contains(name) {
                return Knowledge::Unknown;
            }
            k.answered += 1;
            return Knowledge::Absent;
        }
        let relist =
            age < 2 * self.ttl && k.answered >= RELIST_ANSWERED && k.names.len() <= RELIST_NAMES;
        if relist {
            // Once: the lookups that come while it is being listed ask the server.
            k.answered = 0;
            return Knowledge::Relist;
        }
        self.dirs.remove(dir);
        Knowledge::Unknown
    }

    /// Whether `name` is certainly not in `dir` (known, and the knowledge is fresh).
    #[cfg(test)]
    fn absent(&mut self, dir: &str, name: &str, now: Instant) -> bool {
        self.look(dir, name, now) == Knowledge::Absent
    }

    /// fsd made `name` in `dir`.
    pub fn added(&mut self, dir: &str, name: &str) {
        self.added_at.insert(dir.to_owned(), Instant::now());
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
    fn a_busy_directory_is_listed_again_once_within_a_ttl_of_its_end() {
        let mut k = KnownDirs::new(TTL, 4, 10);
        let t = Instant::now();
        k.known("/busy", [], t);
        k.known("/quiet", [], t);
        for i in 0..RELIST_ANSWERED {
            assert!(k.absent("/busy", &format!("f{i}"), t));
        }
        assert!(k.absent("/quiet", "a", t));
        let ended = t + TTL;
        assert_eq!(k.look("/busy", "new", ended), Knowledge::Relist);
        assert_eq!(
            k.look("/busy", "new", ended),
            Knowledge::Unknown,
            "listed again once"
        );
        assert_eq!(k.look("/quiet", "new", ended), Knowledge::Unknown);
        k.known("/busy", ["f0"], ended);
        for i in 0..RELIST_ANSWERED {
            k.look("/busy", &format!("g{i}"), ended);
        }
        assert_eq!(
            k.look("/busy", "new", ended + 2 * TTL),
            Knowledge::Unknown,
            "too long ago"
        );
        assert_eq!(k.len(), 0);
    }

    /// A listing asked for before fsd added a name (a rename into place answered while the
    /// listing was on its way) may lack the name: it must not make the name absent.
    #[test]
    fn a_listing_older_than_an_added_name_teaches_nothing() {
        let mut k = KnownDirs::new(TTL, 4, 10);
        let asked = Instant::now();
        k.added("/d", "renamed-in");
        k.known("/d", ["old"], asked);
        assert_ne!(k.look("/d", "renamed-in", asked), Knowledge::Absent);
        assert_ne!(
            k.look("/d", "other", asked),
            Knowledge::Absent,
            "the whole listing is void"
        );
        let later = Instant::now();
        k.known("/d", ["old", "renamed-in"], later);
        assert!(
            k.absent("/d", "other", later),
            "a listing asked for after the addition counts"
        );
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
