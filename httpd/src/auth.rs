//! Credentials: HS256 JWT bearer tokens that the IM server (or `httpd token`) issues.
//!
//! Every token says what it is for (`purpose`: `upload` or `download`), and each side takes only
//! its own kind. An upload token names the sender (`sub`), the recipient (`to`), the chat type and
//! optionally the largest file it allows (`max_size`, bytes); a download token names the
//! downloader (`sub`). Any of `http.token_secrets` verifies a token and the first
//! signs, so secrets rotate by prepending a new one. This module knows nothing of HTTP: it turns
//! an `Authorization` header value into verified claims, or says why it cannot.

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::layout::ChatType;

/// The longest JID httpd takes, in bytes: `aft_log.jid` and `aft_log.to_jid` hold as many
/// characters.
pub const MAX_JID_LEN: usize = logd::row::JID_MAX;

/// Why a request's credentials were refused. Each maps to 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials: send Authorization: Bearer <token>")]
    Missing,
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not match any configured secret")]
    BadSignature,
    #[error("the token is malformed or lacks a required claim: {0}")]
    Malformed(String),
    #[error("the token's {claim} claim is not valid: {problem}")]
    BadClaim {
        claim: &'static str,
        problem: String,
    },
}

/// What an upload token grants: `sub` may send a file to `to` in a chat of `chat_type`, of at
/// most `max_size` bytes if the token says so (the node's own limit applies too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub from: String,
    pub to: String,
    pub chat_type: ChatType,
    pub max_size: Option<u64>,
}

/// What a download token grants: `sub` may download files of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadGrant {
    pub downloader: String,
}

/// The `purpose` claim: which side a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Purpose {
    Upload,
    Download,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Upload => "upload",
            Purpose::Download => "download",
        }
    }

    fn article(self) -> &'static str {
        match self {
            Purpose::Upload => "an upload",
            Purpose::Download => "a download",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadClaims {
    purpose: Purpose,
    sub: String,
    to: String,
    chat_type: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_size: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DownloadClaims {
    purpose: Purpose,
    sub: String,
    exp: i64,
}

/// Verifies and issues tokens with the node's secrets.
#[derive(Clone)]
pub struct Credentials {
    signing: EncodingKey,
    verifying: Vec<DecodingKey>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} secrets)", self.verifying.len())
    }
}

impl Credentials {
    /// From `http.token_secrets` (validated non-empty by the configuration).
    ///
    /// # Panics
    /// If `secrets` is empty.
    pub fn new(secrets: &[String]) -> Self {
        let first = secrets
            .first()
            .expect("http.token_secrets lists at least one secret");
        Self {
            signing: EncodingKey::from_secret(first.as_bytes()),
            verifying: secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .collect(),
        }
    }

    /// Checks the value of an `Authorization` header for an upload.
    pub fn verify_upload(&self, authorization: Option<&str>) -> Result<UploadGrant, AuthError> {
        let claims: UploadClaims = self.decode(authorization, Purpose::Upload)?;
        let chat_type = claims
            .chat_type
            .parse()
            .map_err(|e: logd::UnknownChatType| AuthError::BadClaim {
                claim: "chat_type",
                problem: e.to_string(),
            })?;
        Ok(UploadGrant {
            from: checked_jid("sub", claims.sub)?,
            to: checked_jid("to", claims.to)?,
            chat_type,
            max_size: claims.max_size,
        })
    }

    /// Checks the value of an `Authorization` header for a download.
    pub fn verify_download(&self, authorization: Option<&str>) -> Result<DownloadGrant, AuthError> {
        let claims: DownloadClaims = self.decode(authorization, Purpose::Download)?;
        Ok(DownloadGrant {
            downloader: checked_jid("sub", claims.sub)?,
        })
    }

    /// An upload token valid until `expires`.
    pub fn issue_upload(&self, grant: &UploadGrant, expires: DateTime<Utc>) -> String {
        self.encode(&UploadClaims {
            purpose: Purpose::Upload,
            sub: grant.from.clone(),
            to: grant.to.clone(),
            chat_type: grant.chat_type.as_str().to_owned(),
            exp: expires.timestamp(),
            max_size: grant.max_size,
        })
    }

    /// A download token valid until `expires`.
    pub fn issue_download(&self, grant: &DownloadGrant, expires: DateTime<Utc>) -> String {
        self.encode(&DownloadClaims {
            purpose: Purpose::Download,
            sub: grant.downloader.clone(),
            exp: expires.timestamp(),
        })
    }

    fn encode(&self, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.signing)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of a token for `purpose`; the purpose is checked before the other claims are
    /// read, so a token of the other kind is refused as such.
    fn decode<C: DeserializeOwned>(
        &self,
        authorization: Option<&str>,
        purpose: Purpose,
    ) -> Result<C, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = bearer_token(header).ok_or(AuthError::NotBearer)?;
        // `exp` (required) and `nbf` (when present) are checked with jsonwebtoken's default
        // leeway of 60 s, for clock skew between the IM server and the node.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_nbf = true;
        for key in &self.verifying {
            match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                Ok(data) => return claims_for(data.claims, purpose),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    return Err(AuthError::Expired)
                }
                Err(e) if matches!(e.kind(), ErrorKind::ImmatureSignature) => {
                    return Err(AuthError::NotYetValid)
                }
                Err(e) => return Err(AuthError::Malformed(e.to_string())),
            }
        }
        Err(AuthError::BadSignature)
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1), the token trimmed.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn claims_for<C: DeserializeOwned>(
    claims: serde_json::Value,
    purpose: Purpose,
) -> Result<C, AuthError> {
    let found = claims
        .get("purpose")
        .cloned()
        .map(serde_json::from_value::<Purpose>);
    match found {
        Some(Ok(found)) if found == purpose => {}
        Some(Ok(found)) => {
            return Err(AuthError::BadClaim {
                claim: "purpose",
                problem: format!(
                    "this is {} token, not {} token",
                    found.article(),
                    purpose.article()
                ),
            })
        }
        _ => {
            return Err(AuthError::BadClaim {
                claim: "purpose",
                problem: format!("must be \"{}\"", purpose.as_str()),
            })
        }
    }
    serde_json::from_value(claims).map_err(|e| AuthError::Malformed(e.to_string()))
}

/// A JID as the audit log stores it: non-empty, at most [`MAX_JID_LEN`] bytes, `local@domain`
/// or `domain` (a resource after `/` allowed), no whitespace or control characters.
pub fn is_valid_jid(jid: &str) -> bool {
    let bare = jid.split_once('/').map_or(jid, |(bare, _)| bare);
    let domain = match bare.split_once('@') {
        Some((local, domain)) if !local.is_empty() => domain,
        Some(_) => return false,
        None => bare,
    };
    !jid.is_empty()
        && jid.len() <= MAX_JID_LEN
        && !domain.is_empty()
        && !domain.contains('@')
        && !jid.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn checked_jid(claim: &'static str, jid: String) -> Result<String, AuthError> {
    if is_valid_jid(&jid) {
        Ok(jid)
    } else {
        Err(AuthError::BadClaim {
            claim,
            problem: "must be a JID: local@domain or domain, without spaces".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn creds(secrets: &[&str]) -> Credentials {
        Credentials::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn grant() -> UploadGrant {
        UploadGrant {
            from: "alice@example.com/phone".into(),
            to: "room@conference.example.com".into(),
            chat_type: ChatType::Persistent,
            max_size: Some(1_000),
        }
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn in_an_hour() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::hours(1)
    }

    #[test]
    fn upload_token_round_trip() {
        let c = creds(&[SECRET]);
        let token = c.issue_upload(&grant(), in_an_hour());
        assert_eq!(c.verify_upload(Some(&bearer(&token))), Ok(grant()));
    }

    #[test]
    fn any_configured_secret_verifies() {
        let old = creds(&[OTHER]);
        let rotated = creds(&[SECRET, OTHER]);
        let token = old.issue_download(
            &DownloadGrant {
                downloader: "bob@example.com".into(),
            },
            in_an_hour(),
        );
        assert_eq!(
            rotated
                .verify_download(Some(&bearer(&token)))
                .unwrap()
                .downloader,
            "bob@example.com"
        );
        assert_eq!(
            creds(&[SECRET]).verify_download(Some(&bearer(&token))),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn refusals_say_why() {
        let c = creds(&[SECRET]);
        assert_eq!(c.verify_download(None), Err(AuthError::Missing));
        assert_eq!(
            c.verify_download(Some("Basic YWxpY2U6eA==")),
            Err(AuthError::NotBearer)
        );
        let expired = c.issue_download(
            &DownloadGrant {
                downloader: "bob@example.com".into(),
            },
            Utc::now() - chrono::Duration::hours(1),
        );
        assert_eq!(
            c.verify_download(Some(&bearer(&expired))),
            Err(AuthError::Expired)
        );
        assert!(matches!(
            c.verify_download(Some("Bearer not.a.jwt")),
            Err(AuthError::Malformed(_))
        ));
        let download = c.issue_download(
            &DownloadGrant {
                downloader: "bob@example.com".into(),
            },
            in_an_hour(),
        );
        assert_eq!(
            c.verify_upload(Some(&bearer(&download))),
            Err(AuthError::BadClaim {
                claim: "purpose",
                problem: "this is a download token, not an upload token".into()
            })
        );
        let upload = c.issue_upload(&grant(), in_an_hour());
        assert_eq!(
            c.verify_download(Some(&bearer(&upload))),
            Err(AuthError::BadClaim {
                claim: "purpose",
                problem: "this is an upload token, not a download token".into()
            })
        );
        let later = (Utc::now() + chrono::Duration::minutes(10)).timestamp();
        let early = c.encode(&serde_json::json!({"purpose": "download", "sub": "bob@example.com", "nbf": later, "exp": later + 60}));
        assert_eq!(
            c.verify_download(Some(&bearer(&early))),
            Err(AuthError::NotYetValid)
        );
        let unmarked = c.encode(
            &serde_json::json!({"sub": "bob@example.com", "exp": in_an_hour().timestamp()}),
        );
        assert_eq!(
            c.verify_download(Some(&bearer(&unmarked))),
            Err(AuthError::BadClaim {
                claim: "purpose",
                problem: "must be \"download\"".into()
            })
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t", "bearer t", "BEARER  t ", "bEaReR t"] {
            assert_eq!(bearer_token(header), Some("t"), "{header:?}");
        }
        for header in ["Basic t", "Bearert", "Bearer", ""] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn claims_are_checked() {
        let c = creds(&[SECRET]);
        let bad_jid = UploadGrant {
            to: "bob @example.com".into(),
            ..grant()
        };
        let token = c.issue_upload(&bad_jid, in_an_hour());
        assert!(matches!(
            c.verify_upload(Some(&bearer(&token))),
            Err(AuthError::BadClaim { claim: "to", .. })
        ));
        let token = c.encode(&UploadClaims {
            purpose: Purpose::Upload,
            sub: "a@b".into(),
            to: "c@d".into(),
            chat_type: "broadcast".into(),
            exp: in_an_hour().timestamp(),
            max_size: None,
        });
        assert!(matches!(
            c.verify_upload(Some(&bearer(&token))),
            Err(AuthError::BadClaim {
                claim: "chat_type",
                ..
            })
        ));
    }

    #[test]
    fn jids() {
        for good in [
            "alice@example.com",
            "example.com",
            "alice@example.com/phone",
            "a@b/c",
        ] {
            assert!(is_valid_jid(good), "{good}");
        }
        let long = format!("a@{}", "b".repeat(MAX_JID_LEN - 1));
        for bad in [
            "",
            "@example.com",
            "alice@",
            "a@b@c",
            "alice @example.com",
            "a\u{7}@b",
            "/res",
            long.as_str(),
        ] {
            assert!(!is_valid_jid(bad), "{bad:?}");
        }
        assert!(is_valid_jid(&long[..MAX_JID_LEN]));
    }
}
