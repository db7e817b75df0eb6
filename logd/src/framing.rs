//! The server's framing of a connection: its bytes cut into request lines at `\n`, each line
//! either UTF-8 text to decode or a [`Frame`] saying why it is not one. Nothing here ends a
//! connection: an over-long line is skipped up to its newline, a line that is not UTF-8 is
//! reported, and bytes left without their newline when the client closes are reported and
//! never decoded (a request cut short is not committed). Pure; the server reads with it
//! through `tokio_util`'s `FramedRead`.

use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// One frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole line, without its `\n` (and `\r`).
    Line(String),
    /// A line longer than the limit; its bytes were dropped up to its newline.
    TooLong,
    /// A line that is not UTF-8.
    NotUtf8,
    /// Bytes that the connection ended before their newline.
    Unterminated,
}

/// Cuts lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct RequestLines {
    max_line: usize,
    /// Inside an over-long line, dropping bytes until its newline.
    discarding: bool,
    /// Bytes of the buffer already searched for a newline.
    searched: usize,
}

impl RequestLines {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            discarding: false,
            searched: 0,
        }
    }
}

impl Decoder for RequestLines {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        let newline = buf[self.searched..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| self.searched + i);
        let Some(end) = newline else {
            if self.discarding || buf.len() > self.max_line {
                // Keep nothing of an over-long line but the knowledge that it is one.
                buf.clear();
                (self.discarding, self.searched) = (true, 0);
            } else {
                self.searched = buf.len();
            }
            return Ok(None);
        };
        let line = buf.split_to(end + 1);
        self.searched = 0;
        if std::mem::take(&mut self.discarding) || end > self.max_line {
            return Ok(Some(Frame::TooLong));
        }
        let line = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
        Ok(Some(match std::str::from_utf8(line) {
            Ok(text) => Frame::Line(text.to_owned()),
            Err(_) => Frame::NotUtf8,
        }))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        let cut = std::mem::take(&mut self.discarding) || !buf.is_empty();
        buf.clear();
        self.searched = 0;
        Ok(cut.then_some(Frame::Unterminated))
    }
}

/// Every frame of `bytes` as one connection would carry them, closed at the end: the framing
/// as a pure function (for tests and fuzzing).
pub fn frames(bytes: &[u8], max_line: usize) -> Vec<Frame> {
    let mut codec = RequestLines::new(max_line);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).expect("framing never fails") {
        out.push(frame);
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("framing never fails") {
        out.push(frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_what_is_not_one() {
        let line = |s: &str| Frame::Line(s.to_owned());
        assert_eq!(
            frames(b"a\nbc\r\n\n", 10),
            [line("a"), line("bc"), line("")]
        );
        assert_eq!(
            frames(b"0123456789\n01234567890\nok\n", 10),
            [line("0123456789"), Frame::TooLong, line("ok")]
        );
        assert_eq!(frames(b"\xff\xfe\nok\n", 10), [Frame::NotUtf8, line("ok")]);
        assert_eq!(
            frames(b"ok\n{\"id\":1", 10),
            [line("ok"), Frame::Unterminated]
        );
        assert_eq!(frames(b"012345678901234", 10), [Frame::Unterminated]);
        assert_eq!(frames(b"", 10), []);
    }

    #[test]
    fn a_long_line_arriving_in_pieces_is_dropped_as_it_comes() {
        let mut codec = RequestLines::new(4);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "nothing of an over-long line is kept");
        buf.extend_from_slice(b"gh\nok\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::TooLong));
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Line("ok".into()))
        );
        let mut buf = BytesMut::from(&b"ab"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"c\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Line("abc".into()))
        );
    }
}
