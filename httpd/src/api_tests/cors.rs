//! CORS on the slot and download routes (defect 6 of issue 15): browser XMPP clients preflight
//! their `PUT` and `GET`, and need `Access-Control-Allow-Origin` on every answer, errors too.

use actix_web::http::Method;

use super::*;
use crate::slot::sign;

const ORIGIN: &str = "https://chat.example.com";

fn preflight(uri: &str, method: &str) -> TestRequest {
    TestRequest::default()
        .method(Method::OPTIONS)
        .uri(uri)
        .insert_header((header::ORIGIN, ORIGIN))
        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, method))
        .insert_header((
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type",
        ))
}

fn allowed_origin<B>(response: &actix_web::dev::ServiceResponse<B>) -> Option<String> {
    let value = response
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)?;
    Some(value.to_str().unwrap().to_owned())
}

#[actix_web::test]
async fn browsers_may_fill_slots_and_download_from_any_origin_by_default() {
    let node = Node::with_http("max_file_size = 4");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let path = super::downloads::stored(&node, "a.txt", b"four".to_vec()).await;
    for (uri, method) in [
        ("/upload/s1/a.txt", "PUT"),
        ("/upload/s1/a.txt", "GET"),
        (path.as_str(), "GET"),
        (path.as_str(), "HEAD"),
    ] {
        let response = test::call_service(&app, preflight(uri, method).to_request()).await;
        assert!(
            response.status().is_success(),
            "{method} {uri}: {}",
            response.status()
        );
        assert_eq!(
            allowed_origin(&response).as_deref(),
            Some("*"),
            "{method} {uri}"
        );
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none(),
            "no credentials are ever allowed"
        );
        let methods = header_value(response.headers(), header::ACCESS_CONTROL_ALLOW_METHODS)
            .to_ascii_uppercase();
        for allowed in ["PUT", "GET", "HEAD"] {
            assert!(methods.contains(allowed), "{methods}");
        }
        let headers = header_value(response.headers(), header::ACCESS_CONTROL_ALLOW_HEADERS)
            .to_ascii_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{headers}"
        );
    }
    let from_browser =
        |request: TestRequest| request.insert_header((header::ORIGIN, ORIGIN)).to_request();
    let ok = test::call_service(&app, from_browser(get_request(&path))).await;
    assert_eq!(
        (ok.status(), allowed_origin(&ok).as_deref()),
        (StatusCode::OK, Some("*"))
    );
    let forbidden = TestRequest::put()
        .uri("/upload/s2/a.txt?v=00")
        .set_payload("x");
    let forbidden = test::call_service(&app, from_browser(forbidden)).await;
    assert_eq!(
        (forbidden.status(), allowed_origin(&forbidden).as_deref()),
        (StatusCode::FORBIDDEN, Some("*"))
    );
    let v = sign(SLOT_SECRET, "s3/big.bin 5");
    let too_large = TestRequest::put()
        .uri(&format!("/upload/s3/big.bin?v={v}"))
        .set_payload("12345");
    let too_large = test::call_service(&app, from_browser(too_large)).await;
    assert_eq!(
        (too_large.status(), allowed_origin(&too_large).as_deref()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("*"))
    );
    let missing = test::call_service(
        &app,
        from_browser(TestRequest::get().uri("/upload/s9/none.txt")),
    )
    .await;
    assert_eq!(
        (missing.status(), allowed_origin(&missing).as_deref()),
        (StatusCode::NOT_FOUND, Some("*"))
    );
}

#[actix_web::test]
async fn the_allowed_origins_are_configurable() {
    let node = Node::with_http(&format!("cors_allowed_origins = [\"{ORIGIN}\"]"));
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    let response =
        test::call_service(&app, preflight("/upload/s1/a.txt", "PUT").to_request()).await;
    assert_eq!(allowed_origin(&response).as_deref(), Some(ORIGIN));
    let other = preflight("/upload/s1/a.txt", "PUT")
        .insert_header((header::ORIGIN, "https://evil.example.net"));
    let response = test::call_service(&app, other.to_request()).await;
    assert_eq!(allowed_origin(&response), None);

    let closed = Node::with_http("cors_allowed_origins = []");
    let app = test::init_service(App::new().configure(routes(closed.transfers.clone()))).await;
    let response =
        test::call_service(&app, preflight("/upload/s1/a.txt", "PUT").to_request()).await;
    assert_eq!(allowed_origin(&response), None);
}
