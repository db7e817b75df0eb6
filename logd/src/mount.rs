//! The node's directory on the file server as logd's operator commands (`purge`, `reconcile`)
//! reach it, through fsd's mount: where a row's `file_path` is under the mount point, the seed's
//! hour directories (`files/<chat_type>/<YYYYMMDD>/<HH>[.<n>]/<name>`) and the real-name links.

use std::path::{Path, PathBuf};

use chrono::{DateTime, DurationRound, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// Where the node's files are reachable: `[file_server] directory` (the prefix of every
/// `file_path`) and `mount_point` (where fsd mounts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub directory: String,
    pub mount_point: PathBuf,
}

impl Mount {
    /// The configured node's.
    pub fn of(config: &mft_config::FileServer) -> Self {
        Self {
            directory: config.directory.clone(),
            mount_point: config.mount_point.clone(),
        }
    }

    /// The `file_path` (a path on the file server) of `relative`, a path under the directory.
    pub fn file_path(&self, relative: &Path) -> String {
        format!(
            "{}/{}",
            self.directory.trim_end_matches('/'),
            relative.display()
        )
    }

    /// Where `file_path` is under the mount point, relative to it, if it is a plain path under
    /// this node's directory.
    pub fn relative(&self, file_path: &str) -> Result<PathBuf, String> {
        let directory = self.directory.trim_end_matches('/');
        let relative = file_path
            .strip_prefix(directory)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| format!("not under the node's directory {directory}"))?;
        if relative
            .split('/')
            .any(|part| matches!(part, "" | "." | ".."))
        {
            return Err("not a plain path under the node's directory".into());
        }
        Ok(PathBuf::from(relative))
    }

    /// Whether a file system is mounted at the mount point (its device differs from its
    /// parent's): an unmounted mount point is an empty local directory, where every row would
    /// look like a missing file; a mounted one has no `files/` before the node's first upload.
    pub fn is_mounted(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev());
        match (
            device(&self.mount_point),
            self.mount_point.parent().map(device),
        ) {
            (Ok(inner), Some(Ok(outer))) => inner != outer,
            _ => false,
        }
    }

    /// The real-name link of the file at `path` under the mount, if `path` is in the seed's
    /// layout.
    pub fn name_link(&self, path: &Path) -> Option<PathBuf> {
        let relative = path.strip_prefix(&self.mount_point).ok()?;
        hour_directory(relative)?;
        Some(
            self.mount_point
                .join(mft_config::NAMES_DIR)
                .join(relative.file_name()?),
        )
    }
}

/// Deletes a real-name link; one that cannot be deleted is only logged: its file is gone, and a
/// dangling link names nothing (a random file name is never reused).
pub fn remove_name_link(link: &Path) {
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            log::warn!("cannot delete the name link {}: {e}", link.display())
        }
        _ => {}
    }
}

/// The start of the UTC hour `now` is in.
pub fn current_hour(now: DateTime<Utc>) -> NaiveDateTime {
    now.duration_trunc(chrono::Duration::hours(1))
        .expect("an hour divides any time")
        .naive_utc()
}

/// The UTC hour of a path in the seed's layout, `files/<chat_type>/<YYYYMMDD>/<HH>[.<n>]/<name>`.
pub fn hour_directory(relative: &Path) -> Option<NaiveDateTime> {
    let parts: Vec<&str> = relative.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let [_files, _chat_type, day, hour, _name] = parts.as_slice() else {
        return None;
    };
    let digits = |text: &str, n: usize| text.len() == n && text.bytes().all(|b| b.is_ascii_digit());
    let hour = hour.split('.').next()?;
    if !digits(day, 8) || !digits(hour, 2) {
        return None;
    }
    let day = NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
    let hour: u32 = hour.parse().ok()?;
    Some(day.and_time(NaiveTime::from_hms_opt(hour, 0, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn file_paths_map_under_the_node_directory_only() {
        let m = Mount {
            directory: "/opt/mftFileStore/node_1/".into(),
            mount_point: "/var/lib/mft/store".into(),
        };
        let relative = Path::new("files/im/20250102/03/abc");
        assert_eq!(
            m.relative("/opt/mftFileStore/node_1/files/im/20250102/03/abc"),
            Ok(relative.to_owned())
        );
        assert_eq!(
            m.file_path(relative),
            "/opt/mftFileStore/node_1/files/im/20250102/03/abc"
        );
        for outside in [
            "/opt/mftFileStore/node_2/files/im/20250102/03/abc",
            "/opt/mftFileStore/node_10/files/x",
            "/opt/mftFileStore/node_1",
            "/opt/mftFileStore/node_1/",
            "/opt/mftFileStore/node_1/files/../../node_2/x",
            "/opt/mftFileStore/node_1/files/./x",
            "relative/files/x",
        ] {
            assert!(m.relative(outside).is_err(), "{outside}");
        }
        assert_eq!(
            m.name_link(&m.mount_point.join(relative)),
            Some(PathBuf::from("/var/lib/mft/store/.names/abc"))
        );
        assert_eq!(m.name_link(Path::new("/var/lib/mft/store/other")), None);
    }

    #[test]
    fn a_mount_point_is_mounted_when_its_device_differs_from_its_parents() {
        let mount = |point: &Path| Mount {
            directory: "/opt/mftFileStore/node_1".into(),
            mount_point: point.to_owned(),
        };
        assert!(mount(Path::new("/proc")).is_mounted());
        let plain = tempfile::tempdir().unwrap();
        assert!(!mount(plain.path()).is_mounted());
        assert!(!mount(&plain.path().join("absent")).is_mounted());
    }

    #[test]
    fn the_current_hour_starts_on_the_hour() {
        let now: DateTime<Utc> = "2025-03-04T05:59:59.9Z".parse().unwrap();
        assert_eq!(current_hour(now), at("2025-03-04 05:00:00"));
    }

    #[test]
    fn hour_directories_follow_the_seeds_layout() {
        let hour = |p: &str| hour_directory(Path::new(p));
        assert_eq!(
            hour("files/im/20140811/15/f"),
            Some(at("2014-08-11 15:00:00"))
        );
        assert_eq!(
            hour("files/persistent/20140811/15.3/f"),
            Some(at("2014-08-11 15:00:00"))
        );
        assert_eq!(hour("files/im/2014081/15/f"), None);
        assert_eq!(hour("other/f"), None);
    }
}
