//! [`SseDecoder`]: the server-sent-events framing (`text/event-stream`, as the HTML
//! standard defines it) of a streamed chat completion — byte chunks in, whole [`Event`]s
//! out.
//!
//! The body arrives in chunks cut anywhere: in a line, in a UTF-8 character, between the
//! `\r` and `\n` of a line end. The decoder keeps the bytes of the line being read and
//! decodes a line only once it is complete. Lines end with `\r\n`, `\n` or `\r`; a line
//! starting with `:` is a comment (keep-alives); `data:` lines add to the event's data
//! (several are joined with `\n`); `event:` names its type; `id:` and `retry:` are
//! ignored; a blank line ends the event. A line, or an event's data, longer than the
//! decoder's limit is an error rather than a growing buffer. Invalid UTF-8 is replaced
//! (U+FFFD), as the standard says. At the end of the body, an event whose lines are all
//! complete counts even without its blank line; a line the end cuts is dropped.
//!
//! ```text
//! : keep-alive
//! event: message
//! data: {"choices": [...]}
//!
//! data: [DONE]
//!
//! ```

use std::fmt;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, when the event has one (`None` is the default type, `message`).
    pub kind: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// A line, or an event's data, longer than the decoder's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The limit, in bytes.
    pub limit: usize,
}

impl fmt::Display for Oversized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a line or event longer than {} bytes", self.limit)
    }
}

/// Turns the bytes of an event stream, in chunks cut anywhere, into events.
#[derive(Debug)]
pub struct SseDecoder {
    /// The longest line, and the longest data of one event, in bytes.
    limit: usize,
    /// The bytes of the line being read (its end has not come yet).
    line: Vec<u8>,
    /// The last line ended with `\r`: a `\n` right after it is part of that line end.
    after_cr: bool,
    /// No line has ended yet (the first one may open with a byte-order mark).
    first_line: bool,
    /// The `event:` field of the event being read.
    kind: Option<String>,
    /// The data of the event being read, each `data:` line followed by `\n`.
    data: String,
}

impl SseDecoder {
    /// A decoder refusing lines and events longer than `limit` bytes.
    pub fn new(limit: usize) -> SseDecoder {
        SseDecoder {
            limit,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            kind: None,
            data: String::new(),
        }
    }

    /// Reads the next chunk of the body; returns the events it completed, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, Oversized> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        // Each turn consumes a line end, so there are at most `bytes.len()` turns.
        while let Some(end) = rest.iter().position(|b| matches!(b, b'\n' | b'\r')) {
            self.take(&rest[..end])?;
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            self.after_cr = rest[end] == b'\r' && end + 1 == rest.len();
            rest = &rest[end + if crlf { 2 } else { 1 }..];
            self.end_line(&mut events)?;
        }
        self.take(rest)?;
        Ok(events)
    }

    /// The end of the body: the event being read, if its lines are complete, is returned
    /// (the standard drops an event that no blank line ended, but a server that leaves out
    /// the last blank line loses nothing). An unfinished last line is dropped: the body
    /// was cut in it.
    pub fn finish(&mut self) -> Option<Event> {
        let mut events = Vec::new();
        self.line.clear();
        self.dispatch(&mut events);
        events.pop()
    }

    /// Adds `bytes` to the line being read.
    fn take(&mut self, bytes: &[u8]) -> Result<(), Oversized> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(Oversized { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The line being read is complete: interprets it.
    fn end_line(&mut self, events: &mut Vec<Event>) -> Result<(), Oversized> {
        let bytes = std::mem::take(&mut self.line);
        let decoded = String::from_utf8_lossy(&bytes);
        let mut line: &str = &decoded;
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(events);
        } else if !line.starts_with(':') {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    if self.data.len() + value.len() + 1 > self.limit {
                        return Err(Oversized { limit: self.limit });
                    }
                    self.data.push_str(value);
                    self.data.push('\n');
                }
                "event" => self.kind = Some(value.to_owned()),
                _ => {} // `id`, `retry` and unknown fields
            }
        }
        drop(decoded);
        self.line = bytes; // keeps the allocation
        self.line.clear();
        Ok(())
    }

    /// A blank line: the event being read, if it has data, is complete.
    fn dispatch(&mut self, events: &mut Vec<Event>) {
        let kind = self.kind.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        events.push(Event { kind, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event { kind: None, data: data.to_owned() }
    }

    /// Every event of `stream` fed in the chunks `cuts` makes, then the end.
    fn decode(stream: &[u8], cuts: &[usize]) -> Vec<Event> {
        let mut decoder = SseDecoder::new(1024);
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([stream.len()].iter()) {
            events.extend(decoder.feed(&stream[start..cut]).unwrap());
            start = cut;
        }
        events.extend(decoder.finish());
        events
    }

    /// A stream with every awkward thing at once: a byte-order mark, `\r\n`, `\r` and `\n`
    /// line ends, comments, an `event:` line, multi-line data, fields without a space or a
    /// colon, ignored fields, multi-byte characters and a blank line with no event.
    const SAMPLE: &str = "\u{feff}: keep-alive\r\n\r\ndata: {\"a\": \"é😀\"}\r\n\r\n\
        event: message\ndata:first\ndata: second\nid: 7\nretry: 10\n\n\
        data\r\rdata: 中文\r\n: ping\r\n\r\n\r\ndata: [DONE]\n";

    fn sample_events() -> Vec<Event> {
        vec![
            event("{\"a\": \"é😀\"}"),
            Event { kind: Some("message".into()), data: "first\nsecond".into() },
            event(""),
            event("中文"),
            event("[DONE]"),
        ]
    }

    #[test]
    fn decodes_the_sample_in_one_chunk() {
        assert_eq!(decode(SAMPLE.as_bytes(), &[]), sample_events());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = SAMPLE.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(decode(bytes, &[cut]), sample_events(), "cut at {cut}");
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_events() {
        let bytes = SAMPLE.as_bytes();
        for first in 0..=bytes.len() {
            for second in first..=bytes.len() {
                assert_eq!(decode(bytes, &[first, second]), sample_events(), "{first}, {second}");
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let bytes = SAMPLE.as_bytes();
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(decode(bytes, &cuts), sample_events());
    }

    #[test]
    fn events_come_out_as_soon_as_their_blank_line_arrives() {
        let mut decoder = SseDecoder::new(1024);
        assert_eq!(decoder.feed(b"data: one\n").unwrap(), vec![]);
        assert_eq!(decoder.feed(b"\ndata: tw").unwrap(), vec![event("one")]);
        assert_eq!(decoder.feed(b"o\r").unwrap(), vec![]);
        assert_eq!(decoder.feed(b"\n\r\n").unwrap(), vec![event("two")]);
        assert_eq!(decoder.finish(), None);
    }

    #[test]
    fn the_end_of_the_body_completes_the_last_event_but_not_a_cut_line() {
        assert_eq!(decode(b"data: [DONE]\n", &[]), vec![event("[DONE]")]);
        assert_eq!(decode(b"data: [DONE]\r", &[]), vec![event("[DONE]")]);
        assert_eq!(decode(b"data: [DONE]", &[]), vec![]);
        assert_eq!(decode(b"data: one\ndata: {\"cut", &[]), vec![event("one")]);
        assert_eq!(decode(b": only a comment\n", &[]), vec![]);
        assert_eq!(decode(b"event: x\n\n", &[]), vec![]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(decode(b"data: a\xffb\n\n", &[]), vec![event("a\u{fffd}b")]);
    }

    #[test]
    fn long_lines_and_events_are_refused() {
        let mut decoder = SseDecoder::new(16);
        assert_eq!(decoder.feed(b"data: 0123456789").unwrap(), vec![]);
        assert_eq!(decoder.feed(b"ab").unwrap_err(), Oversized { limit: 16 });

        let mut decoder = SseDecoder::new(16);
        decoder.feed(b"data: 0123456789\n").unwrap();
        let e = decoder.feed(b"data: 01234\n").unwrap_err();
        assert_eq!(e.to_string(), "a line or event longer than 16 bytes");

        let mut decoder = SseDecoder::new(16);
        for _ in 0..100 {
            assert_eq!(decoder.feed(b"data: 0123456789\n\n").unwrap(), vec![event("0123456789")]);
        }
    }
}
