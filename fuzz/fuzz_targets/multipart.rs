//! Multipart uploads: a `multipart/form-data` body as `POST /files` reads it (actix-multipart,
//! the file part's `Content-Disposition`, the real name). Input: the first line is the
//! `Content-Type` value (its boundary), the rest the body. Checks: no panic, no part yields more
//! bytes than the body has, and a file name that is taken is a valid real name.
#![no_main]

use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use actix_web::web::Bytes;
use futures_util::StreamExt;
use httpd::real_name::RealName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|b| *b == b'\n') else { return };
    let Ok(content_type) = HeaderValue::from_bytes(&data[..newline]) else { return };
    let body = Bytes::copy_from_slice(&data[newline + 1..]);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, content_type);
    // The body arrives in pieces of 7 bytes, so that boundaries fall across reads.
    let pieces: Vec<Result<Bytes, PayloadError>> = (0..body.len()).step_by(7).map(|at| Ok(body.slice(at..(at + 7).min(body.len())))).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut form = actix_multipart::Multipart::new(&headers, futures_util::stream::iter(pieces));
        let mut read = 0;
        // As httpd reads a form: parts in order, each read to its end, stopping at the first error.
        while let Some(Ok(mut part)) = form.next().await {
            if let Some(name) = part.content_disposition().and_then(|d| d.get_filename()) {
                if let Ok(real) = RealName::parse(name) {
                    assert_eq!(real.as_str(), name);
                }
            }
            while let Some(chunk) = part.next().await {
                let Ok(chunk) = chunk else { return };
                read += chunk.len();
                assert!(read <= body.len(), "{read} bytes of parts from a body of {}", body.len());
            }
        }
    });
});
