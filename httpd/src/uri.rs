//! Download URIs: `/files/<node_id>/<chat_type>/<YYYYMMDD>/<HH[.n]>/<file_name>/<real name>`.
//!
//! The URI names the node that stored the file, where the file lies in the seed's layout, and
//! (percent-encoded) the name the user gave it. Parsing works on the raw request path and accepts
//! only what [`FileUri::path`] produces, segment by segment, so no request can name anything on
//! the store outside the layout: no `..`, no encoded `/` or `.`, no empty segment.

use percent_encoding::percent_decode_str;

use crate::layout::{FileLocation, FileName, HourDir};
use crate::real_name::RealName;

/// A path that is not a download URI of any node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a file URI: expected /files/<node>/<chat_type>/<YYYYMMDD>/<HH[.n]>/<file_name>/<name>"
)]
pub struct NotAFileUri;

/// One stored file as its download URI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUri {
    pub node_id: String,
    pub location: FileLocation,
    pub real_name: RealName,
}

impl FileUri {
    /// The URI's path, to append to `node.public_url`.
    pub fn path(&self) -> String {
        let dir = &self.location.dir;
        format!(
            "/files/{}/{}/{}/{}/{}/{}",
            self.node_id,
            dir.chat_type,
            dir.date_segment(),
            dir.hour_segment(),
            self.location.file_name,
            self.real_name.uri_segment()
        )
    }

    /// Parses a raw (still percent-encoded) request path.
    pub fn parse(raw_path: &str) -> Result<FileUri, NotAFileUri> {
        let segments: Vec<&str> = raw_path
            .strip_prefix("/files/")
            .ok_or(NotAFileUri)?
            .split('/')
            .collect();
        let [node_id, chat_type, date, hour, file_name, real_name] = segments[..] else {
            return Err(NotAFileUri);
        };
        if !is_node_id(node_id) {
            return Err(NotAFileUri);
        }
        let chat_type = chat_type.parse().map_err(|_| NotAFileUri)?;
        let dir = HourDir::parse(chat_type, date, hour).ok_or(NotAFileUri)?;
        let file_name = FileName::parse(file_name).ok_or(NotAFileUri)?;
        let real_name = percent_decode_str(real_name)
            .decode_utf8()
            .map_err(|_| NotAFileUri)?;
        Ok(FileUri {
            node_id: node_id.to_owned(),
            location: FileLocation { dir, file_name },
            real_name: RealName::parse(&real_name).map_err(|_| NotAFileUri)?,
        })
    }
}

/// The configuration's rule for node ids: 1–128 letters, digits, `-`, `_`.
fn is_node_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ChatType;
    use chrono::NaiveDate;

    fn sample() -> FileUri {
        FileUri {
            node_id: "node_1".into(),
            location: FileLocation {
                dir: HourDir {
                    chat_type: ChatType::Groupchat,
                    date: NaiveDate::from_ymd_opt(2014, 8, 11).unwrap(),
                    hour: 16,
                    rollover: 1,
                },
                file_name: FileName::parse("abcdefghijklmnopqrstuvwxyz").unwrap(),
            },
            real_name: RealName::parse("holiday photo é.jpg").unwrap(),
        }
    }

    #[test]
    fn format_and_round_trip() {
        let uri = sample();
        assert_eq!(
            uri.path(),
            "/files/node_1/groupchat/20140811/16.1/abcdefghijklmnopqrstuvwxyz/holiday%20photo%20%C3%A9.jpg"
        );
        assert_eq!(FileUri::parse(&uri.path()), Ok(uri));
    }

    #[test]
    fn anything_else_is_refused() {
        let good = sample().path();
        let name = "abcdefghijklmnopqrstuvwxyz";
        let cases = [
            "/files".to_owned(),
            "/files/".to_owned(),
            format!("{good}/extra"),
            format!("{good}/"),
            good.replace("/node_1/", "/../"),
            good.replace("/node_1/", "/%2e%2e/"),
            good.replace("/node_1/", "/node%2F1/"),
            good.replace("/groupchat/", "/../"),
            good.replace("/groupchat/", "/chat/"),
            good.replace("/20140811/", "/2014-08-11/"),
            good.replace("/16.1/", "/16.1%2F..%2F/"),
            good.replace("/16.1/", "/../"),
            good.replace(name, ".."),
            good.replace(name, "%2e%2e"),
            good.replace(name, &format!("..%2F{}", &name[..23])),
            good.replace("holiday%20photo%20%C3%A9.jpg", ""),
            good.replace("holiday%20photo%20%C3%A9.jpg", ".."),
            good.replace("holiday%20photo%20%C3%A9.jpg", "%2e%2e"),
            good.replace("holiday%20photo%20%C3%A9.jpg", "a%2Fb"),
            good.replace("holiday%20photo%20%C3%A9.jpg", "%FF.jpg"),
            good.replace("/files/", "/files//"),
        ];
        for path in cases {
            assert_eq!(FileUri::parse(&path), Err(NotAFileUri), "{path}");
        }
    }
}
