//! An in-memory file server for tests: a directory tree answering like OpenSSH's `sftp-server`.
//!
//! It reproduces the status codes OpenSSH sends for the same faults (`SSH_FX_FAILURE` for an
//! existing directory or a non-empty `rmdir`, `SSH_FX_NO_SUCH_FILE` for a missing parent, …) and
//! POSIX handle semantics (an open file keeps its data through rename and unlink), so the
//! filesystem logic can be tested against it exactly as against the real server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{
    Attributes, DirEntry, FileKind, FsStats, OpenOptions, SetAttributes, SftpBackend, SftpError,
    SftpResult, StatusCode,
};

/// A file's content and metadata; it outlives its name while a handle holds it.
#[derive(Debug, Clone)]
struct MemFile {
    data: Vec<u8>,
    perm: u16,
    mtime: SystemTime,
}

type FileId = u64;

#[derive(Debug, Clone, Copy)]
enum Node {
    Dir {
        perm: u16,
        mtime: SystemTime,
    },
    File(FileId),
    /// A symbolic link; its target is in `State::links`.
    Symlink(u64),
}

#[derive(Debug)]
struct OpenFile {
    file: FileId,
    options: OpenOptions,
}

#[derive(Debug, Default)]
struct State {
    /// Every name, by absolute path.
    nodes: BTreeMap<String, Node>,
    files: HashMap<FileId, MemFile>,
    links: HashMap<u64, String>,
    handles: HashMap<u64, OpenFile>,
    next_id: u64,
    fsyncs: u64,
}

/// The in-memory file server. Every file and directory belongs to uid/gid 0.
#[derive(Debug)]
pub struct MemoryBackend {
    state: Mutex<State>,
}

/// An open file of [`MemoryBackend`].
#[derive(Debug)]
pub struct MemoryHandle(u64);

fn status(code: StatusCode, message: &str) -> SftpError {
    SftpError::Status {
        code,
        message: message.to_owned(),
    }
}

fn no_such_file() -> SftpError {
    status(StatusCode::NoSuchFile, "No such file")
}

fn failure() -> SftpError {
    status(StatusCode::Failure, "Failure")
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

fn child_prefix(dir: &str) -> String {
    if dir == "/" {
        "/".to_owned()
    } else {
        format!("{dir}/")
    }
}

impl MemoryBackend {
    /// A server holding only the empty directory `root` (an absolute path).
    pub fn new(root: &str) -> Self {
        let mut state = State::default();
        state.nodes.insert(
            root.to_owned(),
            Node::Dir {
                perm: 0o755,
                mtime: SystemTime::now(),
            },
        );
        Self {
            state: Mutex::new(state),
        }
    }

    /// How many `fsync` requests reached the server.
    pub fn fsync_count(&self) -> u64 {
        self.lock().fsyncs
    }

    /// How many files are open.
    pub fn open_handles(&self) -> usize {
        self.lock().handles.len()
    }

    /// The content of the file at `path`, if there is one.
    pub fn file_content(&self, path: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.nodes.get(path)? {
            Node::File(id) => Some(state.files[id].data.clone()),
            Node::Dir { .. } | Node::Symlink(_) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory backend lock")
    }
}

impl State {
    fn attributes(&self, node: Node) -> Attributes {
        let (kind, perm, size, mtime) = match node {
            Node::Dir { perm, mtime } => (FileKind::Directory, perm, 0, mtime),
            Node::File(id) => {
                let f = &self.files[&id];
                (FileKind::RegularFile, f.perm, f.data.len() as u64, f.mtime)
            }
            Node::Symlink(id) => (
                FileKind::Symlink,
                0o777,
                self.links[&id].len() as u64,
                SystemTime::UNIX_EPOCH,
            ),
        };
        Attributes {
            kind,
            perm,
            size,
            uid: 0,
            gid: 0,
            atime: mtime,
            mtime,
        }
    }

    /// The names directly in `dir`.
    fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, Node)> + 'a {
        let prefix = child_prefix(dir);
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(path, _)| path.starts_with(&prefix))
            .filter_map(move |(path, node)| {
                let name = &path[child_prefix(parent_of(path)).len()..];
                (parent_of(path) == dir && !name.is_empty()).then_some((name, *node))
            })
    }

    fn require_parent_dir(&self, path: &str) -> SftpResult<()> {
        match self.nodes.get(parent_of(path)) {
            Some(Node::Dir { .. }) => Ok(()),
            _ => Err(no_such_file()),
        }
    }

    fn handle(&self, handle: &MemoryHandle) -> SftpResult<&OpenFile> {
        self.handles.get(&handle.0).ok_or_else(failure)
    }

    fn set(&mut self, node: Node, attrs: SetAttributes) {
        let now = SystemTime::now();
        match node {
            Node::Dir { .. } | Node::Symlink(_) => {}
            Node::File(id) => {
                let file = self.files.get_mut(&id).expect("file of a node");
                if let Some(size) = attrs.size {
                    file.data.resize(size as usize, 0);
                    file.mtime = now;
                }
                if let Some(perm) = attrs.perm {
                    file.perm = perm;
                }
                if let Some((_, mtime)) = attrs.times {
                    file.mtime = mtime;
                }
            }
        }
    }

    fn touch_dir(&mut self, dir: &str) {
        if let Some(Node::Dir { mtime, .. }) = self.nodes.get_mut(dir) {
            *mtime = SystemTime::now();
        }
    }
}

impl SftpBackend for MemoryBackend {
    type Handle = MemoryHandle;

    async fn lstat(&self, path: &str) -> SftpResult<Attributes> {
        let state = self.lock();
        let node = *state.nodes.get(path).ok_or_else(no_such_file)?;
        Ok(state.attributes(node))
    }

    async fn read_dir(&self, path: &str) -> SftpResult<Vec<DirEntry>> {
        let state = self.lock();
        match state.nodes.get(path) {
            Some(Node::Dir { .. }) => Ok(state
                .children(path)
                .map(|(name, node)| DirEntry {
                    name: name.to_owned(),
                    attrs: state.attributes(node),
                })
                .collect()),
            _ => Err(no_such_file()),
        }
    }

    async fn open(&self, path: &str, options: OpenOptions, perm: u16) -> SftpResult<MemoryHandle> {
        let mut state = self.lock();
        let state = &mut *state;
        let id = match state.nodes.get(path) {
            Some(Node::Dir { .. } | Node::Symlink(_)) => return Err(failure()),
            Some(Node::File(_)) if options.create && options.exclusive => return Err(failure()),
            Some(Node::File(id)) => *id,
            None if options.create => {
                state.require_parent_dir(path)?;
                state.next_id += 1;
                let id = state.next_id;
                state.files.insert(
                    id,
                    MemFile {
                        data: Vec::new(),
                        perm,
                        mtime: SystemTime::now(),
                    },
                );
                state.nodes.insert(path.to_owned(), Node::File(id));
                state.touch_dir(parent_of(path));
                id
            }
            None => return Err(no_such_file()),
        };
        if options.truncate {
            state.set(
                Node::File(id),
                SetAttributes {
                    size: Some(0),
                    ..SetAttributes::default()
                },
            );
        }
        state.next_id += 1;
        let handle = state.next_id;
        state.handles.insert(handle, OpenFile { file: id, options });
        Ok(MemoryHandle(handle))
    }

    async fn fstat(&self, handle: &MemoryHandle) -> SftpResult<Attributes> {
        let state = self.lock();
        let file = state.handle(handle)?.file;
        Ok(state.attributes(Node::File(file)))
    }

    async fn read(&self, handle: &MemoryHandle, offset: u64, len: u32) -> SftpResult<Vec<u8>> {
        let state = self.lock();
        let open = state.handle(handle)?;
        if !open.options.read {
            return Err(status(StatusCode::PermissionDenied, "not open for reading"));
        }
        let data = &state.files[&open.file].data;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    async fn write(&self, handle: &MemoryHandle, offset: u64, data: Vec<u8>) -> SftpResult<()> {
        let mut state = self.lock();
        let open = state.handle(handle)?;
        if !open.options.write {
            return Err(status(StatusCode::PermissionDenied, "not open for writing"));
        }
        let (id, append) = (open.file, open.options.append);
        let file = state.files.get_mut(&id).expect("file of a handle");
        let start = if append {
            file.data.len()
        } else {
            offset as usize
        };
        let end = start + data.len();
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[start..end].copy_from_slice(&data);
        file.mtime = SystemTime::now();
        Ok(())
    }

    async fn fsync(&self, handle: &MemoryHandle) -> SftpResult<()> {
        let mut state = self.lock();
        state.handle(handle)?;
        state.fsyncs += 1;
        Ok(())
    }

    async fn close(&self, handle: &MemoryHandle) -> SftpResult<()> {
        self.lock()
            .handles
            .remove(&handle.0)
            .map(drop)
            .ok_or_else(failure)
    }

    async fn setstat(&self, path: &str, attrs: SetAttributes) -> SftpResult<()> {
        let mut state = self.lock();
        let node = *state.nodes.get(path).ok_or_else(no_such_file)?;
        state.set(node, attrs);
        Ok(())
    }

    async fn fsetstat(&self, handle: &MemoryHandle, attrs: SetAttributes) -> SftpResult<()> {
        let mut state = self.lock();
        let file = state.handle(handle)?.file;
        state.set(Node::File(file), attrs);
        Ok(())
    }

    async fn mkdir(&self, path: &str, perm: u16) -> SftpResult<()> {
        let mut state = self.lock();
        state.require_parent_dir(path)?;
        if state.nodes.contains_key(path) {
            return Err(failure());
        }
        state.nodes.insert(
            path.to_owned(),
            Node::Dir {
                perm,
                mtime: SystemTime::now(),
            },
        );
        state.touch_dir(parent_of(path));
        Ok(())
    }

    async fn rmdir(&self, path: &str) -> SftpResult<()> {
        let mut state = self.lock();
        match state.nodes.get(path) {
            Some(Node::Dir { .. }) if state.children(path).next().is_some() => Err(failure()),
            Some(Node::Dir { .. }) => {
                state.nodes.remove(path);
                state.touch_dir(parent_of(path));
                Ok(())
            }
            _ => Err(no_such_file()),
        }
    }

    async fn remove(&self, path: &str) -> SftpResult<()> {
        let mut state = self.lock();
        match state.nodes.get(path) {
            Some(Node::File(_)) => {
                state.nodes.remove(path);
                state.touch_dir(parent_of(path));
                Ok(())
            }
            Some(Node::Symlink(id)) => {
                let id = *id;
                state.nodes.remove(path);
                state.links.remove(&id);
                state.touch_dir(parent_of(path));
                Ok(())
            }
            Some(Node::Dir { .. }) => Err(failure()),
            None => Err(no_such_file()),
        }
    }

    async fn rename(&self, from: &str, to: &str, replace: bool) -> SftpResult<()> {
        let mut state = self.lock();
        let node = *state.nodes.get(from).ok_or_else(no_such_file)?;
        state.require_parent_dir(to)?;
        if from == to {
            return Ok(());
        }
        if to.starts_with(&child_prefix(from)) {
            return Err(failure());
        }
        match (state.nodes.get(to).copied(), node) {
            (None, _) => {}
            (Some(_), _) if !replace => return Err(failure()),
            (Some(Node::File(_) | Node::Symlink(_)), Node::File(_) | Node::Symlink(_)) => {}
            (Some(Node::Dir { .. }), Node::Dir { .. }) if state.children(to).next().is_none() => {}
            (Some(_), _) => return Err(failure()),
        }
        let moved: Vec<String> = std::iter::once(from.to_owned())
            .chain(
                state
                    .nodes
                    .keys()
                    .filter(|p| p.starts_with(&child_prefix(from)))
                    .cloned(),
            )
            .collect();
        for old in moved {
            let node = state.nodes.remove(&old).expect("listed node");
            state
                .nodes
                .insert(format!("{to}{}", &old[from.len()..]), node);
        }
        state.touch_dir(parent_of(from));
        state.touch_dir(parent_of(to));
        Ok(())
    }

    async fn statvfs(&self, _path: &str) -> SftpResult<FsStats> {
        let state = self.lock();
        let used: u64 = state.files.values().map(|f| f.data.len() as u64).sum();
        let blocks = 1 << 20;
        let free = blocks - used.div_ceil(4096);
        Ok(FsStats {
            block_size: 4096,
            blocks,
            blocks_free: free,
            blocks_avail: free,
            files: 1 << 20,
            files_free: (1 << 20) - state.nodes.len() as u64,
            name_max: 255,
        })
    }

    async fn symlink(&self, target: &str, path: &str) -> SftpResult<()> {
        let mut state = self.lock();
        state.require_parent_dir(path)?;
        if state.nodes.contains_key(path) {
            return Err(failure());
        }
        state.next_id += 1;
        let id = state.next_id;
        state.links.insert(id, target.to_owned());
        state.nodes.insert(path.to_owned(), Node::Symlink(id));
        state.touch_dir(parent_of(path));
        Ok(())
    }

    async fn readlink(&self, path: &str) -> SftpResult<String> {
        let state = self.lock();
        match state.nodes.get(path) {
            Some(Node::Symlink(id)) => Ok(state.links[id].clone()),
            Some(_) => Err(failure()),
            None => Err(no_such_file()),
        }
    }

    async fn hardlink(&self, existing: &str, new: &str) -> SftpResult<()> {
        let mut state = self.lock();
        let node = *state.nodes.get(existing).ok_or_else(no_such_file)?;
        state.require_parent_dir(new)?;
        match node {
            _ if state.nodes.contains_key(new) => Err(failure()),
            Node::File(_) => {
                state.nodes.insert(new.to_owned(), node);
                state.touch_dir(parent_of(new));
                Ok(())
            }
            // link(2) of a directory is EPERM, which OpenSSH reports as permission denied.
            Node::Dir { .. } | Node::Symlink(_) => {
                Err(status(StatusCode::PermissionDenied, "Permission denied"))
            }
        }
    }
}
