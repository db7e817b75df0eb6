//! `logd purge`: the seed's purge use cases as one command. It selects `aft_log` rows by method,
//! user (JID prefix, like the seed's `jid LIKE '<userid>@<domain>%'`), chat type and time; lists
//! them (the default, a dry run) or deletes them (`execute`); and, when asked, first deletes
//! through the mount the files of the `Post` rows it purges.
//!
//! Safety rules, all here and all tested:
//! - nothing of the current UTC hour is touched: rows whose `timestampvalue` is in it are never
//!   selected, and a file whose hour directory (`files/<chat>/<YYYYMMDD>/<HH>[.n]/`) is the
//!   current hour, or whose modification time is in it, is kept together with its row;
//! - a selection is required (`all` says "everything" explicitly);
//! - a file is deleted only if its `file_path` lies under `file_server.directory`, mapped to the
//!   same place under the mount point; any other path is refused and its row kept;
//! - files go first, then the rows in one transaction: a crash in between leaves rows of
//!   missing files (harmless, the next purge removes them), never files nobody knows of. A file
//!   that cannot be deleted keeps its row, so the purge can be run again.
//!
//! Rows are read and purged in pages of at most [`PAGE_ROWS`] (keyset by `aft_index`), each
//! page with its own file deletions and row transaction, so any number of rows purges in
//! constant memory; [`run_pages`] hands each page's report over as it is done.
//!
//! The schema is verified before anything is read. Rows are matched by `aft_index`, and only
//! rows that existed when the purge started are considered, so rows inserted while the purge
//! runs are never deleted by it.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{aft_kept_file, aft_log, AftRecord};
use crate::db::{self, like_prefix, AnyConnection, DbError};
use crate::mount::{current_hour, hour_directory, remove_name_link, Mount};
use crate::row::Method;

/// Rows per DELETE statement (bound parameters stay under both backends' limits).
const DELETE_CHUNK: usize = 1000;

/// Rows one page of a purge reads (and deletes) at most.
pub const PAGE_ROWS: usize = 10_000;

/// Which rows to purge; all given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `Post` or `Get`.
    pub method: Option<String>,
    /// Rows whose `jid` starts with this text.
    pub jid_prefix: Option<String>,
    pub chat_type: Option<String>,
    /// Rows strictly older than this UTC time.
    pub before: Option<NaiveDateTime>,
    /// Rows strictly newer than this UTC time (the seed's `timestampvalue > '…'`).
    pub after: Option<NaiveDateTime>,
    /// Purge every row (older than the current hour) if no other condition is given.
    pub all: bool,
}

impl Selection {
    fn has_condition(&self) -> bool {
        self.method.is_some()
            || self.jid_prefix.is_some()
            || self.chat_type.is_some()
            || self.before.is_some()
            || self.after.is_some()
    }
}

/// Why a purge did not run.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("say which rows to purge (--method, --jid, --chat-type, --before, --after), or --all for every row")]
    NoSelection,
    #[error("the mount point {0} is not a directory: is fsd running?")]
    NoMount(PathBuf),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Schema(#[from] DbError),
    #[error("the database failed: {0}")]
    Database(#[from] diesel::result::Error),
}

/// What one page of a purge did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgePage {
    pub rows: Vec<PurgedRow>,
    pub files: Vec<PurgedFile>,
    /// Rows left in place (with their files), and why.
    pub kept: Vec<KeptRow>,
}

/// How a whole purge ended: its totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeOutcome {
    /// False for a dry run: nothing was deleted.
    pub executed: bool,
    /// Rows of the current UTC hour and later are never purged.
    pub cutoff: String,
    pub summary: Summary,
}

/// What a purge did (or, in a dry run, would do): every page's lists together, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// False for a dry run: nothing was deleted.
    pub executed: bool,
    /// Rows of the current UTC hour and later are never purged.
    pub cutoff: String,
    pub rows: Vec<PurgedRow>,
    pub files: Vec<PurgedFile>,
    /// Rows left in place (with their files), and why.
    pub kept: Vec<KeptRow>,
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgedRow {
    pub aft_index: i64,
    pub method: String,
    pub jid: String,
    pub chat_type: String,
    pub timestampvalue: String,
    pub file_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgedFile {
    pub aft_index: i64,
    /// The file under the mount point.
    pub path: PathBuf,
    pub bytes: u64,
    /// Its real-name link (`.names/<file_name>` under the mount point), deleted with it; `None`
    /// for a file outside the seed's layout, which httpd never stored.
    pub name_link: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptRow {
    pub aft_index: i64,
    pub file_path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    /// Post rows purged whose file was already gone.
    pub files_missing: u64,
    pub kept: u64,
}

/// Purges what `selection` names from the database `config`, with its files if `files` is
/// given; deletes only if `execute`. `now` decides the current UTC hour. Returns the report of
/// every page together: for a purge of any size, [`run_pages`] keeps memory constant.
pub fn run(
    config: &mft_config::Database,
    selection: &Selection,
    files: Option<&Mount>,
    execute: bool,
    now: DateTime<Utc>,
) -> Result<PurgeReport, PurgeError> {
    let mut all = PurgePage::default();
    let outcome = run_pages(config, selection, files, execute, now, PAGE_ROWS, |page| {
        all.rows.extend(page.rows);
        all.files.extend(page.files);
        all.kept.extend(page.kept);
    })?;
    Ok(PurgeReport {
        executed: outcome.executed,
        cutoff: outcome.cutoff,
        rows: all.rows,
        files: all.files,
        kept: all.kept,
        summary: outcome.summary,
    })
}

/// [`run`], [`PAGE_ROWS`] rows (`page_rows` in tests) at a time, oldest `aft_index` first:
/// each page's files, then its rows, are deleted before the next page is read, and its report
/// goes to `each_page`. Returns the totals.
pub fn run_pages(
    config: &mft_config::Database,
    selection: &Selection,
    files: Option<&Mount>,
    execute: bool,
    now: DateTime<Utc>,
    page_rows: usize,
    mut each_page: impl FnMut(PurgePage),
) -> Result<PurgeOutcome, PurgeError> {
    if !selection.has_condition() && !selection.all {
        return Err(PurgeError::NoSelection);
    }
    if let Some(mount) = files {
        if !mount.mount_point.is_dir() {
            return Err(PurgeError::NoMount(mount.mount_point.clone()));
        }
    }
    let mut conn = db::connect(config)?;
    db::verify_schema(&mut conn)?;
    let hour = current_hour(now);
    let mut summary = Summary::default();
    let mut keyset = Keyset {
        after: 0,
        last: last_index(&mut conn)?,
        limit: page_rows.max(1),
    };
    loop {
        let rows = select(&mut conn, selection, hour, &keyset)?;
        let Some((newest, _)) = rows.last() else {
            break;
        };
        keyset.after = *newest;
        let mut plan = Plan::default();
        for (aft_index, row) in rows {
            match files.filter(|_| row.method == Method::Post.as_str()) {
                Some(mount) => plan.with_file(aft_index, row, mount, hour),
                None => plan.rows.push((aft_index, row)),
            }
        }
        if execute {
            plan.delete_files();
            // Without --delete-files the files stay: each is listed as kept, for reconcile.
            delete_rows(
                &mut conn,
                &plan.rows,
                files.is_none().then(|| now.naive_utc()),
            )?;
        }
        let page = plan.into_page(&mut summary);
        each_page(page);
    }
    Ok(PurgeOutcome {
        executed: execute,
        cutoff: hour.to_string(),
        summary,
    })
}

/// Which page [`select`] reads: rows after `after`, up to `last`, at most `limit` of them.
struct Keyset {
    after: i64,
    last: i64,
    limit: usize,
}

/// The newest `aft_index` when the purge starts (0 for an empty table): rows inserted later are
/// left alone.
fn last_index(conn: &mut AnyConnection) -> QueryResult<i64> {
    let query = aft_log::table.select(diesel::dsl::max(aft_log::aft_index));
    let last: Option<i64> = match conn {
        AnyConnection::Postgres(pg) => query.first(pg)?,
        AnyConnection::Sqlite(sqlite) => query.first(sqlite)?,
    };
    Ok(last.unwrap_or(0))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f]` (UTC, as `timestampvalue` is written) or RFC 3339.
pub fn parse_time(text: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc).naive_utc()))
        .map_err(|_| {
            format!("{text:?} is not a UTC time like \"2014-12-18 11:58:39\" or \"2014-12-18T11:58:39Z\"")
        })
}

/// One page of the rows selected, oldest index first; never those of the current hour or later.
fn select(
    conn: &mut AnyConnection,
    selection: &Selection,
    hour: NaiveDateTime,
    page: &Keyset,
) -> QueryResult<Vec<(i64, AftRecord)>> {
    let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
    let pattern = selection.jid_prefix.as_deref().map(like_prefix);
    macro_rules! load {
        ($conn:expr, $backend:ty) => {{
            let mut query = aft_log::table
                .into_boxed::<$backend>()
                .filter(aft_log::aft_index.gt(page.after))
                .filter(aft_log::aft_index.le(page.last))
                .filter(aft_log::timestampvalue.lt(hour));
            if let Some(method) = &selection.method {
                query = query.filter(aft_log::method.eq(method));
            }
            if let Some(pattern) = &pattern {
                query = query.filter(aft_log::jid.like(pattern).escape('\\'));
            }
            if let Some(chat_type) = &selection.chat_type {
                query = query.filter(aft_log::chat_type.eq(chat_type));
            }
            if let Some(before) = selection.before {
                query = query.filter(aft_log::timestampvalue.lt(before));
            }
            if let Some(after) = selection.after {
                query = query.filter(aft_log::timestampvalue.gt(after));
            }
            query
                .order(aft_log::aft_index)
                .limit(limit)
                .select((aft_log::aft_index, AftRecord::as_select()))
                .load($conn)
        }};
    }
    match conn {
        AnyConnection::Postgres(pg) => load!(pg, diesel::pg::Pg),
        AnyConnection::Sqlite(sqlite) => load!(sqlite, diesel::sqlite::Sqlite),
    }
}

/// Deletes the rows (of one page) in one transaction; with `files_kept_at`, also lists the
/// files of its `Post` rows in `aft_kept_file`, as kept at that time.
fn delete_rows(
    conn: &mut AnyConnection,
    rows: &[(i64, AftRecord)],
    files_kept_at: Option<NaiveDateTime>,
) -> QueryResult<()> {
    let indexes: Vec<i64> = rows.iter().map(|(i, _)| *i).collect();
    let kept: Vec<_> = match files_kept_at {
        None => Vec::new(),
        Some(purged) => rows
            .iter()
            .filter(|(_, row)| row.method == Method::Post.as_str())
            .map(|(_, row)| {
                (
                    aft_kept_file::filename.eq(&row.filename),
                    aft_kept_file::file_path.eq(&row.file_path),
                    aft_kept_file::purged.eq(purged),
                )
            })
            .collect(),
    };
    conn.transaction(|conn| {
        for chunk in kept.chunks(DELETE_CHUNK) {
            let insert = diesel::insert_into(aft_kept_file::table)
                .values(chunk)
                .on_conflict_do_nothing();
            match conn {
                AnyConnection::Postgres(pg) => insert.execute(pg)?,
                AnyConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
            };
        }
        for chunk in indexes.chunks(DELETE_CHUNK) {
            let delete = diesel::delete(aft_log::table.filter(aft_log::aft_index.eq_any(chunk)));
            match conn {
                AnyConnection::Postgres(pg) => delete.execute(pg)?,
                AnyConnection::Sqlite(sqlite) => delete.execute(sqlite)?,
            };
        }
        Ok(())
    })
}

/// The rows and files to purge, and what is kept.
#[derive(Debug, Default)]
struct Plan {
    rows: Vec<(i64, AftRecord)>,
    files: Vec<PurgedFile>,
    kept: Vec<KeptRow>,
    missing: u64,
}

impl Plan {
    /// Plans a Post row whose file goes with it, or keeps both if the file must not go.
    fn with_file(&mut self, aft_index: i64, row: AftRecord, mount: &Mount, hour: NaiveDateTime) {
        let keep = |plan: &mut Self, row: AftRecord, reason: String| {
            plan.kept.push(KeptRow {
                aft_index,
                file_path: row.file_path,
                reason,
            })
        };
        let path = match local_path(&row.file_path, mount, hour) {
            Ok(path) => path,
            Err(reason) => return keep(self, row, reason),
        };
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.missing += 1,
            Err(e) => return keep(self, row, format!("cannot stat {}: {e}", path.display())),
            Ok(meta) if !meta.is_file() => {
                return keep(
                    self,
                    row,
                    format!("{} is not a regular file", path.display()),
                )
            }
            Ok(meta) => {
                let modified = meta
                    .modified()
                    .ok()
                    .map(|t| DateTime::<Utc>::from(t).naive_utc());
                if modified.is_some_and(|m| m >= hour) {
                    return keep(
                        self,
                        row,
                        "the file was modified in the current UTC hour".into(),
                    );
                }
                self.files.push(PurgedFile {
                    aft_index,
                    name_link: mount.name_link(&path),
                    path,
                    bytes: meta.len(),
                });
            }
        }
        self.rows.push((aft_index, row));
    }

    /// Deletes the planned files, each with its name link; a file that cannot be deleted keeps
    /// its row (and its link). A link that cannot be deleted is only logged: the file is gone,
    /// and a dangling link names nothing (its random file name is never reused).
    fn delete_files(&mut self) {
        let mut failed = Vec::new();
        self.files
            .retain(|file| match std::fs::remove_file(&file.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    failed.push((
                        file.aft_index,
                        format!("cannot delete {}: {e}", file.path.display()),
                    ));
                    false
                }
                _ => {
                    if let Some(link) = &file.name_link {
                        remove_name_link(link);
                    }
                    true
                }
            });
        for (aft_index, reason) in failed {
            if let Some(at) = self.rows.iter().position(|(i, _)| *i == aft_index) {
                let (_, row) = self.rows.remove(at);
                self.kept.push(KeptRow {
                    aft_index,
                    file_path: row.file_path,
                    reason,
                });
            }
        }
    }

    /// The page's report; its counts are added to `summary`.
    fn into_page(self, summary: &mut Summary) -> PurgePage {
        summary.rows += self.rows.len() as u64;
        summary.files += self.files.len() as u64;
        summary.bytes += self.files.iter().map(|f| f.bytes).sum::<u64>();
        summary.files_missing += self.missing;
        summary.kept += self.kept.len() as u64;
        PurgePage {
            rows: self
                .rows
                .into_iter()
                .map(|(aft_index, r)| PurgedRow {
                    aft_index,
                    method: r.method,
                    jid: r.jid,
                    chat_type: r.chat_type,
                    timestampvalue: r.timestampvalue.to_string(),
                    file_path: r.file_path,
                })
                .collect(),
            files: self.files,
            kept: self.kept,
        }
    }
}

/// Where `file_path` (a path on the file server) is under the mount, if it is a file of this
/// node's directory and not in the current hour's directory.
fn local_path(file_path: &str, mount: &Mount, hour: NaiveDateTime) -> Result<PathBuf, String> {
    let relative = mount.relative(file_path)?;
    if hour_directory(&relative) == Some(hour) {
        return Err("in the current UTC hour's directory".into());
    }
    Ok(mount.mount_point.join(relative))
}

impl PurgePage {
    /// The page for people: what goes, then what stays, one line each.
    pub fn text(&self, executed: bool) -> String {
        page_text(&self.rows, &self.files, &self.kept, executed)
    }
}

impl PurgeOutcome {
    /// The totals for people, one line.
    pub fn text(&self) -> String {
        summary_text(&self.summary, self.executed, &self.cutoff)
    }
}

impl PurgeReport {
    /// The report for people: what goes, what stays, and the counts.
    pub fn text(&self) -> String {
        page_text(&self.rows, &self.files, &self.kept, self.executed)
            + &summary_text(&self.summary, self.executed, &self.cutoff)
    }
}

fn page_text(rows: &[PurgedRow], files: &[PurgedFile], kept: &[KeptRow], executed: bool) -> String {
    let verb = if executed { "deleted" } else { "would delete" };
    let mut out = String::new();
    for row in rows {
        out += &format!(
            "{verb} row {} {} {} {} {} {}\n",
            row.aft_index, row.method, row.timestampvalue, row.jid, row.chat_type, row.file_path
        );
    }
    for file in files {
        out += &format!(
            "{verb} file {} ({} bytes)\n",
            file.path.display(),
            file.bytes
        );
    }
    for kept in kept {
        out += &format!(
            "kept row {} {}: {}\n",
            kept.aft_index, kept.file_path, kept.reason
        );
    }
    out
}

fn summary_text(s: &Summary, executed: bool, cutoff: &str) -> String {
    let (rows, files, bytes, note) = match executed {
        true => ("rows deleted", "files deleted", "bytes freed", ""),
        false => (
            "rows to delete",
            "files to delete",
            "bytes to free",
            " (dry run: add --execute to delete)",
        ),
    };
    format!(
        "{rows}: {}, {files}: {}, {bytes}: {}{note}; rows kept: {}, files already gone: {}; \
         nothing at or after {cutoff} UTC is touched\n",
        s.rows, s.files, s.bytes, s.kept, s.files_missing,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        parse_time(text).unwrap()
    }

    #[test]
    fn times_are_utc_in_either_form() {
        assert_eq!(at("2014-12-18 11:58:39").to_string(), "2014-12-18 11:58:39");
        assert_eq!(
            at("2014-12-18 11:58:39.25").to_string(),
            "2014-12-18 11:58:39.250"
        );
        assert_eq!(
            at("2014-12-18T12:58:39+01:00").to_string(),
            "2014-12-18 11:58:39"
        );
        assert!(parse_time("18/12/2014")
            .unwrap_err()
            .contains("2014-12-18 11:58:39"));
    }

    #[test]
    fn files_of_the_current_hour_directory_are_never_purged() {
        let hour = at("2025-01-02 04:00:00");
        let m = Mount {
            directory: "/opt/mftFileStore/node_1/".into(),
            mount_point: "/var/lib/mft/store".into(),
        };
        let path = |hour_dir: &str| {
            local_path(
                &format!("/opt/mftFileStore/node_1/files/im/20250102/{hour_dir}/abc"),
                &m,
                hour,
            )
        };
        assert_eq!(
            path("03"),
            Ok(PathBuf::from("/var/lib/mft/store/files/im/20250102/03/abc"))
        );
        assert_eq!(
            path("04.2"),
            Err("in the current UTC hour's directory".into())
        );
        assert!(local_path(
            "/opt/mftFileStore/node_2/files/im/20250102/03/abc",
            &m,
            hour
        )
        .is_err());
    }

    #[test]
    fn a_selection_is_required() {
        let config = mft_config::Database {
            url: "/nonexistent/aft_log.sqlite3".into(),
            ..Default::default()
        };
        assert!(matches!(
            run(&config, &Selection::default(), None, false, Utc::now()),
            Err(PurgeError::NoSelection)
        ));
    }

    #[test]
    fn the_text_report_counts_what_goes() {
        let report = PurgeReport {
            executed: false,
            cutoff: "2025-01-02 04:00:00".into(),
            rows: vec![PurgedRow {
                aft_index: 7,
                method: "Post".into(),
                jid: "a@x".into(),
                chat_type: "im".into(),
                timestampvalue: "2025-01-02 03:00:00".into(),
                file_path: "/d/files/im/20250102/03/f".into(),
            }],
            files: vec![PurgedFile {
                aft_index: 7,
                path: "/m/files/im/20250102/03/f".into(),
                bytes: 10,
                name_link: Some("/m/.names/f".into()),
            }],
            kept: vec![],
            summary: Summary {
                rows: 1,
                files: 1,
                bytes: 10,
                ..Default::default()
            },
        };
        let text = report.text();
        assert!(
            text.starts_with(
                "would delete row 7 Post 2025-01-02 03:00:00 a@x im /d/files/im/20250102/03/f\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("would delete file /m/files/im/20250102/03/f (10 bytes)\n"),
            "{text}"
        );
        assert!(
            text.contains("rows to delete: 1, files to delete: 1, bytes to free: 10 (dry run"),
            "{text}"
        );
    }
}
