//! JWT credentials (`httpd::auth`): the `Authorization` header of uploads and downloads. Input
//! fields: `authorization` (the header as sent) or `claims` (any JSON, sent as a token signed
//! with the node's secret, to reach the claims' checks). Checks: no token is both an upload and
//! a download token; every JID granted is valid.
#![no_main]

use httpd::auth::{bearer_token, is_valid_jid, Credentials};
use libfuzzer_sys::fuzz_target;
use mft_fuzz::{signed_token, Fields, SECRET};

fuzz_target!(|data: &[u8]| {
    let Some(fields) = Fields::parse(data) else { return };
    let header = match fields.get("claims").and_then(signed_token) {
        Some(token) => format!("Bearer {token}"),
        None => fields.get("authorization").unwrap_or_default().to_owned(),
    };
    if let Some(token) = bearer_token(&header) {
        assert!(header.len() >= token.len());
    }
    let credentials = Credentials::new(&["another secret".to_owned(), SECRET.to_owned()]);
    let upload = credentials.verify_upload(Some(&header));
    let download = credentials.verify_download(Some(&header));
    assert!(upload.is_err() || download.is_err(), "a token for both sides: {header}");
    if let Ok(grant) = upload {
        assert!(is_valid_jid(&grant.from) && is_valid_jid(&grant.to), "{grant:?}");
    }
    if let Ok(grant) = download {
        assert!(is_valid_jid(&grant.downloader), "{grant:?}");
    }
});
