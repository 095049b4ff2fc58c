//! Fuzz targets, shared by the cargo-fuzz crate in `fuzz/` (nightly, libFuzzer) and the
//! stable smoke test `tests/fuzz_smoke.rs`, so both run exactly the same checks.
//!
//! Not part of the protocol API. Every target takes arbitrary bytes and must return
//! normally: a clean [`DecodeError`] or [`ErrorObject`] is the expected answer to garbage.
//! A panic means either a panic inside the protocol crate or a violated property (the
//! `assert!`s below), and is a bug either way.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, DecodeError, EncodeError, HEADER_BYTES, MAX_FRAME_BYTES};
use crate::manifest::{self, Manifest};
use crate::methods::app::{self, RegisterParams};
use crate::methods::capability::{
    self, CapabilityConfig, CapabilityType, RegisterCapabilityParams,
};
use crate::methods::config::{ConfigChange, ConfigGetParams, ConfigWatchParams};
use crate::methods::hook::{HookResultParams, HookVerdict, SubscribeParams};
use crate::methods::invoke::ToolCallParams;
use crate::methods::session::SessionListParams;
use crate::methods::{self, CancelParams, Method as _, parse_params};
use crate::{Chunk, ErrorCode, ErrorObject, Id, Message, Response, Value};

/// A small frame limit tried besides [`MAX_FRAME_BYTES`], so the `TooLarge` path is hit.
pub const SMALL_LIMIT: usize = 64;

/// MessagePack fragments of protocol messages: map and array headers, markers of every
/// type (including `bin`/`ext`, which the contract refuses), and the protocol's keys and
/// values as `fixstr`s; NaN and the infinities as floats of both widths (refused too). Used to build inputs that get past the first byte.
pub const DICTIONARY: &[&[u8]] = &[
    b"\x80",
    b"\x81",
    b"\x82",
    b"\x83",
    b"\x84",
    b"\x8f",
    b"\xde\x00\x02",
    b"\xdf\x00\x00\x00\x01",
    b"\x90",
    b"\x91",
    b"\x93",
    b"\xdc\x00\x01",
    b"\xdd\x00\x00\x00\x02",
    b"\xc0",
    b"\xc2",
    b"\xc3",
    b"\xc1",
    b"\xcc\xff",
    b"\xcd\x01\x00",
    b"\xce\x00\x01\x00\x00",
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xd0\x80",
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\xff",
    b"\xca\x7f\xc0\x00\x00",
    b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
    b"\xa0",
    b"\xd9\x01a",
    b"\xda\x00\x01a",
    b"\xdb\x00\x00\x00\x01a",
    b"\xa1\xff",
    b"\xc4\x01\x00",
    b"\xc7\x01\x01\x00",
    b"\xd4\x01\x00",
    b"\xd6\xff\x00\x00\x00\x00",
    b"\xa2id",
    b"\xa6method",
    b"\xa6params",
    b"\xa6result",
    b"\xa5error",
    b"\xa5chunk",
    b"\xa4code",
    b"\xa7message",
    b"\xa4data",
    b"\xa8manifest",
    b"\xa7version",
    b"\xaccapabilities",
    b"\xa5tools",
    b"\xa5hooks",
    b"\xa9subscribe",
    b"\xa6config",
    b"\xa4read",
    b"\xafprotocolVersion",
    b"\xa4type",
    b"\xa4tool",
    b"\xa4hook",
    b"\xa4name",
    b"\xa5event",
    b"\xa8failMode",
    b"\xa7eventId",
    b"\xa6action",
    b"\xa6modify",
    b"\xa5block",
    b"\xa5paths",
    b"\xacapp.register",
    b"\xb3capability.register",
    b"\xabhook.result",
    b"\xacconfig.watch",
    b"\xa51.0.0",
    b"\xa7weather",
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
    b"\xcb\xff\xf0\x00\x00\x00\x00\x00\x00",
    b"\xca\x7f\x80\x00\x00",
];

/// Every capability type.
pub const CAPABILITY_TYPES: [CapabilityType; 6] = [
    CapabilityType::Tool,
    CapabilityType::Channel,
    CapabilityType::Hook,
    CapabilityType::GatewayMethod,
    CapabilityType::HttpRoute,
    CapabilityType::Provider,
];

/// Target `decode_frame`: split `data` into frames with the default limit, a small limit
/// and a limit taken from the first byte; decode `data` as one body too. Every decoded
/// message must re-encode and decode to the same message; every error must be clean and
/// answerable; `decode_frame` must never consume more than it was given.
pub fn decode_frame_target(data: &[u8]) {
    split_frames(data, MAX_FRAME_BYTES);
    split_frames(data, SMALL_LIMIT);
    if let Some((&first, rest)) = data.split_first() {
        split_frames(rest, usize::from(first));
    }
    check_decoded(codec::decode_body(data));
    // What the kernel reads: a stricter depth only refuses, never reads differently.
    let to_kernel = codec::decode_body_within(data, codec::MAX_DEPTH_TO_KERNEL);
    if let Ok(msg) = &to_kernel {
        assert_eq!(codec::decode_body(data).as_ref(), Ok(msg), "the depth limit changed a message");
    }
    check_decoded(to_kernel);
}

/// Target `validate`: decode `data` as a frame body; when it is a message carrying
/// params (or a result or chunk), run it through [`validate_params`].
pub fn validate_target(data: &[u8]) {
    let value = match codec::decode_body(data) {
        Ok(Message::Request(r)) => r.params,
        Ok(Message::Notification(n)) => n.params,
        Ok(Message::Response(Response { outcome: Ok(v), .. }))
        | Ok(Message::Chunk(Chunk { chunk: v, .. })) => v,
        Ok(Message::Response(Response { outcome: Err(_), .. })) | Err(_) => return,
    };
    validate_params(value);
}

/// Runs a value through the typed params of `app.register` (and [`Manifest::validate`]),
/// `capability.register` (and [`CapabilityConfig::parse`] for every type), `hook.result`,
/// `config.watch` and a few more. Nothing may panic; every refusal must be an
/// `INVALID_PARAMS` naming a field; whatever parses must survive `to_value` + `parse_params`.
pub fn validate_params(params: Value) {
    match parse_params::<RegisterParams>(params.clone()) {
        Ok(p) => {
            let _ = app::protocol_major_matches(&p.protocol_version);
            check_manifest(&p.manifest);
            check_typed_round_trip(&p);
        }
        Err(e) => check_invalid_params(&e, ""),
    }
    // The manifest alone, from `params.manifest` or the params themselves.
    for candidate in [params.get("manifest").cloned(), Some(params.clone())].into_iter().flatten() {
        if let Ok(m) = parse_params::<Manifest>(candidate) {
            check_manifest(&m);
        }
    }

    match parse_params::<RegisterCapabilityParams>(params.clone()) {
        Ok(p) => {
            check_capability(p.kind, p.config.clone());
            check_typed_round_trip(&p);
        }
        Err(e) => check_invalid_params(&e, ""),
    }
    let config = params.get("config").cloned().unwrap_or(params.clone());
    for kind in CAPABILITY_TYPES {
        check_capability(kind, config.clone());
    }

    check_typed::<HookResultParams>(&params);
    check_typed::<ConfigWatchParams>(&params);
    check_typed::<ConfigGetParams>(&params);
    check_typed::<ConfigChange>(&params);
    check_typed::<SubscribeParams>(&params);
    check_typed::<ToolCallParams>(&params);
    check_typed::<SessionListParams>(&params);
    check_typed::<CancelParams>(&params);
}

/// Checks one message against the codec: it encodes, the frame decodes back to the same
/// message consuming exactly the frame, and encoding is stable.
pub fn check_round_trip(msg: &Message) {
    let frame = match codec::encode_frame(msg, MAX_FRAME_BYTES) {
        Ok(frame) => frame,
        // Re-encoding may grow a message (e.g. float32 → float64); only an input close to
        // the limit can get here.
        Err(EncodeError::TooLarge { .. }) => return,
        Err(e) => panic!("a message failed to encode: {e}\n{msg:?}"),
    };
    let (decoded, used) = codec::decode_frame(&frame, MAX_FRAME_BYTES)
        .unwrap_or_else(|| panic!("a whole frame needs more bytes: {msg:?}"));
    assert_eq!(used, frame.len(), "frame not fully consumed: {msg:?}");
    let decoded = decoded.unwrap_or_else(|e| panic!("re-encoded message fails: {e}\n{msg:?}"));
    assert_eq!(&decoded, msg, "message changed through the codec");
    let again = codec::encode_frame(&decoded, MAX_FRAME_BYTES).expect("encodes again");
    assert_eq!(again, frame, "encoding is not stable: {msg:?}");
}

/// Representative valid messages: one per message kind and per method family checked by
/// [`validate_params`]. Seeds for the fuzzers.
pub fn seed_messages() -> Vec<Message> {
    use serde_json::json;
    let mut manifest = Manifest::new("weather", "1.2.3-beta.1+build");
    manifest.description = Some("forecasts".into());
    manifest.capabilities.tools = vec!["weather_*".into(), "forecast".into()];
    manifest.capabilities.gateway_methods = vec!["weather.*".into()];
    manifest.capabilities.http_routes = vec!["/apps/weather/*".into()];
    manifest.capabilities.hooks.subscribe = vec!["session_*".into()];
    manifest.capabilities.hooks.intercept = vec!["before_tool_call".into()];
    manifest.config.read = vec!["agents.main.model".into()];
    let register = RegisterParams {
        manifest,
        protocol_version: app::PROTOCOL_VERSION.into(),
        token: Some("tok".into()),
    };
    let mut out = vec![
        Message::request(1u64, app::AppRegister::NAME, methods::to_value(&register)),
        Message::request(u64::MAX, "kernel.info", json!({})),
        Message::request("s-1", "app.heartbeat", json!({"status": {"load": 0.5}})),
        Message::notification("$/cancel", json!({"id": 3})),
        Message::notification("hook.event", json!({"eventId": "e", "event": "x", "payload": null})),
        Message::success(Id::Num(2), json!({"ok": true, "n": -7, "f": 1.5, "a": [1, "x", null]})),
        Message::success(Id::Str("s".into()), Value::Null),
        Message::chunk(Id::Num(9), json!({"path": "a.b", "oldValue": 1, "newValue": [2]})),
        Message::error(None, ErrorObject::new(ErrorCode::InvalidRequest, "bad frame")),
        Message::error(Some(Id::Num(4)), ErrorObject::invalid_params("manifest.id", "bad id")),
        Message::request(5u64, "config.watch", json!({"paths": ["a", "b.c"]})),
        Message::request(6u64, "config.watch", json!({})),
        Message::request(
            7u64,
            "session.list",
            json!({"filter": {"agentId": "main", "active": true}, "limit": 10, "offset": 0}),
        ),
        Message::request(
            8u64,
            "tool.call",
            json!({"name": "clock", "arguments": {"tz": "UTC"}, "sessionKey": "k"}),
        ),
    ];
    for verdict in [
        HookVerdict::Continue,
        HookVerdict::Modify { payload: json!({"arguments": {"x": 1}}) },
        HookVerdict::Block { reason: "no".into() },
    ] {
        let params = HookResultParams { event_id: "ev-1".into(), result: verdict };
        out.push(Message::request(10u64, "hook.result", methods::to_value(&params)));
    }
    let configs = [
        json!({"name": "clock", "description": "time", "inputSchema": {}, "timeoutMs": 100}),
        json!({"channelId": "c", "description": "d"}),
        json!({"event": "before_tool_call", "priority": -1, "timeoutMs": 5, "failMode": "closed"}),
        json!({"method": "weather.get", "description": "d"}),
        json!({"method": "GET", "path": "/apps/weather/x"}),
        json!({"providerId": "p", "models": ["m1", "m2"]}),
    ];
    for (kind, config) in CAPABILITY_TYPES.into_iter().zip(configs) {
        let params = RegisterCapabilityParams { kind, config };
        out.push(Message::request(20u64, "capability.register", methods::to_value(&params)));
    }
    out
}

/// The frames of [`seed_messages`].
pub fn seed_frames() -> Vec<Vec<u8>> {
    seed_messages()
        .iter()
        .map(|m| codec::encode_frame(m, MAX_FRAME_BYTES).expect("seed encodes"))
        .collect()
}

/// Splits `buf` into frames under `limit` until it runs out or hits an oversize header.
fn split_frames(buf: &[u8], limit: usize) {
    let mut rest = buf;
    loop {
        let Some((result, used)) = codec::decode_frame(rest, limit) else {
            // More bytes needed: either no whole header, or a body shorter than announced.
            if let Some(header) = rest.get(..HEADER_BYTES) {
                let len = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
                assert!(len <= limit, "oversize header answered `need more`");
                assert!(rest.len() < HEADER_BYTES + len, "a whole frame answered `need more`");
            }
            return;
        };
        assert!(used <= rest.len(), "consumed {used} of {} bytes", rest.len());
        let len = u32::from_be_bytes(rest[..HEADER_BYTES].try_into().expect("4 bytes")) as usize;
        if let Err(DecodeError::TooLarge { len: l, max }) = &result {
            assert_eq!(used, 0, "an oversize frame consumed bytes");
            assert_eq!((*l, *max), (len, limit));
            assert!(len > limit);
            check_decoded(result);
            return;
        }
        assert!(len <= limit, "a frame over the limit was read");
        assert_eq!(used, HEADER_BYTES + len, "consumed a different length");
        check_decoded(result);
        rest = &rest[used..];
    }
}

/// A decoded message round-trips; an error is clean, non-fatal unless oversize, and its
/// `INVALID_REQUEST` answer encodes and round-trips.
fn check_decoded(result: Result<Message, DecodeError>) {
    match result {
        Ok(msg) => check_round_trip(&msg),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert_eq!(e.is_fatal(), matches!(e, DecodeError::TooLarge { .. }));
            let answer = e.to_response();
            let Message::Response(Response { id, outcome: Err(err) }) = &answer else {
                panic!("to_response is not an error response: {answer:?}");
            };
            // An unreadable answer is refused without its id (the reader's own).
            assert_eq!(*id, if e.answered().is_some() { None } else { e.id() });
            assert_eq!(err.code, e.code());
            if let DecodeError::NotFinite { path, field, .. } = &e {
                // A non-finite float in params is named as a field of them, else by its
                // path from the frame's top.
                let data = err.data.as_ref().expect("a refused float is named in `data`");
                match field {
                    Some(field) => {
                        assert_eq!(err.code, ErrorCode::InvalidParams);
                        assert_eq!(data["field"], *field);
                        assert!(path.starts_with("params"), "{path}");
                    }
                    None => assert_eq!(data["path"], *path),
                }
                assert!(err.message.contains(&format!("`{path}`")), "{}", err.message);
            } else {
                assert_eq!(err.code, ErrorCode::InvalidRequest);
            }
            check_round_trip(&answer);
        }
    }
}

/// An `INVALID_PARAMS` error with a non-empty `data.field` starting with `prefix`.
fn check_invalid_params(e: &ErrorObject, prefix: &str) {
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e:?}");
    let field = e
        .data
        .as_ref()
        .and_then(|d| d.get("field"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("INVALID_PARAMS without data.field: {e:?}"));
    assert!(!field.is_empty(), "empty data.field: {e:?}");
    assert!(field.starts_with(prefix), "field {field:?} not under {prefix:?}");
}

fn check_manifest(m: &Manifest) {
    match m.validate() {
        Ok(()) => {
            assert!(manifest::is_valid_app_id(&m.id));
            assert!(semver::Version::parse(&m.version).is_ok());
            for p in &m.capabilities.tools {
                let _ = manifest::pattern_matches(p, &m.id);
            }
        }
        Err(e) => check_invalid_params(&e, "manifest."),
    }
    check_typed_round_trip(m);
}

fn check_capability(kind: CapabilityType, config: Value) {
    match CapabilityConfig::parse(kind, config) {
        Ok(parsed) => {
            assert_eq!(parsed.kind(), kind);
            match &parsed {
                CapabilityConfig::Tool(c) => {
                    let _ = capability::is_valid_tool_name(&c.name);
                    check_typed_round_trip(c);
                }
                CapabilityConfig::Channel(c) => check_typed_round_trip(c),
                CapabilityConfig::Hook(c) => check_typed_round_trip(c),
                CapabilityConfig::GatewayMethod(c) => check_typed_round_trip(c),
                CapabilityConfig::HttpRoute(c) => check_typed_round_trip(c),
                CapabilityConfig::Provider(c) => check_typed_round_trip(c),
            }
        }
        Err(e) => check_invalid_params(&e, "config"),
    }
}

fn check_typed<T>(params: &Value)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match parse_params::<T>(params.clone()) {
        Ok(p) => check_typed_round_trip(&p),
        Err(e) => check_invalid_params(&e, ""),
    }
}

/// Whatever parsed survives `to_value` + `parse_params` unchanged.
fn check_typed_round_trip<T>(parsed: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value = methods::to_value(parsed);
    let back: T = parse_params(value.clone())
        .unwrap_or_else(|e| panic!("{parsed:?} does not parse back from {value}: {e}"));
    assert_eq!(&back, parsed, "typed params changed through to_value");
}
