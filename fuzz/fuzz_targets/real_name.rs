//! Real names (`httpd::real_name::RealName`) and what is made of them: the URI segment, the
//! `Content-Disposition` value, the type and disposition. Checks: a name that parses is never a
//! path; its URI segment decodes back to it and carries it through a download URI; its
//! `Content-Disposition` is a valid header value whose `filename*` is the exact name.
#![no_main]

use actix_web::http::header::{ContentDisposition, HeaderValue};
use httpd::real_name::RealName;
use httpd::uri::FileUri;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

const URI: &str = "/files/node_1/im/20141218/11/abcdefghijklmnopqrstuvwxyz/x";

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else { return };
    let Ok(real) = RealName::parse(name) else { return };
    assert!(!name.contains('/') && name != "." && name != "..");

    let segment = real.uri_segment();
    assert_eq!(percent_decode_str(&segment).decode_utf8().unwrap(), name);
    let mut uri = FileUri::parse(URI).unwrap();
    uri.real_name = real.clone();
    assert_eq!(FileUri::parse(&uri.path()), Ok(uri));

    let file_type = real.file_type();
    assert!(file_type.chars().count() <= 10);
    let (_media_type, disposition) = real.presentation();
    let value = real.content_disposition(disposition);
    let header = HeaderValue::from_str(&value).expect("Content-Disposition is a valid header value");
    let parsed = ContentDisposition::from_raw(&header).expect("Content-Disposition parses");
    let ext = parsed.get_filename_ext().expect("filename* is present");
    assert_eq!(ext.value, name.as_bytes(), "{value}");
});
