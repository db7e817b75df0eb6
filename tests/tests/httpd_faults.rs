//! httpd's strict rule across processes: with logd gone (stopped before an upload, or killed in
//! the middle of one), an upload is answered 503 without a URI, and no file is left on the file
//! server (the real sshd's disk, behind fsd's real FUSE mount).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mft_tests::{Database, Node, Sshd};

/// Every regular file under `dir`, hidden ones (partial uploads) included.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn an_upload_without_logd_gets_503_and_leaves_no_file() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node.upload_token("alice@example.com", "bob@example.com", "im").unwrap();
    let work = tempfile::tempdir().unwrap();
    let body = work.path().join("body.bin");
    std::fs::write(&body, vec![7u8; 100_000]).unwrap();

    node.stop_logd();
    let response = node.upload(&token, "report.pdf", &body).unwrap();
    assert_eq!(response.status, 503, "{}\n{}", response.text(), node.logs());
    assert!(response.text().contains("\"database_unavailable\""), "{}", response.text());
    assert!(response.text().contains("logd"), "the body says which part failed: {}", response.text());
    assert_eq!(response.header("location"), None);
    assert!(!response.text().contains("/files/node_1/"), "no URI: {}", response.text());
    assert_eq!(files_under(&node.server_dir), Vec::<PathBuf>::new(), "nothing left on the file server");
}

#[test]
fn logd_killed_mid_upload_leaves_no_file() {
    let sshd = Sshd::start().unwrap();
    let mut node = Node::start(&sshd, "node_1", Database::Sqlite).unwrap();
    let token = node.upload_token("alice@example.com", "bob@example.com", "im").unwrap();
    let half = vec![1u8; 1 << 20];

    let mut stream = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
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

    assert!(response.starts_with("HTTP/1.1 503"), "{response}\n{}", node.logs());
    assert!(response.contains("database_unavailable"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("\r\nlocation:"), "{response}");
    assert_eq!(files_under(&node.server_dir), Vec::<PathBuf>::new(), "nothing left on the file server");
}
