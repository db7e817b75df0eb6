//! XEP-0363 slots (`httpd::slot`): the slot path after `/upload/` and each scheme's credentials.
//! Input fields: `path` (raw, percent-encoded), `v`, `v2`, `authorization`, `content-length`,
//! `content-type`, `ejabberd-jid-domain` (`http.ejabberd_jid_domain`); `sign: v` or `sign: v2` replaces that MAC by the right one for the path, and
//! `claims` (JSON) sends a `mod_http_file_share` token signed with the secret, so that inputs
//! reach what follows the signature. Checks: a path that parses has 2 or 3 plain segments; a
//! grant stores the path's own name and the size the request declared (and the MAC or token covers).
#![no_main]

use chrono::DateTime;
use httpd::slot::{sign, SlotPath, SlotRequest, SlotSecrets};
use libfuzzer_sys::fuzz_target;
use mft_fuzz::{signed_token, Fields, SECRET};

fuzz_target!(|data: &[u8]| {
    let Some(fields) = Fields::parse(data) else { return };
    let Ok(path) = SlotPath::parse(fields.get("path").unwrap_or_default()) else { return };
    let segments: Vec<&str> = path.as_str().split('/').collect();
    assert!((2..=3).contains(&segments.len()));
    assert!(segments.iter().all(|s| !matches!(*s, "" | "." | "..")), "{segments:?}");

    let content_length = fields.number("content-length");
    let content_type = fields.get("content-type");
    let length = content_length.unwrap_or_default();
    let mac = match fields.get("sign") {
        Some("v") => Some(sign(SECRET, &format!("{} {length}", path.as_str()))),
        Some("v2") => {
            let content_type = content_type.unwrap_or("application/octet-stream");
            Some(sign(SECRET, &format!("{}\0{length}\0{content_type}", path.as_str())))
        }
        _ => None,
    };
    let token = fields.get("claims").and_then(signed_token).map(|t| format!("Bearer {t}"));
    let request = SlotRequest {
        v: if fields.get("sign") == Some("v") { mac.as_deref() } else { fields.get("v") },
        v2: if fields.get("sign") == Some("v2") { mac.as_deref() } else { fields.get("v2") },
        authorization: token.as_deref().or(fields.get("authorization")),
        content_length,
        content_type,
    };
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let secrets = SlotSecrets::new(&["another secret".to_owned(), SECRET.to_owned()], fields.get("ejabberd-jid-domain"));
    if let Ok(grant) = secrets.verify(&path, &request, now) {
        assert_eq!(Ok(&grant.real_name), path.real_name().as_ref());
        assert_eq!(Some(grant.size), content_length);
    }
});
