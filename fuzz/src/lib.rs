//! What the fuzz targets share: their structured inputs as header-like text, one
//! `name: value` line per field, so that the seed corpora (`fuzz/seeds/<target>/`) are readable
//! and written by hand, and libFuzzer's mutations of a value stay in its field.

/// The fields of an input: `name: value` lines (names lower-cased, the first occurrence wins,
/// lines without `: ` ignored). A field that is absent is `None`, as an absent header is.
pub struct Fields<'a>(Vec<(String, &'a str)>);

impl<'a> Fields<'a> {
    /// `None` if the input is not UTF-8 (every parser fuzzed with fields takes `&str`).
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        Some(Fields(
            text.split('\n')
                .filter_map(|line| line.split_once(": "))
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
        ))
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// A number field; `None` when absent or not a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }
}

/// The secret the targets sign tokens and slot MACs with, so that inputs get past the
/// signature to the claims.
pub const SECRET: &str = "fuzz-secret";

/// An HS256 JWT of `claims` (any JSON value) signed with [`SECRET`]; `None` if `claims` is not
/// JSON.
pub fn signed_token(claims: &str) -> Option<String> {
    let claims: serde_json::Value = serde_json::from_str(claims).ok()?;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).ok()
}
