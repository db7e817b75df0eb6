//! The audit trail of XMPP transfers over HTTP: whom `Get` rows are addressed to, shares
//! reported by the XMPP module (`POST /shares`) and downloads with a per-recipient capability.

use super::*;
use crate::share::tests::share_token;
use crate::share::{sign_capability, ShareClaims, SHARE_PURPOSE};
use crate::slot::tests::file_share_token;
use crate::slot::SlotPath;

const ROOM: &str = "room1@conference.example.com";

fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri)
}

/// A share report by alice of `url` to `to` in a chat of `chat_type`, valid on the node's clock.
fn share(node: &Node, url: &str, to: &str, chat_type: &str) -> TestRequest {
    let now = node.clock.now().timestamp();
    let claims = ShareClaims {
        purpose: SHARE_PURPOSE.into(),
        sub: "alice@example.com".into(),
        url: url.into(),
        to: to.into(),
        chat_type: chat_type.into(),
        iat: now,
        exp: now + 60,
    };
    TestRequest::post().uri("/shares").insert_header((
        header::AUTHORIZATION,
        format!("Bearer {}", share_token(SLOT_SECRET, &claims)),
    ))
}

/// alice fills the `mod_http_file_share` slot `s1/cat.png` with `meow`.
fn fill_slot(node: &Node) -> TestRequest {
    let token = file_share_token(
        SLOT_SECRET,
        "s1",
        "cat.png",
        4,
        node.clock.now().timestamp() + 300,
        None,
    );
    TestRequest::put()
        .uri("/upload/s1/cat.png")
        .insert_header((header::AUTHORIZATION, token))
        .set_payload("meow")
}

/// What a share's answer says it recorded.
async fn recorded<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
    body["recorded"].as_str().unwrap().to_owned()
}

/// `(method, jid, to_jid, chat_type)` of every row.
fn trail(node: &Node) -> Vec<(Method, String, String, ChatType)> {
    node.audit
        .rows()
        .into_iter()
        .map(|r| {
            (
                r.method,
                r.transfer.jid,
                r.transfer.to_jid,
                r.transfer.chat_type,
            )
        })
        .collect()
}

fn row(
    method: Method,
    jid: &str,
    to_jid: &str,
    chat_type: ChatType,
) -> (Method, String, String, ChatType) {
    (method, jid.into(), to_jid.into(), chat_type)
}

#[actix_web::test]
async fn get_rows_are_addressed_to_the_uploads_recipient_never_the_uploader() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    // Native: alice uploads to a room, carol downloads.
    let grant = UploadGrant {
        from: "alice@example.com".into(),
        to: ROOM.into(),
        chat_type: ChatType::Groupchat,
        max_size: None,
    };
    let token = format!(
        "Bearer {}",
        credentials().issue_upload(&grant, Utc::now() + chrono::Duration::hours(1))
    );
    let response =
        test::call_service(&app, upload_request(&token, "a.txt", "hello").to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header_value(response.headers(), header::LOCATION)
        .strip_prefix(PUBLIC_URL)
        .unwrap()
        .to_owned();
    let carol = format!(
        "Bearer {}",
        credentials().issue_download(
            &DownloadGrant {
                downloader: "carol@example.com".into()
            },
            Utc::now() + chrono::Duration::hours(1)
        )
    );
    let response = test::call_service(
        &app,
        get(&location)
            .insert_header((header::AUTHORIZATION, carol))
            .to_request(),
    )
    .await;
    assert_eq!(test::read_body(response).await, "hello");
    // A mod_http_file_share slot filled by alice, downloaded by someone unknown.
    assert_eq!(
        test::call_service(&app, fill_slot(&node).to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    let response = test::call_service(&app, get("/upload/s1/cat.png").to_request()).await;
    assert_eq!(test::read_body(response).await, "meow");
    node.rows_when(|rows| rows.len() == 4).await;
    assert_eq!(
        trail(&node),
        [
            row(Method::Post, "alice@example.com", ROOM, ChatType::Groupchat),
            row(Method::Get, "carol@example.com", ROOM, ChatType::Groupchat),
            row(
                Method::Post,
                "alice@example.com",
                "anonymous@node_1",
                ChatType::Im
            ),
            row(
                Method::Get,
                "anonymous@node_1",
                "anonymous@node_1",
                ChatType::Im
            ),
        ]
    );
}

#[actix_web::test]
async fn shares_name_the_recipient_move_the_file_and_capabilities_name_the_downloader() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    assert_eq!(
        test::call_service(&app, fill_slot(&node).to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    let post = node.audit.rows()[0].transfer.clone();
    assert!(node
        .path(&format!("files/im/20140811/15/{}", post.filename))
        .exists());

    // The first share, an hour later: the Post row names the room, the file moves to the
    // persistent directory of its upload's hour, its URL stays the same.
    node.set_time(at(11, 16, 45));
    let url = format!("{PUBLIC_URL}/upload/s1/cat.png");
    assert_eq!(
        recorded(
            test::call_service(&app, share(&node, &url, ROOM, "persistent").to_request()).await
        )
        .await,
        "first"
    );
    let moved = format!("files/persistent/20140811/15/{}", post.filename);
    assert!(
        node.path(&moved).exists()
            && !node
                .path(&format!("files/im/20140811/15/{}", post.filename))
                .exists()
    );
    let amended = node.audit.rows()[0].transfer.clone();
    assert_eq!(amended.file_path, format!("/srv/mft/node_1/{moved}"));
    assert_eq!(
        recorded(
            test::call_service(&app, share(&node, &url, ROOM, "persistent").to_request()).await
        )
        .await,
        "already_recorded",
        "a retried report"
    );
    // Shared again, with dave: a Share row; a capability in the shared URL is ignored.
    let with_query =
        format!("{url}?mft_for=x%40example.com&mft_to=y%40example.com&mft_type=im&mft_cap=00");
    assert_eq!(
        recorded(
            test::call_service(
                &app,
                share(&node, &with_query, "dave@example.com", "im").to_request()
            )
            .await
        )
        .await,
        "again"
    );
    assert_eq!(
        recorded(
            test::call_service(
                &app,
                share(&node, &url, "dave@example.com", "im").to_request()
            )
            .await
        )
        .await,
        "already_recorded"
    );

    // Downloads: bob with his capability for the room, one without any, one with a forged one.
    let slot = SlotPath::parse("s1/cat.png").unwrap();
    let cap = sign_capability(
        SLOT_SECRET,
        &slot,
        "bob@example.com",
        ROOM,
        ChatType::Persistent,
    );
    let bob = format!(
        "/upload/s1/cat.png?mft_for=bob%40example.com&mft_to={}&mft_type=persistent&mft_cap={cap}",
        ROOM.replace('@', "%40")
    );
    assert_eq!(
        test::read_body(test::call_service(&app, get(&bob).to_request()).await).await,
        "meow"
    );
    assert_eq!(
        test::read_body(test::call_service(&app, get("/upload/s1/cat.png").to_request()).await)
            .await,
        "meow"
    );
    let forged = bob.replace("bob%40", "carol%40");
    error_of(
        test::call_service(&app, get(&forged).to_request()).await,
        StatusCode::FORBIDDEN,
        "bad_capability",
    )
    .await;
    let head = TestRequest::default()
        .method(actix_web::http::Method::HEAD)
        .uri(&bob);
    assert_eq!(
        declared_len(&test::call_service(&app, head.to_request()).await),
        4,
        "HEAD answers Content-Length"
    );
    node.rows_when(|rows| rows.len() == 4).await;
    assert_eq!(
        trail(&node),
        [
            row(
                Method::Post,
                "alice@example.com",
                ROOM,
                ChatType::Persistent
            ),
            row(
                Method::Share,
                "alice@example.com",
                "dave@example.com",
                ChatType::Im
            ),
            row(Method::Get, "bob@example.com", ROOM, ChatType::Persistent),
            row(Method::Get, "anonymous@node_1", ROOM, ChatType::Persistent),
        ]
    );

    // Refused: a URL of another node or not a slot, no such slot, a bad token.
    for (url, status, code) in [
        (
            "https://elsewhere.example.com/upload/s1/cat.png".to_owned(),
            StatusCode::BAD_REQUEST,
            "not_our_url",
        ),
        (
            format!("{PUBLIC_URL}/files/node_1/im/20140811/15/x/cat.png"),
            StatusCode::BAD_REQUEST,
            "not_our_url",
        ),
        (
            format!("{PUBLIC_URL}/upload/s2/cat.png"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        error_of(
            test::call_service(&app, share(&node, &url, ROOM, "groupchat").to_request()).await,
            status,
            code,
        )
        .await;
    }
    let unsigned = TestRequest::post()
        .uri("/shares")
        .insert_header((header::AUTHORIZATION, "Bearer x.y.z"));
    error_of(
        test::call_service(&app, unsigned.to_request()).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(node.audit.rows().len(), 4, "refusals record nothing");
}

#[actix_web::test]
async fn a_download_before_the_share_is_recorded_takes_its_chat_from_the_capability() {
    let node = Node::with_http("");
    let app = test::init_service(App::new().configure(routes(node.transfers.clone()))).await;
    assert_eq!(
        test::call_service(&app, fill_slot(&node).to_request())
            .await
            .status(),
        StatusCode::CREATED
    );
    // The room's share report is still on its way; the file is still under files/im/.
    let slot = SlotPath::parse("s1/cat.png").unwrap();
    let cap = sign_capability(
        SLOT_SECRET,
        &slot,
        "bob@example.com",
        ROOM,
        ChatType::Groupchat,
    );
    let bob = format!(
        "/upload/s1/cat.png?mft_for=bob%40example.com&mft_to={}&mft_type=groupchat&mft_cap={cap}",
        ROOM.replace('@', "%40")
    );
    assert_eq!(
        test::read_body(test::call_service(&app, get(&bob).to_request()).await).await,
        "meow"
    );
    node.rows_when(|rows| rows.len() == 2).await;
    assert_eq!(
        trail(&node)[1],
        row(Method::Get, "bob@example.com", ROOM, ChatType::Groupchat)
    );
}
