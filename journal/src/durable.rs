//! Durable, atomic file replacement: [`write_atomic`] writes a temporary file beside the target
//! (`.<name>.part`), fsyncs it, renames it over the target and fsyncs the directory, so that a
//! reader sees the old content or the new, never half of it, and a crash after it returns keeps
//! the new. [`replace`] is all but the directory's fsync, for a file system whose renames are
//! durable without it; [`sync_dir`] is the last step alone, for callers that rename by themselves.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces the file at `path` with `bytes`, durably and atomically. With `mode` the file has
/// exactly that mode, whatever the umask (0600 for a secret, 0644 for a file another user
/// reads); without, the usual 0666 less the umask. The directory must exist. On failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    replace(path, bytes, mode)?;
    sync_dir(
        path.parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// [`write_atomic`] but for the directory's fsync: the new content is on disk, its rename as
/// durable as the file system makes renames (fsd's mount: the file server's journal).
pub fn replace(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let part = part_path(path)?;
    let written = write_synced(&part, bytes, mode).and_then(|()| std::fs::rename(&part, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    Ok(())
}

/// The temporary name [`write_atomic`] writes under: `.<name>.part` in the same directory.
pub fn part_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut part = std::ffi::OsString::from(".");
    part.push(name);
    part.push(".part");
    Ok(path.with_file_name(part))
}

fn write_synced(part: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if let Some(mode) = mode {
        options.mode(mode);
    }
    let mut file = options.open(part)?;
    if let Some(mode) = mode {
        // The umask applies to the mode at creation; this does not.
        file.set_permissions(Permissions::from_mode(mode))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable. File systems that cannot fsync a directory (some FUSE ones)
/// say `EINVAL`/`ENOTSUP`/`EBADF`; that is not an error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::ENOTSUP | libc::EBADF)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        write_atomic(&path, b"first", None).unwrap();
        write_atomic(&path, b"second", None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["status.json"]);
        assert_eq!(
            part_path(&path).unwrap(),
            dir.path().join(".status.json.part")
        );
    }

    #[test]
    fn the_mode_is_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o644] {
            let path = dir.path().join(format!("f{mode:o}"));
            write_atomic(&path, b"x", Some(mode)).unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                mode
            );
        }
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kept");
        write_atomic(&path, b"old", None).unwrap();
        // The rename fails: a directory stands at the target's name.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomic(&blocked, b"new", None).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["blocked", "kept"]);
        assert!(
            write_atomic(&dir.path().join("missing/f"), b"x", None).is_err(),
            "the directory is not made"
        );
        assert!(write_atomic(Path::new("/"), b"x", None).is_err());
    }

    #[test]
    fn directories_sync() {
        let dir = tempfile::tempdir().unwrap();
        sync_dir(dir.path()).unwrap();
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }
}
