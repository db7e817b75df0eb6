//! Conditional and partial downloads (RFC 9110 §13 and §14): which part of a stored file a `GET`
//! or `HEAD` answers with, given the file's validators and the request's `Range`,
//! `If-None-Match` and `If-Range` values.
//!
//! Pure: it takes header values as strings and returns an [`Answer`]; it reads no file and builds
//! no response. Only single byte ranges are served; a multi-range request gets the whole file
//! (200), as RFC 9110 allows, and so does a `Range` it cannot parse or an `If-Range` that no
//! longer matches.

use chrono::{DateTime, Utc};

/// What identifies one version of a stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quoted: `"<size>-<mtime ns>-<file_name>"` in hex and base32, so it
    /// is plain ASCII and changes whenever the file does.
    pub etag: String,
    /// `Last-Modified`, as an IMF-fixdate.
    pub last_modified: String,
}

impl Validators {
    /// The validators of the stored file `file_name` (a layout name: `[a-z2-7]`, header-safe).
    pub fn new(size: u64, modified: DateTime<Utc>, file_name: &str) -> Self {
        let nanos = modified
            .timestamp_nanos_opt()
            .unwrap_or_else(|| modified.timestamp());
        Self {
            etag: format!("\"{size:x}-{nanos:x}-{file_name}\""),
            last_modified: modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        }
    }
}

/// The request headers that decide the answer, as sent (absent: `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Preconditions<'a> {
    pub range: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// How to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: the range starts past the end of the file.
    Unsatisfiable,
}

impl Answer {
    /// The byte range this answer sends: `(offset, length)`.
    pub fn span(self, size: u64) -> (u64, u64) {
        match self {
            Answer::Full => (0, size),
            Answer::Partial { start, end } => (start, end - start + 1),
            Answer::NotModified | Answer::Unsatisfiable => (0, 0),
        }
    }
}

/// Decides the answer for a file of `size` bytes with `validators`.
pub fn answer(request: &Preconditions<'_>, validators: &Validators, size: u64) -> Answer {
    if request
        .if_none_match
        .is_some_and(|tags| matches_any(tags, &validators.etag))
    {
        return Answer::NotModified;
    }
    let Some(range) = request.range else {
        return Answer::Full;
    };
    // If-Range: the range applies only to the version the client names (strong comparison).
    if let Some(if_range) = request.if_range.map(str::trim) {
        let current = if if_range.starts_with('"') || if_range.starts_with("W/") {
            if_range == validators.etag
        } else {
            if_range == validators.last_modified
        };
        if !current {
            return Answer::Full;
        }
    }
    single_range(range, size).unwrap_or(Answer::Full)
}

/// `If-None-Match`: `*` or a list of entity tags, compared weakly (`W/` ignored).
fn matches_any(tags: &str, etag: &str) -> bool {
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n`; `None` when the header is to be ignored
/// (another unit, bad syntax, several ranges).
fn single_range(range: &str, size: u64) -> Option<Answer> {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let range = range.trim();
    range
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))?;
    let spec = range[6..].trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.trim().is_empty() {
        let suffix = number(last)?;
        if suffix == 0 || size == 0 {
            return Some(Answer::Unsatisfiable);
        }
        return Some(Answer::Partial {
            start: size.saturating_sub(suffix),
            end: size - 1,
        });
    }
    let start = number(first)?;
    let end = match last.trim() {
        "" => u64::MAX,
        last => number(last)?,
    };
    if end < start {
        return None;
    }
    if start >= size {
        return Some(Answer::Unsatisfiable);
    }
    Some(Answer::Partial {
        start,
        end: end.min(size - 1),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn validators() -> Validators {
        Validators::new(
            1000,
            Utc.with_ymd_and_hms(2014, 8, 11, 15, 30, 7).unwrap(),
            "abcdefghijklmnopqrstuvwxyz",
        )
    }

    fn range(range: &str, size: u64) -> Answer {
        answer(
            &Preconditions {
                range: Some(range),
                ..Default::default()
            },
            &validators(),
            size,
        )
    }

    #[test]
    fn validators_are_stable_and_header_safe() {
        let v = validators();
        assert_eq!(v.last_modified, "Mon, 11 Aug 2014 15:30:07 GMT");
        assert_eq!(
            v.etag,
            "\"3e8-13896845ad543600-abcdefghijklmnopqrstuvwxyz\""
        );
        assert_eq!(v, validators());
        let other = Validators::new(
            1001,
            Utc.with_ymd_and_hms(2014, 8, 11, 15, 30, 7).unwrap(),
            "abcdefghijklmnopqrstuvwxyz",
        );
        assert_ne!(
            v.etag, other.etag,
            "a different size is a different version"
        );
    }

    #[test]
    fn single_ranges() {
        assert_eq!(
            range("bytes=0-99", 1000),
            Answer::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            range("bytes=990-", 1000),
            Answer::Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            range("bytes=-10", 1000),
            Answer::Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            range("bytes=-5000", 1000),
            Answer::Partial { start: 0, end: 999 },
            "suffix longer than the file"
        );
        assert_eq!(
            range("bytes=500-5000", 1000),
            Answer::Partial {
                start: 500,
                end: 999
            },
            "end clamped"
        );
        assert_eq!(
            range("bytes=999-999", 1000),
            Answer::Partial {
                start: 999,
                end: 999
            }
        );
        assert_eq!(
            range(" bytes= 1 - 2 ", 1000),
            Answer::Partial { start: 1, end: 2 }
        );
        assert_eq!(
            range("Bytes=0-9", 1000),
            Answer::Partial { start: 0, end: 9 },
            "the unit is case-insensitive"
        );
        assert_eq!(
            range("BYTES=-1", 1000),
            Answer::Partial {
                start: 999,
                end: 999
            }
        );
        assert_eq!(range("byteś=0-9", 1000), Answer::Full);
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(range("bytes=1000-", 1000), Answer::Unsatisfiable);
        assert_eq!(range("bytes=1000-2000", 1000), Answer::Unsatisfiable);
        assert_eq!(range("bytes=-0", 1000), Answer::Unsatisfiable);
        assert_eq!(
            range("bytes=0-", 0),
            Answer::Unsatisfiable,
            "an empty file has no bytes to range over"
        );
        assert_eq!(range("bytes=-1", 0), Answer::Unsatisfiable);
    }

    #[test]
    fn ignored_ranges_serve_the_whole_file() {
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "0-1",
            "",
        ] {
            assert_eq!(range(ignored, 1000), Answer::Full, "{ignored:?}");
        }
        assert_eq!(
            range("bytes=0-99999999999999999999999", 1000),
            Answer::Full,
            "overflow"
        );
    }

    #[test]
    fn if_none_match() {
        let v = validators();
        let ask = |tags: &str| {
            answer(
                &Preconditions {
                    if_none_match: Some(tags),
                    range: Some("bytes=0-1"),
                    ..Default::default()
                },
                &v,
                1000,
            )
        };
        assert_eq!(ask(&v.etag.clone()), Answer::NotModified);
        assert_eq!(ask(&format!("\"x\", W/{}", v.etag)), Answer::NotModified);
        assert_eq!(ask("*"), Answer::NotModified);
        assert_eq!(ask("\"other\""), Answer::Partial { start: 0, end: 1 });
    }

    #[test]
    fn if_range() {
        let v = validators();
        let ask = |if_range: &str| {
            answer(
                &Preconditions {
                    range: Some("bytes=10-19"),
                    if_range: Some(if_range),
                    ..Default::default()
                },
                &v,
                1000,
            )
        };
        assert_eq!(ask(&v.etag.clone()), Answer::Partial { start: 10, end: 19 });
        assert_eq!(
            ask("Mon, 11 Aug 2014 15:30:07 GMT"),
            Answer::Partial { start: 10, end: 19 }
        );
        assert_eq!(ask("\"stale\""), Answer::Full);
        assert_eq!(
            ask(&format!("W/{}", v.etag)),
            Answer::Full,
            "weak tags never match If-Range"
        );
        assert_eq!(ask("Mon, 11 Aug 2014 15:30:06 GMT"), Answer::Full);
        assert_eq!(
            answer(
                &Preconditions {
                    if_range: Some("\"x\""),
                    ..Default::default()
                },
                &v,
                1000
            ),
            Answer::Full
        );
    }

    #[test]
    fn spans() {
        assert_eq!(Answer::Full.span(1000), (0, 1000));
        assert_eq!(Answer::Partial { start: 10, end: 19 }.span(1000), (10, 10));
        assert_eq!(Answer::NotModified.span(1000), (0, 0));
    }
}
