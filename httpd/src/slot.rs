//! XEP-0363 external upload slots: the pre-signed `PUT` URLs that a stock XMPP server hands out
//! and this node fills, and how each scheme's credentials are checked.
//!
//! - Prosody `mod_http_upload_external` `v1`: `PUT /upload/<uuid>/<file>?v=<hex>`, the
//!   HMAC-SHA256 of `"<path> <Content-Length>"`.
//! - Prosody `mod_http_upload_external` `v2`: `?v2=<hex>` of
//!   `"<path>\0<Content-Length>\0<Content-Type>"` (`application/octet-stream` when the request
//!   has none, as Prosody signs it).
//! - ejabberd `mod_http_upload` with `external_secret`: the `v1` MAC over `<hash>/<random>/<file>`.
//! - Prosody `mod_http_file_share` (external): `PUT /upload/<slot>/<file>` with
//!   `Authorization: Bearer <HS256 JWT>` (claims `slot`, `iat`, `exp`, `sub`, `filename`,
//!   `filesize`, `filetype`, optional `expires`, and an optional `chat_type` of ours).
//!
//! `<path>` is the request path after `/upload/`, percent-decoded; it is also the slot's identity.
//! Any of `http.slot_secrets` verifies a slot, so the secret rotates without downtime; MACs are
//! compared with each in constant time (`hmac`'s `verify_slice`). Nothing here does I/O or knows
//! HTTP: it turns the request's parts into a [`SlotGrant`] or a [`SlotError`], which carries the
//! status the scheme's clients expect. No part of the path ever becomes a file system path.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::{bearer_token, is_valid_jid};
use crate::layout::ChatType;
use crate::real_name::RealName;

/// The route prefix of every slot URL.
pub const SLOT_PREFIX: &str = "/upload/";

/// Which XMPP server's scheme a slot request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    ProsodyV1,
    ProsodyV2,
    Ejabberd,
    FileShare,
}

/// Why a slot request was refused; each variant is the status its scheme's clients expect.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    /// 403: `http.slot_secrets` is empty, so no slot can be valid.
    #[error("this node accepts no upload slots (http.slot_secrets is empty)")]
    NotConfigured,
    /// 404: not the shape of any scheme's slot path.
    #[error(
        "not an upload slot: expected /upload/<slot>/<file> or /upload/<hash>/<random>/<file>"
    )]
    BadPath,
    /// 403 (Prosody external, ejabberd): the `v`/`v2` token is missing or wrong.
    #[error("the slot token (?v= or ?v2=) is missing or does not match")]
    BadMac,
    /// 411: the MAC covers the body's length, so the request must declare it.
    #[error("a slot upload needs a Content-Length")]
    LengthRequired,
    /// 401 (`mod_http_file_share`): the bearer token is missing, malformed or wrongly signed.
    #[error("the slot token is missing or not valid: {0}")]
    BadToken(String),
    /// 410 (`mod_http_file_share`): the slot's token has expired.
    #[error("the upload slot has expired")]
    Expired,
    /// 400 (`mod_http_file_share`): the token was issued for another slot or file name.
    #[error("the token is for another slot: {0}")]
    Mismatch(&'static str),
    /// 413: the body's length is not the one the slot was granted for.
    #[error("the upload is {declared} bytes but the slot was granted for {granted}")]
    SizeMismatch { declared: u64, granted: u64 },
    /// 409: a file was already uploaded to this slot (or is being uploaded).
    #[error("this upload slot has already been used")]
    AlreadyUsed,
    /// 403: a download capability (`mft_for`, `mft_to`, `mft_cap`) is incomplete or does not
    /// match (see [`crate::share`]).
    #[error("the download capability (mft_for, mft_to, mft_cap) is incomplete or does not match")]
    BadCapability,
    /// 400: a share names a URL that is not one of this node's slot URLs.
    #[error("the shared URL is not an upload slot URL of this node")]
    NotOurUrl,
}

/// A slot path after `/upload/`: percent-decoded, 2 or 3 segments, none empty, `.` or `..`,
/// and no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPath(String);

impl SlotPath {
    /// Parses the raw (percent-encoded) path after [`SLOT_PREFIX`].
    pub fn parse(raw: &str) -> Result<SlotPath, SlotError> {
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| SlotError::BadPath)?;
        let segments = decoded.split('/').count();
        let sane = decoded
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(char::is_control));
        if sane && (2..=3).contains(&segments) {
            Ok(SlotPath(decoded.into_owned()))
        } else {
            Err(SlotError::BadPath)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn segments(&self) -> Vec<&str> {
        self.0.split('/').collect()
    }

    /// The user's file name: the last segment.
    pub fn real_name(&self) -> Result<RealName, SlotError> {
        let last = self.0.rsplit('/').next().unwrap_or_default();
        RealName::parse(last).map_err(|_| SlotError::BadPath)
    }
}

/// A `PUT` to a slot URL, as far as the schemes care.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotRequest<'a> {
    pub v: Option<&'a str>,
    pub v2: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub content_length: Option<u64>,
    pub content_type: Option<&'a str>,
}

/// What a valid slot request may store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotGrant {
    pub scheme: Scheme,
    pub real_name: RealName,
    /// The uploader's JID, when the scheme names one (`mod_http_file_share`'s `sub`).
    pub uploader: Option<String>,
    /// `im` unless a `mod_http_file_share` token carries our `chat_type` claim.
    pub chat_type: ChatType,
    /// The body's exact length.
    pub size: u64,
    /// When the stored file is to be purged, if the scheme says.
    pub expires: Option<DateTime<Utc>>,
    /// Until when the credential could still be presented: `mod_http_file_share`'s `exp`;
    /// `None` for the MAC schemes, whose slot URLs never expire.
    pub token_expires: Option<DateTime<Utc>>,
}

/// The claims of a `mod_http_file_share` upload token.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileShareClaims {
    pub slot: String,
    pub iat: i64,
    pub exp: i64,
    pub sub: String,
    pub filename: String,
    pub filesize: u64,
    pub filetype: String,
    #[serde(default)]
    pub expires: Option<i64>,
    #[serde(default)]
    pub chat_type: Option<String>,
    /// Not before (unix time), if the XMPP server sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Checks slot requests against the secrets shared with the XMPP server: any of them verifies,
/// so a secret rotates without downtime.
#[derive(Clone)]
pub struct SlotSecrets {
    secrets: Vec<String>,
    /// `http.ejabberd_jid_domain`: ejabberd's slots name their uploader (`jid_in_url: node`).
    ejabberd_jid_domain: Option<String>,
}

impl std::fmt::Debug for SlotSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotSecrets({} secrets)", self.secrets.len())
    }
}

impl SlotSecrets {
    /// From `http.slot_secrets` and `http.ejabberd_jid_domain`.
    pub fn new(secrets: &[String], ejabberd_jid_domain: Option<&str>) -> Self {
        Self {
            secrets: secrets.to_vec(),
            ejabberd_jid_domain: ejabberd_jid_domain.map(str::to_owned),
        }
    }

    /// The secrets, for the other credentials signed with them ([`crate::share`]).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// The uploader an ejabberd slot names: `<first segment>@<http.ejabberd_jid_domain>`, if
    /// that domain is set (ejabberd's `jid_in_url: node` puts the user's node there) and the
    /// result is a JID.
    fn ejabberd_uploader(&self, path: &SlotPath) -> Option<String> {
        let domain = self.ejabberd_jid_domain.as_deref()?;
        let node = path.segments().first().copied()?;
        let jid = format!("{node}@{domain}");
        (!node.contains(['@', '/']) && is_valid_jid(&jid)).then_some(jid)
    }

    /// Verifies a `PUT` to `path` and says what it may store.
    pub fn verify(
        &self,
        path: &SlotPath,
        request: &SlotRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<SlotGrant, SlotError> {
        if self.secrets.is_empty() {
            return Err(SlotError::NotConfigured);
        }
        if request.authorization.is_some() {
            return verify_file_share(&self.secrets, path, request, now);
        }
        let size = request.content_length.ok_or(SlotError::LengthRequired)?;
        let scheme = match (request.v2.is_some(), path.segments().len()) {
            (true, 2) => Scheme::ProsodyV2,
            (false, 2) => Scheme::ProsodyV1,
            (false, 3) => Scheme::Ejabberd,
            _ => return Err(SlotError::BadPath),
        };
        let (token, message) = match scheme {
            Scheme::ProsodyV2 => {
                let content_type = request.content_type.unwrap_or("application/octet-stream");
                (
                    request.v2,
                    format!("{}\0{size}\0{content_type}", path.as_str()),
                )
            }
            _ => (request.v, format!("{} {size}", path.as_str())),
        };
        let token = hex::decode(token.ok_or(SlotError::BadMac)?).map_err(|_| SlotError::BadMac)?;
        // Every secret is tried, so the time taken does not tell which one matched.
        if self
            .secrets
            .iter()
            .filter(|secret| mac(secret, &message).verify_slice(&token).is_ok())
            .count()
            == 0
        {
            return Err(SlotError::BadMac);
        }
        Ok(SlotGrant {
            scheme,
            real_name: path.real_name()?,
            uploader: match scheme {
                Scheme::Ejabberd => self.ejabberd_uploader(path),
                _ => None,
            },
            chat_type: ChatType::Im,
            size,
            expires: None,
            token_expires: None,
        })
    }
}

/// The HMAC-SHA256 of `message` under `secret`.
pub(crate) fn mac(secret: &str, message: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac
}

/// The lower-case hex MAC of `message`, as the Prosody and ejabberd modules put it in `?v=`.
pub fn sign(secret: &str, message: &str) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

fn verify_file_share(
    secrets: &[String],
    path: &SlotPath,
    request: &SlotRequest<'_>,
    now: DateTime<Utc>,
) -> Result<SlotGrant, SlotError> {
    let header = request.authorization.unwrap_or_default();
    let token =
        bearer_token(header).ok_or_else(|| SlotError::BadToken("not a Bearer token".into()))?;
    let claims: FileShareClaims = signed_claims(secrets, token)?;
    if claims.exp <= now.timestamp() {
        return Err(SlotError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now.timestamp()) {
        return Err(SlotError::BadToken(
            "the token is not valid yet (nbf)".into(),
        ));
    }
    let [slot, file] = path.segments()[..] else {
        return Err(SlotError::BadPath);
    };
    if claims.slot != slot {
        return Err(SlotError::Mismatch("slot"));
    }
    if claims.filename != file {
        return Err(SlotError::Mismatch("filename"));
    }
    if !is_valid_jid(&claims.sub) {
        return Err(SlotError::BadToken("the sub claim is not a JID".into()));
    }
    let chat_type = match claims.chat_type.as_deref() {
        None => ChatType::Im,
        Some(c) => c.parse().map_err(|_| {
            SlotError::BadToken("the chat_type claim is not im, groupchat or persistent".into())
        })?,
    };
    let declared = request.content_length.ok_or(SlotError::LengthRequired)?;
    if declared != claims.filesize {
        return Err(SlotError::SizeMismatch {
            declared,
            granted: claims.filesize,
        });
    }
    Ok(SlotGrant {
        scheme: Scheme::FileShare,
        real_name: path.real_name()?,
        uploader: Some(claims.sub),
        chat_type,
        size: declared,
        expires: claims.expires.and_then(|t| DateTime::from_timestamp(t, 0)),
        token_expires: DateTime::from_timestamp(claims.exp, 0),
    })
}

/// The claims of an HS256 token signed with any of `secrets` (slot tokens, and the share tokens
/// of [`crate::share`]).
pub(crate) fn signed_claims<T: serde::de::DeserializeOwned>(
    secrets: &[String],
    token: &str,
) -> Result<T, SlotError> {
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry and `nbf` are checked by the caller against the injected clock, without leeway
    // (Prosody signs its slot tokens on the clock it checks them with).
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    for secret in secrets {
        match jsonwebtoken::decode::<T>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        ) {
            Ok(data) => return Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            Err(e) => return Err(SlotError::BadToken(e.to_string())),
        }
    }
    Err(SlotError::BadToken("the signature does not match".into()))
}

#[cfg(test)]
pub mod tests {
    use chrono::TimeZone;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    pub const SECRET: &str = "slot-secret-0123456789";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2014, 8, 11, 15, 30, 0).unwrap()
    }

    /// A `mod_http_file_share` token for `slot`/`filename`, `filesize` bytes, valid until `exp`.
    pub fn file_share_token(
        secret: &str,
        slot: &str,
        filename: &str,
        filesize: u64,
        exp: i64,
        expires: Option<i64>,
    ) -> String {
        let claims = FileShareClaims {
            slot: slot.into(),
            iat: exp - 300,
            exp,
            sub: "alice@example.com".into(),
            filename: filename.into(),
            filesize,
            filetype: "image/png".into(),
            expires,
            chat_type: None,
            nbf: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        format!("Bearer {token}")
    }

    fn path(raw: &str) -> SlotPath {
        SlotPath::parse(raw).unwrap()
    }

    fn secrets(secrets: &[&str]) -> SlotSecrets {
        SlotSecrets::new(
            &secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            None,
        )
    }

    fn secret() -> SlotSecrets {
        secrets(&[SECRET])
    }

    #[test]
    fn prosody_v1_and_ejabberd() {
        let p = path("4c1f0a/photo%20one.jpg");
        assert_eq!(
            p.as_str(),
            "4c1f0a/photo one.jpg",
            "the MAC covers the decoded path"
        );
        let v = sign(SECRET, "4c1f0a/photo one.jpg 1234");
        let request = SlotRequest {
            v: Some(&v),
            content_length: Some(1234),
            ..Default::default()
        };
        let grant = secret().verify(&p, &request, now()).unwrap();
        assert_eq!(
            (grant.scheme, grant.size, grant.real_name.as_str()),
            (Scheme::ProsodyV1, 1234, "photo one.jpg")
        );
        assert_eq!(
            (grant.uploader, grant.chat_type, grant.expires),
            (None, ChatType::Im, None)
        );

        let wrong_size = SlotRequest {
            content_length: Some(1235),
            ..request
        };
        assert_eq!(
            secret().verify(&p, &wrong_size, now()),
            Err(SlotError::BadMac)
        );
        let upper = v.to_uppercase();
        assert!(
            secret()
                .verify(
                    &p,
                    &SlotRequest {
                        v: Some(&upper),
                        ..request
                    },
                    now()
                )
                .is_ok(),
            "hex is case-insensitive"
        );
        let other = secrets(&["another-secret-0123456"]);
        assert_eq!(other.verify(&p, &request, now()), Err(SlotError::BadMac));
        assert_eq!(
            secret().verify(&p, &SlotRequest { v: None, ..request }, now()),
            Err(SlotError::BadMac)
        );
        assert_eq!(
            secret().verify(
                &p,
                &SlotRequest {
                    v: Some("zz"),
                    ..request
                },
                now()
            ),
            Err(SlotError::BadMac)
        );
        assert_eq!(
            secret().verify(
                &p,
                &SlotRequest {
                    content_length: None,
                    ..request
                },
                now()
            ),
            Err(SlotError::LengthRequired)
        );
        assert_eq!(
            secrets(&[]).verify(&p, &request, now()),
            Err(SlotError::NotConfigured)
        );

        let e = path("a1b2c3d4/Xy9rT/report.pdf");
        let v = sign(SECRET, "a1b2c3d4/Xy9rT/report.pdf 10");
        let grant = secret()
            .verify(
                &e,
                &SlotRequest {
                    v: Some(&v),
                    content_length: Some(10),
                    ..Default::default()
                },
                now(),
            )
            .unwrap();
        assert_eq!(
            (grant.scheme, grant.real_name.as_str()),
            (Scheme::Ejabberd, "report.pdf")
        );
        assert_eq!(
            grant.uploader, None,
            "without http.ejabberd_jid_domain the first segment is a hash"
        );
    }

    #[test]
    fn ejabberd_slots_with_jid_in_url_node_name_their_uploader() {
        let secrets = SlotSecrets::new(&[SECRET.to_owned()], Some("example.com"));
        let grant = |raw: &str| {
            let v = sign(SECRET, &format!("{} 10", path(raw).as_str()));
            secrets.verify(
                &path(raw),
                &SlotRequest {
                    v: Some(&v),
                    content_length: Some(10),
                    ..Default::default()
                },
                now(),
            )
        };
        assert_eq!(
            grant("alice/Xy9rT/report.pdf").unwrap().uploader.as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            grant("al%40ice/Xy9rT/report.pdf").unwrap().uploader,
            None,
            "a node with @ names no one"
        );
        assert_eq!(
            grant("alice/report.pdf").unwrap().uploader,
            None,
            "Prosody's slots are not ejabberd's"
        );
    }

    #[test]
    fn any_listed_secret_verifies() {
        const OLD: &str = "old-slot-secret-0123456";
        fn by_mac(v: &str) -> SlotRequest<'_> {
            SlotRequest {
                v: Some(v),
                content_length: Some(5),
                ..Default::default()
            }
        }
        fn by_token(token: &str) -> SlotRequest<'_> {
            SlotRequest {
                authorization: Some(token),
                content_length: Some(5),
                ..Default::default()
            }
        }
        let p = path("r1/a.txt");
        let exp = now().timestamp() + 300;
        let (old_v, new_v) = (sign(OLD, "r1/a.txt 5"), sign(SECRET, "r1/a.txt 5"));
        let (old_token, new_token) = (
            file_share_token(OLD, "r1", "a.txt", 5, exp, None),
            file_share_token(SECRET, "r1", "a.txt", 5, exp, None),
        );

        let rotating = secrets(&[SECRET, OLD]);
        for request in [
            by_mac(&old_v),
            by_mac(&new_v),
            by_token(&old_token),
            by_token(&new_token),
        ] {
            assert!(rotating.verify(&p, &request, now()).is_ok(), "{request:?}");
        }
        let rotated = secrets(&[SECRET]);
        assert!(rotated.verify(&p, &by_mac(&new_v), now()).is_ok());
        assert!(rotated.verify(&p, &by_token(&new_token), now()).is_ok());
        assert_eq!(
            rotated.verify(&p, &by_mac(&old_v), now()),
            Err(SlotError::BadMac)
        );
        assert_eq!(
            rotated.verify(&p, &by_token(&old_token), now()),
            Err(SlotError::BadToken("the signature does not match".into()))
        );
    }

    #[test]
    fn prosody_v2_covers_the_content_type() {
        let p = path("uuid-1/a.png");
        let v2 = sign(SECRET, "uuid-1/a.png\x0042\x00image/png");
        let request = SlotRequest {
            v2: Some(&v2),
            content_length: Some(42),
            content_type: Some("image/png"),
            ..Default::default()
        };
        assert_eq!(
            secret().verify(&p, &request, now()).unwrap().scheme,
            Scheme::ProsodyV2
        );
        let other_type = SlotRequest {
            content_type: Some("text/html"),
            ..request
        };
        assert_eq!(
            secret().verify(&p, &other_type, now()),
            Err(SlotError::BadMac)
        );
        let default = sign(SECRET, "uuid-1/a.png\x0042\x00application/octet-stream");
        let untyped = SlotRequest {
            v2: Some(&default),
            content_type: None,
            ..request
        };
        assert!(secret().verify(&p, &untyped, now()).is_ok());
        let v1_as_v2 = sign(SECRET, "uuid-1/a.png 42");
        assert_eq!(
            secret().verify(
                &p,
                &SlotRequest {
                    v2: Some(&v1_as_v2),
                    ..request
                },
                now()
            ),
            Err(SlotError::BadMac)
        );
    }

    #[test]
    fn file_share_tokens() {
        let p = path("slot-77/cat.png");
        let exp = now().timestamp() + 300;
        let token = file_share_token(SECRET, "slot-77", "cat.png", 5, exp, Some(exp + 86_400));
        let request = SlotRequest {
            authorization: Some(&token),
            content_length: Some(5),
            ..Default::default()
        };
        let grant = secret().verify(&p, &request, now()).unwrap();
        assert_eq!(grant.scheme, Scheme::FileShare);
        assert_eq!(grant.uploader.as_deref(), Some("alice@example.com"));
        assert_eq!(grant.expires, DateTime::from_timestamp(exp + 86_400, 0));

        let check = |token: String, len: u64, p: &SlotPath| {
            secret().verify(
                p,
                &SlotRequest {
                    authorization: Some(&token),
                    content_length: Some(len),
                    ..Default::default()
                },
                now(),
            )
        };
        assert_eq!(
            check(
                file_share_token(SECRET, "slot-77", "cat.png", 5, now().timestamp(), None),
                5,
                &p
            ),
            Err(SlotError::Expired)
        );
        assert_eq!(
            check(
                file_share_token(SECRET, "slot-78", "cat.png", 5, exp, None),
                5,
                &p
            ),
            Err(SlotError::Mismatch("slot"))
        );
        assert_eq!(
            check(
                file_share_token(SECRET, "slot-77", "dog.png", 5, exp, None),
                5,
                &p
            ),
            Err(SlotError::Mismatch("filename"))
        );
        assert_eq!(
            check(
                file_share_token(SECRET, "slot-77", "cat.png", 5, exp, None),
                6,
                &p
            ),
            Err(SlotError::SizeMismatch {
                declared: 6,
                granted: 5
            })
        );
        assert!(matches!(
            check(
                file_share_token(
                    "wrong-secret-0123456789",
                    "slot-77",
                    "cat.png",
                    5,
                    exp,
                    None
                ),
                5,
                &p
            ),
            Err(SlotError::BadToken(_))
        ));
        assert!(matches!(
            check("Bearer x.y.z".into(), 5, &p),
            Err(SlotError::BadToken(_))
        ));
        let early = FileShareClaims {
            nbf: Some(now().timestamp() + 60),
            ..jsonwebtoken::decode::<FileShareClaims>(
                token.strip_prefix("Bearer ").unwrap(),
                &DecodingKey::from_secret(SECRET.as_bytes()),
                &{
                    let mut v = Validation::new(Algorithm::HS256);
                    v.validate_exp = false;
                    v
                },
            )
            .unwrap()
            .claims
        };
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &early,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            check(format!("bearer {early}"), 5, &p),
            Err(SlotError::BadToken(
                "the token is not valid yet (nbf)".into()
            ))
        );
        assert!(matches!(
            check("Basic abc".into(), 5, &p),
            Err(SlotError::BadToken(_))
        ));
    }

    #[test]
    fn slot_paths_are_strict() {
        for bad in [
            "",
            "one",
            "a/b/c/d",
            "a//b",
            "a/",
            "/a/b",
            "../b",
            "a/..",
            "%2e%2e/x",
            "a/%2e",
            "a/b%0d%0aSet-Cookie:x",
            "a/%00",
            "a/%FF",
            "a/b%2F..%2F..%2Fc",
        ] {
            assert_eq!(SlotPath::parse(bad), Err(SlotError::BadPath), "{bad:?}");
        }
        assert_eq!(
            path("a/b%2Fc").as_str(),
            "a/b/c",
            "an encoded slash is a slash, as the MAC sees it"
        );
    }
}
