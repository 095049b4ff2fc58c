//! Checks docs/protocol.md: a Method reference heading for every method, and the worked frame.

use std::collections::{HashMap, HashSet};

use burrow_protocol::methods::table::METHODS;
use burrow_protocol::{Message, codec};

/// The specification, as the repository holds it.
const SPEC: &str = include_str!("../../docs/protocol.md");

/// The markers around the worked example's hex bytes.
const HEX_START: &str = "<!-- frame-hex -->";
const HEX_END: &str = "<!-- /frame-hex -->";

/// The Markdown headings of `text` (lines starting with `#`, outside fenced code blocks),
/// each with its level.
fn headings(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence && line.starts_with('#') {
            let level = line.chars().take_while(|c| *c == '#').count();
            out.push((level, line));
        }
    }
    out
}

/// The headings of the "Method reference" section: from its level-2 heading to the next
/// level-2 heading.
fn reference_headings() -> Vec<(usize, &'static str)> {
    let all = headings(SPEC);
    let start = all
        .iter()
        .position(|(level, line)| *level == 2 && line.contains("Method reference"))
        .expect("docs/protocol.md has a level-2 heading \"Method reference\"");
    all[start + 1..].iter().take_while(|(level, _)| *level > 2).copied().collect()
}

/// The `code spans` of a line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_method_has_a_heading_of_its_own_in_the_method_reference() {
    let names: HashSet<&str> = METHODS.iter().flat_map(|m| m.names()).collect();
    assert!(names.len() > 40, "the method table looks empty: {names:?}");
    let mut headed: HashMap<&str, Vec<&str>> = HashMap::new();
    for (level, line) in reference_headings() {
        for span in code_spans(line) {
            headed.entry(span).or_default().push(line);
        }
        // A method's heading names methods only: a misspelt or removed name fails.
        if level == 4 {
            for span in code_spans(line) {
                assert!(names.contains(span), "{line:?} names {span:?}, which is no method");
            }
        }
    }
    let mut missing: Vec<&str> =
        names.iter().copied().filter(|n| !headed.contains_key(n)).collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "methods without a heading in the Method reference of docs/protocol.md: {missing:?}"
    );
    for name in &names {
        let lines = &headed[name];
        assert_eq!(lines.len(), 1, "{name} is on several headings: {lines:?}");
    }
}

/// The bytes written as hex between the frame markers (fence lines skipped); every other
/// token is an error.
fn documented_frame() -> Vec<u8> {
    assert_eq!(SPEC.matches(HEX_START).count(), 1, "one {HEX_START} marker");
    assert_eq!(SPEC.matches(HEX_END).count(), 1, "one {HEX_END} marker");
    let (_, after) = SPEC.split_once(HEX_START).unwrap();
    let (block, _) = after.split_once(HEX_END).expect("the end marker follows the start");
    block
        .lines()
        .filter(|line| !line.trim_start().starts_with("```"))
        .flat_map(str::split_whitespace)
        .map(|token| {
            assert_eq!(token.len(), 2, "{token:?} is not one byte of hex");
            u8::from_str_radix(token, 16)
                .unwrap_or_else(|e| panic!("{token:?} is not one byte of hex: {e}"))
        })
        .collect()
}

#[test]
fn the_worked_frame_is_what_the_codec_writes() {
    let request = Message::request(1u64, "app.heartbeat", serde_json::json!({}));
    let frame = codec::encode_frame(&request, codec::MAX_FRAME_BYTES).unwrap();
    let documented = documented_frame();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    assert_eq!(
        documented,
        frame,
        "docs/protocol.md shows\n{}\nthe codec writes\n{}",
        hex(&documented),
        hex(&frame)
    );
    // And it reads back as the request it explains.
    let (decoded, used) = codec::decode_frame(&documented, codec::MAX_FRAME_BYTES).unwrap();
    assert_eq!((decoded.unwrap(), used), (request, documented.len()));
}
