//! logd's framing of a connection (`logd::framing`): any bytes, arriving in any pieces.
//! Checks: the frames do not depend on how the bytes were cut into reads; every line is within
//! the limit and holds no newline; no more frames than newlines plus one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logd::framing::{frames, Frame, RequestLines};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // First byte: the line limit (small, so that over-long lines are common); second: the
    // read size the bytes arrive in.
    let [limit, read, bytes @ ..] = data else { return };
    let max_line = usize::from(*limit % 64);
    let read = usize::from(*read % 16) + 1;
    let whole = frames(bytes, max_line);

    let mut codec = RequestLines::new(max_line);
    let mut buf = BytesMut::new();
    let mut pieces = Vec::new();
    for chunk in bytes.chunks(read) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            pieces.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        pieces.push(frame);
    }
    assert_eq!(whole, pieces, "the frames depend on how the bytes arrived");

    let newlines = bytes.iter().filter(|b| **b == b'\n').count();
    assert!(whole.len() <= newlines + 1);
    for frame in &whole {
        if let Frame::Line(line) = frame {
            assert!(line.len() <= max_line && !line.contains('\n'), "{line:?}");
        }
    }
});
