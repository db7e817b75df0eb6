//! XEP-0363 external upload slots over HTTP: each scheme with right and wrong credentials,
//! expiry, size mismatches, reuse, capability-URL downloads and the purge of expired files.

use super::*;
use crate::slot::sign;
use crate::slot::tests::file_share_token;
use crate::slot_index::SLOTS_DIR;
use logd::FileState;

fn put(uri: &str, body: &'static str) -> TestRequest {
    TestRequest::put().uri(uri).set_payload(body)
}

/// Every file under `files/` of the mount.
fn stored_files(node: &Node) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&node.path("files"), &mut out);
    out
}

#[actix_web::test]
async fn prosody_external_v1_and_v2() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let v = sign(SLOT_SECRET, "0b7c5f4e/holiday photo.jpg 5");
    let uri = format!("/upload/0b7c5f4e/holiday%20photo.jpg?v={v}");

    let response = test::call_service(&app, put(&uri, "12345").to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rows = node.audit.rows();
    let post = &rows[0].transfer;
    assert_eq!(
        (post.jid.as_str(), post.to_jid.as_str()),
        ("anonymous@node_1", "anonymous@node_1")
    );
    assert_eq!(
        (
            post.real_filename.as_str(),
            post.file_type.as_str(),
            post.chat_type.as_str()
        ),
        ("holiday photo.jpg", "jpg", "im")
    );
    assert!(
        post.file_path
            .starts_with("/srv/mft/node_1/files/im/20140811/15/"),
        "{}",
        post.file_path
    );
    assert_eq!(stored_files(&node).len(), 1);

    // A retry of the same bytes (its answer was lost) gets the first answer; other bytes, 409.
    let again = test::call_service(&app, put(&uri, "12345").to_request()).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        header_value(again.headers(), header::LOCATION),
        format!("{PUBLIC_URL}/upload/0b7c5f4e/holiday%20photo.jpg")
    );
    let answer: serde_json::Value = test::read_body_json(again).await;
    assert_eq!(answer["size"], 5);
    assert_eq!(
        answer["sha256"],
        "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"
    );
    assert_eq!(
        (node.audit.rows().len(), stored_files(&node).len()),
        (1, 1),
        "nothing stored or recorded again"
    );
    let other = test::call_service(&app, put(&uri, "54321").to_request()).await;
    error_of(other, StatusCode::CONFLICT, "slot_used").await;

    // The slot URL is a capability: no credentials to download it.
    let response = test::call_service(
        &app,
        TestRequest::get()
            .uri("/upload/0b7c5f4e/holiday%20photo.jpg")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_value(response.headers(), header::CONTENT_TYPE),
        "image/jpeg"
    );
    assert_eq!(test::read_body(response).await, "12345");
    let rows = node
        .rows_when(|rows| rows.len() == 2 && rows[1].transfer.bytes_transferred == 5)
        .await;
    assert_eq!(
        (rows[1].method, rows[1].transfer.jid.as_str()),
        (Method::Get, "anonymous@node_1")
    );
    let head = test::call_service(
        &app,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/upload/0b7c5f4e/holiday%20photo.jpg")
            .to_request(),
    )
    .await;
    assert_eq!(declared_len(&head), 5);

    let wrong = sign("another-secret-0123456", "0c/a.txt 5");
    for uri in [
        format!("/upload/0c/a.txt?v={wrong}"),
        "/upload/0c/a.txt".to_owned(),
        format!("/upload/0c/a.txt?v={}", sign(SLOT_SECRET, "0c/a.txt 6")),
        format!("/upload/0c/b.txt?v={}", sign(SLOT_SECRET, "0c/a.txt 5")),
    ] {
        error_of(
            test::call_service(&app, put(&uri, "12345").to_request()).await,
            StatusCode::FORBIDDEN,
            "bad_slot_token",
        )
        .await;
    }

    let v2 = sign(SLOT_SECRET, "0d/notes.txt\x005\x00text/plain");
    let request = put(&format!("/upload/0d/notes.txt?v2={v2}"), "hello")
        .insert_header((header::CONTENT_TYPE, "text/plain"));
    assert_eq!(
        test::call_service(&app, request.to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    let request = put(&format!("/upload/0e/notes.txt?v2={v2}"), "hello")
        .insert_header((header::CONTENT_TYPE, "text/html"));
    error_of(
        test::call_service(&app, request.to_request()).await,
        StatusCode::FORBIDDEN,
        "bad_slot_token",
    )
    .await;
    assert_eq!(stored_files(&node).len(), 2, "refused slots store nothing");
}

#[actix_web::test]
async fn ejabberd_external_secret() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let path = "5a0b9e8d7c6f5e4d3c2b1a09/Wz9rT3xY/report.pdf";
    let uri = format!(
        "/upload/{path}?v={}",
        sign(SLOT_SECRET, &format!("{path} 4"))
    );
    assert_eq!(
        test::call_service(&app, put(&uri, "%PDF").to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    error_of(
        test::call_service(&app, put(&uri, "%PDX").to_request()).await,
        StatusCode::CONFLICT,
        "slot_used",
    )
    .await;
    let response = test::call_service(
        &app,
        TestRequest::get()
            .uri(&format!("/upload/{path}"))
            .to_request(),
    )
    .await;
    assert!(
        header_value(response.headers(), header::CONTENT_DISPOSITION)
            .starts_with("attachment; filename=\"report.pdf\"")
    );
    let forged = format!(
        "/upload/{path}?v={}",
        sign("not-the-secret-0123456", &format!("{path} 4"))
    );
    let other = forged.replace("report.pdf", "other.pdf");
    error_of(
        test::call_service(&app, put(&other, "%PDF").to_request()).await,
        StatusCode::FORBIDDEN,
        "bad_slot_token",
    )
    .await;
}

#[actix_web::test]
async fn mod_http_file_share_tokens() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let now = at(11, 15, 30).timestamp();
    let put_with = |slot: &str, token: String, body: &'static str| {
        put(&format!("/upload/{slot}/cat.png"), body)
            .insert_header((header::AUTHORIZATION, token))
            .to_request()
    };

    let token = file_share_token(SLOT_SECRET, "s1", "cat.png", 4, now + 300, None);
    assert_eq!(
        test::call_service(&app, put_with("s1", token.clone(), "meow"))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(node.audit.rows()[0].transfer.jid, "alice@example.com");
    error_of(
        test::call_service(&app, put_with("s1", token, "purr")).await,
        StatusCode::CONFLICT,
        "slot_used",
    )
    .await;

    let cases = [
        (
            put_with(
                "s2",
                file_share_token(SLOT_SECRET, "s2", "cat.png", 4, now - 1, None),
                "meow",
            ),
            StatusCode::GONE,
            "slot_expired",
        ),
        (
            put_with(
                "s3",
                file_share_token(
                    "a-wrong-secret-0123456",
                    "s3",
                    "cat.png",
                    4,
                    now + 300,
                    None,
                ),
                "meow",
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            put_with(
                "s4",
                file_share_token(SLOT_SECRET, "s5", "cat.png", 4, now + 300, None),
                "meow",
            ),
            StatusCode::BAD_REQUEST,
            "slot_mismatch",
        ),
        (
            put_with(
                "s6",
                file_share_token(SLOT_SECRET, "s6", "cat.png", 4, now + 300, None),
                "meow!",
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "size_mismatch",
        ),
        (
            put_with("s7", "Bearer not-a-jwt".into(), "meow"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (request, status, code) in cases {
        error_of(test::call_service(&app, request).await, status, code).await;
    }
    assert_eq!(stored_files(&node).len(), 1);
    assert_eq!(node.audit.rows().len(), 1);
}

#[actix_web::test]
async fn slots_need_the_secret_and_a_managed_mode() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let uri = format!("/upload/0b/a.txt?v={}", sign(SLOT_SECRET, "0b/a.txt 1"));
    error_of(
        test::call_service(&app, put(&uri, "x").to_request()).await,
        StatusCode::FORBIDDEN,
        "slots_disabled",
    )
    .await;
    let node = Node::configured("disabled", &format!("slot_secrets = [\"{SLOT_SECRET}\"]"));
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    error_of(
        test::call_service(&app, put(&uri, "x").to_request()).await,
        StatusCode::FORBIDDEN,
        "managed_transfer_disabled",
    )
    .await;
    assert!(!node.path("files").exists());
}

/// Rotation: while both secrets are listed, slots signed with either are filled; once the old
/// one is removed, its slots are refused.
#[actix_web::test]
async fn the_slot_secret_rotates_without_downtime() {
    const NEW: &str = "new-slot-secret-0123456";
    let slot = |secret: &str, id: &str| {
        format!(
            "/upload/{id}/a.txt?v={}",
            sign(secret, &format!("{id}/a.txt 5"))
        )
    };
    let both = Node::configured(
        "managed",
        &format!("slot_secrets = [\"{NEW}\", \"{SLOT_SECRET}\"]"),
    );
    let app = test::init_service(App::new().configure(routes(both.transfers.clone()))).await;
    for uri in [slot(SLOT_SECRET, "r1"), slot(NEW, "r2")] {
        assert_eq!(
            test::call_service(&app, put(&uri, "12345").to_request())
                .await
                .status(),
            StatusCode::CREATED,
            "{uri}"
        );
    }
    let new_only = Node::configured("managed", &format!("slot_secrets = [\"{NEW}\"]"));
    let app = test::init_service(App::new().configure(routes(new_only.transfers.clone()))).await;
    error_of(
        test::call_service(&app, put(&slot(SLOT_SECRET, "r3"), "12345").to_request()).await,
        StatusCode::FORBIDDEN,
        "bad_slot_token",
    )
    .await;
    assert_eq!(
        test::call_service(&app, put(&slot(NEW, "r4"), "12345").to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn slot_paths_cannot_escape_or_inject() {
    let node = Node::with_http("max_file_size = 10");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    std::fs::write(node.path("outside.txt"), "outside").unwrap();
    for path in [
        "..%2F..%2Foutside.txt/x",
        "a/..%2F..%2Foutside.txt",
        "a/%2e%2e",
        "a/b%0d%0aSet-Cookie:%20x=1",
        "a/b%00.txt",
        "a/b/c/d",
        "a",
    ] {
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned();
        let uri = format!(
            "/upload/{path}?v={}",
            sign(SLOT_SECRET, &format!("{decoded} 1"))
        );
        error_of(
            test::call_service(&app, put(&uri, "x").to_request()).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        let get = TestRequest::get()
            .uri(&format!("/upload/{path}"))
            .to_request();
        error_of(
            test::call_service(&app, get).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // A quote or backslash is a legal name, and is escaped in the header.
    let uri = format!(
        "/upload/q1/say%20%22hi%22%5C.txt?v={}",
        sign(SLOT_SECRET, "q1/say \"hi\"\\.txt 1")
    );
    assert_eq!(
        test::call_service(&app, put(&uri, "x").to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    let response = test::call_service(
        &app,
        TestRequest::get()
            .uri("/upload/q1/say%20%22hi%22%5C.txt")
            .to_request(),
    )
    .await;
    assert_eq!(
        header_value(response.headers(), header::CONTENT_DISPOSITION),
        "inline; filename=\"say _hi__.txt\"; filename*=UTF-8''say%20%22hi%22%5C.txt"
    );
    let too_large = format!("/upload/big/a.bin?v={}", sign(SLOT_SECRET, "big/a.bin 11"));
    error_of(
        test::call_service(&app, put(&too_large, "01234567890").to_request()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(node.path("outside.txt")).unwrap(),
        "outside"
    );
    assert_eq!(stored_files(&node).len(), 1);
    assert_eq!(std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(), 1);
}

#[actix_web::test]
async fn a_slot_whose_post_never_reached_logd_leaves_nothing() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    node.audit
        .fail_with(|| LogdError::Unreachable("connect: connection refused".into()));
    let uri = format!("/upload/z1/a.txt?v={}", sign(SLOT_SECRET, "z1/a.txt 1"));
    error_of(
        test::call_service(&app, put(&uri, "x").to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(stored_files(&node).is_empty());
    assert_eq!(
        std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(),
        0,
        "no slot record either"
    );
}

/// logd does not answer (for longer than httpd sends the Post again): 503, but the file and the
/// slot record stay, since the row may exist; a retried PUT is answered 503 until logd says.
#[actix_web::test]
async fn a_slot_whose_post_is_unknown_keeps_its_file_and_refuses_retries_until_resolved() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    node.audit
        .fail_with(|| LogdError::Unavailable("logd is down".into()));
    let uri = format!("/upload/z2/a.txt?v={}", sign(SLOT_SECRET, "z2/a.txt 1"));
    error_of(
        test::call_service(&app, put(&uri, "x").to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert_eq!(stored_files(&node).len(), 1);
    assert_eq!(std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(), 1);
    node.audit.recover();
    let message = error_of(
        test::call_service(&app, put(&uri, "x").to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(message.contains("logd"), "{message}");
    assert!(node.audit.rows().is_empty());
}

#[actix_web::test]
async fn expired_slot_files_are_purged_but_not_in_the_current_hour() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let expires = at(11, 15, 45).timestamp();
    let token = file_share_token(
        SLOT_SECRET,
        "e1",
        "cat.png",
        4,
        at(11, 15, 35).timestamp(),
        Some(expires),
    );
    let request = put("/upload/e1/cat.png", "meow")
        .insert_header((header::AUTHORIZATION, token))
        .to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::CREATED
    );
    let get = || TestRequest::get().uri("/upload/e1/cat.png").to_request();
    assert_eq!(
        test::call_service(&app, get()).await.status(),
        StatusCode::OK
    );

    node.set_time(at(11, 15, 50));
    assert_eq!(
        node.transfers.purge_expired_slots().await.unwrap(),
        0,
        "the current hour is never purged"
    );
    assert_eq!(stored_files(&node).len(), 1);
    error_of(
        test::call_service(&app, get()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    assert_eq!(node.audit.rows()[0].file_state, None);
    node.set_time(at(11, 16, 0));
    assert_eq!(node.transfers.purge_expired_slots().await.unwrap(), 1);
    assert!(stored_files(&node).is_empty());
    assert_eq!(std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(), 0);
    assert_eq!(node.transfers.purge_expired_slots().await.unwrap(), 0);
    let post = &node.audit.rows()[0];
    assert_eq!(
        (post.method, post.file_state),
        (Method::Post, Some(FileState::Expired)),
        "removed on purpose, not drift"
    );
}

/// logd is down when an expired slot's file is removed: the slot record stays until the Post
/// row is marked, at the next round once logd is back (the file is gone by then).
#[actix_web::test]
async fn an_expired_file_removed_while_logd_is_down_is_marked_at_the_next_round() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = file_share_token(
        SLOT_SECRET,
        "e2",
        "cat.png",
        4,
        at(11, 15, 35).timestamp(),
        Some(at(11, 15, 45).timestamp()),
    );
    let request = put("/upload/e2/cat.png", "meow")
        .insert_header((header::AUTHORIZATION, token))
        .to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::CREATED
    );
    node.set_time(at(11, 16, 0));
    node.audit
        .fail_with(|| LogdError::Unreachable("connect: connection refused".into()));
    assert!(node.transfers.purge_expired_slots().await.is_err());
    assert!(stored_files(&node).is_empty());
    assert_eq!(
        std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(),
        1,
        "the record waits for the mark"
    );
    assert_eq!(node.audit.rows()[0].file_state, None);

    node.audit.recover();
    assert_eq!(
        node.transfers.purge_expired_slots().await.unwrap(),
        0,
        "the file was removed before"
    );
    assert_eq!(node.audit.rows()[0].file_state, Some(FileState::Expired));
    assert_eq!(std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(), 0);
}

/// Defect 5 of issue 15: once an expired slot's file is purged, the slot stays used for as long
/// as its token could still be presented.
#[actix_web::test]
async fn a_purged_slot_cannot_be_filled_again() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = file_share_token(
        SLOT_SECRET,
        "p1",
        "cat.png",
        4,
        at(11, 17, 0).timestamp(),
        Some(at(11, 15, 45).timestamp()),
    );
    let fill = || {
        put("/upload/p1/cat.png", "meow")
            .insert_header((header::AUTHORIZATION, token.clone()))
            .to_request()
    };
    assert_eq!(
        test::call_service(&app, fill()).await.status(),
        StatusCode::CREATED
    );
    node.set_time(at(11, 16, 0));
    assert_eq!(node.transfers.purge_expired_slots().await.unwrap(), 1);
    assert!(stored_files(&node).is_empty());
    error_of(
        test::call_service(&app, fill()).await,
        StatusCode::CONFLICT,
        "slot_used",
    )
    .await;
    error_of(
        test::call_service(
            &app,
            TestRequest::get().uri("/upload/p1/cat.png").to_request(),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(node.audit.rows().len(), 1, "no second Post row");

    // Once the token has expired, nobody can present it: the record goes.
    node.set_time(at(11, 17, 0));
    assert_eq!(node.transfers.purge_expired_slots().await.unwrap(), 0);
    assert_eq!(std::fs::read_dir(node.path(SLOTS_DIR)).unwrap().count(), 0);
    error_of(
        test::call_service(&app, fill()).await,
        StatusCode::GONE,
        "slot_expired",
    )
    .await;
}
