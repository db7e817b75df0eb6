//! Uploads over HTTP beyond the raw body: multipart forms, names from `Content-Disposition`,
//! header-injection attempts, the concurrency limit, stalled bodies, and HTTPS.

use super::*;

fn multipart(token: &str, parts: &str) -> TestRequest {
    TestRequest::post()
        .uri("/files")
        .insert_header((header::AUTHORIZATION, token))
        .insert_header((header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ"))
        .set_payload(parts.replace('\n', "\r\n"))
}

#[actix_web::test]
async fn multipart_uploads_take_the_file_part() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Groupchat);
    let body = "--XyZ\nContent-Disposition: form-data; name=\"comment\"\n\nignored\n\
                --XyZ\nContent-Disposition: form-data; name=\"file\"; filename=\"été.txt\"\nContent-Type: text/plain\n\nbonjour\n--XyZ--\n";
    let response = test::call_service(&app, multipart(&token, body).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header_value(response.headers(), header::LOCATION).to_owned();
    assert!(location.ends_with("/%C3%A9t%C3%A9.txt"), "{location}");
    assert_eq!(node.audit.rows()[0].transfer.real_filename, "été.txt");
    assert_eq!(
        test::read_body(test::call_service(&app, get_request(&location).to_request()).await).await,
        "bonjour"
    );

    let no_file = "--XyZ\nContent-Disposition: form-data; name=\"comment\"\n\nhi\n--XyZ--\n";
    error_of(
        test::call_service(&app, multipart(&token, no_file).to_request()).await,
        StatusCode::BAD_REQUEST,
        "bad_file_name",
    )
    .await;
    let injected = "--XyZ\nContent-Disposition: form-data; name=\"file\"; filename=\"../../etc/passwd\"\n\nx\n--XyZ--\n";
    error_of(
        test::call_service(&app, multipart(&token, injected).to_request()).await,
        StatusCode::BAD_REQUEST,
        "bad_file_name",
    )
    .await;
    assert_eq!(entries(&node.path("files/groupchat/20140811/15")).len(), 1);
}

/// The SHA-256 of what was stored is answered (JSON and `Repr-Digest`) and in the Post row.
#[actix_web::test]
async fn an_upload_answers_and_records_the_sha256_of_its_content() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let response = test::call_service(
        &app,
        upload_request(&upload_token(ChatType::Im), "abc.txt", "abc").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // sha256sum of "abc", and the same 32 bytes in base64.
    let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(
        header_value(
            response.headers(),
            header::HeaderName::from_static("repr-digest")
        ),
        "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:"
    );
    let answer: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(answer["sha256"], hex);
    assert_eq!(node.audit.rows()[0].transfer.sha256.as_deref(), Some(hex));
}

/// logd committed the Post row and its answer was lost (logd died before answering): the Post
/// is sent again with its event id, answered with the same row, and the client gets its URI;
/// one row, one file. Before, httpd answered 503 and removed the file of a committed row.
#[actix_web::test]
async fn a_post_whose_answer_was_lost_is_sent_again_and_recorded_once() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    node.audit.lose_answers(2);
    let response = test::call_service(
        &app,
        upload_request(&upload_token(ChatType::Im), "twice.txt", "once").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header_value(response.headers(), header::LOCATION).to_owned();
    let rows = node.audit.rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].transfer.event_id.is_some());
    assert_eq!(entries(&node.path("files/im/20140811/15")).len(), 1);
    assert_eq!(
        test::read_body(test::call_service(&app, get_request(&location).to_request()).await).await,
        "once"
    );
}

#[actix_web::test]
async fn raw_uploads_may_name_the_file_in_content_disposition() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Im);
    let request = TestRequest::post()
        .uri("/files")
        .insert_header((header::AUTHORIZATION, token.as_str()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
        ))
        .set_payload("1.08");
    let response = test::call_service(&app, request.to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(node.audit.rows()[0].transfer.real_filename, "€ rates.txt");
}

#[actix_web::test]
async fn names_that_would_inject_headers_or_paths_are_refused() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Im);
    for name in [
        "a\r\nSet-Cookie: x=1.txt",
        "nul\0.txt",
        "../../../etc/passwd",
        "..",
        "a/b.txt",
        "line\nbreak",
    ] {
        let response =
            test::call_service(&app, upload_request(&token, name, "x").to_request()).await;
        error_of(response, StatusCode::BAD_REQUEST, "bad_file_name").await;
    }
    for disposition in [
        "attachment; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x.txt",
        "attachment; filename*=UTF-8''..%2F..%2Fx",
    ] {
        let request = TestRequest::post()
            .uri("/files")
            .insert_header((header::AUTHORIZATION, token.as_str()))
            .insert_header((header::CONTENT_DISPOSITION, disposition))
            .set_payload("x");
        error_of(
            test::call_service(&app, request.to_request()).await,
            StatusCode::BAD_REQUEST,
            "bad_file_name",
        )
        .await;
    }
    assert!(!node.path("files").exists(), "nothing written anywhere");
}

#[actix_web::test]
async fn transfers_beyond_the_limit_are_told_to_retry() {
    let node = Node::with_http("max_concurrent_transfers = 1");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let path = super::downloads::stored(&node, "a.bin", sample_body(300_000)).await;
    // A download in progress holds the only permit until its body is done.
    let token = download_token();
    let request = DownloadRequest {
        authorization: Some(&token),
        with_body: true,
        preconditions: Default::default(),
    };
    let in_progress = node.transfers.download(&path, &request).await.unwrap();
    let response = test::call_service(
        &app,
        upload_request(&upload_token(ChatType::Im), "b.txt", "x").to_request(),
    )
    .await;
    assert_eq!(header_value(response.headers(), header::RETRY_AFTER), "1");
    error_of(response, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    error_of(
        test::call_service(&app, get_request(&path).to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
    )
    .await;
    drop(in_progress);
    let response = test::call_service(
        &app,
        upload_request(&upload_token(ChatType::Im), "b.txt", "x").to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn a_stalled_body_times_out_and_leaves_nothing() {
    let node = Node::with_http("request_timeout_secs = 1");
    let ticket = node
        .transfers
        .admit_upload(Some(&upload_token(ChatType::Im)), None, None)
        .unwrap();
    let first =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"some"))]);
    let body = first.chain(futures_util::stream::pending());
    let e = node
        .transfers
        .upload(ticket, Some("slow.bin"), body)
        .await
        .unwrap_err();
    assert!(matches!(e, crate::Error::Stalled(1)), "{e:?}");
    assert!(
        entries(&node.path("files/im/20140811/15")).is_empty(),
        "the partial file is removed"
    );
    assert!(node.audit.rows().is_empty());
}

/// HTTPS from the configured PEM files, with the real server and curl.
#[actix_web::test]
async fn tls_from_the_configured_files() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = crate::tls::tests::self_signed(certs.path());
    let node = Node::with_http(&format!(
        "tls_certificate = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
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
    let curl = |scheme: &'static str| {
        let cert = cert.clone();
        actix_web::rt::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--cacert",
                ])
                .arg(&cert)
                .arg(format!("{scheme}://127.0.0.1:{port}/healthz"))
                .output()
                .unwrap()
        })
    };
    let https = curl("https").await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&https.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&https.stderr)
    );
    let plain = curl("http").await.unwrap();
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "no plain HTTP on a TLS listener"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[actix_web::test]
async fn a_token_may_lower_the_size_limit() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let grant = UploadGrant {
        from: "alice@example.com".into(),
        to: "bob@example.com".into(),
        chat_type: ChatType::Im,
        max_size: Some(3),
    };
    let token = format!(
        "Bearer {}",
        credentials().issue_upload(&grant, Utc::now() + chrono::Duration::hours(1))
    );
    let message = error_of(
        test::call_service(&app, upload_request(&token, "a.txt", "four").to_request()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert!(message.contains("3 bytes"), "{message}");
    let mut streamed = upload_request(&token, "a.txt", "four").to_request();
    streamed.headers_mut().remove(header::CONTENT_LENGTH);
    error_of(
        test::call_service(&app, streamed).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert_eq!(
        test::call_service(&app, upload_request(&token, "a.txt", "abc").to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn a_multipart_body_cut_short_before_its_closing_boundary_stalls_only_until_the_request_timeout(
) {
    // actix-multipart waits for more of a body that ended before its closing boundary (the fuzz
    // target `multipart` found it): the upload is refused as a stalled body, 408, nothing kept.
    let node = Node::configured("managed", "request_timeout_secs = 1");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let token = upload_token(ChatType::Im);
    let body = "--XyZ\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\n\n%PDF-1.4 data\n";
    let answer = actix_web::rt::time::timeout(
        Duration::from_secs(10),
        test::call_service(&app, multipart(&token, body).to_request()),
    )
    .await;
    error_of(
        answer.expect("answered within 10 s"),
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
    )
    .await;
    assert!(node.audit.rows().is_empty());
    assert!(
        entries(&node.path("files/im/20140811/15")).is_empty(),
        "no file, no .part"
    );
}
