//! End to end: a real sshd file server, fsd's real FUSE mount, logd on real PostgreSQL and on
//! SQLite, httpd driven by curl. Every upload is downloaded again and compared by SHA-256, and
//! every transfer is checked in `aft_log` and on the file server's own disk.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{NaiveDateTime, Timelike, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use mft_tests::{bin, run, sha256_file, wait_until, Database, Node, Postgres, Sshd};

#[derive(QueryableByName, Debug)]
struct AftRow {
    #[diesel(sql_type = BigInt)]
    aft_index: i64,
    #[diesel(sql_type = Text)]
    jid: String,
    #[diesel(sql_type = Text)]
    to_jid: String,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    filename: String,
    #[diesel(sql_type = Text)]
    real_filename: String,
    #[diesel(sql_type = Text)]
    file_type: String,
    #[diesel(sql_type = Text)]
    chat_type: String,
    #[diesel(sql_type = Text)]
    file_server: String,
    #[diesel(sql_type = Text)]
    file_path: String,
    #[diesel(sql_type = BigInt)]
    file_size: i64,
    #[diesel(sql_type = BigInt)]
    bytes_transferred: i64,
    #[diesel(sql_type = Timestamp)]
    timestampvalue: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    sha256: Option<String>,
}

const SELECT_ALL: &str = "SELECT aft_index, jid, to_jid, method, filename, real_filename, file_type, chat_type, \
     file_server, file_path, file_size, bytes_transferred, timestampvalue, sha256 FROM aft_log ORDER BY aft_index";

fn aft_rows(node: &Node, postgres: bool) -> Vec<AftRow> {
    if postgres {
        let mut conn = diesel::PgConnection::establish(&node.database_url).unwrap();
        diesel::sql_query(SELECT_ALL).load(&mut conn).unwrap()
    } else {
        let mut conn = diesel::SqliteConnection::establish(&node.database_url).unwrap();
        diesel::sql_query(SELECT_ALL).load(&mut conn).unwrap()
    }
}

/// One file to send: its real name and content.
struct Case {
    name: &'static str,
    content: Vec<u8>,
    file_type: &'static str,
}

fn cases() -> Vec<Case> {
    let mut random = vec![0u8; 10 << 20];
    rand::Rng::fill(&mut rand::rng(), &mut random[..]);
    vec![
        Case {
            name: "empty.txt",
            content: Vec::new(),
            file_type: "txt",
        },
        Case {
            name: "random.bin",
            content: random,
            file_type: "bin",
        },
        Case {
            name: "Résumé final – été 2026.PDF",
            content: b"%PDF-1.4 not really\n".to_vec(),
            file_type: "pdf",
        },
    ]
}

fn round_trip(database: Database) {
    let postgres = matches!(database, Database::Postgres(_));
    let sshd = Sshd::start().unwrap();
    let node = Node::start(&sshd, "node_1", database).unwrap();
    let up = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let down = node.download_token("bob@example.com").unwrap();
    let work = tempfile::tempdir().unwrap();
    let before = Utc::now().naive_utc().with_nanosecond(0).unwrap();

    let mut uris = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let source = work.path().join(format!("source-{i}"));
        std::fs::write(&source, &case.content).unwrap();
        let resp = node.upload(&up, case.name, &source).unwrap();
        assert_eq!(
            resp.status,
            201,
            "upload {}: {}\n{}",
            case.name,
            resp.text(),
            node.logs()
        );
        let uri = resp.header("location").expect("Location header");
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["uri"], uri.as_str());
        assert_eq!(body["size"], case.content.len());
        assert_eq!(
            body["sha256"],
            sha256_file(&source).unwrap(),
            "{}",
            case.name
        );

        let got = node.download(&down, &uri).unwrap();
        assert_eq!(got.status, 200, "download {uri}: {}", got.text());
        let copy = work.path().join(format!("copy-{i}"));
        std::fs::write(&copy, &got.body).unwrap();
        assert_eq!(
            sha256_file(&copy).unwrap(),
            sha256_file(&source).unwrap(),
            "{}",
            case.name
        );
        uris.push(uri);
    }

    // A download's Get row gets its final byte count just after the last byte left httpd.
    let mut rows = aft_rows(&node, postgres);
    let _ = mft_tests::wait_until(
        std::time::Duration::from_secs(10),
        "downloads to be recorded",
        || {
            rows = aft_rows(&node, postgres);
            rows.len() == 2 * cases().len()
                && rows.iter().all(|r| r.bytes_transferred == r.file_size)
        },
    );
    assert_eq!(
        rows.len(),
        2 * cases().len(),
        "one Post and one Get per file: {rows:?}"
    );
    let today = Utc::now().format("%Y%m%d").to_string();
    for (i, case) in cases().iter().enumerate() {
        let (post, get) = (&rows[2 * i], &rows[2 * i + 1]);
        assert!(post.aft_index < get.aft_index);
        let size = case.content.len() as i64;
        for (row, method, jid) in [
            (post, "Post", "alice@example.com"),
            (get, "Get", "bob@example.com"),
        ] {
            assert_eq!(row.method, method);
            assert_eq!(row.jid, jid);
            assert_eq!(row.real_filename, case.name);
            assert_eq!(row.file_type, case.file_type);
            assert_eq!(row.chat_type, "im");
            assert_eq!(row.file_server, "127.0.0.1");
            assert_eq!(
                (row.file_size, row.bytes_transferred),
                (size, size),
                "{row:?}"
            );
            assert!(
                row.timestampvalue >= before && row.timestampvalue <= Utc::now().naive_utc(),
                "{row:?}"
            );
        }
        assert_eq!(post.to_jid, "bob@example.com");
        let source = work.path().join(format!("source-{i}"));
        assert_eq!(
            post.sha256,
            Some(sha256_file(&source).unwrap()),
            "the Post row's digest of {}",
            case.name
        );
        assert_eq!(get.sha256, None);
        assert_eq!(
            (&get.filename, &get.file_path),
            (&post.filename, &post.file_path)
        );
        assert!(
            uris[i].contains(&post.filename),
            "URI {} names the stored file {}",
            uris[i],
            post.filename
        );

        // The seed's layout, as an absolute path on the file server, and the file is there.
        let path = Path::new(&post.file_path);
        let relative = path
            .strip_prefix(&node.server_dir)
            .expect("file_path under the node directory");
        let parts: Vec<_> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(parts[..3], ["files", "im", today.as_str()], "{relative:?}");
        assert_eq!(parts[3].len(), 2, "hour directory {relative:?}");
        assert_eq!(parts[4], post.filename);
        assert!(post.filename.len() >= 20 && !post.filename.contains(case.name));
        assert_eq!(std::fs::metadata(path).unwrap().len(), size as u64);
        // Through the mount the same file is visible at the same relative path.
        assert_eq!(
            std::fs::metadata(node.mount.join(relative)).unwrap().len(),
            size as u64
        );
        // Its real name is linked beside the layout, on the file server.
        let name_link = Path::new(&node.server_dir)
            .join(".names")
            .join(&post.filename);
        assert_eq!(
            std::fs::read_link(&name_link).unwrap(),
            Path::new(case.name),
            "{name_link:?}"
        );
    }
    // Each transfer is one log line with structured fields (journal fields under systemd).
    let logs = node.logs();
    for row in &rows {
        let fields = format!(
            "method={} jid={} to_jid={} filename={}",
            row.method, row.jid, row.to_jid, row.filename
        );
        assert!(
            logs.contains(&fields),
            "no line with {fields:?} in:\n{logs}"
        );
    }
    // No partial files are left behind.
    let leftovers = run(Command::new("find")
        .arg(&node.server_dir)
        .args(["-name", ".*.part"]))
    .unwrap();
    assert_eq!(
        leftovers.trim(),
        "",
        "temporary files left on the file server"
    );
}

#[test]
fn round_trip_on_sqlite() {
    round_trip(Database::Sqlite);
}

#[test]
fn round_trip_on_postgres() {
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("mft_node_1").unwrap();
    round_trip(Database::Postgres(url));
}

#[test]
fn wrong_pinned_host_key_refuses_to_mount() {
    let sshd = Sshd::start().unwrap();
    // The key of another server, pinned for this one.
    let other = Sshd::start().unwrap();
    let (_, key) = other.host_key_line.split_once(' ').unwrap();
    let wrong = format!("[127.0.0.1]:{} {key}", sshd.port);
    let err = match Node::start_with(&sshd, "node_1", Database::Sqlite, &wrong) {
        Ok(_) => panic!("fsd mounted with a wrong host key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("host key mismatch"), "{err}");
    assert_eq!(
        err.matches("SHA256:").count(),
        2,
        "expected and presented fingerprints: {err}"
    );
}

/// A `kill -9` of fsd that takes its `fusermount3` auto-unmount helper with it (systemd kills the
/// unit's remaining processes) leaves the mount stale: the directory answers ENOTCONN. The next
/// fsd detaches it and mounts again, and the node serves.
#[test]
fn fsd_mounts_again_over_the_stale_mount_of_a_killed_fsd() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    node.kill_fsd_tree();
    // A listing, not a stat: the kernel answers a stat from the attributes fsd gave it for up to
    // a second (ATTR_TTL), but always asks the daemon to open a directory.
    let stale = std::fs::read_dir(&node.mount).unwrap_err();
    assert_eq!(
        stale.raw_os_error(),
        Some(libc::ENOTCONN),
        "the killed fsd's mount: {stale}"
    );
    // The stale mount is in mountinfo already: wait until the directory answers again.
    node.start_fsd().unwrap();
    let remounted = wait_until(Duration::from_secs(30), "fsd's new mount", || {
        std::fs::metadata(&node.mount).is_ok()
    });
    assert!(remounted.is_ok(), "{:?}\n{}", remounted, node.logs());
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("after-restart.txt");
    std::fs::write(&source, b"served again").unwrap();
    let up = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let resp = node.upload(&up, "after-restart.txt", &source).unwrap();
    assert_eq!(resp.status, 201, "{}\n{}", resp.text(), node.logs());
}

/// Each daemon refuses a bad config file with a message naming the key, the problem and an example.
#[test]
fn bad_config_files_are_refused_by_every_daemon() {
    let sshd = Sshd::start().unwrap();
    let node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let good = std::fs::read_to_string(&node.config).unwrap();
    let cases = [
        (
            good.replace("name = \"test_fileserver\"", "name = \"test fileserver!\""),
            "file_server.name: must be 1 to 128 letters, digits, '-' or '_'",
        ),
        (
            good.replace("host_key = \"[127.0.0.1]", "host_key = \"[otherhost]"),
            "file_server.host_key: must begin with the file server host",
        ),
        (
            good.replace("[logd]", "[logd]\nsokcet = \"/tmp/x\""),
            "unknown field `sokcet`",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for daemon in ["fsd", "logd", "httpd"] {
            let out = Command::new(bin(daemon).unwrap())
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{daemon} accepted {path:?}");
            assert!(
                stderr.contains(expected),
                "{daemon} on {expected}: {stderr}"
            );
            assert!(
                stderr.contains(&path.display().to_string()),
                "{daemon} names the file: {stderr}"
            );
        }
    }
}
