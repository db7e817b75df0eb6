//! `logd reconcile`: compares the node's directory on the file server, through fsd's mount, with
//! `aft_log`, reports where they disagree and, when asked, repairs it.
//!
//! What it finds ([`Finding`]) and how each is repaired:
//! - a partial upload (`.<name>.part`) or a stored file without a `Post` row: removed (a file
//!   with its real-name link). A file whose row `logd purge` deleted while keeping the file
//!   (`aft_kept_file`) is not drift;
//! - a `Post` row without its file, with a file of another size or (with `verify_content`) of
//!   another SHA-256: the row is marked in its `file_state` column (`missing`, `size`,
//!   `digest`), which operators query; a marked row whose file is right again is unmarked. A row
//!   whose file httpd removed on purpose (`expired`) is not drift;
//! - a slot record (`.slots/*.json`, httpd's) naming a file that is not there: removed;
//! - a real-name link (`.names/<file_name>`) whose file name has neither a `Post` row nor a
//!   purge's record (the cleanup of a cut-off upload that could not remove it): removed.
//!
//! Nothing that may still be in flight is removed: a file or record is left alone while it was
//! modified less than `grace` ago, in the current UTC hour, or lies in the current hour's
//! directory (the seed's rule for purges); it is reported as pending, not as drift. A file is
//! removed only after its row is looked up once more. The report counts what is drift, what was
//! repaired and what remains; the command raises `MftAuditDriftWarn` when it finds any, and fails
//! while any remains.
//!
//! The tree is read one hour directory at a time with that directory's rows, and `Post` rows in
//! pages, so memory stays bounded by the largest directory and the findings.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::schema::{aft_kept_file, aft_log};
use crate::db::{self, like_prefix, AnyConnection, DbError};
use crate::mount::{current_hour, hour_directory, remove_name_link, Mount};
use crate::row::{FileState, Method};

/// `Post` rows read at a time.
const PAGE_ROWS: i64 = 10_000;
/// Real-name links looked up at a time.
const LINK_BATCH: usize = 1_000;

/// How a reconcile runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repair; without it, only report.
    pub execute: bool,
    /// Re-read every file with a recorded SHA-256 and compare.
    pub verify_content: bool,
    /// Files and records modified less than this long ago are never removed.
    pub grace: chrono::Duration,
}

/// Why a reconcile did not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("nothing is mounted at {0}: is fsd running?")]
    NoMount(PathBuf),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Schema(#[from] DbError),
    #[error("the database failed: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
}

/// One disagreement between the file server and `aft_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// An upload's partial file, left by a process that died during it.
    PartialFile { path: PathBuf, bytes: u64 },
    /// A stored file that no `Post` row names.
    FileWithoutRow { path: PathBuf, bytes: u64 },
    /// A `Post` row whose file is missing or differs.
    Row {
        aft_index: i64,
        file_path: String,
        drift: FileState,
        detail: String,
    },
    /// A marked `Post` row whose file is right again.
    RowRight {
        aft_index: i64,
        file_path: String,
        was: String,
    },
    /// A slot record naming a file that is not there.
    SlotWithoutFile { record: PathBuf, location: String },
    /// A real-name link whose file name has no `Post` row (nor a purge's record).
    NameLinkWithoutRow { link: PathBuf },
}

/// What became of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// A dry run: it would be repaired.
    Found,
    Repaired,
    /// Too recent to repair: it may still be in flight. Not drift (yet).
    Pending(String),
    /// The repair failed.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub finding: Finding,
    #[serde(flatten)]
    pub status: Status,
}

/// The counts of a reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files_checked: u64,
    pub rows_checked: u64,
    pub slot_records_checked: u64,
    pub name_links_checked: u64,
    /// Bytes re-read to verify digests.
    pub bytes_verified: u64,
    /// Findings that are drift (all but the pending).
    pub drift: u64,
    pub repaired: u64,
    /// Drift not repaired: found in a dry run, or whose repair failed.
    pub remaining: u64,
    pub pending: u64,
    /// Rows marked before and still as marked: known, not counted as drift.
    pub rows_marked_before: u64,
    /// Rows whose file httpd removed on purpose (`file_state = 'expired'`): not drift.
    pub rows_of_expired_files: u64,
    /// Files whose rows `logd purge` deleted while keeping them (`aft_kept_file`): not drift.
    pub files_of_purged_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub executed: bool,
    pub entries: Vec<Entry>,
    pub summary: Summary,
}

/// Reconciles the node `mount` with the database `config` at `now`.
pub fn run(
    config: &mft_config::Database,
    mount: &Mount,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Report, ReconcileError> {
    let files = mount.mount_point.join(mft_config::FILES_DIR);
    if !files.is_dir() && !mount.is_mounted() {
        return Err(ReconcileError::NoMount(mount.mount_point.clone()));
    }
    let mut conn = db::connect(config)?;
    db::verify_schema(&mut conn)?;
    let mut run = Run {
        conn,
        mount,
        options,
        recent: Recent {
            since: (now - options.grace).naive_utc().min(current_hour(now)),
            hour: current_hour(now),
        },
        entries: Vec::new(),
        summary: Summary::default(),
        unrecorded: HashSet::new(),
        now,
    };
    for dir in hour_directories(&files)? {
        run.directory(&dir)?;
    }
    run.rows()?;
    run.slots()?;
    run.name_links()?;
    let summary = run.summary.clone();
    Ok(Report {
        executed: options.execute,
        entries: run.entries,
        summary,
    })
}

/// What is too recent to remove.
#[derive(Debug, Clone, Copy)]
struct Recent {
    /// Files modified at or after this may be in flight.
    since: NaiveDateTime,
    /// The current UTC hour: its directory is never touched.
    hour: NaiveDateTime,
}

impl Recent {
    /// Why the file at `relative` (under the mount), modified at `modified`, must stay.
    fn keeps(&self, relative: &Path, modified: Option<NaiveDateTime>) -> Option<String> {
        if hour_directory(relative) == Some(self.hour) {
            return Some("in the current UTC hour's directory".into());
        }
        match modified {
            Some(modified) if modified < self.since => None,
            Some(_) => Some("modified within the grace period: it may still be in flight".into()),
            None => Some("its modification time cannot be read".into()),
        }
    }
}

struct Run<'a> {
    conn: AnyConnection,
    mount: &'a Mount,
    options: &'a Options,
    recent: Recent,
    entries: Vec<Entry>,
    summary: Summary,
    /// The names of the files found without a `Post` row: their links go with them.
    unrecorded: HashSet<String>,
    now: DateTime<Utc>,
}

impl Run<'_> {
    /// One hour directory's files against the `Post` rows that name a file in it.
    fn directory(&mut self, dir: &Path) -> Result<(), ReconcileError> {
        let relative_dir = dir
            .strip_prefix(&self.mount.mount_point)
            .expect("walked under the mount");
        let prefix = format!("{}/", self.mount.file_path(relative_dir));
        let recorded: HashSet<String> = self.post_paths(&prefix)?.into_iter().collect();
        let kept: HashSet<String> = self.kept_paths(&prefix)?.into_iter().collect();
        for entry in read_dir(dir)? {
            let meta = entry
                .metadata()
                .map_err(|e| ReconcileError::Read(entry.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            self.summary.files_checked += 1;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = relative_dir.join(&name);
            let (path, bytes) = (entry.path(), meta.len());
            let finding = if name.starts_with('.') && name.ends_with(".part") {
                Finding::PartialFile { path, bytes }
            } else if recorded.contains(&format!("{prefix}{name}")) {
                continue;
            } else if kept.contains(&format!("{prefix}{name}")) {
                self.summary.files_of_purged_rows += 1;
                continue;
            } else {
                self.unrecorded.insert(name);
                Finding::FileWithoutRow { path, bytes }
            };
            let modified = meta
                .modified()
                .ok()
                .map(|t| DateTime::<Utc>::from(t).naive_utc());
            let status = match self.recent.keeps(&relative, modified) {
                Some(reason) => Status::Pending(reason),
                None => self.remove_file(&finding, &relative)?,
            };
            self.push(finding, status);
        }
        Ok(())
    }

    /// Removes a partial file, or a file without a row once its row is known to be absent still.
    fn remove_file(
        &mut self,
        finding: &Finding,
        relative: &Path,
    ) -> Result<Status, ReconcileError> {
        let (Finding::PartialFile { path, .. } | Finding::FileWithoutRow { path, .. }) = finding
        else {
            unreachable!("only files are removed");
        };
        if !self.options.execute {
            return Ok(Status::Found);
        }
        if matches!(finding, Finding::FileWithoutRow { .. })
            && self.is_known(&self.mount.file_path(relative))?
        {
            return Ok(Status::Pending(
                "its Post row was recorded (or purged) meanwhile".into(),
            ));
        }
        Ok(match std::fs::remove_file(path) {
            Ok(()) => {
                if matches!(finding, Finding::FileWithoutRow { .. }) {
                    if let Some(link) = self.mount.name_link(path) {
                        remove_name_link(&link);
                    }
                }
                Status::Repaired
            }
            Err(e) => Status::Failed(format!("cannot remove it: {e}")),
        })
    }

    /// Every `Post` row's file, a page at a time.
    fn rows(&mut self) -> Result<(), ReconcileError> {
        let pattern = like_prefix(&format!("{}/", self.mount.directory.trim_end_matches('/')));
        let mut after = 0;
        loop {
            let page = self.post_page(&pattern, after)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.0;
            for (aft_index, file_path, file_size, sha256, marked) in page {
                self.summary.rows_checked += 1;
                if marked.as_deref() == Some(FileState::Expired.as_str()) {
                    self.summary.rows_of_expired_files += 1;
                    continue;
                }
                let found = self.check_row(&file_path, file_size, sha256.as_deref())?;
                let finding = match (found, marked) {
                    (None, None) => continue,
                    (None, Some(was))
                        if was == FileState::Digest.as_str() && !self.options.verify_content =>
                    {
                        self.summary.rows_marked_before += 1;
                        continue;
                    }
                    (None, Some(was)) => Finding::RowRight {
                        aft_index,
                        file_path,
                        was,
                    },
                    (Some((drift, _)), Some(was)) if drift.as_str() == was => {
                        self.summary.rows_marked_before += 1;
                        continue;
                    }
                    (Some((drift, detail)), _) => Finding::Row {
                        aft_index,
                        file_path,
                        drift,
                        detail,
                    },
                };
                let status = match self.options.execute {
                    false => Status::Found,
                    true => {
                        let state = match &finding {
                            Finding::Row { drift, .. } => Some(*drift),
                            _ => None,
                        };
                        self.mark(aft_index, state)?;
                        Status::Repaired
                    }
                };
                self.push(finding, status);
            }
        }
    }

    /// What is wrong with a row's file, if anything, and how.
    fn check_row(
        &mut self,
        file_path: &str,
        file_size: i64,
        sha256: Option<&str>,
    ) -> Result<Option<(FileState, String)>, ReconcileError> {
        let Ok(relative) = self.mount.relative(file_path) else {
            return Ok(None);
        };
        let path = self.mount.mount_point.join(relative);
        let meta = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some((FileState::Missing, "no file at file_path".into())))
            }
            Err(e) => return Err(ReconcileError::Read(path, e)),
            Ok(meta) => meta,
        };
        if i64::try_from(meta.len()) != Ok(file_size) {
            return Ok(Some((
                FileState::Size,
                format!(
                    "the file has {} bytes, the row says {file_size}",
                    meta.len()
                ),
            )));
        }
        let Some(recorded) = sha256.filter(|_| self.options.verify_content) else {
            return Ok(None);
        };
        let found = file_sha256(&path).map_err(|e| ReconcileError::Read(path, e))?;
        self.summary.bytes_verified += meta.len();
        Ok((found != recorded).then(|| {
            (
                FileState::Digest,
                format!("the file's SHA-256 is {found}, the row says {recorded}"),
            )
        }))
    }

    /// httpd's slot records, each against the file it names.
    fn slots(&mut self) -> Result<(), ReconcileError> {
        let dir = self.mount.mount_point.join(mft_config::SLOTS_DIR);
        if !dir.is_dir() {
            return Ok(());
        }
        for entry in read_dir(&dir)? {
            let record = entry.path();
            if record.extension().is_none_or(|e| e != "json") {
                continue;
            }
            self.summary.slot_records_checked += 1;
            let slot: SlotRecord =
                match std::fs::read(&record).map(|bytes| serde_json::from_slice(&bytes)) {
                    Ok(Ok(slot)) => slot,
                    Ok(Err(e)) => {
                        log::warn!("{} is not a slot record: {e}", record.display());
                        continue;
                    }
                    Err(e) => return Err(ReconcileError::Read(record, e)),
                };
            let relative = PathBuf::from(&slot.location);
            // An expired slot's record is httpd's to remove, once it marked the row `expired`.
            if slot.purged
                || slot.expires.is_some_and(|expires| expires <= self.now)
                || self.mount.mount_point.join(&relative).exists()
            {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| DateTime::<Utc>::from(t).naive_utc());
            let status = match self.recent.keeps(&relative, modified) {
                Some(reason) => Status::Pending(reason),
                None if !self.options.execute => Status::Found,
                None => match std::fs::remove_file(&record) {
                    Ok(()) => Status::Repaired,
                    Err(e) => Status::Failed(format!("cannot remove it: {e}")),
                },
            };
            self.push(
                Finding::SlotWithoutFile {
                    record,
                    location: slot.location,
                },
                status,
            );
        }
        Ok(())
    }

    /// The real-name links, a batch at a time against the file names that rows know.
    fn name_links(&mut self) -> Result<(), ReconcileError> {
        let dir = self.mount.mount_point.join(mft_config::NAMES_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            entries => entries.map_err(|e| ReconcileError::Read(dir.clone(), e))?,
        };
        let mut batch = Vec::with_capacity(LINK_BATCH);
        for entry in entries {
            batch.push(entry.map_err(|e| ReconcileError::Read(dir.clone(), e))?);
            if batch.len() == LINK_BATCH {
                self.link_batch(std::mem::take(&mut batch))?;
            }
        }
        self.link_batch(batch)
    }

    fn link_batch(&mut self, batch: Vec<std::fs::DirEntry>) -> Result<(), ReconcileError> {
        let names: Vec<String> = batch
            .iter()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        let known = self.known_names(&names)?;
        for (entry, name) in batch.into_iter().zip(names) {
            self.summary.name_links_checked += 1;
            if known.contains(&name) || self.unrecorded.contains(&name) {
                continue;
            }
            let link = entry.path();
            // The link's own time (DirEntry::metadata does not follow it).
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| DateTime::<Utc>::from(t).naive_utc());
            let status = match self
                .recent
                .keeps(&Path::new(mft_config::NAMES_DIR).join(&name), modified)
            {
                Some(reason) => Status::Pending(reason),
                None if !self.options.execute => Status::Found,
                None => match std::fs::remove_file(&link) {
                    Ok(()) => Status::Repaired,
                    Err(e) => Status::Failed(format!("cannot remove it: {e}")),
                },
            };
            self.push(Finding::NameLinkWithoutRow { link }, status);
        }
        Ok(())
    }

    fn push(&mut self, finding: Finding, status: Status) {
        let summary = &mut self.summary;
        match &status {
            Status::Pending(_) => summary.pending += 1,
            Status::Repaired => summary.repaired += 1,
            Status::Found | Status::Failed(_) => summary.remaining += 1,
        }
        if !matches!(status, Status::Pending(_)) {
            summary.drift += 1;
        }
        self.entries.push(Entry { finding, status });
    }

    /// The `file_path` of each `Post` row that starts with `prefix`.
    fn post_paths(&mut self, prefix: &str) -> QueryResult<Vec<String>> {
        let query = aft_log::table
            .filter(aft_log::method.eq(Method::Post.as_str()))
            .filter(aft_log::file_path.like(like_prefix(prefix)).escape('\\'))
            .select(aft_log::file_path);
        match &mut self.conn {
            AnyConnection::Postgres(pg) => query.load(pg),
            AnyConnection::Sqlite(sqlite) => query.load(sqlite),
        }
    }

    /// The `file_path` of each file kept by a purge of its row that starts with `prefix`.
    fn kept_paths(&mut self, prefix: &str) -> QueryResult<Vec<String>> {
        let query = aft_kept_file::table
            .filter(
                aft_kept_file::file_path
                    .like(like_prefix(prefix))
                    .escape('\\'),
            )
            .select(aft_kept_file::file_path);
        match &mut self.conn {
            AnyConnection::Postgres(pg) => query.load(pg),
            AnyConnection::Sqlite(sqlite) => query.load(sqlite),
        }
    }

    /// Those of `names` that a `Post` row's `filename` or a purge's record names.
    fn known_names(&mut self, names: &[String]) -> QueryResult<HashSet<String>> {
        let rows = aft_log::table
            .filter(aft_log::method.eq(Method::Post.as_str()))
            .filter(aft_log::filename.eq_any(names))
            .select(aft_log::filename);
        let kept = aft_kept_file::table
            .filter(aft_kept_file::filename.eq_any(names))
            .select(aft_kept_file::filename);
        let (rows, kept): (Vec<String>, Vec<String>) = match &mut self.conn {
            AnyConnection::Postgres(pg) => (rows.load(pg)?, kept.load(pg)?),
            AnyConnection::Sqlite(sqlite) => (rows.load(sqlite)?, kept.load(sqlite)?),
        };
        Ok(rows.into_iter().chain(kept).collect())
    }

    /// Whether a `Post` row names `file_path`, or a purge kept it after deleting its row.
    fn is_known(&mut self, file_path: &str) -> QueryResult<bool> {
        let row = aft_log::table
            .filter(aft_log::method.eq(Method::Post.as_str()))
            .filter(aft_log::file_path.eq(file_path))
            .select(aft_log::aft_index);
        let kept = aft_kept_file::table
            .filter(aft_kept_file::file_path.eq(file_path))
            .select(aft_kept_file::filename);
        let (row, kept): (Option<i64>, Option<String>) = match &mut self.conn {
            AnyConnection::Postgres(pg) => (row.first(pg).optional()?, kept.first(pg).optional()?),
            AnyConnection::Sqlite(sqlite) => (
                row.first(sqlite).optional()?,
                kept.first(sqlite).optional()?,
            ),
        };
        Ok(row.is_some() || kept.is_some())
    }

    /// `Post` rows after `after` whose `file_path` matches `pattern`: index, path, size, digest
    /// and mark.
    #[allow(clippy::type_complexity)]
    fn post_page(
        &mut self,
        pattern: &str,
        after: i64,
    ) -> QueryResult<Vec<(i64, String, i64, Option<String>, Option<String>)>> {
        let query = aft_log::table
            .filter(aft_log::method.eq(Method::Post.as_str()))
            .filter(aft_log::aft_index.gt(after))
            .filter(aft_log::file_path.like(pattern).escape('\\'))
            .order(aft_log::aft_index)
            .limit(PAGE_ROWS)
            .select((
                aft_log::aft_index,
                aft_log::file_path,
                aft_log::file_size,
                aft_log::sha256,
                aft_log::file_state,
            ));
        match &mut self.conn {
            AnyConnection::Postgres(pg) => query.load(pg),
            AnyConnection::Sqlite(sqlite) => query.load(sqlite),
        }
    }

    /// Sets (or with `None` clears) a row's mark.
    fn mark(&mut self, aft_index: i64, state: Option<FileState>) -> QueryResult<()> {
        let update = diesel::update(aft_log::table.filter(aft_log::aft_index.eq(aft_index)))
            .set(aft_log::file_state.eq(state.map(FileState::as_str)));
        match &mut self.conn {
            AnyConnection::Postgres(pg) => update.execute(pg)?,
            AnyConnection::Sqlite(sqlite) => update.execute(sqlite)?,
        };
        Ok(())
    }
}

/// What reconcile reads of httpd's slot record (httpd's `slot_index` owns the format).
#[derive(Debug, Deserialize)]
struct SlotRecord {
    /// `files/<chat_type>/<YYYYMMDD>/<HH[.n]>/<file_name>`.
    location: String,
    #[serde(default)]
    purged: bool,
    /// When the slot's file expires: httpd removes it then, marks its row and then the record.
    #[serde(default)]
    expires: Option<DateTime<Utc>>,
}

/// The hour directories under `files/`: `<chat_type>/<YYYYMMDD>/<HH[.n]>`; none before the
/// node's first upload.
fn hour_directories(files: &Path) -> Result<Vec<PathBuf>, ReconcileError> {
    if !files.exists() {
        return Ok(Vec::new());
    }
    let mut level = vec![files.to_owned()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in level {
            for entry in read_dir(&dir)? {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    level.sort();
    Ok(level)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ReconcileError> {
    let read = |dir: &Path| std::fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>();
    read(dir).map_err(|e| ReconcileError::Read(dir.to_owned(), e))
}

/// The SHA-256 of a file's content, lowercase hex, read in 1 MiB pieces.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

impl Report {
    /// The report for people: a line per finding, then the counts.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            let status = match &entry.status {
                Status::Found => "found".to_owned(),
                Status::Repaired => "repaired".to_owned(),
                Status::Pending(why) => format!("pending ({why})"),
                Status::Failed(why) => format!("not repaired ({why})"),
            };
            let what = match &entry.finding {
                Finding::PartialFile { path, bytes } => {
                    format!("partial file {} ({bytes} bytes)", path.display())
                }
                Finding::FileWithoutRow { path, bytes } => {
                    format!("file without a Post row {} ({bytes} bytes)", path.display())
                }
                Finding::Row {
                    aft_index,
                    file_path,
                    drift,
                    detail,
                } => {
                    format!("row {aft_index} {file_path}: {} ({detail})", drift.as_str())
                }
                Finding::RowRight {
                    aft_index,
                    file_path,
                    was,
                } => format!("row {aft_index} {file_path}: marked {was}, its file is right again"),
                Finding::SlotWithoutFile { record, location } => format!(
                    "slot record {} without its file {location}",
                    record.display()
                ),
                Finding::NameLinkWithoutRow { link } => {
                    format!("real-name link without a Post row {}", link.display())
                }
            };
            out += &format!("{status}: {what}\n");
        }
        let s = &self.summary;
        let note = if self.executed {
            ""
        } else {
            " (dry run: add --execute to repair)"
        };
        out += &format!(
            "drift: {}, repaired: {}, remaining: {}{note}; pending: {}; rows marked before: {}; expired files: {}; files of purged rows: {}; checked: {} files, {} Post rows, {} slot records, {} name links, {} bytes re-read\n",
            s.drift, s.repaired, s.remaining, s.pending, s.rows_marked_before, s.rows_of_expired_files, s.files_of_purged_rows, s.files_checked, s.rows_checked, s.slot_records_checked, s.name_links_checked, s.bytes_verified
        );
        out
    }
}
