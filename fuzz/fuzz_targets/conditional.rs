//! `Range`, `If-Range` and `If-None-Match` (`httpd::conditional::answer`). Input fields: `range`,
//! `if-none-match`, `if-range` (the headers; `if-range: etag` and `if-range: date` stand for the
//! file's own validators), `size`, `mtime` (unix seconds). Checks: the span sent lies within the
//! file; a partial answer is a non-empty range inside it.
#![no_main]

use chrono::DateTime;
use httpd::conditional::{answer, Answer, Preconditions, Validators};
use libfuzzer_sys::fuzz_target;
use mft_fuzz::Fields;

fuzz_target!(|data: &[u8]| {
    let Some(fields) = Fields::parse(data) else { return };
    let size = fields.number("size").unwrap_or(1000);
    let mtime = fields.number("mtime").and_then(|s| DateTime::from_timestamp(s as i64, 0)).unwrap_or_default();
    let validators = Validators::new(size, mtime, "abcdefghijklmnopqrstuvwxyz");
    let if_range = fields.get("if-range").map(|v| match v {
        "etag" => validators.etag.as_str(),
        "date" => validators.last_modified.as_str(),
        other => other,
    });
    let request = Preconditions {
        range: fields.get("range"),
        if_none_match: fields.get("if-none-match"),
        if_range,
    };
    let answered = answer(&request, &validators, size);
    let (offset, length) = answered.span(size);
    assert!(offset.checked_add(length).is_some_and(|end| end <= size), "{answered:?} of {size}");
    if let Answer::Partial { start, end } = answered {
        assert!(start <= end && end < size, "{answered:?} of {size}");
    }
});
