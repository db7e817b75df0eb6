//! Download URIs (`httpd::uri::FileUri::parse`): any request path. Checks: a path that parses
//! names a place inside the seed's layout (no `.`, `..` or empty component), and formats back
//! to a path that parses to the same file.
#![no_main]

use httpd::uri::FileUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Ok(uri) = FileUri::parse(path) else { return };
    let relative = uri.location.relative();
    assert!(relative.starts_with("files/"), "{relative}");
    assert!(relative.split('/').all(|s| !matches!(s, "" | "." | "..")), "{relative}");
    assert_eq!(FileUri::parse(&uri.path()), Ok(uri));
});
