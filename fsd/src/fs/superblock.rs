//! What fsd knows of the node directory's metadata, in one place: the inode table
//! ([`inode`](super::inode)), the attributes cached by server path
//! ([`attr_cache`](super::attr_cache)) and the directories whose every name is known
//! ([`known_dirs`](super::known_dirs)).
//!
//! The filesystem tells the [`Superblock`] what happened — a name was looked up, listed,
//! created, made, removed or renamed; a file was opened, written or closed — and each event
//! keeps every cache right, so no operation has to remember which caches it touches. The
//! superblock sends nothing to the server and knows nothing of open files or FUSE; the
//! filesystem keeps it behind one lock, held only for these synchronous calls.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::backend::{Attributes, DirEntry, FileKind, SftpError, StatusCode};
use crate::fs::attr_cache::AttrCache;
use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{Ino, InodeTable, ROOT};
use crate::fs::known_dirs::{Knowledge, KnownDirs};

/// The inode number a directory listing shows for a name the kernel has not looked up yet
/// (as libfuse does); a later lookup gives the real one.
pub const UNKNOWN_INO: Ino = 0xffff_ffff;

/// An inode and its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeAttributes {
    pub ino: Ino,
    pub attrs: Attributes,
    /// 1 for a file with a name (SFTP version 3 does not count links), 0 for a file unlinked
    /// while open.
    pub nlink: u32,
}

/// One entry of a directory listing, `.` and `..` included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    pub ino: Ino,
    pub name: String,
    /// As the listing showed them; for `.` and `..` only the kind is known (the kernel takes
    /// nothing else of theirs).
    pub attrs: Attributes,
}

/// The attributes shown for `.` and `..`: a directory, nothing else known.
const DOT_ATTRIBUTES: Attributes = Attributes {
    kind: FileKind::Directory,
    perm: 0,
    size: 0,
    uid: 0,
    gid: 0,
    atime: SystemTime::UNIX_EPOCH,
    mtime: SystemTime::UNIX_EPOCH,
};

/// What a lookup needs, as far as fsd knows without asking the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name's attributes were cached: its inode, with one more kernel reference.
    Found(InodeAttributes),
    /// Ask the server about this path, then tell [`Superblock::looked_up`].
    Ask(String),
    /// As `Ask`, but the directory is worth listing again first ([`Knowledge::Relist`]).
    Relist(String),
}

/// The path of `name` in the directory `dir`.
pub fn below(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The node directory's metadata: inodes, cached attributes, known directories.
pub struct Superblock {
    /// The node directory's absolute path on the server.
    root: String,
    inodes: InodeTable,
    attrs: AttrCache,
    known: KnownDirs,
}

impl Superblock {
    /// The metadata of the directory `root` (an absolute server path), with empty caches.
    pub fn new(root: &str, attrs: AttrCache, known: KnownDirs) -> Self {
        Self {
            root: root.to_owned(),
            inodes: InodeTable::default(),
            attrs,
            known,
        }
    }

    /// The server path of inode `ino`.
    pub fn path(&self, ino: Ino) -> FsResult<String> {
        let names = self.inodes.names(ino).ok_or(FsError::StaleInode(ino))?;
        Ok(self.join(&names))
    }

    /// The server path of `name` in the directory `parent`.
    pub fn child_path(&self, parent: Ino, name: &str) -> FsResult<String> {
        let mut names = self
            .inodes
            .names(parent)
            .ok_or(FsError::StaleInode(parent))?;
        names.push(name);
        Ok(self.join(&names))
    }

    fn join(&self, names: &[&str]) -> String {
        names
            .iter()
            .fold(self.root.clone(), |path, name| below(&path, name))
    }

    /// The parent of a directory (the root is its own parent).
    pub fn parent(&self, ino: Ino) -> Option<Ino> {
        self.inodes.parent(ino)
    }

    /// The cached attributes of `path`, if fresh at `now`.
    pub fn attributes(&self, path: &str, now: Instant) -> Option<Attributes> {
        self.attrs.get(path, now)
    }

    /// The server answered `attrs` for `path` at `now`.
    pub fn seen(&mut self, path: String, attrs: Attributes, now: Instant) {
        self.attrs.put(path, attrs, now);
    }

    /// A lookup of `name` in `parent` at `now`: found in the cache, certainly absent (no
    /// attributes cached and the directory's every name known: ENOENT), or to be asked.
    pub fn lookup(&mut self, parent: Ino, name: &str, now: Instant) -> FsResult<Lookup> {
        let dir = self.path(parent)?;
        let path = below(&dir, name);
        if let Some(attrs) = self.attrs.get(&path, now) {
            return Ok(Lookup::Found(self.remember(parent, name, attrs)));
        }
        match self.known.look(&dir, name, now) {
            Knowledge::Absent => Err(FsError::Sftp(SftpError::Status {
                code: StatusCode::NoSuchFile,
                message: "no such file (known to fsd)".to_owned(),
            })),
            Knowledge::Unknown => Ok(Lookup::Ask(path)),
            Knowledge::Relist => Ok(Lookup::Relist(path)),
        }
    }

    /// The server answered `attrs` at `now` for `name` in `parent` (at `path`): its inode, with
    /// one more kernel reference.
    pub fn looked_up(
        &mut self,
        parent: Ino,
        name: &str,
        path: String,
        attrs: Attributes,
        now: Instant,
    ) -> InodeAttributes {
        self.attrs.put(path, attrs, now);
        self.remember(parent, name, attrs)
    }

    /// One more kernel reference to `name` in `parent`, which has `attrs`: its inode.
    pub fn remember(&mut self, parent: Ino, name: &str, attrs: Attributes) -> InodeAttributes {
        let ino = self.inodes.remember(parent, name, attrs.kind);
        InodeAttributes {
            ino,
            attrs,
            nlink: 1,
        }
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&mut self, ino: Ino, count: u64) {
        self.inodes.forget(ino, count);
    }

    /// The server listed the directory `dir` (at `path`; asked at `asked`, answered at `now`):
    /// its names are known and their attributes cached. Returns the listing, `.` and `..`
    /// first, with the inodes the kernel holds ([`UNKNOWN_INO`] for the others).
    pub fn listed(
        &mut self,
        dir: Ino,
        path: &str,
        entries: Vec<DirEntry>,
        asked: Instant,
        now: Instant,
    ) -> Arc<[ListedEntry]> {
        self.known
            .known(path, entries.iter().map(|e| e.name.as_str()), asked);
        for entry in &entries {
            self.attrs.put(below(path, &entry.name), entry.attrs, now);
        }
        let parent = self.inodes.parent(dir).unwrap_or(ROOT);
        [(dir, "."), (parent, "..")]
            .into_iter()
            .map(|(ino, name)| ListedEntry {
                ino,
                name: name.to_owned(),
                attrs: DOT_ATTRIBUTES,
            })
            .chain(entries.into_iter().map(|entry| ListedEntry {
                ino: self.inodes.child(dir, &entry.name).unwrap_or(UNKNOWN_INO),
                name: entry.name,
                attrs: entry.attrs,
            }))
            .collect()
    }

    /// `ino` (at `path`) was opened and found with `attrs` at `now`. Returns whether the
    /// kernel may keep its cached pages of it: the server shows the size and modification
    /// time of the previous open, and no handle that wrote was closed since.
    pub fn opened(&mut self, ino: Ino, path: String, attrs: Attributes, now: Instant) -> bool {
        self.attrs.put(path, attrs, now);
        self.inodes.keep_cache(ino, (attrs.size, attrs.mtime))
    }

    /// fsd is changing or changed the data or attributes of `ino` (a write, a truncation, a
    /// `setattr`): what is cached of them is stale.
    pub fn changed(&mut self, ino: Ino) {
        if let Ok(path) = self.path(ino) {
            self.attrs.forget(&path);
        }
    }

    /// A handle that wrote to `ino` was closed: the kernel's cached pages of it may differ
    /// from the server (a write may have failed), so the next open drops them.
    pub fn write_closed(&mut self, ino: Ino) {
        self.inodes.content_changed(ino);
    }

    /// fsd created and opened the file `name` in `parent` (at `path`), found with `attrs` at
    /// `now`: its inode, with one kernel reference.
    pub fn created(
        &mut self,
        parent: Ino,
        name: &str,
        path: String,
        attrs: Attributes,
        now: Instant,
    ) -> InodeAttributes {
        self.name_added(parent, name);
        self.attrs.put(path, attrs, now);
        self.remember(parent, name, attrs)
    }

    /// fsd made `name` in `parent` (a directory if `new_dir`, made at `now`; a symlink or a
    /// link otherwise). Its attributes are to be asked of the server.
    pub fn made(&mut self, parent: Ino, name: &str, new_dir: bool, now: Instant) {
        if let Ok(path) = self.child_path(parent, name) {
            self.attrs.forget(&path);
            if new_dir {
                self.known.known(&path, [], now);
            }
        }
        self.name_added(parent, name);
    }

    /// Making or creating a name in `parent` failed: what fsd knows of the directory's names
    /// is in doubt.
    pub fn not_made(&mut self, parent: Ino) {
        self.doubt(parent);
    }

    /// fsd removed `name` (a file, or an empty directory) from `parent`.
    pub fn removed(&mut self, parent: Ino, name: &str) {
        if let Ok(path) = self.child_path(parent, name) {
            self.attrs.forget_tree(&path);
        }
        self.name_removed(parent, name);
        self.dir_changed(parent);
        self.inodes.unlink(parent, name);
    }

    /// Removing `name` from `parent` failed: what is cached of it is in doubt.
    pub fn not_removed(&mut self, parent: Ino, name: &str) {
        if let Ok(path) = self.child_path(parent, name) {
            self.attrs.forget_tree(&path);
        }
    }

    /// fsd renamed `name` in `parent` to `new_name` in `new_parent`, replacing what was there.
    /// The inode (and every inode below it) keeps its number.
    pub fn renamed(&mut self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) {
        self.forget_renamed(parent, name, new_parent, new_name);
        self.name_removed(parent, name);
        self.name_removed(new_parent, new_name);
        self.name_added(new_parent, new_name);
        self.dir_changed(parent);
        self.dir_changed(new_parent);
        self.inodes.rename(parent, name, new_parent, new_name);
    }

    /// Renaming `name` in `parent` to `new_name` in `new_parent` failed: what fsd knows of
    /// both names and both directories is in doubt.
    pub fn not_renamed(&mut self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) {
        self.forget_renamed(parent, name, new_parent, new_name);
        self.doubt(parent);
        self.doubt(new_parent);
    }

    /// Drops the cached attributes at and below both names of a rename.
    fn forget_renamed(&mut self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) {
        for (dir, name) in [(parent, name), (new_parent, new_name)] {
            if let Ok(path) = self.child_path(dir, name) {
                self.attrs.forget_tree(&path);
            }
        }
    }

    /// `name` is now in the directory `parent`.
    fn name_added(&mut self, parent: Ino, name: &str) {
        if let Ok(dir) = self.path(parent) {
            self.known.added(&dir, name);
            self.attrs.forget(&dir);
        }
    }

    /// `name` (and whatever was below it) is no longer in `parent`.
    fn name_removed(&mut self, parent: Ino, name: &str) {
        if let Ok(dir) = self.path(parent) {
            self.known.removed(&dir, name);
            self.known.forget_tree(&below(&dir, name));
        }
    }

    /// A name was added to or removed from `dir`: its cached attributes (times) are stale.
    fn dir_changed(&mut self, dir: Ino) {
        if let Ok(path) = self.path(dir) {
            self.attrs.forget(&path);
        }
    }

    /// An operation in `dir` failed oddly: its names are no longer known.
    fn doubt(&mut self, dir: Ino) {
        if let Ok(path) = self.path(dir) {
            self.known.forget(&path);
        }
    }

    /// Forgets what is cached of `path` (its attributes and names), as when their time ends.
    #[cfg(test)]
    pub(crate) fn expire(&mut self, path: &str) {
        self.attrs.forget(path);
        self.known.forget(path);
    }

    /// How many inodes the table holds (the root included).
    #[cfg(test)]
    pub(crate) fn inodes(&self) -> usize {
        self.inodes.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    fn superblock() -> Superblock {
        Superblock::new("/srv/n", AttrCache::new(TTL), KnownDirs::new(TTL, 8, 100))
    }

    fn attrs(kind: FileKind, size: u64) -> Attributes {
        Attributes {
            kind,
            perm: 0o644,
            size,
            uid: 0,
            gid: 0,
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
        }
    }

    fn file(size: u64) -> Attributes {
        attrs(FileKind::RegularFile, size)
    }

    fn dir() -> Attributes {
        attrs(FileKind::Directory, 0)
    }

    /// Looks `name` up in `parent` without a server: the cached inode, `Absent`, or `Ask`.
    fn lookup(
        sb: &mut Superblock,
        parent: Ino,
        name: &str,
        now: Instant,
    ) -> Result<Lookup, libc::c_int> {
        sb.lookup(parent, name, now).map_err(|e| e.errno())
    }

    #[test]
    fn paths_follow_the_inode_table() {
        let mut sb = superblock();
        let t = Instant::now();
        let d = sb.looked_up(ROOT, "d", "/srv/n/d".into(), dir(), t).ino;
        assert_eq!(sb.path(ROOT).unwrap(), "/srv/n");
        assert_eq!(sb.child_path(d, "f").unwrap(), "/srv/n/d/f");
        assert_eq!(sb.parent(d), Some(ROOT));
        assert_eq!(sb.path(99).unwrap_err().errno(), libc::ENOENT);
        assert_eq!(below("/", "x"), "/x");
    }

    #[test]
    fn lookups_are_found_absent_or_asked() {
        let mut sb = superblock();
        let t = Instant::now();
        assert_eq!(
            lookup(&mut sb, ROOT, "a", t),
            Ok(Lookup::Ask("/srv/n/a".into()))
        );
        let a = sb.looked_up(ROOT, "a", "/srv/n/a".into(), file(3), t);
        assert_eq!(
            lookup(&mut sb, ROOT, "a", t),
            Ok(Lookup::Found(a)),
            "cached: no request"
        );
        assert_eq!(
            lookup(&mut sb, ROOT, "a", t + TTL),
            Ok(Lookup::Ask("/srv/n/a".into())),
            "past the TTL the server is asked"
        );
        sb.listed(
            ROOT,
            "/srv/n",
            vec![DirEntry {
                name: "a".into(),
                attrs: file(3),
            }],
            t,
            t,
        );
        assert_eq!(
            lookup(&mut sb, ROOT, "b", t),
            Err(libc::ENOENT),
            "listed: b is known absent"
        );
        assert_eq!(
            lookup(&mut sb, 42, "b", t),
            Err(libc::ENOENT),
            "a stale parent"
        );
    }

    #[test]
    fn a_listing_shows_dots_and_the_inodes_the_kernel_holds() {
        let mut sb = superblock();
        let t = Instant::now();
        let d = sb.looked_up(ROOT, "d", "/srv/n/d".into(), dir(), t).ino;
        let known = sb
            .looked_up(d, "known", "/srv/n/d/known".into(), file(1), t)
            .ino;
        let entries = ["known", "new"]
            .map(|name| DirEntry {
                name: name.into(),
                attrs: file(7),
            })
            .to_vec();
        let listing = sb.listed(d, "/srv/n/d", entries, t, t);
        let shown: Vec<(Ino, &str)> = listing.iter().map(|e| (e.ino, e.name.as_str())).collect();
        assert_eq!(
            shown,
            [
                (d, "."),
                (ROOT, ".."),
                (known, "known"),
                (UNKNOWN_INO, "new")
            ]
        );
        assert_eq!(
            sb.attributes("/srv/n/d/new", t),
            Some(file(7)),
            "the listing's attributes are cached"
        );
        assert_eq!(
            sb.attributes("/srv/n/d/known", t),
            Some(file(7)),
            "and replace older ones"
        );
    }

    #[test]
    fn creating_a_name_updates_the_directory_and_the_new_entry() {
        let mut sb = superblock();
        let t = Instant::now();
        let d = sb.looked_up(ROOT, "d", "/srv/n/d".into(), dir(), t).ino;
        sb.listed(d, "/srv/n/d", Vec::new(), t, t);
        assert_eq!(lookup(&mut sb, d, "f", t), Err(libc::ENOENT));
        let f = sb.created(d, "f", "/srv/n/d/f".into(), file(0), t);
        assert_eq!(lookup(&mut sb, d, "f", t), Ok(Lookup::Found(f)));
        assert_eq!(
            sb.attributes("/srv/n/d", t),
            None,
            "the directory's times changed"
        );
        assert_eq!(
            lookup(&mut sb, d, "g", t),
            Err(libc::ENOENT),
            "the other names are still known"
        );
        sb.not_made(d);
        assert_eq!(
            lookup(&mut sb, d, "g", t),
            Ok(Lookup::Ask("/srv/n/d/g".into())),
            "in doubt"
        );
    }

    #[test]
    fn a_made_directory_is_known_empty_and_its_old_attributes_gone() {
        let mut sb = superblock();
        let t = Instant::now();
        sb.seen("/srv/n/sub".into(), file(9), t);
        sb.seen("/srv/n".into(), dir(), t);
        sb.made(ROOT, "sub", true, t);
        assert_eq!(sb.attributes("/srv/n/sub", t), None, "asked again");
        assert_eq!(
            sb.attributes("/srv/n", t),
            None,
            "the parent's times changed"
        );
        let sub = sb.looked_up(ROOT, "sub", "/srv/n/sub".into(), dir(), t).ino;
        assert_eq!(
            lookup(&mut sb, sub, "x", t),
            Err(libc::ENOENT),
            "a new directory is empty"
        );
        sb.made(ROOT, "link", false, t);
        let link = sb
            .looked_up(
                ROOT,
                "link",
                "/srv/n/link".into(),
                attrs(FileKind::Symlink, 0),
                t,
            )
            .ino;
        assert_eq!(sb.path(link).unwrap(), "/srv/n/link");
    }

    #[test]
    fn a_removed_name_is_absent_its_inode_unlinked_and_its_tree_forgotten() {
        let mut sb = superblock();
        let t = Instant::now();
        sb.listed(
            ROOT,
            "/srv/n",
            vec![DirEntry {
                name: "d".into(),
                attrs: dir(),
            }],
            t,
            t,
        );
        let d = sb.looked_up(ROOT, "d", "/srv/n/d".into(), dir(), t).ino;
        sb.listed(d, "/srv/n/d", Vec::new(), t, t);
        sb.seen("/srv/n/d/below".into(), file(1), t);
        sb.seen("/srv/n".into(), dir(), t);
        sb.removed(ROOT, "d");
        assert_eq!(lookup(&mut sb, ROOT, "d", t), Err(libc::ENOENT));
        assert_eq!(
            sb.path(d).unwrap_err().errno(),
            libc::ENOENT,
            "no name any more"
        );
        assert_eq!(sb.attributes("/srv/n/d/below", t), None);
        assert_eq!(
            sb.attributes("/srv/n", t),
            None,
            "the parent's times changed"
        );
        assert_eq!(sb.inodes(), 2, "the kernel still holds it");
        sb.forget(d, 1);
        assert_eq!(sb.inodes(), 1);

        sb.seen("/srv/n/f".into(), file(1), t);
        sb.not_removed(ROOT, "f");
        assert_eq!(
            sb.attributes("/srv/n/f", t),
            None,
            "in doubt after a failed removal"
        );
    }

    #[test]
    fn a_rename_moves_the_inode_and_updates_both_directories() {
        let mut sb = superblock();
        let t = Instant::now();
        let a = sb.looked_up(ROOT, "a", "/srv/n/a".into(), dir(), t).ino;
        let b = sb.looked_up(ROOT, "b", "/srv/n/b".into(), dir(), t).ino;
        sb.listed(
            a,
            "/srv/n/a",
            vec![DirEntry {
                name: "f".into(),
                attrs: file(1),
            }],
            t,
            t,
        );
        sb.listed(
            b,
            "/srv/n/b",
            vec![DirEntry {
                name: "g".into(),
                attrs: file(2),
            }],
            t,
            t,
        );
        let f = sb.looked_up(a, "f", "/srv/n/a/f".into(), file(1), t).ino;
        let g = sb.looked_up(b, "g", "/srv/n/b/g".into(), file(2), t).ino;
        sb.renamed(a, "f", b, "g");
        assert_eq!(
            sb.path(f).unwrap(),
            "/srv/n/b/g",
            "the inode keeps its number"
        );
        assert_eq!(
            sb.path(g).unwrap_err().errno(),
            libc::ENOENT,
            "the replaced one is unlinked"
        );
        assert_eq!(lookup(&mut sb, a, "f", t), Err(libc::ENOENT), "gone from a");
        assert_eq!(
            lookup(&mut sb, b, "g", t),
            Ok(Lookup::Ask("/srv/n/b/g".into())),
            "asked: its attributes were the old file's"
        );
        assert_eq!(sb.attributes("/srv/n/a", t), None);
        assert_eq!(sb.attributes("/srv/n/b", t), None);

        sb.seen("/srv/n/b/g".into(), file(1), t);
        sb.not_renamed(b, "g", a, "h");
        assert_eq!(sb.attributes("/srv/n/b/g", t), None);
        assert_eq!(
            lookup(&mut sb, a, "x", t),
            Ok(Lookup::Ask("/srv/n/a/x".into())),
            "a in doubt"
        );
    }

    #[test]
    fn writes_drop_attributes_and_a_closed_writer_drops_the_kernels_pages() {
        let mut sb = superblock();
        let t = Instant::now();
        let f = sb.looked_up(ROOT, "f", "/srv/n/f".into(), file(1), t).ino;
        assert!(
            !sb.opened(f, "/srv/n/f".into(), file(1), t),
            "the first open"
        );
        assert!(
            sb.opened(f, "/srv/n/f".into(), file(1), t),
            "unchanged since"
        );
        sb.changed(f);
        assert_eq!(sb.attributes("/srv/n/f", t), None);
        sb.write_closed(f);
        assert!(
            !sb.opened(f, "/srv/n/f".into(), file(1), t),
            "a handle wrote since"
        );
        assert!(
            !sb.opened(f, "/srv/n/f".into(), file(2), t),
            "the server's size changed"
        );
    }
}
