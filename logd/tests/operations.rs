//! The operator commands against real databases: `logd purge` and `logd reconcile` (the library
//! calls behind them) on SQLite and PostgreSQL with a temporary directory standing in for the
//! mount, and the `logd check` and `logd reconcile` binaries' output and exit status.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use logd::db::schema::{aft_kept_file, aft_log, AftRecord};
use logd::mount::Mount;
use logd::purge::{self, PurgeError, Selection};
use logd::reconcile;
use logd::{Method, Transfer};
use mft_config::fixture::NodeConfigText;
use mft_config::NAMES_DIR;

use common::{sample, Backend, TestDb};

const DIRECTORY: &str = "/opt/mftFileStore/node_1";

/// A Post or Get row at `when`, for the file `relative` (under the node's directory).
fn row_at(method: Method, jid: &str, chat_type: &str, when: &str, relative: &str) -> AftRecord {
    let t = Transfer {
        jid: jid.into(),
        filename: relative.rsplit('/').next().unwrap().into(),
        real_filename: "a.txt".into(),
        file_type: "txt".into(),
        chat_type: chat_type.parse().unwrap(),
        file_path: format!("{DIRECTORY}/{relative}"),
        file_size: 5,
        bytes_transferred: 5,
        timestamp: purge::parse_time(when).unwrap().and_utc(),
        ..sample::transfer()
    };
    AftRecord::from(&sample::row(method, t))
}

/// Inserts `rows` in order, one statement each (what the multi-backend connection can build).
fn insert(db: &TestDb, rows: &[AftRecord]) {
    let mut conn = db.connect();
    for row in rows {
        diesel::insert_into(aft_log::table)
            .values(row)
            .execute(&mut conn)
            .unwrap();
    }
}

/// The real-name link of the file at `relative` under the mount.
fn name_link(mount: &Path, relative: &str) -> std::path::PathBuf {
    mount
        .join(NAMES_DIR)
        .join(relative.rsplit('/').next().unwrap())
}

/// Writes `bytes` bytes at `relative` under the mount, last modified a day ago, with its
/// real-name link `.names/<file name>` as httpd stores it (a partial file has none).
fn file(mount: &Path, relative: &str, bytes: usize) {
    let path = mount.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![b'x'; bytes]).unwrap();
    if !relative.ends_with(".part") {
        std::fs::create_dir_all(mount.join(NAMES_DIR)).unwrap();
        std::os::unix::fs::symlink("report.pdf", name_link(mount, relative)).unwrap();
    }
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
}

async fn purges_rows_and_files_but_never_the_current_hour(backend: Backend) {
    let db = TestDb::new(backend);
    drop(logd::db::Database::open(&db.config).unwrap()); // migrated
    let now = Utc::now();
    let this_hour = now.format("%Y-%m-%d %H:%M:%S").to_string();
    let hour_dir = now.format("%Y%m%d/%H").to_string();
    let rows = [
        row_at(
            Method::Post,
            "alice@example.com/desk",
            "im",
            "2014-12-18 11:00:00",
            "files/im/20141218/11/old1",
        ),
        row_at(
            Method::Post,
            "bob@example.com",
            "groupchat",
            "2014-12-18 12:00:00",
            "files/groupchat/20141218/12/old2",
        ),
        row_at(
            Method::Post,
            "carol@example.com",
            "im",
            "2014-12-18 13:00:00",
            "files/im/20141218/13/gone",
        ),
        row_at(
            Method::Post,
            "dave@example.com",
            "im",
            &this_hour,
            &format!("files/im/{hour_dir}/fresh"),
        ),
        row_at(
            Method::Post,
            "erin@example.com",
            "im",
            "2014-12-18 11:00:00",
            &format!("files/im/{hour_dir}/skewed"),
        ),
        AftRecord {
            file_path: "/etc/passwd".into(),
            ..row_at(
                Method::Post,
                "mallory@example.com",
                "im",
                "2014-12-18 11:00:00",
                "x",
            )
        },
        row_at(
            Method::Get,
            "alice@example.com/phone",
            "im",
            "2014-12-19 08:00:00",
            "files/im/20141218/11/old1",
        ),
        row_at(
            Method::Get,
            "a_b@example.com",
            "im",
            "2014-12-19 08:00:00",
            "files/im/20141218/11/old1",
        ),
        row_at(
            Method::Get,
            "axb@example.com",
            "im",
            "2014-12-19 08:00:00",
            "files/im/20141218/11/old1",
        ),
    ];
    insert(&db, &rows);
    let inserted: Vec<i64> = db.rows().into_iter().map(|(i, _)| i).collect();
    let index = |i: usize| inserted[i];
    let mount_dir = tempfile::tempdir().unwrap();
    let mount = Mount {
        directory: format!("{DIRECTORY}/"),
        mount_point: mount_dir.path().to_owned(),
    };
    file(mount_dir.path(), "files/im/20141218/11/old1", 100);
    file(mount_dir.path(), "files/groupchat/20141218/12/old2", 20);
    file(mount_dir.path(), &format!("files/im/{hour_dir}/fresh"), 7);
    file(mount_dir.path(), &format!("files/im/{hour_dir}/skewed"), 9);

    assert!(matches!(
        purge::run(&db.config, &Selection::default(), None, true, now),
        Err(PurgeError::NoSelection)
    ));

    // Uploads with their files: first listed only.
    let posts = Selection {
        method: Some("Post".into()),
        ..Default::default()
    };
    let dry = purge::run(&db.config, &posts, Some(&mount), false, now).unwrap();
    assert!(!dry.executed);
    let listed: Vec<i64> = dry.rows.iter().map(|r| r.aft_index).collect();
    assert_eq!(listed, [index(0), index(1), index(2)]);
    assert_eq!(
        (dry.summary.rows, dry.summary.files, dry.summary.bytes),
        (3, 2, 120)
    );
    assert_eq!(dry.summary.files_missing, 1);
    let kept: Vec<(i64, &str)> = dry
        .kept
        .iter()
        .map(|k| (k.aft_index, k.reason.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            (index(4), "in the current UTC hour's directory"),
            (
                index(5),
                "not under the node's directory /opt/mftFileStore/node_1"
            ),
        ]
    );
    assert_eq!(db.rows().len(), rows.len(), "a dry run deletes nothing");
    assert!(mount_dir.path().join("files/im/20141218/11/old1").exists());
    assert!(name_link(mount_dir.path(), "old1").is_symlink());

    // Then done.
    let done = purge::run(&db.config, &posts, Some(&mount), true, now).unwrap();
    assert!(done.executed);
    assert_eq!(
        (done.summary.rows, done.summary.files, done.summary.bytes),
        (3, 2, 120)
    );
    assert!(!mount_dir.path().join("files/im/20141218/11/old1").exists());
    for gone in ["old1", "old2"] {
        assert!(
            !name_link(mount_dir.path(), gone).is_symlink(),
            "the name link of {gone} goes with the file"
        );
    }
    for kept in ["fresh", "skewed"] {
        assert!(name_link(mount_dir.path(), kept).is_symlink());
    }
    assert!(!mount_dir
        .path()
        .join("files/groupchat/20141218/12/old2")
        .exists());
    assert!(mount_dir
        .path()
        .join(format!("files/im/{hour_dir}/fresh"))
        .exists());
    assert!(mount_dir
        .path()
        .join(format!("files/im/{hour_dir}/skewed"))
        .exists());
    let left: Vec<i64> = db.rows().into_iter().map(|(i, _)| i).collect();
    assert_eq!(
        left,
        [index(3), index(4), index(5), index(6), index(7), index(8)]
    );

    // Downloads by one user: the prefix is literal (`_` is not a wildcard).
    let by_user = Selection {
        method: Some("Get".into()),
        jid_prefix: Some("a_b@example.com".into()),
        ..Default::default()
    };
    let done = purge::run(&db.config, &by_user, None, true, now).unwrap();
    assert_eq!(
        done.rows.iter().map(|r| r.aft_index).collect::<Vec<_>>(),
        [index(7)]
    );

    // Everything, explicitly: the current hour's row stays.
    let all = Selection {
        all: true,
        ..Default::default()
    };
    let done = purge::run(&db.config, &all, None, true, now).unwrap();
    assert_eq!(done.summary.rows, 4);
    let left: Vec<i64> = db.rows().into_iter().map(|(i, _)| i).collect();
    assert_eq!(left, [index(3)]);
    let json: serde_json::Value = serde_json::to_value(&done).unwrap();
    assert_eq!(json["summary"]["rows"], 4);
}

#[tokio::test]
async fn sqlite_purge() {
    purges_rows_and_files_but_never_the_current_hour(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_purge() {
    purges_rows_and_files_but_never_the_current_hour(Backend::Postgres).await;
}

/// A purge by time, as the seed's `timestampvalue > '…'`, and before a time.
#[tokio::test]
async fn sqlite_purge_by_time_and_chat_type() {
    let db = TestDb::new(Backend::Sqlite);
    drop(logd::db::Database::open(&db.config).unwrap());
    let rows = [
        row_at(
            Method::Post,
            "a@x",
            "im",
            "2014-12-18 11:58:39",
            "files/im/20141218/11/a",
        ),
        row_at(
            Method::Post,
            "a@x",
            "persistent",
            "2014-12-18 11:58:40",
            "files/persistent/20141218/11/b",
        ),
        row_at(
            Method::Post,
            "a@x",
            "im",
            "2014-12-18 11:58:41",
            "files/im/20141218/11/c",
        ),
    ];
    insert(&db, &rows);
    let now: DateTime<Utc> = Utc::now();
    let after = Selection {
        after: Some(purge::parse_time("2014-12-18 11:58:39").unwrap()),
        chat_type: Some("im".into()),
        ..Default::default()
    };
    let report = purge::run(&db.config, &after, None, true, now).unwrap();
    assert_eq!(
        report
            .rows
            .iter()
            .map(|r| r.file_path.as_str())
            .collect::<Vec<_>>(),
        [rows[2].file_path.as_str()]
    );
    let before = Selection {
        before: Some(purge::parse_time("2014-12-18T11:58:40Z").unwrap()),
        ..Default::default()
    };
    let report = purge::run(&db.config, &before, None, true, now).unwrap();
    assert_eq!(
        report
            .rows
            .iter()
            .map(|r| r.file_path.as_str())
            .collect::<Vec<_>>(),
        [rows[0].file_path.as_str()]
    );
    assert_eq!(db.rows().len(), 1);
    // The files of the purged rows stay (no --delete-files) and are listed as kept: reconcile
    // does not take them for files whose upload was never recorded.
    let mut kept: Vec<(String, String)> = aft_kept_file::table
        .select((aft_kept_file::filename, aft_kept_file::file_path))
        .load(&mut db.connect())
        .unwrap();
    kept.sort();
    assert_eq!(
        kept,
        [
            ("a".to_owned(), rows[0].file_path.clone()),
            ("c".to_owned(), rows[2].file_path.clone())
        ]
    );
    let mount_dir = tempfile::tempdir().unwrap();
    for relative in [
        "files/im/20141218/11/a",
        "files/persistent/20141218/11/b",
        "files/im/20141218/11/c",
    ] {
        file(mount_dir.path(), relative, 5);
    }
    let mount = Mount {
        directory: DIRECTORY.into(),
        mount_point: mount_dir.path().to_owned(),
    };
    let options = reconcile::Options {
        execute: true,
        verify_content: false,
        grace: chrono::Duration::minutes(60),
    };
    let report = reconcile::run(&db.config, &mount, &options, now).unwrap();
    assert_eq!(
        (report.summary.drift, report.summary.files_of_purged_rows),
        (0, 2),
        "{}",
        report.text()
    );
    assert!(mount_dir.path().join("files/im/20141218/11/a").exists());
}

/// A node configuration file for `db`.
fn config_file(db: &TestDb) -> std::path::PathBuf {
    let kind = match db.config.kind {
        mft_config::DatabaseKind::Sqlite => "sqlite",
        mft_config::DatabaseKind::Postgres => "postgres",
    };
    let text = NodeConfigText::new()
        .set("file_server", "directory", DIRECTORY)
        .set(
            "file_server",
            "mount_point",
            db.dir.path().join("mount").display().to_string(),
        )
        .set("database", "kind", kind)
        .set("database", "url", db.config.url.as_str())
        .set("http", "token_secrets", vec!["s".repeat(32)])
        .text();
    let path = db.dir.path().join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn logd_check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn check_prints_one_line_per_test_and_fails_on_any_failure() {
    let db = TestDb::new(Backend::Sqlite);
    let config = config_file(&db);
    let (ok, out) = logd_check(&config);
    assert!(!ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("PASS reachable: the directory "),
        "{out}"
    );
    assert!(
        lines[1].starts_with("FAIL connected: ") && lines[1].contains("does not exist"),
        "{out}"
    );
    assert_eq!(lines[2], "FAIL schema verified: not checked: no connection");

    drop(logd::db::Database::open(&db.config).unwrap());
    let (ok, out) = logd_check(&config);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        format!(
            "PASS reachable: the directory {} is writable\nPASS connected: SELECT 1 answered\n\
             PASS schema verified: aft_log has every column with its type and NOT NULL\n",
            db.dir.path().display()
        )
    );
}

#[test]
fn check_reports_an_unreachable_postgres() {
    let mut db = TestDb::new(Backend::Postgres);
    let config = config_file(&db);
    // The server is up but logd never ran: no table yet.
    let (ok, out) = logd_check(&config);
    assert!(!ok);
    assert!(
        out.contains("PASS reachable: TCP connection to 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("PASS connected"), "{out}");
    assert!(out.contains("FAIL schema verified: the aft_log table is not what logd expects: the table does not exist"), "{out}");
    db.postgres.as_mut().unwrap().kill();
    let (ok, out) = logd_check(&config);
    assert!(!ok);
    assert!(
        out.starts_with("FAIL reachable: no TCP connection to 127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("\nFAIL connected: "), "{out}");
}

/// More rows than one page: every page is listed (dry run), then purged, in aft_index order;
/// the totals cover every page.
#[tokio::test]
async fn sqlite_purge_in_pages() {
    let db = TestDb::new(Backend::Sqlite);
    drop(logd::db::Database::open(&db.config).unwrap());
    let rows: Vec<AftRecord> = (0..25)
        .map(|n| {
            row_at(
                Method::Get,
                &format!("user{n}@x"),
                "im",
                "2014-12-18 11:00:00",
                &format!("files/im/20141218/11/f{n}"),
            )
        })
        .collect();
    insert(&db, &rows);
    let all: Vec<i64> = db.rows().into_iter().map(|(i, _)| i).collect();
    let gets = Selection {
        method: Some("Get".into()),
        ..Default::default()
    };
    for execute in [false, true] {
        let mut pages = Vec::new();
        let outcome = purge::run_pages(&db.config, &gets, None, execute, Utc::now(), 10, |page| {
            pages.push(page.rows.iter().map(|r| r.aft_index).collect::<Vec<_>>())
        })
        .unwrap();
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 10, 5],
            "execute: {execute}"
        );
        assert_eq!(pages.concat(), all);
        assert_eq!((outcome.executed, outcome.summary.rows), (execute, 25));
        let left = db.rows().len();
        assert_eq!(left, if execute { 0 } else { 25 });
    }
}

/// What one reconcile found, as `(kind, file name or row, status)` triples, sorted.
fn found(report: &reconcile::Report) -> Vec<(String, String, String)> {
    let mut found: Vec<_> = report
        .entries
        .iter()
        .map(|entry| {
            let json = serde_json::to_value(entry).unwrap();
            let name = ["path", "file_path", "record", "link"]
                .iter()
                .find_map(|key| json[key].as_str())
                .map(|p| p.rsplit('/').next().unwrap().to_owned())
                .unwrap();
            let drift = json["drift"]
                .as_str()
                .map(|d| format!(" {d}"))
                .unwrap_or_default();
            (
                format!("{}{drift}", json["kind"].as_str().unwrap()),
                name,
                json["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The `file_state` column of the Post row of `name`.
fn drift_of(db: &TestDb, name: &str) -> Option<String> {
    aft_log::table
        .filter(aft_log::filename.eq(name))
        .select(aft_log::file_state)
        .first(&mut db.connect())
        .unwrap()
}

/// Every kind of drift is found, nothing is changed by a dry run, `--execute` repairs what is
/// old enough and leaves what may be in flight, and a second run finds no drift.
async fn reconcile_finds_and_repairs_every_kind_of_drift(backend: Backend) {
    let db = TestDb::new(backend);
    drop(logd::db::Database::open(&db.config).unwrap());
    let mount_dir = tempfile::tempdir().unwrap();
    let m = mount_dir.path();
    let old = "files/im/20141218/11";
    let now = Utc::now();
    let this_hour = format!("files/im/{}", now.format("%Y%m%d/%H"));
    let post = |name: &str, dir: &str, sha: Option<&str>| AftRecord {
        sha256: sha.map(str::to_owned),
        ..row_at(
            Method::Post,
            "alice@example.com",
            "im",
            "2014-12-18 11:00:00",
            &format!("{dir}/{name}"),
        )
    };
    insert(
        &db,
        &[
            post("good", old, Some(&sha256(b"xxxxx"))),
            post("resized", old, None),
            post("tampered", old, Some(&sha256(b"yyyyy"))),
            post("gone", old, None),
            post("fresh", &this_hour, None),
            post("expired", old, None),
            row_at(
                Method::Get,
                "bob@example.com",
                "im",
                "2014-12-19 08:00:00",
                &format!("{old}/gone"),
            ),
            AftRecord {
                file_path: format!("/opt/mftFileStore/node_2/{old}/elsewhere"),
                ..post("elsewhere", old, None)
            },
        ],
    );
    // httpd removed the file of "expired" on purpose, and told logd.
    diesel::update(aft_log::table.filter(aft_log::filename.eq("expired")))
        .set(aft_log::file_state.eq("expired"))
        .execute(&mut db.connect())
        .unwrap();
    // A purge deleted the row of "kept" and kept its file.
    diesel::insert_into(aft_kept_file::table)
        .values((
            aft_kept_file::filename.eq("kept"),
            aft_kept_file::file_path.eq(format!("{DIRECTORY}/{old}/kept")),
            aft_kept_file::purged.eq(purge::parse_time("2015-01-01 00:00:00").unwrap()),
        ))
        .execute(&mut db.connect())
        .unwrap();
    for name in ["good", "tampered", "orphan", "kept"] {
        file(m, &format!("{old}/{name}"), 5);
    }
    file(m, &format!("{old}/resized"), 7);
    file(m, &format!("{old}/.cut.part"), 3);
    file(m, &format!("{this_hour}/fresh"), 5);
    file(m, &format!("{this_hour}/.writing.part"), 3);
    std::fs::write(m.join(old).join("just-renamed"), b"12345").unwrap();
    let slots = m.join(mft_config::SLOTS_DIR);
    std::fs::create_dir_all(&slots).unwrap();
    let slot = |name: &str, location: &str, purged: bool| {
        let path = slots.join(format!("{name}.json"));
        let record = serde_json::json!({"slot": name, "location": location, "purged": purged, "expires": (name == "expiring").then_some("2020-01-01T00:00:00Z")});
        std::fs::write(&path, record.to_string()).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(86_400))
            .unwrap();
    };
    // The links of two uploads whose files were removed without them: one a day ago, one now.
    let link = |name: &str| {
        std::os::unix::fs::symlink("report.pdf", m.join(NAMES_DIR).join(name)).unwrap();
    };
    link("cut-off");
    let touched = Command::new("touch")
        .args(["-h", "-d", "1 day ago"])
        .arg(m.join(NAMES_DIR).join("cut-off"))
        .status()
        .unwrap();
    assert!(touched.success());
    link("cut-off-now");
    slot("lost", &format!("{old}/never-stored"), false);
    slot("filled", &format!("{old}/good"), false);
    slot("tombstone", &format!("{old}/expired"), true);
    // Expired, its file removed, its row not marked yet: httpd's to finish, not drift.
    slot("expiring", &format!("{old}/expiring"), false);
    let mount = Mount {
        directory: DIRECTORY.into(),
        mount_point: m.to_owned(),
    };
    let options = |execute, verify_content| reconcile::Options {
        execute,
        verify_content,
        grace: chrono::Duration::minutes(60),
    };
    let triple = |kind: &str, name: &str, status: &str| {
        (kind.to_owned(), name.to_owned(), status.to_owned())
    };

    let dry = reconcile::run(&db.config, &mount, &options(false, true), now).unwrap();
    assert_eq!(
        found(&dry),
        [
            triple("file_without_row", "just-renamed", "pending"),
            triple("file_without_row", "orphan", "found"),
            triple("name_link_without_row", "cut-off", "found"),
            triple("name_link_without_row", "cut-off-now", "pending"),
            triple("partial_file", ".cut.part", "found"),
            triple("partial_file", ".writing.part", "pending"),
            triple("row digest", "tampered", "found"),
            triple("row missing", "gone", "found"),
            triple("row size", "resized", "found"),
            triple("slot_without_file", "lost.json", "found"),
        ]
    );
    let s = &dry.summary;
    assert_eq!((s.drift, s.repaired, s.remaining, s.pending), (7, 0, 7, 3));
    assert_eq!(
        (
            s.files_checked,
            s.rows_checked,
            s.slot_records_checked,
            s.name_links_checked
        ),
        (9, 6, 4, 8)
    );
    assert_eq!(
        (s.rows_of_expired_files, s.files_of_purged_rows),
        (1, 1),
        "removed or kept on purpose: not drift"
    );
    assert_eq!(s.bytes_verified, 10, "good and tampered are re-read");
    assert!(m.join(old).join(".cut.part").exists() && m.join(old).join("orphan").exists());
    assert_eq!(drift_of(&db, "gone"), None, "a dry run marks nothing");

    let repair = reconcile::run(&db.config, &mount, &options(true, true), now).unwrap();
    let s = &repair.summary;
    assert_eq!((s.drift, s.repaired, s.remaining, s.pending), (7, 7, 0, 3));
    assert!(
        std::fs::symlink_metadata(m.join(NAMES_DIR).join("cut-off")).is_err(),
        "the old dangling link goes"
    );
    assert!(
        std::fs::symlink_metadata(m.join(NAMES_DIR).join("cut-off-now")).is_ok(),
        "a link of now may be an upload's"
    );
    for gone in [".cut.part", "orphan"] {
        assert!(!m.join(old).join(gone).exists(), "{gone} must be removed");
    }
    assert!(
        std::fs::symlink_metadata(name_link(m, &format!("{old}/orphan"))).is_err(),
        "its name link goes with it"
    );
    for kept in ["good", "tampered", "resized", "just-renamed"] {
        assert!(m.join(old).join(kept).exists(), "{kept} must stay");
    }
    assert!(m.join(&this_hour).join(".writing.part").exists());
    assert!(
        !slots.join("lost.json").exists()
            && slots.join("filled.json").exists()
            && slots.join("tombstone.json").exists()
    );
    assert!(
        slots.join("expiring.json").exists(),
        "httpd removes an expired slot's record once it marked the row"
    );
    let marks: Vec<_> = ["gone", "resized", "tampered", "good", "fresh", "expired"]
        .iter()
        .map(|n| drift_of(&db, n))
        .collect();
    let label = |l: &str| Some(l.to_owned());
    assert_eq!(
        marks,
        [
            label("missing"),
            label("size"),
            label("digest"),
            None,
            None,
            label("expired")
        ]
    );
    assert!(
        m.join(old).join("kept").exists(),
        "the file of a purged row stays"
    );

    let again = reconcile::run(&db.config, &mount, &options(true, true), now).unwrap();
    let s = &again.summary;
    assert_eq!(
        (s.drift, s.remaining, s.rows_marked_before, s.pending),
        (0, 0, 3, 3),
        "{}",
        again.text()
    );

    // The missing file is restored from a backup: its row is unmarked.
    std::fs::write(m.join(old).join("gone"), b"xxxxx").unwrap();
    let restored = reconcile::run(&db.config, &mount, &options(true, false), now).unwrap();
    assert!(
        found(&restored).contains(&triple("row_right", "gone", "repaired")),
        "{}",
        restored.text()
    );
    assert_eq!(
        (restored.summary.drift, restored.summary.rows_marked_before),
        (1, 2),
        "the digest mark stays without --verify-content"
    );
    assert_eq!(drift_of(&db, "gone"), None);
}

#[tokio::test]
async fn sqlite_reconcile() {
    reconcile_finds_and_repairs_every_kind_of_drift(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_reconcile() {
    reconcile_finds_and_repairs_every_kind_of_drift(Backend::Postgres).await;
}

/// The binary: a text report, exit 1 and the alarm while drift remains; the alarm again when
/// `--execute` repairs it all, with exit 0, and JSON; neither once none is found.
#[test]
fn reconcile_exits_1_while_drift_remains() {
    let db = TestDb::new(Backend::Sqlite);
    drop(logd::db::Database::open(&db.config).unwrap());
    let config = config_file(&db);
    let mount = db.dir.path().join("mount");
    let reconcile = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_logd"))
            .arg("reconcile")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    std::fs::create_dir(&mount).unwrap();
    let (code, out, err) = reconcile(&["--execute"]);
    assert_eq!(
        code,
        Some(1),
        "an empty directory is not the node's: {out}{err}"
    );
    assert!(err.contains("nothing is mounted at"), "{err}");
    file(&mount, "files/im/20141218/11/.cut.part", 3);
    let (code, out, err) = reconcile(&[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.starts_with("found: partial file "), "{out}");
    assert!(
        out.contains("drift: 1, repaired: 0, remaining: 1 (dry run"),
        "{out}"
    );
    assert!(err.contains("MftAuditDriftWarn raised: 1 disagreements between the file server and aft_log found, 0 repaired, 1 remain"), "{err}");
    let (code, out, err) = reconcile(&["--execute", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(err.contains("MftAuditDriftWarn raised: 1 disagreements between the file server and aft_log found, 1 repaired, 0 remain"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["entries"][0]["kind"], "partial_file");
    assert_eq!(json["entries"][0]["status"], "repaired");
    assert_eq!(json["summary"]["remaining"], 0);
    let (code, _, err) = reconcile(&[]);
    assert_eq!(code, Some(0));
    assert!(
        !err.contains("MftAuditDriftWarn"),
        "no drift, no alarm: {err}"
    );
}
