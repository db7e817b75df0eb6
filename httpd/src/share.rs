//! Shares and download capabilities: what the XMPP server's module (`xmpp/prosody/`) tells the
//! node, so that the audit trail names each upload's recipient and each download's real
//! downloader. Both are signed with one of `http.slot_secrets`, the secrets the XMPP server
//! already holds to sign upload slots.
//!
//! - A **share** is `POST /shares` with `Authorization: Bearer <HS256 JWT>` whose claims say that
//!   `sub` (a local user) sent the slot URL `url` to `to` (a user, an ad hoc room or a persistent
//!   room) in a chat of `chat_type`; `purpose` is `share`, `iat` and `exp` bound it in time.
//! - A **capability** is four query parameters the module adds to a slot URL it delivers to a
//!   local user: `mft_for` (that user's bare JID), `mft_to` (the chat the URL was delivered in),
//!   `mft_type` (that chat's type) and `mft_cap`, the lower-case hex HMAC-SHA256 of
//!   `"mft-capability\0<slot path>\0<mft_for>\0<mft_to>\0<mft_type>"` (the slot path as in
//!   [`SlotPath`]). A `GET` with a valid capability is recorded for `mft_for`, to `mft_to`, in a
//!   chat of `mft_type`.
//!
//! Pure checks: claims and query parameters in, a [`Share`] or a [`Capability`] out.

use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::auth::{bearer_token, is_valid_jid};
use crate::layout::ChatType;
use crate::slot::{mac, signed_claims, SlotError, SlotPath, SLOT_PREFIX};

/// The `purpose` claim of a share token.
pub const SHARE_PURPOSE: &str = "share";

/// The claims of a share token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareClaims {
    pub purpose: String,
    /// The local user who sent the URL.
    pub sub: String,
    /// The URL as the message carried it (a capability in it is ignored).
    pub url: String,
    /// The recipient: a user's bare JID or a room's.
    pub to: String,
    pub chat_type: String,
    pub iat: i64,
    pub exp: i64,
}

/// A verified share of one of this node's slot URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub sharer: String,
    /// The raw (percent-encoded) path after `/upload/`, as the slot routes take it.
    pub raw_slot_path: String,
    pub to: String,
    pub chat_type: ChatType,
}

/// The query parameters of a capability; all or none must be present.
#[derive(Debug, Clone, Copy, Default)]
pub struct CapabilityQuery<'a> {
    pub mft_for: Option<&'a str>,
    pub mft_to: Option<&'a str>,
    pub mft_type: Option<&'a str>,
    pub mft_cap: Option<&'a str>,
}

/// Whom a download with a valid capability is recorded for, and to which chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub downloader: String,
    pub chat: String,
    pub chat_type: ChatType,
}

/// The message a capability's MAC covers.
fn capability_message(slot: &SlotPath, downloader: &str, chat: &str, chat_type: &str) -> String {
    format!(
        "mft-capability\0{}\0{downloader}\0{chat}\0{chat_type}",
        slot.as_str()
    )
}

/// The `mft_cap` value for `downloader` in `chat` of `chat_type` (what the XMPP module
/// computes).
pub fn sign_capability(
    secret: &str,
    slot: &SlotPath,
    downloader: &str,
    chat: &str,
    chat_type: ChatType,
) -> String {
    hex::encode(
        mac(
            secret,
            &capability_message(slot, downloader, chat, chat_type.as_str()),
        )
        .finalize()
        .into_bytes(),
    )
}

/// The capability of `query` for `slot`, `None` if the query has none; refused if it is
/// incomplete, names something that is not a JID, or its MAC matches none of `secrets`.
pub fn verify_capability(
    secrets: &[String],
    slot: &SlotPath,
    query: &CapabilityQuery<'_>,
) -> Result<Option<Capability>, SlotError> {
    let (downloader, chat, chat_type, cap) =
        match (query.mft_for, query.mft_to, query.mft_type, query.mft_cap) {
            (None, None, None, None) => return Ok(None),
            (Some(downloader), Some(chat), Some(chat_type), Some(cap)) => {
                (downloader, chat, chat_type, cap)
            }
            _ => return Err(SlotError::BadCapability),
        };
    let chat_type: ChatType = chat_type.parse().map_err(|_| SlotError::BadCapability)?;
    if !is_valid_jid(downloader) || !is_valid_jid(chat) {
        return Err(SlotError::BadCapability);
    }
    let cap = hex::decode(cap).map_err(|_| SlotError::BadCapability)?;
    let message = capability_message(slot, downloader, chat, chat_type.as_str());
    // Every secret is tried, so the time taken does not tell which one matched.
    if secrets
        .iter()
        .filter(|secret| mac(secret, &message).verify_slice(&cap).is_ok())
        .count()
        == 0
    {
        return Err(SlotError::BadCapability);
    }
    Ok(Some(Capability {
        downloader: downloader.to_owned(),
        chat: chat.to_owned(),
        chat_type,
    }))
}

/// Verifies a share token (`authorization`, the header's value) against `secrets` at `now`;
/// its URL must be a slot URL under `public_url`.
pub fn verify_share(
    secrets: &[String],
    public_url: &str,
    authorization: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Share, SlotError> {
    if secrets.is_empty() {
        return Err(SlotError::NotConfigured);
    }
    let token = authorization
        .and_then(bearer_token)
        .ok_or_else(|| SlotError::BadToken("a share needs Authorization: Bearer <token>".into()))?;
    let claims: ShareClaims = signed_claims(secrets, token)?;
    if claims.purpose != SHARE_PURPOSE {
        return Err(SlotError::BadToken(format!(
            "the token's purpose is {:?}, not \"share\"",
            claims.purpose
        )));
    }
    if claims.exp <= now.timestamp() {
        return Err(SlotError::Expired);
    }
    for (claim, value) in [("sub", &claims.sub), ("to", &claims.to)] {
        if !is_valid_jid(value) {
            return Err(SlotError::BadToken(format!(
                "the {claim} claim is not a JID"
            )));
        }
    }
    let chat_type = claims.chat_type.parse().map_err(|_| {
        SlotError::BadToken("the chat_type claim is not im, groupchat or persistent".into())
    })?;
    let prefix = format!("{}{SLOT_PREFIX}", public_url.trim_end_matches('/'));
    let path = claims
        .url
        .strip_prefix(&prefix)
        .ok_or(SlotError::NotOurUrl)?;
    let raw_slot_path = path.split(['?', '#']).next().unwrap_or_default().to_owned();
    SlotPath::parse(&raw_slot_path)?;
    Ok(Share {
        sharer: claims.sub,
        raw_slot_path,
        to: claims.to,
        chat_type,
    })
}

#[cfg(test)]
pub mod tests {
    use chrono::TimeZone;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::*;
    use crate::slot::tests::SECRET;

    const PUBLIC_URL: &str = "https://mft.example.com";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap()
    }

    /// A share token signed with `secret`.
    pub fn share_token(secret: &str, claims: &ShareClaims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// The claims of alice sharing `url` with `to` in a chat of `chat_type`, valid at [`now`].
    pub fn claims(url: &str, to: &str, chat_type: &str) -> ShareClaims {
        ShareClaims {
            purpose: SHARE_PURPOSE.into(),
            sub: "alice@example.com".into(),
            url: url.into(),
            to: to.into(),
            chat_type: chat_type.into(),
            iat: now().timestamp(),
            exp: now().timestamp() + 300,
        }
    }

    fn verify(claims: &ShareClaims) -> Result<Share, SlotError> {
        let header = format!("Bearer {}", share_token(SECRET, claims));
        verify_share(&[SECRET.into()], PUBLIC_URL, Some(&header), now())
    }

    #[test]
    fn a_share_names_the_slot_its_sharer_and_the_chat() {
        let url = format!("{PUBLIC_URL}/upload/abc/caf%C3%A9.png?mft_for=bob%40example.com");
        let share = verify(&claims(&url, "room@conference.example.com", "persistent")).unwrap();
        assert_eq!(
            share,
            Share {
                sharer: "alice@example.com".into(),
                raw_slot_path: "abc/caf%C3%A9.png".into(),
                to: "room@conference.example.com".into(),
                chat_type: ChatType::Persistent,
            }
        );
    }

    #[test]
    fn bad_shares_are_refused() {
        let url = format!("{PUBLIC_URL}/upload/abc/a.png");
        let refused = |change: fn(&mut ShareClaims)| {
            let mut c = claims(&url, "bob@example.com", "im");
            change(&mut c);
            verify(&c).unwrap_err()
        };
        assert_eq!(
            refused(|c| c.url = "https://elsewhere.example.com/upload/abc/a.png".into()),
            SlotError::NotOurUrl
        );
        assert_eq!(
            refused(|c| c.url = format!("{PUBLIC_URL}/files/n/im/20261203/10/x/a.png")),
            SlotError::NotOurUrl
        );
        assert_eq!(
            refused(|c| c.url = format!("{PUBLIC_URL}/upload/../a.png")),
            SlotError::BadPath
        );
        assert_eq!(refused(|c| c.exp = now().timestamp()), SlotError::Expired);
        assert!(matches!(
            refused(|c| c.purpose = "upload".into()),
            SlotError::BadToken(_)
        ));
        assert!(matches!(
            refused(|c| c.to = "not a jid".into()),
            SlotError::BadToken(_)
        ));
        assert!(matches!(
            refused(|c| c.chat_type = "private".into()),
            SlotError::BadToken(_)
        ));
        let header = format!(
            "Bearer {}",
            share_token(
                "another-secret-0123456789",
                &claims(&url, "bob@example.com", "im")
            )
        );
        assert!(matches!(
            verify_share(&[SECRET.into()], PUBLIC_URL, Some(&header), now()),
            Err(SlotError::BadToken(_))
        ));
        assert_eq!(
            verify_share(&[], PUBLIC_URL, Some(&header), now()),
            Err(SlotError::NotConfigured)
        );
    }

    #[test]
    fn a_capability_holds_only_for_its_slot_downloader_and_chat() {
        let slot = SlotPath::parse("abc/a.png").unwrap();
        let cap = sign_capability(
            SECRET,
            &slot,
            "bob@example.com",
            "room@conference.example.com",
            ChatType::Groupchat,
        );
        let query = |downloader, chat, cap| CapabilityQuery {
            mft_for: Some(downloader),
            mft_to: Some(chat),
            mft_type: Some("groupchat"),
            mft_cap: Some(cap),
        };
        let secrets = [SECRET.to_owned()];
        assert_eq!(
            verify_capability(
                &secrets,
                &slot,
                &query("bob@example.com", "room@conference.example.com", &cap)
            ),
            Ok(Some(Capability {
                downloader: "bob@example.com".into(),
                chat: "room@conference.example.com".into(),
                chat_type: ChatType::Groupchat,
            }))
        );
        assert_eq!(
            verify_capability(&secrets, &slot, &CapabilityQuery::default()),
            Ok(None)
        );
        let other_slot = SlotPath::parse("abd/a.png").unwrap();
        for (slot, query) in [
            (
                &slot,
                query("carol@example.com", "room@conference.example.com", &cap),
            ),
            (&slot, query("bob@example.com", "bob@example.com", &cap)),
            (
                &other_slot,
                query("bob@example.com", "room@conference.example.com", &cap),
            ),
            (
                &slot,
                query("bob@example.com", "room@conference.example.com", "zz"),
            ),
            (
                &slot,
                CapabilityQuery {
                    mft_cap: None,
                    ..query("bob@example.com", "room@conference.example.com", &cap)
                },
            ),
            (
                &slot,
                CapabilityQuery {
                    mft_type: Some("persistent"),
                    ..query("bob@example.com", "room@conference.example.com", &cap)
                },
            ),
            (
                &slot,
                CapabilityQuery {
                    mft_type: Some("private"),
                    ..query("bob@example.com", "room@conference.example.com", &cap)
                },
            ),
        ] {
            assert_eq!(
                verify_capability(&secrets, slot, &query),
                Err(SlotError::BadCapability),
                "{query:?}"
            );
        }
    }
}
