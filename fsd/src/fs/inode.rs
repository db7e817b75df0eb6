//! The inode table: which inode number stands for which name under the node directory.
//!
//! An inode is a (parent inode, name) pair, so renaming a directory moves its whole subtree by
//! changing one entry and every inode keeps its number across renames. Inodes are counted the
//! way the kernel counts them (every successful lookup, mkdir or create adds one; `forget`
//! subtracts) and removed when the kernel has forgotten them and no remembered inode lies
//! below them. Numbers are never reused, so the generation is always 0.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::backend::FileKind;

/// A file's content as the server describes it: its size and modification time.
pub type Version = (u64, SystemTime);

/// An inode number.
pub type Ino = u64;

/// The node directory itself.
pub const ROOT: Ino = 1;

#[derive(Debug)]
struct Inode {
    parent: Ino,
    name: String,
    kind: FileKind,
    /// How many lookups the kernel holds.
    lookups: u64,
    /// Remembered inodes whose parent this is.
    children: usize,
    /// False once unlinked or replaced: the inode lives on only for the kernel's references.
    linked: bool,
    /// The version of the content the kernel's page cache holds, as found at the last open.
    cached: Option<Version>,
}

#[derive(Debug)]
pub struct InodeTable {
    inodes: HashMap<Ino, Inode>,
    by_name: HashMap<(Ino, String), Ino>,
    next: Ino,
}

impl Default for InodeTable {
    fn default() -> Self {
        let root = Inode {
            parent: ROOT,
            name: String::new(),
            kind: FileKind::Directory,
            lookups: 1,
            children: 0,
            linked: true,
            cached: None,
        };
        Self {
            inodes: HashMap::from([(ROOT, root)]),
            by_name: HashMap::new(),
            next: ROOT + 1,
        }
    }
}

impl InodeTable {
    /// The names from the root down to `ino`, or `None` if `ino` is unknown or unlinked.
    pub fn names(&self, ino: Ino) -> Option<Vec<&str>> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let inode = self.inodes.get(&at).filter(|i| i.linked)?;
            names.push(inode.name.as_str());
            at = inode.parent;
        }
        names.reverse();
        Some(names)
    }

    /// Whether the kernel may keep its cached pages of `ino` at an open that found the file at
    /// `version`: only if the last open found the same. `version` is what the cache holds from
    /// now on.
    pub fn keep_cache(&mut self, ino: Ino, version: Version) -> bool {
        self.inodes
            .get_mut(&ino)
            .is_some_and(|inode| inode.cached.replace(version) == Some(version))
    }

    /// The kernel's cached pages of `ino` may differ from the server (a handle that wrote was
    /// closed; a write may have failed): the next open drops them.
    pub fn content_changed(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.cached = None;
        }
    }

    /// The parent of a directory (the root is its own parent).
    pub fn parent(&self, ino: Ino) -> Option<Ino> {
        self.inodes.get(&ino).map(|i| i.parent)
    }

    /// The inode of `name` in `parent`, if the kernel holds one.
    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.by_name.get(&(parent, name.to_owned())).copied()
    }

    /// Records one more kernel reference to `name` in `parent`, which is of `kind`, and returns
    /// its inode. A name whose kind changed on the server gets a new inode.
    pub fn remember(&mut self, parent: Ino, name: &str, kind: FileKind) -> Ino {
        if let Some(ino) = self.child(parent, name) {
            let inode = self.inodes.get_mut(&ino).expect("named inode exists");
            if inode.kind == kind {
                inode.lookups += 1;
                return ino;
            }
            self.unlink(parent, name);
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(
            ino,
            Inode {
                parent,
                name: name.to_owned(),
                kind,
                lookups: 1,
                children: 0,
                linked: true,
                cached: None,
            },
        );
        self.by_name.insert((parent, name.to_owned()), ino);
        self.inodes
            .get_mut(&parent)
            .expect("parent inode exists")
            .children += 1;
        ino
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&mut self, ino: Ino, count: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookups = inode.lookups.saturating_sub(count);
            self.release(ino);
        }
    }

    /// `name` in `parent` is gone on the server; its inode lives on while the kernel holds it.
    pub fn unlink(&mut self, parent: Ino, name: &str) {
        if let Some(ino) = self.by_name.remove(&(parent, name.to_owned())) {
            self.inodes
                .get_mut(&ino)
                .expect("named inode exists")
                .linked = false;
            self.detach_from(parent);
            self.release(ino);
        }
    }

    /// `name` in `parent` is now `new_name` in `new_parent`, replacing what was there.
    pub fn rename(&mut self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) {
        if (parent, name) == (new_parent, new_name) {
            return;
        }
        self.unlink(new_parent, new_name);
        let Some(ino) = self.by_name.remove(&(parent, name.to_owned())) else {
            return;
        };
        let inode = self.inodes.get_mut(&ino).expect("named inode exists");
        inode.parent = new_parent;
        inode.name = new_name.to_owned();
        self.by_name.insert((new_parent, new_name.to_owned()), ino);
        self.inodes
            .get_mut(&new_parent)
            .expect("new parent exists")
            .children += 1;
        self.detach_from(parent);
    }

    /// How many inodes the table holds (the root included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inodes.len()
    }

    fn detach_from(&mut self, parent: Ino) {
        if let Some(p) = self.inodes.get_mut(&parent) {
            p.children -= 1;
            self.release(parent);
        }
    }

    /// Drops `ino` if nothing needs it any more, then its parent likewise.
    fn release(&mut self, ino: Ino) {
        let Some(inode) = self.inodes.get(&ino) else {
            return;
        };
        if ino == ROOT || inode.lookups > 0 || inode.children > 0 {
            return;
        }
        let inode = self.inodes.remove(&ino).expect("checked above");
        if inode.linked {
            self.by_name.remove(&(inode.parent, inode.name));
            self.detach_from(inode.parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_a_directory_moves_its_subtree_and_keeps_numbers() {
        let mut t = InodeTable::default();
        let a = t.remember(ROOT, "a", FileKind::Directory);
        let b = t.remember(a, "b", FileKind::Directory);
        let f = t.remember(b, "f", FileKind::RegularFile);
        t.rename(ROOT, "a", ROOT, "z");
        assert_eq!(t.names(f), Some(vec!["z", "b", "f"]));
        assert_eq!(t.child(ROOT, "z"), Some(a));
        assert_eq!(t.child(ROOT, "a"), None);
        assert_eq!(t.remember(b, "f", FileKind::RegularFile), f);
    }

    #[test]
    fn a_replaced_target_is_unlinked_but_lives_while_referenced() {
        let mut t = InodeTable::default();
        let old = t.remember(ROOT, "target", FileKind::RegularFile);
        let tmp = t.remember(ROOT, "tmp", FileKind::RegularFile);
        t.rename(ROOT, "tmp", ROOT, "target");
        assert_eq!(t.child(ROOT, "target"), Some(tmp));
        assert_eq!(t.names(old), None, "the replaced file has no name any more");
        assert_eq!(t.len(), 3);
        t.forget(old, 1);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn forgotten_inodes_go_once_nothing_below_them_is_held() {
        let mut t = InodeTable::default();
        let dir = t.remember(ROOT, "d", FileKind::Directory);
        let file = t.remember(dir, "f", FileKind::RegularFile);
        t.forget(dir, 1);
        assert_eq!(
            t.names(file),
            Some(vec!["d", "f"]),
            "the directory stays while its child is held"
        );
        t.forget(file, 1);
        assert_eq!(t.len(), 1, "only the root is left");
        t.forget(ROOT, 1);
        assert_eq!(t.names(ROOT), Some(vec![]));
    }

    #[test]
    fn a_name_whose_kind_changed_gets_a_new_inode() {
        let mut t = InodeTable::default();
        let file = t.remember(ROOT, "x", FileKind::RegularFile);
        let dir = t.remember(ROOT, "x", FileKind::Directory);
        assert_ne!(file, dir);
        assert_eq!(t.names(file), None);
        assert_eq!(t.names(dir), Some(vec!["x"]));
    }
}
