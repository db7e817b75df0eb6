//! Downloads over HTTP: ranges, validators, conditional requests, presentation headers and
//! anonymous (capability-URL) downloads.

use super::*;

/// Stores `body` as `name` through the transfer logic and returns the download path.
pub(super) async fn stored(node: &Node, name: &str, body: Vec<u8>) -> String {
    let ticket = node
        .transfers
        .admit_upload(Some(&upload_token(ChatType::Im)), None, None)
        .unwrap();
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(body))]);
    let uploaded = node
        .transfers
        .upload(ticket, Some(name), body)
        .await
        .unwrap();
    uploaded.uri.strip_prefix(PUBLIC_URL).unwrap().to_owned()
}

#[actix_web::test]
async fn ranges_and_validators() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let body = sample_body(1_000);
    let path = stored(&node, "data.bin", body.clone()).await;

    let response = test::call_service(&app, get_request(&path).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let etag = header_value(&headers, header::ETAG).to_owned();
    let last_modified = header_value(&headers, header::LAST_MODIFIED).to_owned();
    assert!(etag.starts_with("\"3e8-") && etag.ends_with('"'), "{etag}");
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    assert_eq!(header_value(&headers, header::ACCEPT_RANGES), "bytes");
    assert_eq!(declared_len(&response), 1000);
    assert_eq!(test::read_body(response).await, body);

    let range = |value: &str| {
        get_request(&path)
            .insert_header((header::RANGE, value))
            .to_request()
    };
    let response = test::call_service(&app, range("bytes=100-199")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header_value(response.headers(), header::CONTENT_RANGE),
        "bytes 100-199/1000"
    );
    assert_eq!(declared_len(&response), 100);
    assert_eq!(test::read_body(response).await, body[100..200]);
    let rows = node
        .rows_when(|rows| rows.len() == 3 && rows[2].transfer.bytes_transferred == 100)
        .await;
    assert_eq!(
        rows[2].transfer.file_size, 1_000,
        "a range records the bytes sent, not the file size"
    );

    let response = test::call_service(&app, range("bytes=-10")).await;
    assert_eq!(
        header_value(response.headers(), header::CONTENT_RANGE),
        "bytes 990-999/1000"
    );
    assert_eq!(test::read_body(response).await, body[990..]);
    let response = test::call_service(&app, range("bytes=0-1,5-6")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "several ranges: the whole file"
    );
    assert_eq!(test::read_body(response).await.len(), 1_000);

    let rows_before = node
        .rows_when(|rows| rows.len() == 5 && rows[4].transfer.bytes_transferred == 1_000)
        .await
        .len();
    let response = test::call_service(&app, range("bytes=1000-")).await;
    assert_eq!(
        header_value(response.headers(), header::CONTENT_RANGE),
        "bytes */1000"
    );
    error_of(
        response,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
    )
    .await;

    let request = get_request(&path)
        .insert_header((header::IF_NONE_MATCH, etag.as_str()))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_value(response.headers(), header::ETAG), etag);
    assert!(test::read_body(response).await.is_empty());
    assert_eq!(
        node.audit.rows().len(),
        rows_before,
        "416 and 304 move no bytes and record no Get row"
    );

    let if_range = |validator: &str| {
        get_request(&path)
            .insert_header((header::RANGE, "bytes=0-9"))
            .insert_header((header::IF_RANGE, validator))
            .to_request()
    };
    let response = test::call_service(&app, if_range(&etag)).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let response = test::call_service(&app, if_range(&last_modified)).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let response = test::call_service(&app, if_range("\"an-older-version\"")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a stale If-Range gets the whole file"
    );
}

#[actix_web::test]
async fn empty_files_and_head() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let path = stored(&node, "empty.txt", Vec::new()).await;
    let response = test::call_service(
        &app,
        get_request(&path)
            .insert_header((header::RANGE, "bytes=0-"))
            .to_request(),
    )
    .await;
    assert_eq!(
        header_value(response.headers(), header::CONTENT_RANGE),
        "bytes */0"
    );
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let response = test::call_service(&app, get_request(&path).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(declared_len(&response), 0);
}

#[actix_web::test]
async fn active_content_is_never_served_inline() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    for name in [
        "page.html",
        "logo.svg",
        "x.HTM",
        "script.js",
        "a.xhtml",
        "noext",
    ] {
        let path = stored(
            &node,
            name,
            b"<svg onload=alert(1)><script>alert(1)</script>".to_vec(),
        )
        .await;
        let response = test::call_service(&app, get_request(&path).to_request()).await;
        let headers = response.headers();
        assert_eq!(
            header_value(headers, header::CONTENT_TYPE),
            "application/octet-stream",
            "{name}"
        );
        assert!(
            header_value(headers, header::CONTENT_DISPOSITION).starts_with("attachment;"),
            "{name}"
        );
        assert_eq!(
            header_value(headers, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        assert_eq!(
            header_value(headers, header::CONTENT_SECURITY_POLICY),
            "default-src 'none'; sandbox"
        );
    }
}

#[actix_web::test]
async fn anonymous_downloads_only_when_configured() {
    let closed = Node::new();
    let app = test::init_service(App::new().configure(routes(closed.transfers.clone()))).await;
    let path = stored(&closed, "a.txt", b"hello".to_vec()).await;
    let request = TestRequest::get().uri(&path).to_request();
    error_of(
        test::call_service(&app, request).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let open = Node::with_http("anonymous_downloads = true");
    let app = test::init_service(App::new().configure(routes(open.transfers.clone()))).await;
    let path = stored(&open, "a.txt", b"hello".to_vec()).await;
    let response = test::call_service(&app, TestRequest::get().uri(&path).to_request()).await;
    assert_eq!(test::read_body(response).await, "hello");
    let rows = open
        .rows_when(|rows| rows.len() == 2 && rows[1].transfer.bytes_transferred == 5)
        .await;
    assert_eq!(rows[1].transfer.jid, "anonymous@node_1");
    let forged = get_request(&path)
        .insert_header((header::AUTHORIZATION, "Bearer forged"))
        .to_request();
    error_of(
        test::call_service(&app, forged).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}
