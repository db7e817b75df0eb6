//! httpd's faults across processes, against the real sshd's disk behind fsd's real FUSE mount:
//! with logd gone (stopped before an upload, or killed in the middle of one), an upload is
//! answered 503 without a URI and no file is left on the file server (refused before its body is
//! read once httpd knows logd is down, and admitted again when logd is back); with the file server full,
//! 507 and nothing left either; and a client that stops reading a download is cut off after
//! `http.request_timeout_secs`, its `Get` row records the bytes sent, and its transfer slot is
//! freed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use mft_tests::{files_under, run, wait_until, Database, Node, Sshd};

#[derive(QueryableByName, Debug)]
struct AftRow {
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = BigInt)]
    file_size: i64,
    #[diesel(sql_type = BigInt)]
    bytes_transferred: i64,
}

/// The node's `aft_log` rows (SQLite), in order.
fn aft_rows(node: &Node) -> Vec<AftRow> {
    let mut conn = diesel::SqliteConnection::establish(&node.database_url).unwrap();
    diesel::sql_query("SELECT method, file_size, bytes_transferred FROM aft_log ORDER BY aft_index")
        .load(&mut conn)
        .unwrap()
}

/// A tmpfs of `size` mounted over `dir`, unmounted when dropped (a failing test too).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir))
        .unwrap();
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
    }
}

#[test]
fn an_upload_without_logd_gets_503_and_leaves_no_file() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let body = work.path().join("body.bin");
    std::fs::write(&body, vec![7u8; 100_000]).unwrap();

    node.stop_logd();
    let response = node.upload(&token, "report.pdf", &body).unwrap();
    assert_eq!(response.status, 503, "{}\n{}", response.text(), node.logs());
    assert!(
        response.text().contains("\"database_unavailable\""),
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("logd"),
        "the body says which part failed: {}",
        response.text()
    );
    assert_eq!(response.header("location"), None);
    assert!(
        !response.text().contains("/files/node_1/"),
        "no URI: {}",
        response.text()
    );
    assert_eq!(
        files_under(&node.server_dir),
        Vec::<PathBuf>::new(),
        "nothing left on the file server"
    );
}

/// Sends only the head of a 200 MB upload and reads the answer, `None` if none came in `wait`.
fn answer_to_a_head_without_body(node: &Node, token: &str, wait: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    write!(
        stream,
        "POST /files?name=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 200000000\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => Some(String::from_utf8_lossy(&response).into_owned()),
        // The connection reset after the answer (its body was never read): the answer counts.
        Err(_) if !response.is_empty() => Some(String::from_utf8_lossy(&response).into_owned()),
        Err(_) => None,
    }
}

#[test]
fn with_logd_down_an_upload_is_refused_before_its_body_and_admitted_again_after() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();

    node.stop_logd();
    // httpd notices within its watch interval; /readyz makes it look at once.
    let readyz = mft_tests::curl(&[node.url("/readyz")]).unwrap();
    assert_eq!(readyz.status, 503, "{}", readyz.text());
    let response = answer_to_a_head_without_body(&node, &token, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "no answer without the body: httpd waits for it\n{}",
                node.logs()
            )
        });
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "{response}\n{}",
        node.logs()
    );
    assert!(response.contains("database_unavailable"), "{response}");
    assert!(
        response.contains("logd"),
        "the body says which part failed: {response}"
    );
    assert_eq!(
        files_under(&node.server_dir),
        Vec::<PathBuf>::new(),
        "nothing was stored"
    );

    node.start_logd().unwrap();
    let work = tempfile::tempdir().unwrap();
    let body = work.path().join("body.bin");
    std::fs::write(&body, b"after logd came back").unwrap();
    let mut status = 0;
    wait_until(Duration::from_secs(10), "uploads admitted again", || {
        status = node.upload(&token, "back.txt", &body).unwrap().status;
        status == 201
    })
    .unwrap_or_else(|e| panic!("{e}: last status {status}\n{}", node.logs()));
    assert_eq!(aft_rows(&node).len(), 1, "{:?}", aft_rows(&node));
}

#[test]
fn logd_killed_mid_upload_leaves_no_file() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let half = vec![1u8; 1 << 20];

    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /files?name=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        2 * half.len()
    )
    .unwrap();
    stream.write_all(&half).unwrap();
    // The first half is on its way to the file server when logd goes away.
    std::thread::sleep(Duration::from_millis(300));
    node.stop_logd();
    stream.write_all(&half).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();

    assert!(
        response.starts_with("HTTP/1.1 503"),
        "{response}\n{}",
        node.logs()
    );
    assert!(response.contains("database_unavailable"), "{response}");
    assert!(
        !response.to_ascii_lowercase().contains("\r\nlocation:"),
        "{response}"
    );
    assert_eq!(
        files_under(&node.server_dir),
        Vec::<PathBuf>::new(),
        "nothing left on the file server"
    );
}

#[test]
fn an_upload_to_a_full_file_server_gets_507_and_leaves_nothing() {
    let mut sshd = Sshd::start().unwrap();
    // Dropped after the node and before the sshd, whose directory holds the mount point.
    let _tmpfs = Tmpfs::mount(&sshd.node_directory("node_1").unwrap(), "1m");
    // sshd serves from a private copy of the mounts taken when it starts: restart it to see the tmpfs.
    sshd.kill();
    sshd.resume().unwrap();
    let node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (big, small) = (work.path().join("big.bin"), work.path().join("small.txt"));
    std::fs::write(&big, vec![7u8; 3 << 20]).unwrap();
    std::fs::write(&small, "still room for this").unwrap();

    let response = node.upload(&token, "big.bin", &big).unwrap();
    assert_eq!(response.status, 507, "{}\n{}", response.text(), node.logs());
    assert!(
        response.text().contains("\"file_server_full\""),
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("the file server is full"),
        "{}",
        response.text()
    );
    assert_eq!(response.header("location"), None);
    assert_eq!(
        files_under(&node.server_dir),
        Vec::<PathBuf>::new(),
        "nothing left on the file server, no .part either"
    );
    assert!(
        aft_rows(&node).is_empty(),
        "no aft_log row: {:?}",
        aft_rows(&node)
    );

    let response = node.upload(&token, "small.txt", &small).unwrap();
    assert_eq!(response.status, 201, "{}\n{}", response.text(), node.logs());
}

#[test]
fn a_client_that_stops_reading_a_download_is_cut_off_and_frees_its_slot() {
    let sshd = Sshd::start().unwrap();
    let node = Node::start_configured(&sshd, "node_1", Database::Sqlite, |toml| {
        toml.http_extra = "request_timeout_secs = 2\nmax_concurrent_transfers = 1\n".into();
    })
    .unwrap();
    let up = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let down = node.download_token("bob@example.com").unwrap();
    let work = tempfile::tempdir().unwrap();
    let body = work.path().join("big.bin");
    let size = 64 << 20;
    std::fs::write(&body, vec![5u8; size]).unwrap();
    let uploaded = node.upload(&up, "big.bin", &body).unwrap();
    assert_eq!(uploaded.status, 201, "{}\n{}", uploaded.text(), node.logs());
    let uri = uploaded.header("location").unwrap();
    let path = uri.strip_prefix(&node.url("")).unwrap();

    // A client that asks for the file and never reads: its receive window soon shuts.
    let mut stalled = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    write!(
        stalled,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {down}\r\n\r\n"
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the Get row", || {
        aft_rows(&node).len() == 2
    })
    .unwrap();
    let busy = node.download(&down, &uri).unwrap();
    assert_eq!(
        busy.status,
        503,
        "the stalled download holds the only transfer slot: {}",
        busy.text()
    );

    let broken_off = |rows: &[AftRow]| {
        rows.iter()
            .any(|r| r.method == "Get" && (1..r.file_size).contains(&r.bytes_transferred))
    };
    wait_until(
        Duration::from_secs(60),
        "the stalled download to be cut off",
        || broken_off(&aft_rows(&node)),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", aft_rows(&node), node.logs()));
    let again = node.download(&down, &uri).unwrap();
    assert_eq!(
        again.status,
        200,
        "the slot is free again: {}",
        again.text()
    );
    assert_eq!(again.body.len(), size);
    drop(stalled);
}

/// A node with one uploaded file of `size` bytes; its download path and a download token.
fn node_with_a_file(sshd: &Sshd, size: usize) -> (Node, String, String) {
    let node = Node::start(sshd, "node_1", Database::Sqlite).unwrap();
    let up = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let body = work.path().join("big.bin");
    std::fs::write(&body, vec![3u8; size]).unwrap();
    let uploaded = node.upload(&up, "big.bin", &body).unwrap();
    assert_eq!(uploaded.status, 201, "{}\n{}", uploaded.text(), node.logs());
    let path = uploaded
        .header("location")
        .unwrap()
        .strip_prefix(&node.url(""))
        .unwrap()
        .to_owned();
    let down = node.download_token("bob@example.com").unwrap();
    (node, path, down)
}

/// Asks for `path` and reads `bytes` bytes of the answer (head included).
fn start_download(node: &Node, path: &str, token: &str, bytes: usize) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut start = vec![0; bytes];
    stream.read_exact(&mut start).unwrap();
    assert!(
        start.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&start[..200])
    );
    stream
}

/// The `bytes_transferred` of the node's one Get row.
fn get_bytes(node: &Node) -> i64 {
    let rows = aft_rows(node);
    let gets: Vec<_> = rows.iter().filter(|r| r.method == "Get").collect();
    assert_eq!(gets.len(), 1, "{rows:?}");
    gets[0].bytes_transferred
}

#[test]
fn a_download_that_ends_while_logd_is_down_is_recorded_once_logd_is_back() {
    let sshd = Sshd::start().unwrap();
    let size = 4 << 20;
    let (mut node, path, token) = node_with_a_file(&sshd, size);
    let mut download = start_download(&node, &path, &token, 4096);
    node.stop_logd();
    let mut rest = Vec::new();
    download.read_to_end(&mut rest).unwrap();
    assert!(
        rest.len() > size - 4096,
        "the whole file came: {} bytes after the first 4096",
        rest.len()
    );
    // The end was tried while logd was away; it is retried until logd records it.
    std::thread::sleep(Duration::from_secs(1));
    node.start_logd().unwrap();
    wait_until(
        Duration::from_secs(30),
        "the Get row to record the whole file",
        || get_bytes(&node) == size as i64,
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", aft_rows(&node), node.logs()));
}

#[test]
fn an_httpd_killed_mid_download_leaves_the_bytes_sent_until_its_last_report() {
    let sshd = Sshd::start().unwrap();
    let size = 64 << 20;
    let (node, path, token) = node_with_a_file(&sshd, size);
    let download = start_download(&node, &path, &token, 1 << 20);
    // Longer than httpd's progress interval (5 s), reading nothing more: the send buffers fill.
    std::thread::sleep(Duration::from_secs(7));
    let httpd = node.httpd_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(httpd as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let recorded = get_bytes(&node);
    assert!(
        (1 << 19..size as i64).contains(&recorded),
        "bytes_transferred {recorded} of {size}\n{}",
        node.logs()
    );
    drop(download);
}

#[test]
fn the_partial_file_of_an_httpd_killed_mid_upload_is_swept_by_the_next_httpd() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let partials = |node: &Node| -> Vec<PathBuf> {
        files_under(&node.server_dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".part"))
            .collect()
    };
    let half = vec![1u8; 1 << 20];
    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    write!(
        stream,
        "POST /files?name=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n",
        2 * half.len()
    )
    .unwrap();
    stream.write_all(&half).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the partial file on the file server",
        || !partials(&node).is_empty(),
    )
    .unwrap();
    let httpd = node.httpd_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(httpd as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        partials(&node).len(),
        1,
        "the killed httpd left its partial file"
    );

    node.start_httpd().unwrap();
    // The sweep logs what it removed once its walk is done.
    wait_until(
        Duration::from_secs(20),
        "the next httpd to sweep it",
        || partials(&node).is_empty() && node.logs().contains("removed 1 partial uploads"),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", partials(&node), node.logs()));
    assert!(aft_rows(&node).is_empty(), "{:?}", aft_rows(&node));
}
