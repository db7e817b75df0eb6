//! The name the user gave a file: validated, and presented safely.
//!
//! A [`RealName`] goes into `aft_log.real_filename`, the last segment of the download URI and the
//! `Content-Disposition` header, and decides the `Content-Type` of a download. It never becomes a
//! path on the store: files are stored under a random [`crate::layout::FileName`].

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The longest real name httpd takes, in bytes: `aft_log.real_filename` holds as many
/// characters.
pub const MAX_REAL_NAME_LEN: usize = logd::row::NAME_MAX;

/// RFC 3986 unreserved characters stay; everything else is escaped in a URI path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 5987 `attr-char`s stay; everything else is escaped in `filename*=UTF-8''…`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The media types a download is shown inline with (by lower-case extension); anything else is
/// `application/octet-stream` and an attachment.
const INLINE_TYPES: &[(&str, &str)] = &[
    ("avif", "image/avif"),
    ("bmp", "image/bmp"),
    ("gif", "image/gif"),
    ("heic", "image/heic"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("png", "image/png"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("webp", "image/webp"),
    ("3gp", "video/3gpp"),
    ("m4v", "video/mp4"),
    ("mkv", "video/x-matroska"),
    ("mov", "video/quicktime"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("m4a", "audio/mp4"),
    ("mp3", "audio/mpeg"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("opus", "audio/ogg"),
    ("wav", "audio/wav"),
    ("log", "text/plain"),
    ("txt", "text/plain"),
];

const ATTACHMENT_TYPE: &str = "application/octet-stream";

/// A user's file name: 1–511 bytes of UTF-8, no control characters, no `/`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealName(String);

/// Why a real file name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RealNameError {
    #[error("the file name is empty")]
    Empty,
    #[error("the file name is longer than {MAX_REAL_NAME_LEN} bytes")]
    TooLong,
    #[error("the file name contains a control character or '/', or is '.' or '..'")]
    Forbidden,
}

impl RealName {
    pub fn parse(name: &str) -> Result<RealName, RealNameError> {
        if name.is_empty() {
            Err(RealNameError::Empty)
        } else if name.len() > MAX_REAL_NAME_LEN {
            Err(RealNameError::TooLong)
        } else if name == "." || name == ".." || name.chars().any(|c| c.is_control() || c == '/') {
            Err(RealNameError::Forbidden)
        } else {
            Ok(RealName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `aft_log.file_type`: the extension, lower case, at most 10 letters or digits; empty when
    /// there is none or it does not fit.
    pub fn file_type(&self) -> String {
        let Some((stem, ext)) = self.0.rsplit_once('.') else {
            return String::new();
        };
        let ext = ext.to_lowercase();
        let fits = !stem.is_empty()
            && (1..=10).contains(&ext.chars().count())
            && ext.chars().all(char::is_alphanumeric);
        if fits {
            ext
        } else {
            String::new()
        }
    }

    /// The name as one percent-encoded URI path segment.
    pub fn uri_segment(&self) -> String {
        utf8_percent_encode(&self.0, PATH_SEGMENT).to_string()
    }

    /// The media type a download is served with, and whether it is shown inline.
    pub fn presentation(&self) -> (&'static str, Disposition) {
        let ext = self.file_type();
        match INLINE_TYPES.iter().find(|(e, _)| *e == ext) {
            Some((_, media_type)) => (media_type, Disposition::Inline),
            None => (ATTACHMENT_TYPE, Disposition::Attachment),
        }
    }

    /// An RFC 6266 `Content-Disposition` value: an ASCII fallback `filename` (anything else
    /// replaced by `_`) and the exact name in `filename*=UTF-8''…`.
    pub fn content_disposition(&self, disposition: Disposition) -> String {
        let fallback: String = self
            .0
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%') || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "{}; filename=\"{fallback}\"; filename*=UTF-8''{}",
            disposition.as_str(),
            utf8_percent_encode(&self.0, ATTR_CHAR)
        )
    }
}

impl fmt::Display for RealName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a browser shows a download or saves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Inline,
    Attachment,
}

impl Disposition {
    fn as_str(self) -> &'static str {
        match self {
            Disposition::Inline => "inline",
            Disposition::Attachment => "attachment",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RealName {
        RealName::parse(s).unwrap()
    }

    #[test]
    fn validation() {
        assert_eq!(RealName::parse(""), Err(RealNameError::Empty));
        assert_eq!(
            RealName::parse(&"a".repeat(512)),
            Err(RealNameError::TooLong)
        );
        assert!(RealName::parse(&"é".repeat(255)).is_ok(), "510 bytes");
        for bad in [".", "..", "a/b", "a\nb", "a\u{7f}", "a\u{85}b"] {
            assert_eq!(
                RealName::parse(bad),
                Err(RealNameError::Forbidden),
                "{bad:?}"
            );
        }
        assert!(RealName::parse("..hidden").is_ok());
    }

    #[test]
    fn file_types() {
        assert_eq!(name("Report.PDF").file_type(), "pdf");
        assert_eq!(name("archive.tar.gz").file_type(), "gz");
        assert_eq!(name("slides.pptx").file_type(), "pptx");
        assert_eq!(name("noext").file_type(), "");
        assert_eq!(name(".bashrc").file_type(), "");
        assert_eq!(name("trailing.").file_type(), "");
        assert_eq!(name("x.abcdefghijk").file_type(), "");
        assert_eq!(name("x.abcdefghij").file_type(), "abcdefghij");
        assert_eq!(name("x.t t").file_type(), "");
    }

    #[test]
    fn uri_segments_escape_everything_but_unreserved() {
        assert_eq!(
            name("Résumé final (2).pdf").uri_segment(),
            "R%C3%A9sum%C3%A9%20final%20%282%29.pdf"
        );
        assert_eq!(name("a%2Fb?c#d").uri_segment(), "a%252Fb%3Fc%23d");
        assert_eq!(name("...").uri_segment(), "...");
    }

    #[test]
    fn inline_only_for_media_and_plain_text() {
        assert_eq!(
            name("cat.JPG").presentation(),
            ("image/jpeg", Disposition::Inline)
        );
        assert_eq!(
            name("notes.txt").presentation(),
            ("text/plain", Disposition::Inline)
        );
        for attachment in ["page.html", "logo.svg", "x.pdf", "noext", "run.exe"] {
            assert_eq!(
                name(attachment).presentation(),
                (ATTACHMENT_TYPE, Disposition::Attachment),
                "{attachment}"
            );
        }
    }

    #[test]
    fn content_disposition_carries_the_exact_name() {
        assert_eq!(
            name("Отчёт за май.pdf").content_disposition(Disposition::Attachment),
            "attachment; filename=\"_____ __ ___.pdf\"; \
             filename*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82%20%D0%B7%D0%B0%20%D0%BC%D0%B0%D0%B9.pdf"
        );
        assert_eq!(
            name("say \"hi\"\\100%.txt").content_disposition(Disposition::Inline),
            "inline; filename=\"say _hi__100_.txt\"; filename*=UTF-8''say%20%22hi%22%5C100%25.txt"
        );
    }
}
