//! The HTTP interface end to end inside one process: the real routes and transfer logic over a
//! temporary directory as the mount, with the in-memory audit log and a clock the tests set.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use chrono::{DateTime, TimeZone, Utc};
use futures_util::StreamExt;

use crate::store::Mount;
use logd::{LogdError, Method};
use mft_config::fixture::NodeConfigText;
use mft_config::NodeConfig;

use crate::audit::memory::{MemoryAuditLog, Row};
use crate::auth::{Credentials, DownloadGrant, UploadGrant};
use crate::http::routes;
use crate::layout::{ChatType, FILES_PER_HOUR_DIR};
use crate::transfer::{Clock, DownloadRequest, TransferService};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const PUBLIC_URL: &str = "https://mft1.example.com";
const SLOT_SECRET: &str = crate::slot::tests::SECRET;

struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2014, 8, day, hour, minute, 7).unwrap()
}

/// One node over a temporary mount.
struct Node {
    mount: tempfile::TempDir,
    audit: Arc<MemoryAuditLog>,
    clock: Arc<ManualClock>,
    transfers: web::Data<TransferService>,
}

impl Node {
    fn new() -> Node {
        Node::with("managed", 0)
    }

    fn with(transfer_mode: &str, max_file_size: u64) -> Node {
        Node::configured(transfer_mode, &format!("max_file_size = {max_file_size}"))
    }

    /// A managed node with slots enabled and `extra` lines in `[http]`.
    fn with_http(extra: &str) -> Node {
        Node::configured(
            "managed",
            &format!("slot_secrets = [\"{SLOT_SECRET}\"]\n{extra}"),
        )
    }

    fn configured(transfer_mode: &str, http: &str) -> Node {
        let mount = tempfile::tempdir().unwrap();
        let config = NodeConfig::parse(
            &NodeConfigText::new()
                .set("node", "public_url", format!("{PUBLIC_URL}/"))
                .set("node", "transfer_mode", transfer_mode)
                .set("file_server", "directory", "/srv/mft/node_1/")
                .set(
                    "file_server",
                    "mount_point",
                    mount.path().display().to_string(),
                )
                .set("http", "token_secrets", vec![SECRET])
                .lines("http", http)
                .text(),
        )
        .unwrap();
        let audit = Arc::new(MemoryAuditLog::default());
        let clock = Arc::new(ManualClock(Mutex::new(at(11, 15, 30))));
        let transfers = web::Data::new(TransferService::new(
            config,
            Mount::Directory,
            audit.clone(),
            clock.clone(),
        ));
        Node {
            mount,
            audit,
            clock,
            transfers,
        }
    }

    fn set_time(&self, now: DateTime<Utc>) {
        *self.clock.0.lock().unwrap() = now;
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.mount.path().join(relative)
    }

    /// Rows of the audit log, once `done` holds for them (a download's end is recorded in the
    /// background).
    async fn rows_when(&self, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
        for _ in 0..200 {
            let rows = self.audit.rows();
            if done(&rows) {
                return rows;
            }
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "the audit log never reached the expected state: {:?}",
            self.audit.rows()
        );
    }
}

fn upload_token(chat_type: ChatType) -> String {
    let grant = UploadGrant {
        from: "alice@example.com".into(),
        to: "bob@example.com".into(),
        chat_type,
        max_size: None,
    };
    format!(
        "Bearer {}",
        credentials().issue_upload(&grant, Utc::now() + chrono::Duration::hours(1))
    )
}

fn download_token() -> String {
    let grant = DownloadGrant {
        downloader: "bob@example.com".into(),
    };
    format!(
        "Bearer {}",
        credentials().issue_download(&grant, Utc::now() + chrono::Duration::hours(1))
    )
}

fn credentials() -> Credentials {
    Credentials::new(&[SECRET.to_owned()])
}

fn upload_request(token: &str, name: &str, body: impl Into<bytes::Bytes>) -> TestRequest {
    let query: String = url_query_escape(name);
    TestRequest::post()
        .uri(&format!("/files?name={query}"))
        .insert_header((header::AUTHORIZATION, token))
        .set_payload(body)
}

fn url_query_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn get_request(uri_or_path: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri_or_path.strip_prefix(PUBLIC_URL).unwrap_or(uri_or_path))
        .insert_header((header::AUTHORIZATION, download_token()))
}

/// Checks an error response and returns its message.
async fn error_of<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
    status: StatusCode,
    code: &str,
) -> String {
    assert_eq!(response.status(), status);
    let json: serde_json::Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
    assert_eq!(json["error"], code, "{json}");
    json["message"].as_str().unwrap().to_owned()
}

fn header_value(headers: &header::HeaderMap, name: header::HeaderName) -> &str {
    let value = headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"));
    value.to_str().unwrap()
}

/// The length a response declares for its body (its `Content-Length` on the wire).
fn declared_len<B: actix_web::body::MessageBody>(
    response: &actix_web::dev::ServiceResponse<B>,
) -> u64 {
    match response.response().body().size() {
        actix_web::body::BodySize::Sized(n) => n,
        other => panic!("the body is not sized: {other:?}"),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn sample_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[actix_web::test]
async fn a_method_that_a_route_does_not_take_is_405_with_allow() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let cases = [
        ("TRACE", "/files", "POST"),
        ("GET", "/files", "POST"),
        (
            "PATCH",
            "/files/node_1/im/20140811/15/x/y",
            "GET, HEAD, OPTIONS",
        ),
        ("DELETE", "/upload/slot/name.txt", "GET, HEAD, OPTIONS, PUT"),
        ("TRACE", "/healthz", "GET"),
    ];
    for (method, path, allow) in cases {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        let response = test::call_service(
            &app,
            TestRequest::default()
                .method(method.clone())
                .uri(path)
                .to_request(),
        )
        .await;
        assert_eq!(
            header_value(response.headers(), header::ALLOW),
            allow,
            "{method} {path}"
        );
        let message = error_of(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
        assert_eq!(message, format!("this route takes only {allow}"));
    }
    let response = test::call_service(
        &app,
        TestRequest::default()
            .method(actix_web::http::Method::TRACE)
            .uri("/nothing")
            .to_request(),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "a path of no route"
    );
}

#[actix_web::test]
async fn upload_then_download_round_trip() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let body = sample_body(200_000);

    let response = test::call_service(
        &app,
        upload_request(
            &upload_token(ChatType::Im),
            "Holiday photo.JPG",
            body.clone(),
        )
        .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header_value(response.headers(), header::LOCATION).to_owned();
    let json: serde_json::Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
    let file_name = json["file_name"].as_str().unwrap();
    assert_eq!(json["uri"], location.as_str());
    assert_eq!(json["size"], 200_000);
    assert_eq!(
        location,
        format!("{PUBLIC_URL}/files/node_1/im/20140811/15/{file_name}/Holiday%20photo.JPG")
    );

    // Stored in the seed's layout, complete, under the random name only.
    let hour_dir = node.path("files/im/20140811/15");
    assert_eq!(entries(&hour_dir), [file_name]);
    assert_eq!(std::fs::read(hour_dir.join(file_name)).unwrap(), body);

    let rows = node.audit.rows();
    assert_eq!(rows.len(), 1);
    let post = &rows[0].transfer;
    assert_eq!(rows[0].method, Method::Post);
    assert_eq!(
        (post.jid.as_str(), post.to_jid.as_str()),
        ("alice@example.com", "bob@example.com")
    );
    assert_eq!(
        (post.filename.as_str(), post.real_filename.as_str()),
        (file_name, "Holiday photo.JPG")
    );
    assert_eq!(
        (post.file_type.as_str(), post.chat_type.as_str()),
        ("jpg", "im")
    );
    assert_eq!(post.file_server, "files.example.com");
    assert_eq!(
        post.file_path,
        format!("/srv/mft/node_1/files/im/20140811/15/{file_name}")
    );
    assert_eq!((post.file_size, post.bytes_transferred), (200_000, 200_000));
    assert_eq!(post.timestamp, at(11, 15, 30));

    let response = test::call_service(&app, get_request(&location).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header_value(&headers, header::CONTENT_TYPE), "image/jpeg");
    assert_eq!(
        header_value(&headers, header::CONTENT_DISPOSITION),
        "inline; filename=\"Holiday photo.JPG\"; filename*=UTF-8''Holiday%20photo.JPG"
    );
    assert_eq!(
        header_value(&headers, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );
    assert_eq!(
        header_value(&headers, header::CONTENT_SECURITY_POLICY),
        "default-src 'none'; sandbox"
    );
    assert_eq!(test::read_body(response).await, body);

    let rows = node
        .rows_when(|rows| rows.len() == 2 && rows[1].transfer.bytes_transferred == 200_000)
        .await;
    let get = &rows[1].transfer;
    assert_eq!(rows[1].method, Method::Get);
    assert_eq!(
        (get.jid.as_str(), get.to_jid.as_str()),
        ("bob@example.com", "bob@example.com")
    );
    assert_eq!(
        (get.filename.as_str(), get.file_path.as_str()),
        (post.filename.as_str(), post.file_path.as_str())
    );
    assert_eq!(get.file_size, 200_000);
}

#[actix_web::test]
async fn the_1001st_file_of_an_hour_rolls_over() {
    let node = Node::new();
    // As if a previous run had stored 1,000 files this hour: the restart scan finds them.
    let full = node.path("files/groupchat/20140811/16");
    std::fs::create_dir_all(&full).unwrap();
    for i in 0..FILES_PER_HOUR_DIR {
        std::fs::write(full.join(format!("seeded{i}")), b"").unwrap();
    }
    node.set_time(at(11, 16, 59));
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Groupchat);

    let response =
        test::call_service(&app, upload_request(&token, "a.txt", "1001st").to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header_value(response.headers(), header::LOCATION);
    assert!(
        location.contains("/files/node_1/groupchat/20140811/16.1/"),
        "{location}"
    );
    assert_eq!(
        entries(&node.path("files/groupchat/20140811/16.1")).len(),
        1
    );

    node.set_time(at(11, 17, 0));
    let response = test::call_service(
        &app,
        upload_request(&token, "b.txt", "next hour").to_request(),
    )
    .await;
    let location = header_value(response.headers(), header::LOCATION);
    assert!(
        location.contains("/files/node_1/groupchat/20140811/17/"),
        "{location}"
    );
    assert_eq!(
        entries(&node.path("files/groupchat/20140811")),
        ["16", "16.1", "17"]
    );
}

#[actix_web::test]
async fn credentials_are_required() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let expired = UploadGrant {
        from: "alice@example.com".into(),
        to: "bob@example.com".into(),
        chat_type: ChatType::Im,
        max_size: None,
    };
    let expired = format!(
        "Bearer {}",
        credentials().issue_upload(&expired, Utc::now() - chrono::Duration::hours(1))
    );
    let forged = Credentials::new(&["another secret, 32 characters at least".to_owned()])
        .issue_upload(
            &UploadGrant {
                from: "mallory@example.com".into(),
                to: "bob@example.com".into(),
                chat_type: ChatType::Im,
                max_size: None,
            },
            Utc::now() + chrono::Duration::hours(1),
        );
    let missing = TestRequest::post()
        .uri("/files?name=a.txt")
        .set_payload("x")
        .to_request();
    let message = error_of(
        test::call_service(&app, missing).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(message.starts_with("missing credentials"), "{message}");
    let request = upload_request(&expired, "a.txt", "x").to_request();
    let message = error_of(
        test::call_service(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(message, "the token has expired");
    let request = upload_request(&format!("Bearer {forged}"), "a.txt", "x").to_request();
    let message = error_of(
        test::call_service(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(message.contains("signature"), "{message}");
    let request = TestRequest::get()
        .uri("/files/node_1/im/20140811/15/abcdefghijklmnopqrstuvwxyz/a.txt")
        .to_request();
    error_of(
        test::call_service(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(node.audit.rows().is_empty());
    assert!(!node.path("files").exists());
}

#[actix_web::test]
async fn too_large_by_content_length_and_by_streaming() {
    let node = Node::with("managed", 1_000);
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Im);

    let request = upload_request(&token, "big.bin", sample_body(1_001)).to_request();
    let message = error_of(
        test::call_service(&app, request).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert!(message.contains("1000 bytes"), "{message}");
    assert!(
        !node.path("files").exists(),
        "refused before anything was stored"
    );

    let mut request = upload_request(&token, "big.bin", sample_body(5_000)).to_request();
    request.headers_mut().remove(header::CONTENT_LENGTH);
    error_of(
        test::call_service(&app, request).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert!(
        entries(&node.path("files/im/20140811/15")).is_empty(),
        "the partial file is removed"
    );

    let request = upload_request(&token, "fits.bin", sample_body(1_000)).to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn peer_to_peer_nodes_refuse_managed_transfers() {
    let node = Node::with("peer-to-peer", 0);
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let request = upload_request(&upload_token(ChatType::Im), "a.txt", "x").to_request();
    let message = error_of(
        test::call_service(&app, request).await,
        StatusCode::FORBIDDEN,
        "managed_transfer_disabled",
    )
    .await;
    assert!(message.contains("peer-to-peer"), "{message}");
    let request =
        get_request("/files/node_1/im/20140811/15/abcdefghijklmnopqrstuvwxyz/a.txt").to_request();
    error_of(
        test::call_service(&app, request).await,
        StatusCode::FORBIDDEN,
        "managed_transfer_disabled",
    )
    .await;
    assert!(!node.path("files").exists());
}

#[actix_web::test]
async fn nothing_is_stored_or_sent_without_the_audit_log() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let request =
        upload_request(&upload_token(ChatType::Persistent), "kept.txt", "kept").to_request();
    let response = test::call_service(&app, request).await;
    let location = header_value(response.headers(), header::LOCATION).to_owned();

    node.audit
        .fail_with(|| LogdError::Unreachable("connect: connection refused".into()));
    let request =
        upload_request(&upload_token(ChatType::Persistent), "lost.txt", "lost").to_request();
    let message = error_of(
        test::call_service(&app, request).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(message.contains("logd"), "{message}");
    assert_eq!(
        entries(&node.path("files/persistent/20140811/15")).len(),
        1,
        "only the first file is left"
    );

    node.audit
        .fail_with(|| LogdError::Unavailable("no socket".into()));
    let response = test::call_service(&app, get_request(&location).to_request()).await;
    let message = error_of(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(message.contains("logd"), "{message}");
    assert_eq!(node.audit.rows().len(), 1, "no Get row");
}

#[actix_web::test]
async fn downloads_name_only_files_of_this_node() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let request = upload_request(&upload_token(ChatType::Im), "a.txt", "secret").to_request();
    let location = header_value(
        test::call_service(&app, request).await.headers(),
        header::LOCATION,
    )
    .to_owned();
    let path = location.strip_prefix(PUBLIC_URL).unwrap();
    let file_name = path.split('/').nth(6).unwrap();
    std::fs::write(node.mount.path().join("outside.txt"), "outside").unwrap();

    let other = path.replace("/node_1/", "/node_2/");
    let message = error_of(
        test::call_service(&app, get_request(&other).to_request()).await,
        StatusCode::NOT_FOUND,
        "other_node",
    )
    .await;
    assert!(message.contains("node node_2"), "{message}");

    let attempts = [
        path.replace(file_name, "abcdefghijklmnopqrstuvwxyz"),
        "/files/node_1/im/20140811/15/../../../../../outside.txt/a.txt".to_owned(),
        path.replace(file_name, ".."),
        path.replace(file_name, "%2e%2e"),
        path.replace("/15/", "/15%2F..%2F..%2F/"),
        path.replace("/im/", "/..%2F..%2F../"),
        format!("{path}/..%2F..%2Foutside.txt"),
        "/files/node_1/%2e%2e/%2e%2e/%2e%2e/%2e%2e/outside.txt".to_owned(),
        "/files/..%2F..%2Foutside.txt".to_owned(),
        "/outside.txt".to_owned(),
    ];
    for attempt in attempts {
        let response = test::call_service(&app, get_request(&attempt).to_request()).await;
        let body = error_of(response, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(body, "no such file", "{attempt}");
    }
    assert_eq!(node.audit.rows().len(), 1, "no Get row for a refused path");
}

#[actix_web::test]
async fn non_ascii_names_are_attachments_with_rfc_6266_names() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let request =
        upload_request(&upload_token(ChatType::Im), "Отчёт за май.pdf", "%PDF").to_request();
    let response = test::call_service(&app, request).await;
    let location = header_value(response.headers(), header::LOCATION).to_owned();
    assert!(
        location
            .ends_with("/%D0%9E%D1%82%D1%87%D1%91%D1%82%20%D0%B7%D0%B0%20%D0%BC%D0%B0%D0%B9.pdf"),
        "{location}"
    );
    assert_eq!(
        node.audit.rows()[0].transfer.real_filename,
        "Отчёт за май.pdf"
    );

    let response = test::call_service(&app, get_request(&location).to_request()).await;
    assert_eq!(
        header_value(response.headers(), header::CONTENT_TYPE),
        "application/octet-stream"
    );
    assert_eq!(
        header_value(response.headers(), header::CONTENT_DISPOSITION),
        "attachment; filename=\"_____ __ ___.pdf\"; \
         filename*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82%20%D0%B7%D0%B0%20%D0%BC%D0%B0%D0%B9.pdf"
    );
    assert_eq!(test::read_body(response).await, "%PDF");
}

#[actix_web::test]
async fn bad_upload_names_are_refused() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Im);
    let request = TestRequest::post()
        .uri("/files")
        .insert_header((header::AUTHORIZATION, token.as_str()))
        .set_payload("x")
        .to_request();
    error_of(
        test::call_service(&app, request).await,
        StatusCode::BAD_REQUEST,
        "bad_file_name",
    )
    .await;
    for name in ["", "..", "a/b", "tab\there", &"n".repeat(512)] {
        let request = upload_request(&token, name, "x").to_request();
        error_of(
            test::call_service(&app, request).await,
            StatusCode::BAD_REQUEST,
            "bad_file_name",
        )
        .await;
    }
    assert!(!node.path("files").exists());
}

#[actix_web::test]
async fn a_download_cut_short_records_the_bytes_sent() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let request = upload_request(
        &upload_token(ChatType::Im),
        "big.bin",
        sample_body(1_000_000),
    )
    .to_request();
    let location = header_value(
        test::call_service(&app, request).await.headers(),
        header::LOCATION,
    )
    .to_owned();

    let path = location.strip_prefix(PUBLIC_URL).unwrap();
    let token = download_token();
    let request = DownloadRequest {
        authorization: Some(&token),
        with_body: true,
        preconditions: Default::default(),
    };
    let download = node.transfers.download(path, &request).await.unwrap();
    let mut body = download.body.unwrap();
    let first = body.next().await.unwrap().unwrap();
    drop(body);
    let rows = node
        .rows_when(|rows| rows.len() == 2 && rows[1].transfer.bytes_transferred > 0)
        .await;
    assert_eq!(rows[1].transfer.bytes_transferred, first.len() as i64);
    assert_eq!(rows[1].transfer.file_size, 1_000_000);
}

/// The real server on a port-0 listener: HEAD carries the Content-Length, shutdown is graceful.
#[actix_web::test]
async fn real_server_answers_head_and_stops() {
    let node = Node::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let transfers = node.transfers.clone().into_inner();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ops = Arc::new(crate::ops::tests::ops(
        node.mount.path(),
        crate::ops::tests::FixedLogd(None),
    ));
    let server = actix_web::rt::spawn(crate::run(listener, transfers, ops, async {
        stopped.await.ok();
    }));

    let exchange = move |request: String| {
        actix_web::rt::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
    };
    let token = upload_token(ChatType::Im);
    let response = exchange(format!(
        "POST /files?name=notes.txt HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    ))
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no location: {response}"));
    let path = location.strip_prefix(PUBLIC_URL).unwrap().to_owned();

    let response = exchange(format!(
        "HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        download_token()
    ))
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\r\ncontent-length: 11\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\n"), "no body: {response}");
    assert_eq!(
        node.audit.rows().len(),
        1,
        "HEAD moves no bytes and records no Get row"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

mod downloads;
mod shares;
mod slots;
mod uploads;

/// Defect 1 of issue 15: a token says what it is for, and each route takes only its own kind.
#[actix_web::test]
async fn an_upload_token_is_not_a_download_token() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let upload = upload_token(ChatType::Im);
    let request = upload_request(&upload, "a.txt", "secret").to_request();
    let location = header_value(
        test::call_service(&app, request).await.headers(),
        header::LOCATION,
    )
    .to_owned();
    let request = TestRequest::get()
        .uri(location.strip_prefix(PUBLIC_URL).unwrap())
        .insert_header((header::AUTHORIZATION, upload.as_str()))
        .to_request();
    let message = error_of(
        test::call_service(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(message.contains("purpose"), "{message}");
    let request = upload_request(&download_token(), "b.txt", "x").to_request();
    error_of(
        test::call_service(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        node.audit.rows().len(),
        1,
        "no Get row for the upload token"
    );
}

/// Defect 2 of issue 15: the URI's last segment must be the name the file was stored with, so
/// a downloader cannot choose the name (and type) it is served and recorded under.
#[actix_web::test]
async fn the_uri_must_carry_the_stored_real_name() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let request = upload_request(&upload_token(ChatType::Im), "report.txt", "<html>").to_request();
    let location = header_value(
        test::call_service(&app, request).await.headers(),
        header::LOCATION,
    )
    .to_owned();
    for renamed in ["photo.png", "report.TXT", "report.txt.html"] {
        let uri = location.replace("/report.txt", &format!("/{renamed}"));
        let response = test::call_service(&app, get_request(&uri).to_request()).await;
        error_of(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(node.audit.rows().len(), 1, "no Get row for a renamed URI");
    let response = test::call_service(&app, get_request(&location).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(test::read_body(response).await, "<html>");
    let rows = node
        .rows_when(|rows| rows.len() == 2 && rows[1].transfer.bytes_transferred == 6)
        .await;
    assert_eq!(rows[1].transfer.real_filename, "report.txt");
}

/// Defect 3 of issue 15: a chunked body whose first chunk size is malformed ends the request
/// while the file is being created; no `.part` file may survive it.
#[actix_web::test]
async fn a_malformed_chunk_leaves_no_part_file() {
    let node = Node::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ops = Arc::new(crate::ops::tests::ops(
        node.mount.path(),
        crate::ops::tests::FixedLogd(None),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = actix_web::rt::spawn(crate::run(
        listener,
        node.transfers.clone().into_inner(),
        ops,
        async {
            stopped.await.ok();
        },
    ));
    let token = upload_token(ChatType::Im);
    for _ in 0..3 {
        let request = format!(
            "POST /files?name=a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
        );
        actix_web::rt::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
        })
        .await
        .unwrap();
    }
    // The removal is a task of its own: give it time on a loaded machine (2 s was not always).
    let hour_dir = node.path("files/im/20140811/15");
    for _ in 0..1_000 {
        if !hour_dir.exists() || entries(&hour_dir).is_empty() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !hour_dir.exists() || entries(&hour_dir).is_empty(),
        "left behind: {:?}",
        entries(&hour_dir)
    );
    assert!(node.audit.rows().is_empty());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

mod cors;
mod idempotency;
