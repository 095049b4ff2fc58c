//! The frame codec: a 4-byte big-endian length, then one MessagePack map with named
//! (string) keys. Pure functions over bytes; transports add the I/O.

use std::io::Cursor;

use serde::de::DeserializeSeed;

use crate::message::{Fields, not_a_map};
use crate::strict::{self, NotFinite, Refused, Step};
use crate::{ErrorCode, ErrorObject, Id, InvalidMessage, Message};

mod envelope;
mod skip;

pub use crate::strict::RESERVED_KEY;

/// Default and ceiling for `ipc.max_frame_bytes`: 8 MiB.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Length of the frame header.
pub const HEADER_BYTES: usize = 4;

/// Bytes reserved for an encoded frame before encoding (one allocation size class).
const FRAME_CAPACITY: usize = 256;

/// Deepest nesting of maps and arrays a frame may hold, and what every reader takes.
/// Deeper frames are refused as `INVALID_REQUEST`, so a small hostile frame cannot
/// exhaust a decoder's stack.
pub const MAX_DEPTH: usize = 128;

/// Deepest nesting the kernel takes in a frame sent to it. The levels up to [`MAX_DEPTH`]
/// are room for the kernel to wrap what it took in its own frames: a message's metadata
/// comes back inside a history page, a tool call's arguments inside the next provider
/// request. Without that room, a value the kernel stored could not be sent back.
pub const MAX_DEPTH_TO_KERNEL: usize = MAX_DEPTH - 16;

/// Why a frame could not be read as a message. Every case maps to `INVALID_REQUEST` but
/// a non-finite float in a request's or a notification's params, `INVALID_PARAMS`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// N = 0.
    #[error("zero-length frame")]
    Empty,
    /// The frame is larger than the limit; the connection must be closed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The bytes are not one MessagePack value, or hold a value that is not JSON-shaped
    /// (binary, extension types, non-string map keys).
    #[error("frame is not a valid MessagePack value: {reason}")]
    NotMessagePack {
        /// The id, when it could still be read.
        id: Option<Id>,
        /// Detail for humans.
        reason: String,
        /// The frame is an answer (it holds `result` or `error`, and no `method`): its id
        /// names a request of the reader's, and it is not answered with that id.
        answer: bool,
    },
    /// Bytes left over after the first value.
    #[error("{0} trailing bytes after the MessagePack value")]
    TrailingBytes(usize),
    /// A value, but not a valid message.
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    /// A float that is NaN or infinite, anywhere in the frame. JSON has no form for it,
    /// so it could only be stored or forwarded changed (as null): the frame is refused.
    #[error("{float} at `{path}`: {}", strict::NOT_FINITE)]
    NotFinite {
        /// The frame's id, when it had a valid one.
        id: Option<Id>,
        /// Where the float is, from the frame's top: `params.metadata.v`, `result[2]`.
        path: String,
        /// `NaN`, `inf` or `-inf`.
        float: &'static str,
        /// Where the float is inside the params (as `data.field` names a field), when the
        /// frame is a request or a notification and the float is in its params.
        field: Option<String>,
        /// The frame is an answer (as for [`DecodeError::NotMessagePack`]); a stream
        /// chunk counts as one, its id being the reader's too.
        answer: bool,
    },
}

impl DecodeError {
    /// The id of the offending message, when one could be read.
    pub fn id(&self) -> Option<Id> {
        match self {
            DecodeError::NotMessagePack { id, .. } | DecodeError::NotFinite { id, .. } => {
                id.clone()
            }
            DecodeError::Invalid(m) => m.id.clone(),
            _ => None,
        }
    }

    /// The code of [`DecodeError::to_response`]'s error: `INVALID_PARAMS` for a
    /// non-finite float in a request's or a notification's params, else
    /// `INVALID_REQUEST`.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::NotFinite { field: Some(_), .. } => ErrorCode::InvalidParams,
            _ => ErrorCode::InvalidRequest,
        }
    }

    /// Whether the connection must be closed after answering (framing lost).
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::TooLarge { .. })
    }

    /// The reader's own request that this unreadable frame answered, when it was an
    /// answer and its id could be read: that request has failed.
    pub fn answered(&self) -> Option<Id> {
        match self {
            DecodeError::NotMessagePack { id, answer: true, .. }
            | DecodeError::NotFinite { id, answer: true, .. } => id.clone(),
            _ => None,
        }
    }

    /// The error response to send back for this frame. An unreadable answer gets one
    /// without an id: its id is the reader's, and would resolve a request of the sender's
    /// that happened to have the same id.
    ///
    /// A non-finite float is named in `data`: `data.field`, the path inside the params,
    /// with `INVALID_PARAMS`; else `data.path`, the path from the frame's top.
    pub fn to_response(&self) -> Message {
        if let Some(id) = self.answered() {
            let message = format!("{self} (the answer to request {id})");
            return Message::error(None, self.error_object(message));
        }
        Message::error(self.id(), self.error_object(self.to_string()))
    }

    fn error_object(&self, message: String) -> ErrorObject {
        match self {
            DecodeError::NotFinite { field: Some(field), .. } => {
                ErrorObject::invalid_params(field.as_str(), message)
            }
            DecodeError::NotFinite { path, .. } => {
                ErrorObject::new(ErrorCode::InvalidRequest, message)
                    .with_data(serde_json::json!({ "path": path }))
            }
            _ => ErrorObject::new(ErrorCode::InvalidRequest, message),
        }
    }

    /// The refusal of a frame whose members are `fields` (read whole, with null standing
    /// in for the float) for the non-finite float `found`.
    fn not_finite(fields: Fields, found: NotFinite) -> Self {
        let answer = fields.method.is_none()
            && (fields.result.is_some() || fields.error.is_some() || fields.chunk.is_some());
        let id = fields.id.as_ref().and_then(Id::from_value);
        let with_params = matches!(
            Message::from_fields(fields),
            Ok(Message::Request(_) | Message::Notification(_))
        );
        let field = match found.path.split_first() {
            Some((Step::Key(top), inside)) if with_params && top == "params" => {
                Some(match inside.first() {
                    // Params that are not a map are refused as a whole.
                    Some(Step::Key(_)) => strict::render(inside),
                    _ => "params".to_owned(),
                })
            }
            _ => None,
        };
        let path = strict::render(&found.path);
        DecodeError::NotFinite { id, path, float: found.float, field, answer }
    }
}

/// Failure to encode a message (a value MessagePack cannot hold, or an oversize result).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The serializer refused the value.
    #[error("cannot encode message: {0}")]
    Serialize(#[from] rmp_serde::encode::Error),
    /// The encoded message exceeds the frame limit.
    #[error("encoded message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Encodes a message body (no length header) as a MessagePack map with string keys.
pub fn encode_body(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    Ok(rmp_serde::to_vec_named(msg)?)
}

/// Encodes a whole frame: header plus body, refusing bodies over `max_frame_bytes`.
pub fn encode_frame(msg: &Message, max_frame_bytes: usize) -> Result<Vec<u8>, EncodeError> {
    framed(msg, max_frame_bytes)
}

/// Encodes a request's whole frame from params of any serializable type, as
/// [`encode_frame`] encodes `Message::request(id, method, to_value(params))`, without
/// the JSON value between.
pub fn encode_request_frame<P: serde::Serialize>(
    id: u64,
    method: &str,
    params: &P,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, EncodeError> {
    framed(&CallRef { id: Some(id), method, params }, max_frame_bytes)
}

/// Encodes a notification's whole frame from params of any serializable type, as
/// [`encode_frame`] encodes `Message::notification(method, to_value(params))`, without
/// the JSON value between.
pub fn encode_notification_frame<P: serde::Serialize>(
    method: &str,
    params: &P,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, EncodeError> {
    framed(&CallRef { id: None, method, params }, max_frame_bytes)
}

/// A request (with an id) or a notification, borrowing its typed params.
struct CallRef<'a, P> {
    id: Option<u64>,
    method: &'a str,
    params: &'a P,
}

impl<P: serde::Serialize> serde::Serialize for CallRef<'_, P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2 + usize::from(self.id.is_some())))?;
        if let Some(id) = self.id {
            m.serialize_entry("id", &id)?;
        }
        m.serialize_entry("method", self.method)?;
        m.serialize_entry("params", self.params)?;
        m.end()
    }
}

/// `body`'s frame: its length, then its MessagePack map with string keys.
fn framed<T: serde::Serialize>(body: &T, max_frame_bytes: usize) -> Result<Vec<u8>, EncodeError> {
    // The body is written after room for the header, which is filled in once its length
    // is known: one buffer, no copy, sized for most messages up front (growing from a few
    // bytes reallocates several times).
    let mut frame = Vec::with_capacity(FRAME_CAPACITY);
    frame.resize(HEADER_BYTES, 0);
    rmp_serde::encode::write_named(&mut frame, body)?;
    let len = frame.len() - HEADER_BYTES;
    if len > max_frame_bytes || len > u32::MAX as usize {
        return Err(EncodeError::TooLarge { len, max: max_frame_bytes });
    }
    frame[..HEADER_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Decodes one frame body (the bytes after the length header), nested at most
/// [`MAX_DEPTH`] deep.
pub fn decode_body(body: &[u8]) -> Result<Message, DecodeError> {
    decode_body_within(body, MAX_DEPTH)
}

/// [`decode_body`], refusing a body nested deeper than `max_depth` (at most
/// [`MAX_DEPTH`]).
pub fn decode_body_within(body: &[u8], max_depth: usize) -> Result<Message, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    // rmp-serde refuses the container that brings its counter to 0, i.e. it allows one
    // level less than the number given: max_depth + 1 allows exactly max_depth levels.
    let depth = max_depth.min(MAX_DEPTH) + 1;
    let refused = Refused::default();
    let not_msgpack = |e: rmp_serde::decode::Error| {
        let Salvaged { id, answer } = salvage(body);
        DecodeError::NotMessagePack { id, reason: e.to_string(), answer }
    };
    // The first value's extent read from its markers, it is decoded straight from its
    // bytes; a body that is not one whole value is decoded through a reader, which says
    // what is wrong with it.
    let (top, used) = match skip::value_len(body) {
        Some(used) => {
            let mut de = rmp_serde::Deserializer::from_read_ref(&body[..used]);
            de.set_max_depth(depth);
            (envelope::TopSeed(&refused).deserialize(&mut de).map_err(not_msgpack)?, used)
        }
        None => {
            let mut de = rmp_serde::Deserializer::new(Cursor::new(body));
            de.set_max_depth(depth);
            let top = envelope::TopSeed(&refused).deserialize(&mut de).map_err(not_msgpack)?;
            (top, de.get_ref().position() as usize)
        }
    };
    if used != body.len() {
        return Err(DecodeError::TrailingBytes(body.len() - used));
    }
    match (top, refused.into_inner()) {
        (envelope::Top::Map(fields), None) => Ok(Message::from_fields(fields)?),
        (envelope::Top::Map(fields), Some(found)) => Err(DecodeError::not_finite(fields, found)),
        (envelope::Top::NotMap, _) => Err(not_a_map().into()),
    }
}

/// How many bytes the frame at the front of `buf` takes, header included, once its
/// header is there (`None` before).
pub fn frame_extent(buf: &[u8]) -> Option<usize> {
    let header = buf.first_chunk::<HEADER_BYTES>()?;
    Some(HEADER_BYTES.saturating_add(u32::from_be_bytes(*header) as usize))
}

/// Splits one frame off the front of `buf`: `Ok(None)` when more bytes are needed,
/// else the decoded message (or its error) and the number of bytes consumed.
/// A `TooLarge` error consumes nothing: the caller must close.
pub fn decode_frame(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Option<(Result<Message, DecodeError>, usize)> {
    decode_frame_within(buf, max_frame_bytes, MAX_DEPTH)
}

/// [`decode_frame`], refusing a body nested deeper than `max_depth` (at most
/// [`MAX_DEPTH`]).
pub fn decode_frame_within(
    buf: &[u8],
    max_frame_bytes: usize,
    max_depth: usize,
) -> Option<(Result<Message, DecodeError>, usize)> {
    let len = frame_extent(buf)? - HEADER_BYTES;
    if len > max_frame_bytes {
        return Some((Err(DecodeError::TooLarge { len, max: max_frame_bytes }), 0));
    }
    let body = buf.get(HEADER_BYTES..HEADER_BYTES + len)?;
    Some((decode_body_within(body, max_depth), HEADER_BYTES + len))
}

/// What [`salvage`] could read of a frame that did not decode.
#[derive(Debug, Default)]
struct Salvaged {
    id: Option<Id>,
    /// It has a `result` or `error` key, and no `method` key (as far as it could be read).
    answer: bool,
}

/// Best effort: read `id`, and whether the frame is an answer, out of a frame that did
/// not decode as a JSON-shaped value (binary values, too deep, ...). Walks the top-level
/// map entry by entry until one cannot be read, so keys before the offending value are
/// found, and the offending value's own key too.
fn salvage(body: &[u8]) -> Salvaged {
    let mut found = Salvaged::default();
    let mut cursor = Cursor::new(body);
    let Ok(entries) = rmp::decode::read_map_len(&mut cursor) else { return found };
    let (mut method, mut outcome) = (false, false);
    for _ in 0..entries {
        // Keys are scalars: a small depth bound suffices (rmpv counts a string as two).
        let Ok(key) = rmpv::decode::read_value_with_max_depth(&mut cursor, 4) else { break };
        method |= key.as_str() == Some("method");
        outcome |= matches!(key.as_str(), Some("result" | "error"));
        let Ok(value) = rmpv::decode::read_value_with_max_depth(&mut cursor, MAX_DEPTH) else {
            break;
        };
        if key.as_str() == Some("id") {
            found.id = match value {
                rmpv::Value::Integer(n) => n.as_u64().map(Id::Num),
                rmpv::Value::String(s) => s.into_str().map(Id::Str),
                _ => None,
            };
        }
    }
    found.answer = outcome && !method;
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn a_request_encoded_from_typed_params_reads_back_as_the_same_request() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Params {
            call_id: String,
            arguments: serde_json::Value,
            session_key: Option<String>,
        }
        let params = Params {
            call_id: "c-1".into(),
            arguments: json!({"a": [1, 2.5, "x"], "b": null}),
            session_key: None,
        };
        let typed = encode_request_frame(7, "tool.invoke", &params, MAX_FRAME_BYTES).unwrap();
        let value = serde_json::to_value(&params).unwrap();
        let msg = Message::request(7u64, "tool.invoke", value);
        // The same message (a struct's fields keep their order, a JSON map sorts them).
        let (decoded, used) = decode_frame(&typed, MAX_FRAME_BYTES).unwrap();
        assert_eq!((decoded.unwrap(), used), (msg, typed.len()));
        let small = encode_request_frame(7, "tool.invoke", &params, 10).unwrap_err();
        assert!(matches!(small, EncodeError::TooLarge { max: 10, .. }), "{small:?}");
        // A notification likewise.
        let typed = encode_notification_frame("channel.delta", &params, MAX_FRAME_BYTES).unwrap();
        let msg = Message::notification("channel.delta", serde_json::to_value(&params).unwrap());
        let (decoded, used) = decode_frame(&typed, MAX_FRAME_BYTES).unwrap();
        assert_eq!((decoded.unwrap(), used), (msg, typed.len()));
        let small = encode_notification_frame("channel.delta", &params, 10).unwrap_err();
        assert!(matches!(small, EncodeError::TooLarge { max: 10, .. }), "{small:?}");
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let msg = Message::request(1u64, "kernel.info", json!({}));
        let full = encode_frame(&msg, MAX_FRAME_BYTES).unwrap();
        for cut in 0..full.len() {
            assert!(decode_frame(&full[..cut], MAX_FRAME_BYTES).is_none(), "cut at {cut}");
        }
    }

    /// `{"id": 5, <key>: bin}` with the keys given, in order.
    fn with_binary(keys: &[&str]) -> Vec<u8> {
        let mut body = vec![0x80 | (keys.len() as u8 + 1), 0xa2, b'i', b'd', 0x05];
        for key in keys {
            body.push(0xa0 | key.len() as u8);
            body.extend_from_slice(key.as_bytes());
            body.extend_from_slice(&[0xc4, 0x01, 0xff]); // bin 8 of one byte
        }
        body
    }

    #[test]
    fn an_unreadable_answer_names_the_request_it_answered_and_is_refused_without_its_id() {
        for keys in [&["result"][..], &["error"], &["chunk", "result"]] {
            let err = decode_body(&with_binary(keys)).unwrap_err();
            assert_eq!(err.answered(), Some(Id::Num(5)), "{keys:?}");
            let Message::Response(answer) = err.to_response() else { panic!("{keys:?}") };
            assert_eq!(answer.id, None, "{keys:?}");
            assert!(answer.outcome.unwrap_err().message.contains("answer to request 5"));
        }
        // A request (or anything with a method) is answered with its id, as before.
        for keys in [&["params"][..], &["method", "result"], &["result", "method"]] {
            let err = decode_body(&with_binary(keys)).unwrap_err();
            assert_eq!((err.answered(), err.id()), (None, Some(Id::Num(5))), "{keys:?}");
            let Message::Response(answer) = err.to_response() else { panic!("{keys:?}") };
            assert_eq!(answer.id, Some(Id::Num(5)), "{keys:?}");
        }
    }

    #[test]
    fn bad_frames_map_to_invalid_request() {
        let (r, used) = decode_frame(&frame(&[]), MAX_FRAME_BYTES).unwrap();
        assert_eq!((r.unwrap_err(), used), (DecodeError::Empty, 4));

        let not_map = rmp_serde::to_vec(&json!([1, 2])).unwrap();
        let err = decode_body(&not_map).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)));
        assert!(!err.is_fatal());

        let garbage = decode_body(&[0xc1]).unwrap_err();
        assert!(matches!(garbage, DecodeError::NotMessagePack { id: None, .. }));

        let mut trailing = rmp_serde::to_vec_named(&json!({"id": 1, "method": "m"})).unwrap();
        trailing.push(0xc0);
        assert_eq!(decode_body(&trailing).unwrap_err(), DecodeError::TrailingBytes(1));

        let (r, used) = decode_frame(&[0xff, 0xff, 0xff, 0xff], 1024).unwrap();
        let err = r.unwrap_err();
        assert!(err.is_fatal());
        assert_eq!(used, 0);
        let Message::Response(resp) = err.to_response() else { panic!() };
        assert_eq!(resp.id, None);
        assert_eq!(resp.outcome.unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn invalid_messages_keep_their_id() {
        let body = rmp_serde::to_vec_named(&json!({"id": "abc", "method": 5})).unwrap();
        assert_eq!(decode_body(&body).unwrap_err().id(), Some(Id::Str("abc".into())));

        // A binary value is valid MessagePack but not JSON-shaped; the id is salvaged.
        let raw = rmpv::Value::Map(vec![
            (rmpv::Value::from("id"), rmpv::Value::from(42)),
            (rmpv::Value::from("method"), rmpv::Value::from("m")),
            (rmpv::Value::from("params"), rmpv::Value::Binary(vec![1, 2, 3])),
        ]);
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &raw).unwrap();
        let err = decode_body(&body).unwrap_err();
        assert_eq!(err.id(), Some(Id::Num(42)), "{err:?}");

        // A binary key is refused wherever it is, even UTF-8 and after a map's first key.
        let params = rmpv::Value::Map(vec![
            (rmpv::Value::from("a"), rmpv::Value::from(1)),
            (rmpv::Value::Binary(b"b".to_vec()), rmpv::Value::from(2)),
        ]);
        let raw = rmpv::Value::Map(vec![
            (rmpv::Value::from("id"), rmpv::Value::from(7)),
            (rmpv::Value::from("method"), rmpv::Value::from("m")),
            (rmpv::Value::from("params"), params),
        ]);
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &raw).unwrap();
        let err = decode_body(&body).unwrap_err();
        assert!(matches!(err, DecodeError::NotMessagePack { .. }), "{err:?}");
        assert_eq!(err.id(), Some(Id::Num(7)));

        let neg = rmp_serde::to_vec_named(&json!({"id": -1, "method": "m"})).unwrap();
        assert_eq!(decode_body(&neg).unwrap_err().id(), None);
    }

    /// A map holding `$serde_json::private::RawValue` would not read back as itself from
    /// the kernel's journal or database (serde_json's `raw_value` feature): a frame holding
    /// it, at any depth, is refused.
    #[test]
    fn a_frame_holding_the_reserved_key_is_refused() {
        for params in
            [json!({ RESERVED_KEY: "[1, 2]" }), json!({"metadata": { "a": { RESERVED_KEY: 5 } }})]
        {
            let body = encode_body(&Message::request(7u64, "m", params.clone())).unwrap();
            let err = decode_body(&body).unwrap_err();
            assert!(matches!(err, DecodeError::NotMessagePack { .. }), "{params}: {err:?}");
            assert!(err.to_string().contains("reserved"), "{err}");
            assert_eq!(err.id(), Some(Id::Num(7)));
        }
    }

    /// `v` as MessagePack, with the strings `"f64:NaN"`, `"f32:-inf"`... written as floats
    /// of that width and value.
    fn with_floats(v: &serde_json::Value) -> Vec<u8> {
        use rmpv::Value as Mp;
        fn mp(v: &serde_json::Value) -> Mp {
            match v {
                serde_json::Value::String(s) => match s.split_once(':') {
                    Some(("f64", f)) => Mp::F64(f.parse().unwrap()),
                    Some(("f32", f)) => Mp::F32(f.parse().unwrap()),
                    _ => Mp::from(s.as_str()),
                },
                serde_json::Value::Array(items) => Mp::Array(items.iter().map(mp).collect()),
                serde_json::Value::Object(m) => {
                    Mp::Map(m.iter().map(|(k, v)| (Mp::from(k.as_str()), mp(v))).collect())
                }
                serde_json::Value::Number(n) if n.is_f64() => Mp::F64(n.as_f64().unwrap()),
                serde_json::Value::Number(n) => Mp::from(n.as_i64().unwrap()),
                serde_json::Value::Bool(b) => Mp::from(*b),
                serde_json::Value::Null => Mp::Nil,
            }
        }
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &mp(v)).unwrap();
        body
    }

    /// The error response a body gets, with the error it decoded to.
    fn refusal(v: serde_json::Value) -> (DecodeError, Option<Id>, ErrorObject) {
        let err = decode_body(&with_floats(&v)).unwrap_err();
        let Message::Response(crate::Response { id, outcome: Err(e) }) = err.to_response() else {
            panic!("{v}: not an error response")
        };
        (err, id, e)
    }

    /// A NaN or an infinity (float64 or float32) in a request's params is refused as
    /// `INVALID_PARAMS` with the request's id, naming its path inside the params in
    /// `data.field` and from the frame's top in the message; it is never read as null.
    #[test]
    fn a_non_finite_float_in_params_is_invalid_params_naming_its_path() {
        for float in ["f64:NaN", "f64:inf", "f64:-inf", "f32:NaN", "f32:inf", "f32:-inf"] {
            let name = float.split_once(':').unwrap().1;
            for (params, field) in [
                (json!({"metadata": {"v": float}}), "metadata.v"),
                (
                    json!({"sessionKey": "k", "metadata": {"a": [1, {"b": float}]}}),
                    "metadata.a[1].b",
                ),
                (json!({"arguments": [[float]]}), "arguments[0][0]"),
                (json!({"x": float}), "x"),
                // Params that are not a map are refused as a whole.
                (json!([float]), "params"),
                (json!(float), "params"),
            ] {
                let v = json!({"id": 7, "method": "message.dispatch", "params": params});
                let (err, id, e) = refusal(v.clone());
                assert_eq!((id, err.answered()), (Some(Id::Num(7)), None), "{v}");
                assert_eq!(e.code, ErrorCode::InvalidParams, "{v}");
                assert_eq!(e.data, Some(json!({ "field": field })), "{v}");
                let path = if field == "params" { &err.to_string() } else { field };
                assert!(e.message.contains(path), "{v}: {}", e.message);
                assert!(e.message.starts_with(&format!("{name} at `params")), "{v}: {}", e.message);
            }
        }
        // A string id, the members in any order, the float before the id.
        let v = json!({"params": {"v": "f64:NaN"}, "method": "m", "id": "s-1"});
        let (_, id, e) = refusal(v);
        assert_eq!((id, e.code), (Some(Id::Str("s-1".into())), ErrorCode::InvalidParams));
        assert_eq!(e.message, format!("NaN at `params.v`: {}", strict::NOT_FINITE));
        // A notification's gets no id, there being none to answer.
        let (err, id, e) = refusal(json!({"method": "$/cancel", "params": {"id": "f32:inf"}}));
        assert_eq!((err.id(), id, e.code), (None, None, ErrorCode::InvalidParams));
        assert_eq!(e.data, Some(json!({"field": "id"})));
    }

    /// A non-finite float in an answer (its result, its error, or a stream chunk) makes
    /// it unreadable: the request it answered fails, and its sender hears of it without
    /// the id. Anywhere else, `INVALID_REQUEST` with the frame's id and `data.path`.
    #[test]
    fn a_non_finite_float_elsewhere_refuses_the_frame_naming_its_path() {
        for (v, path) in [
            (json!({"id": 5, "result": {"v": "f64:NaN"}}), "result.v"),
            (json!({"id": 5, "result": ["f32:-inf"]}), "result[0]"),
            (json!({"id": 5, "result": "f64:inf"}), "result"),
            (
                json!({"id": 5, "error": {"code": "TIMEOUT", "message": "m", "data": "f64:NaN"}}),
                "error.data",
            ),
            (json!({"id": 5, "chunk": {"delta": [0.5, "f64:NaN"]}}), "chunk.delta[1]"),
        ] {
            let (err, id, e) = refusal(v.clone());
            assert_eq!((err.answered(), id), (Some(Id::Num(5)), None), "{v}");
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{v}");
            assert_eq!(e.data, Some(json!({ "path": path })), "{v}");
            assert!(e.message.contains(&format!("`{path}`")), "{v}: {}", e.message);
            assert!(e.message.contains("answer to request 5"), "{v}: {}", e.message);
        }
        for (v, id, path) in [
            // Members the protocol does not know are held to the same shape.
            (
                json!({"id": 5, "method": "m", "extra": {"v": "f64:NaN"}}),
                Some(Id::Num(5)),
                "extra.v",
            ),
            // A float where the id goes is not an id.
            (json!({"id": "f64:NaN", "method": "m"}), None, "id"),
            (json!({"id": 5, "method": "f32:NaN"}), Some(Id::Num(5)), "method"),
            // An invalid message holding one: named too.
            (
                json!({"id": 5, "method": 3, "params": {"v": "f64:inf"}}),
                Some(Id::Num(5)),
                "params.v",
            ),
            // Where there is a method, `result` is not an answer's.
            (json!({"id": 5, "method": "m", "result": "f64:NaN"}), Some(Id::Num(5)), "result"),
        ] {
            let (err, answer_id, e) = refusal(v.clone());
            assert_eq!((err.answered(), err.id(), answer_id), (None, id.clone(), id), "{v}");
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{v}");
            assert_eq!(e.data, Some(json!({ "path": path })), "{v}");
        }
        // The first of several is named.
        let v = json!({"id": 1, "method": "m", "params": {"a": "f64:inf", "b": "f64:NaN"}});
        assert_eq!(refusal(v).2.data, Some(json!({"field": "a"})));
        // Anything a frame may not hold at all is refused first, as before.
        let v = json!({"id": 1, "method": "m", "params": {"a": "f64:NaN", "b": [1, 2]}});
        let mut body = with_floats(&v);
        let at = body.len() - 2;
        body.splice(at.., [0xc4, 0x01, 0xff]); // `b`: bin 8, not an array
        assert!(matches!(decode_body(&body), Err(DecodeError::NotMessagePack { .. })));
        // A value that is not a map is not a message, whatever it holds.
        let err = decode_body(&with_floats(&json!(["f64:NaN"]))).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
        // Finite floats of both widths read as themselves, the largest too.
        let v = json!({"id": 1, "method": "m", "params": {"a": "f64:1.5", "b": "f32:0.25", "c": "f64:-1.7976931348623157e308"}});
        let Message::Request(r) = decode_body(&with_floats(&v)).unwrap() else { panic!() };
        assert_eq!(r.params, json!({"a": 1.5, "b": 0.25, "c": f64::MIN}));
    }

    #[test]
    fn classification() {
        let dec = |v: serde_json::Value| decode_body(&rmp_serde::to_vec_named(&v).unwrap());
        assert!(matches!(dec(json!({"method": "m"})).unwrap(), Message::Notification(_)));
        let Message::Request(r) = dec(json!({"id": "s", "method": "m", "extra": 1})).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.params, json!({}));
        assert!(matches!(dec(json!({"id": 1, "result": null})).unwrap(), Message::Response(_)));
        assert!(matches!(dec(json!({"id": 1, "chunk": 1})).unwrap(), Message::Chunk(_)));
        assert!(dec(json!({"id": 1})).is_err());
        assert!(dec(json!({})).is_err());
        assert!(dec(json!({"id": 1, "error": "x"})).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut value = json!(1);
        for _ in 0..MAX_DEPTH + 10 {
            value = json!([value]);
        }
        let body =
            rmp_serde::to_vec_named(&json!({"id": 3, "method": "m", "params": value})).unwrap();
        let err = decode_body(&body).unwrap_err();
        assert!(matches!(err, DecodeError::NotMessagePack { .. }), "{err:?}");
        // A raw frame of 100k nested array markers (no serde_json on the way in).
        let mut raw = vec![0x91u8; 100_000];
        raw.push(0xc0);
        assert!(decode_body(&raw).is_err());

        let mut fine = json!(1);
        for _ in 0..MAX_DEPTH - 5 {
            fine = json!([fine]);
        }
        let body =
            rmp_serde::to_vec_named(&json!({"id": 3, "method": "m", "params": fine})).unwrap();
        assert!(decode_body(&body).is_ok());
    }

    #[test]
    fn encode_refuses_oversize() {
        let big = Message::notification("m", json!({"x": "a".repeat(100)}));
        assert!(matches!(encode_frame(&big, 50), Err(EncodeError::TooLarge { .. })));
    }
}
