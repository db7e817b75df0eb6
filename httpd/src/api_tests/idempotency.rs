//! Native uploads with an `Idempotency-Key`: a retry gets the first answer, one file and one
//! Post row; the key with another upload is 422, while in use 409; no key stores each upload.

use super::*;

fn keyed(key: &str, name: &str, body: &'static str) -> TestRequest {
    upload_request(&upload_token(ChatType::Im), name, body).insert_header(("Idempotency-Key", key))
}

/// The status, `Location` and JSON body of an upload's answer.
async fn answer<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> (StatusCode, String, serde_json::Value) {
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, test::read_body_json(response).await)
}

/// The Post rows.
fn posts(node: &Node) -> usize {
    node.audit
        .rows()
        .iter()
        .filter(|r| r.method == Method::Post)
        .count()
}

/// The files stored in the hour of the uploads.
fn stored(node: &Node) -> Vec<String> {
    let dir = node.path("files/im/20140811/15");
    if dir.exists() {
        entries(&dir)
    } else {
        Vec::new()
    }
}

/// Before, the retry was stored and recorded a second time.
#[actix_web::test]
async fn a_retry_with_the_same_key_and_bytes_gets_the_first_answer() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let first =
        answer(test::call_service(&app, keyed("\"k-1\"", "a.txt", "hello").to_request()).await)
            .await;
    assert_eq!(first.0, StatusCode::CREATED);
    let again =
        answer(test::call_service(&app, keyed("\"k-1\"", "a.txt", "hello").to_request()).await)
            .await;
    assert_eq!(again, first);
    // The bare form of the key is the same key.
    assert_eq!(
        answer(test::call_service(&app, keyed("k-1", "a.txt", "hello").to_request()).await).await,
        first
    );
    assert_eq!(posts(&node), 1);
    assert_eq!(stored(&node).len(), 1);
    assert_eq!(
        test::read_body(test::call_service(&app, get_request(&first.1).to_request()).await).await,
        "hello"
    );

    // A multipart upload too.
    let form = |key: &str| {
        TestRequest::post()
            .uri("/files")
            .insert_header((header::AUTHORIZATION, upload_token(ChatType::Im)))
            .insert_header(("Idempotency-Key", key))
            .insert_header((header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ"))
            .set_payload("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.txt\"\r\n\r\nform\r\n--XyZ--\r\n")
    };
    let first = answer(test::call_service(&app, form("k-2").to_request()).await).await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(
        answer(test::call_service(&app, form("k-2").to_request()).await).await,
        first
    );
    assert_eq!(posts(&node), 2);
    assert_eq!(stored(&node).len(), 2);
}

#[actix_web::test]
async fn the_same_key_with_another_upload_is_422_and_stores_nothing() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    assert_eq!(
        test::call_service(&app, keyed("k", "a.txt", "hello").to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    for other in [
        keyed("k", "a.txt", "hellO"),
        keyed("k", "a.txt", "hello!"),
        keyed("k", "b.txt", "hello"),
    ] {
        error_of(
            test::call_service(&app, other.to_request()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )
        .await;
    }
    let other_recipient = upload_token(ChatType::Groupchat);
    let request =
        upload_request(&other_recipient, "a.txt", "hello").insert_header(("Idempotency-Key", "k"));
    error_of(
        test::call_service(&app, request.to_request()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(posts(&node), 1);
    assert_eq!(stored(&node).len(), 1);
    assert!(!node.path("files/groupchat").exists());
}

#[actix_web::test]
async fn an_upload_while_another_with_its_key_runs_is_409() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let (send, body) = tokio::sync::oneshot::channel::<bytes::Bytes>();
    let transfers = node.transfers.clone();
    let ticket = transfers
        .admit_upload(Some(&upload_token(ChatType::Im)), Some("k"), None)
        .unwrap();
    let running = actix_web::rt::spawn(async move {
        let body =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(body.await.unwrap()) });
        transfers.upload(ticket, Some("a.txt"), body).await
    });
    for _ in 0..10 {
        actix_web::rt::task::yield_now().await;
    }
    error_of(
        test::call_service(&app, keyed("k", "a.txt", "hello").to_request()).await,
        StatusCode::CONFLICT,
        "idempotency_key_in_use",
    )
    .await;
    send.send("hello".into()).unwrap();
    let first = running.await.unwrap().unwrap();
    let again =
        answer(test::call_service(&app, keyed("k", "a.txt", "hello").to_request()).await).await;
    assert_eq!((again.0, again.1), (StatusCode::CREATED, first.uri));
    assert_eq!(posts(&node), 1);
    assert_eq!(stored(&node).len(), 1);
}

#[actix_web::test]
async fn without_a_key_each_upload_is_stored_and_a_bad_key_is_400() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    for _ in 0..2 {
        let response = test::call_service(
            &app,
            upload_request(&upload_token(ChatType::Im), "a.txt", "hello").to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(posts(&node), 2);
    assert_eq!(stored(&node).len(), 2);
    for bad in ["", "a b", "\"a", &"k".repeat(256)] {
        error_of(
            test::call_service(&app, keyed(bad, "a.txt", "hello").to_request()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    assert_eq!(stored(&node).len(), 2);
}

/// logd recorded the Post and every answer was lost: the client got 503, and its retry gets the
/// first answer; while logd cannot say whether the row exists, 503 before the body.
#[actix_web::test]
async fn a_retry_after_a_503_whose_row_was_committed_gets_the_first_answer() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    node.audit.lose_answers(usize::MAX);
    error_of(
        test::call_service(&app, keyed("k", "a.txt", "hello").to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    node.audit.lose_answers(0);
    node.audit
        .fail_with(|| LogdError::Unavailable("logd is down".into()));
    error_of(
        test::call_service(&app, keyed("k", "a.txt", "hello").to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    node.audit.recover();
    let (status, location, json) =
        answer(test::call_service(&app, keyed("k", "a.txt", "hello").to_request()).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(json["uri"], location);
    assert_eq!(posts(&node), 1);
    assert_eq!(stored(&node).len(), 1);
    assert_eq!(
        test::read_body(test::call_service(&app, get_request(&location).to_request()).await).await,
        "hello"
    );
}

/// A Post the database did not commit: the file and key record are removed, and a retry with
/// the key stores the upload anew.
#[actix_web::test]
async fn a_retry_after_an_upload_that_was_not_recorded_is_stored() {
    let node = Node::new();
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    node.audit
        .fail_with(|| LogdError::Database("disk full".into()));
    error_of(
        test::call_service(&app, keyed("k", "a.txt", "hello").to_request()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    )
    .await;
    assert!(stored(&node).is_empty());
    node.audit.recover();
    assert_eq!(
        test::call_service(&app, keyed("k", "a.txt", "hello").to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(posts(&node), 1);
    assert_eq!(stored(&node).len(), 1);
}
