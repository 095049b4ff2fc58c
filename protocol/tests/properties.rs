//! Property tests of the codec, the typed params and validation (proptest).
//!
//! 256 cases per property by default; `PROPTEST_CASES=10000 cargo test -p burrow-protocol
//! --test properties` runs more. Failing cases are not persisted (no regressions files):
//! proptest prints the minimal failing input, turn it into a unit test.

use std::fmt::Debug;

use burrow_protocol::codec::{self, DecodeError, HEADER_BYTES, MAX_FRAME_BYTES};
use burrow_protocol::manifest::{HookGrants, ManifestCapabilities, ManifestConfig};
use burrow_protocol::methods::capability::{
    CapabilityConfig, ChannelConfig, FailMode, GatewayMethodConfig, HookConfig, HttpRouteConfig,
    ProviderConfig, RegisterCapabilityParams, ToolConfig,
};
use burrow_protocol::methods::config::{ConfigChange, ConfigWatchParams};
use burrow_protocol::methods::hook::{HookResultParams, HookVerdict};
use burrow_protocol::methods::invoke::ToolCallParams;
use burrow_protocol::methods::session::{SessionFilter, SessionListParams};
use burrow_protocol::methods::{self, app::RegisterParams};
use burrow_protocol::{ErrorCode, ErrorObject, Id, Manifest, Map, Message, Value};
use burrow_protocol::{fuzzing, strict};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// 256 cases unless `PROPTEST_CASES` says otherwise; never write regression files.
fn config() -> ProptestConfig {
    let mut config = if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(256)
    };
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Short names, patterns and arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9_.*/-]{0,12}", any::<String>()]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // NaN and infinities have no JSON form: `Value` cannot hold them.
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ]
}

/// A JSON-shaped value, at most 4 levels deep (far below `MAX_DEPTH`) and small.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(text(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `params: nil` reads back as `{}` and `data: nil` as no data, so these must not be null.
fn non_null_value() -> impl Strategy<Value = Value> {
    value().prop_filter("not null", |v| !v.is_null())
}

/// The characters of JSON's syntax, and a few that are not.
const JSON_SYNTAX: &[char] =
    &['{', '}', '[', ']', '"', ':', ',', '\\', '-', '.', 'e', '0', '9', ' ', 'u', 'x'];

fn map() -> impl Strategy<Value = Map> {
    btree_map(text(), value(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![any::<u64>().prop_map(Id::Num), text().prop_map(Id::Str)]
}

const METHODS: [&str; 8] = [
    "app.register",
    "capability.register",
    "hook.result",
    "config.watch",
    "tool.call",
    "session.list",
    "$/cancel",
    "kernel.info",
];

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&METHODS[..]).prop_map(String::from),
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn error_object() -> impl Strategy<Value = ErrorObject> {
    (select(ErrorCode::ALL.to_vec()), any::<String>(), option::of(non_null_value()))
        .prop_map(|(code, message, data)| ErrorObject { code, message, data })
}

/// Any message of the five kinds.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (id(), method(), non_null_value()).prop_map(|(i, m, p)| Message::request(i, m, p)),
        (method(), non_null_value()).prop_map(|(m, p)| Message::notification(m, p)),
        (id(), value()).prop_map(|(i, r)| Message::success(i, r)),
        (option::of(id()), error_object()).prop_map(|(i, e)| Message::error(i, e)),
        (id(), value()).prop_map(|(i, c)| Message::chunk(i, c)),
    ]
}

/// A name or a trailing-`*` pattern, as manifests allow.
fn pattern() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./-]{1,24}\\*?"
}

fn patterns() -> impl Strategy<Value = Vec<String>> {
    vec(pattern(), 0..4)
}

fn semver() -> impl Strategy<Value = String> {
    let pre = option::of(("[a-z][a-z0-9-]{0,6}", option::of(0..100u32)));
    let build = option::of("[0-9A-Za-z-]{1,8}");
    (0..1000u64, 0..1000u64, 0..1000u64, pre, build).prop_map(|(ma, mi, pa, pre, build)| {
        let mut v = format!("{ma}.{mi}.{pa}");
        if let Some((tag, n)) = pre {
            v += &format!("-{tag}");
            if let Some(n) = n {
                v += &format!(".{n}");
            }
        }
        if let Some(b) = build {
            v += &format!("+{b}");
        }
        v
    })
}

/// A manifest that `validate` accepts.
fn valid_manifest() -> impl Strategy<Value = Manifest> {
    let caps =
        ((patterns(), patterns(), patterns(), patterns(), patterns()), (patterns(), patterns()))
            .prop_map(|((tools, channels, providers, gateway_methods, http_routes), (s, i))| {
                ManifestCapabilities {
                    tools,
                    channels,
                    providers,
                    gateway_methods,
                    http_routes,
                    hooks: HookGrants { subscribe: s, intercept: i },
                }
            });
    ("[a-z][a-z0-9-]{0,63}", semver(), option::of(any::<String>()), caps, patterns()).prop_map(
        |(id, version, description, capabilities, read)| Manifest {
            id,
            version,
            description,
            capabilities,
            config: ManifestConfig { read },
        },
    )
}

fn register_params() -> impl Strategy<Value = RegisterParams> {
    (valid_manifest(), "[0-9]{1,2}\\.[0-9]{1,2}", option::of(text())).prop_map(
        |(manifest, protocol_version, token)| RegisterParams { manifest, protocol_version, token },
    )
}

fn tool_call_params() -> impl Strategy<Value = ToolCallParams> {
    (text(), value(), option::of(text()))
        .prop_map(|(name, arguments, session_key)| ToolCallParams { name, arguments, session_key })
}

fn hook_result_params() -> impl Strategy<Value = HookResultParams> {
    let verdict = prop_oneof![
        Just(HookVerdict::Continue),
        value().prop_map(|payload| HookVerdict::Modify { payload }),
        any::<String>().prop_map(|reason| HookVerdict::Block { reason }),
    ];
    (text(), verdict).prop_map(|(event_id, result)| HookResultParams { event_id, result })
}

fn config_change() -> impl Strategy<Value = ConfigChange> {
    (text(), value(), value()).prop_map(|(path, old_value, new_value)| ConfigChange {
        path,
        old_value,
        new_value,
    })
}

fn session_list_params() -> impl Strategy<Value = SessionListParams> {
    let filter =
        (option::of(text()), option::of(text()), option::of(text()), option::of(any::<bool>()))
            .prop_map(|(agent_id, channel_id, account_id, active)| SessionFilter {
                agent_id,
                channel_id,
                account_id,
                active,
                keep_alive: None,
                labels: None,
            });
    (option::of(filter), option::of(any::<u32>()), option::of(any::<u32>()))
        .prop_map(|(filter, limit, offset)| SessionListParams { filter, limit, offset })
}

/// A capability config of any type; optional `Value`s are never `Some(null)` (that reads
/// back as `None`).
fn capability_config() -> impl Strategy<Value = CapabilityConfig> {
    prop_oneof![
        (text(), any::<String>(), option::of(non_null_value()), option::of(any::<u64>())).prop_map(
            |(name, description, input_schema, timeout_ms)| CapabilityConfig::Tool(ToolConfig {
                name,
                description,
                input_schema,
                timeout_ms,
            })
        ),
        (text(), option::of(any::<String>())).prop_map(|(channel_id, description)| {
            CapabilityConfig::Channel(ChannelConfig { channel_id, description, streaming: false })
        }),
        (
            text(),
            option::of(any::<i64>()),
            option::of(any::<u64>()),
            option::of(select(vec![FailMode::Open, FailMode::Closed]))
        )
            .prop_map(|(event, priority, timeout_ms, fail_mode)| {
                CapabilityConfig::Hook(HookConfig { event, priority, timeout_ms, fail_mode })
            }),
        (text(), option::of(any::<String>())).prop_map(|(method, description)| {
            CapabilityConfig::GatewayMethod(GatewayMethodConfig { method, description })
        }),
        (text(), text()).prop_map(|(method, path)| CapabilityConfig::HttpRoute(HttpRouteConfig {
            method,
            path
        })),
        (text(), vec(text(), 0..4)).prop_map(|(provider_id, models)| {
            CapabilityConfig::Provider(ProviderConfig { provider_id, models })
        }),
    ]
}

fn config_value(c: &CapabilityConfig) -> Value {
    match c {
        CapabilityConfig::Tool(c) => methods::to_value(c),
        CapabilityConfig::Channel(c) => methods::to_value(c),
        CapabilityConfig::Hook(c) => methods::to_value(c),
        CapabilityConfig::GatewayMethod(c) => methods::to_value(c),
        CapabilityConfig::HttpRoute(c) => methods::to_value(c),
        CapabilityConfig::Provider(c) => methods::to_value(c),
    }
}

/// Byte strings that look like MessagePack: markers, the protocol's keys, random bytes.
fn msgpackish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        select(fuzzing::DICTIONARY).prop_map(<[u8]>::to_vec),
    ];
    vec(token, 0..48).prop_map(|t| t.concat())
}

/// A MessagePack value shaped like a message, often not quite: the members that classify
/// one (or others, or non-string keys) holding anything MessagePack can, binary and
/// extension values included; sometimes not a map at all.
fn envelope_like() -> impl Strategy<Value = Vec<u8>> {
    use rmpv::Value as Mp;
    let leaf = prop_oneof![
        Just(Mp::Nil),
        any::<bool>().prop_map(Mp::from),
        any::<i64>().prop_map(Mp::from),
        any::<u64>().prop_map(Mp::from),
        any::<f64>().prop_map(Mp::from),
        text().prop_map(Mp::from),
        vec(any::<u8>(), 0..4).prop_map(Mp::Binary),
        (any::<i8>(), vec(any::<u8>(), 0..4)).prop_map(|(t, b)| Mp::Ext(t, b)),
    ];
    let inner_key = prop_oneof![
        6 => text().prop_map(Mp::from),
        1 => Just(Mp::from(codec::RESERVED_KEY)),
        1 => any::<u8>().prop_map(Mp::from),
        1 => prop_oneof!["[a-z]{0,3}".prop_map(String::into_bytes), vec(any::<u8>(), 0..3)]
            .prop_map(Mp::Binary),
    ];
    let member = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Mp::Array),
            vec((inner_key.clone(), inner), 0..4).prop_map(Mp::Map),
        ]
    });
    let key = prop_oneof![
        6 => select(&["id", "method", "params", "result", "error", "chunk", "x", codec::RESERVED_KEY][..])
            .prop_map(Mp::from),
        1 => any::<u8>().prop_map(Mp::from),
        1 => vec(any::<u8>(), 0..3).prop_map(Mp::Binary),
    ];
    let top = prop_oneof![
        6 => vec((key, member.clone()), 0..5).prop_map(Mp::Map),
        1 => member,
    ];
    top.prop_map(|v| {
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &v).expect("encodes into a vector");
        body
    })
}

/// How bodies were decoded before the envelope reader: the whole value as one `Value`,
/// then classified. The reference the envelope reader must agree with.
fn decode_via_value(body: &[u8]) -> Result<Message, DecodeError> {
    use serde::Deserialize;
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    // On purpose, the envelope reader refuses binary map keys anywhere, which a `Value`
    // takes when they are UTF-8 and not a map's first, and the reserved key.
    fn refused_key(v: &rmpv::Value) -> bool {
        let refused = |k: &rmpv::Value| {
            matches!(k, rmpv::Value::Binary(_)) || k.as_str() == Some(codec::RESERVED_KEY)
        };
        match v {
            rmpv::Value::Map(members) => members.iter().any(|(k, v)| refused(k) || refused_key(v)),
            rmpv::Value::Array(items) => items.iter().any(refused_key),
            _ => false,
        }
    }
    if rmpv::decode::read_value(&mut &body[..]).is_ok_and(|v| refused_key(&v)) {
        return Err(DecodeError::NotMessagePack {
            id: None,
            reason: "refused key".into(),
            answer: false,
        });
    }
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
    de.set_max_depth(codec::MAX_DEPTH + 1);
    let value = Value::deserialize(&mut de).map_err(|e| DecodeError::NotMessagePack {
        id: None,
        reason: e.to_string(),
        answer: false,
    })?;
    let used = de.get_ref().position() as usize;
    if used != body.len() {
        return Err(DecodeError::TrailingBytes(body.len() - used));
    }
    // On purpose too, a map holding a non-finite float anywhere, which a `Value` reads as
    // null, is refused, naming the first.
    if let (true, Some(path)) = (
        value.is_object(),
        rmpv::decode::read_value(&mut &body[..]).ok().and_then(|v| first_non_finite(&v)),
    ) {
        let path = render(&path);
        return Err(DecodeError::NotFinite {
            id: None,
            path,
            float: "",
            field: None,
            answer: false,
        });
    }
    Ok(Message::from_value(value)?)
}

/// The path of the first NaN or infinity in `v`, if any.
fn first_non_finite(v: &rmpv::Value) -> Option<Vec<Step>> {
    use rmpv::Value as Mp;
    let under = |step: Step, mut inner: Vec<Step>| {
        inner.insert(0, step);
        inner
    };
    match v {
        Mp::F32(f) if !f.is_finite() => Some(Vec::new()),
        Mp::F64(f) if !f.is_finite() => Some(Vec::new()),
        Mp::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_non_finite(item).map(|inner| under(Step::Index(i), inner))),
        Mp::Map(members) => members.iter().find_map(|(k, v)| {
            let key = k.as_str().unwrap_or_default().to_owned();
            first_non_finite(v).map(|inner| under(Step::Key(key), inner))
        }),
        _ => None,
    }
}

/// One step of a path into a value.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path as `data.field` writes one: keys joined by dots, positions in brackets.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for (n, step) in path.iter().enumerate() {
        match step {
            Step::Key(key) if n == 0 => out += key,
            Step::Key(key) => out += &format!(".{key}"),
            Step::Index(i) => out += &format!("[{i}]"),
        }
    }
    out
}

/// NaN and the infinities, as MessagePack floats of both widths.
fn non_finite_float() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value as Mp;
    select(vec![
        Mp::F64(f64::NAN),
        Mp::F64(f64::INFINITY),
        Mp::F64(f64::NEG_INFINITY),
        Mp::F32(f32::NAN),
        Mp::F32(f32::INFINITY),
        Mp::F32(f32::NEG_INFINITY),
    ])
}

/// A value with a non-finite float put somewhere in it (in a map, an array, or as the
/// value itself), and the path to the float.
fn with_a_non_finite_float() -> impl Strategy<Value = (rmpv::Value, Vec<Step>)> {
    (value(), any::<u64>(), non_finite_float()).prop_map(|(v, pick, float)| {
        let mut v = to_msgpack(&v);
        let path = plant(&mut v, pick, float);
        (v, path)
    })
}

/// `v` as a MessagePack value.
fn to_msgpack(v: &Value) -> rmpv::Value {
    use rmpv::Value as Mp;
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Mp::from(u),
            (None, Some(i)) => Mp::from(i),
            _ => Mp::F64(n.as_f64().expect("a number")),
        },
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => Mp::Array(items.iter().map(to_msgpack).collect()),
        Value::Object(m) => {
            Mp::Map(m.iter().map(|(k, v)| (Mp::from(k.as_str()), to_msgpack(v))).collect())
        }
    }
}

/// Puts `float` in `v` where `pick` leads, and says where.
fn plant(v: &mut rmpv::Value, pick: u64, float: rmpv::Value) -> Vec<Step> {
    use rmpv::Value as Mp;
    let deeper = !pick.is_multiple_of(3);
    let (i, next) = ((pick / 3) as usize, pick / 7);
    let (step, mut inner) = match v {
        Mp::Array(items) if deeper && !items.is_empty() => {
            let i = i % items.len();
            (Step::Index(i), plant(&mut items[i], next, float))
        }
        Mp::Map(members) if deeper && !members.is_empty() => {
            let at = i % members.len();
            let (key, value) = &mut members[at];
            let key = key.as_str().expect("string keys").to_owned();
            (Step::Key(key), plant(value, next, float))
        }
        Mp::Array(items) => {
            items.push(float);
            (Step::Index(items.len() - 1), Vec::new())
        }
        Mp::Map(members) => {
            members.push((Mp::from("nf"), float));
            (Step::Key("nf".into()), Vec::new())
        }
        leaf => {
            *leaf = float;
            return Vec::new();
        }
    };
    inner.insert(0, step);
    inner
}

/// A body of `members`, a map.
fn msgpack_body(members: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
    let map = rmpv::Value::Map(members.into_iter().map(|(k, v)| (k.into(), v)).collect());
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, &map).expect("encodes into a vector");
    body
}

/// A manifest-shaped map whose members are sometimes right and often wrong.
fn manifest_like() -> impl Strategy<Value = Value> {
    let list = prop_oneof![
        vec(prop_oneof![pattern(), any::<String>(), "[a-z* ]{0,4}"], 0..4).prop_map(Value::from),
        value(),
    ];
    let hooks = btree_map(select(vec!["subscribe", "intercept"]), list.clone(), 0..3);
    let caps = (
        btree_map(
            select(vec!["tools", "channels", "providers", "gatewayMethods", "httpRoutes", "x"]),
            list.clone(),
            0..6,
        ),
        option::of(hooks),
    )
        .prop_map(|(lists, hooks)| {
            let mut m: Map = lists.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(h) = hooks {
                let h: Map = h.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                m.insert("hooks".into(), Value::Object(h));
            }
            Value::Object(m)
        });
    let id = prop_oneof![
        "[a-z][a-z0-9-]{0,70}".prop_map(Value::from),
        text().prop_map(Value::from),
        value()
    ];
    let version =
        prop_oneof![semver().prop_map(Value::from), text().prop_map(Value::from), value()];
    (
        option::of(id),
        option::of(version),
        option::of(prop_oneof![caps, value()]),
        option::of(list),
        option::of(value()),
    )
        .prop_map(|(id, version, caps, read, description)| {
            let mut m = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            };
            put("id", id);
            put("version", version);
            put("capabilities", caps);
            put("config", read.map(|r| serde_json::json!({ "read": r })));
            put("description", description);
            Value::Object(m)
        })
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn frame(msg: &Message) -> Vec<u8> {
    codec::encode_frame(msg, MAX_FRAME_BYTES).expect("a generated message encodes")
}

/// Sends typed params as a request through the codec and parses them back.
fn typed_round_trip<T>(method: &str, params: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let sent = Message::request(1u64, method, methods::to_value(params));
    let (decoded, _) = codec::decode_frame(&frame(&sent), MAX_FRAME_BYTES).expect("whole frame");
    let Ok(Message::Request(r)) = decoded else {
        return Err(TestCaseError::fail(format!("not a request: {decoded:?}")));
    };
    prop_assert_eq!(&r.method, method);
    let back: T =
        methods::parse_params(r.params).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, params);
    Ok(())
}

/// `INVALID_PARAMS` naming a field under `prefix`.
fn assert_field_under(e: &ErrorObject, prefix: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.code, ErrorCode::InvalidParams);
    let field = e.data.as_ref().and_then(|d| d.get("field")).and_then(Value::as_str);
    prop_assert!(
        field.is_some_and(|f| f.starts_with(prefix)),
        "field {:?} not under {}",
        field,
        prefix
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// (a) Every message kind survives `encode_frame` + `decode_frame` unchanged, the frame
    /// is consumed exactly, and re-encoding gives the same bytes.
    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = frame(&msg);
        let len = u32::from_be_bytes(bytes[..HEADER_BYTES].try_into().unwrap()) as usize;
        prop_assert_eq!(len + HEADER_BYTES, bytes.len());
        let (decoded, used) = codec::decode_frame(&bytes, MAX_FRAME_BYTES).expect("whole frame");
        prop_assert_eq!(used, bytes.len());
        let decoded = decoded.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded, &msg);
        prop_assert_eq!(frame(&decoded), bytes);
    }

    /// (a) Error responses with every code, with and without id and data.
    #[test]
    fn every_error_code_round_trips(
        i in option::of(id()),
        message in any::<String>(),
        data in option::of(non_null_value()),
    ) {
        for code in ErrorCode::ALL {
            let error = ErrorObject { code, message: message.clone(), data: data.clone() };
            let msg = Message::error(i.clone(), error);
            let (decoded, _) =
                codec::decode_frame(&frame(&msg), MAX_FRAME_BYTES).expect("whole frame");
            prop_assert_eq!(decoded.map_err(|e| TestCaseError::fail(e.to_string()))?, msg);
        }
    }

    /// (a) A code this version does not know reads as `UNKNOWN_ERROR`.
    #[test]
    fn unknown_codes_read_as_unknown_error(code in any::<String>(), i in id()) {
        let body = serde_json::json!({"id": i, "error": {"code": code, "message": "m"}});
        let decoded = codec::decode_body(&rmp_serde::to_vec_named(&body).unwrap())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Message::Response(r) = decoded else {
            return Err(TestCaseError::fail("not a response"));
        };
        let expected = ErrorCode::parse(&code).unwrap_or(ErrorCode::UnknownError);
        prop_assert_eq!(r.outcome.unwrap_err().code, expected);
    }

    /// (a) Frames written back to back are read back in order, consuming everything.
    #[test]
    fn frame_streams_split_back(msgs in vec(message(), 0..6)) {
        let stream: Vec<u8> = msgs.iter().flat_map(frame).collect();
        let mut rest = &stream[..];
        let mut read = Vec::new();
        while let Some((decoded, used)) = codec::decode_frame(rest, MAX_FRAME_BYTES) {
            read.push(decoded.map_err(|e| TestCaseError::fail(e.to_string()))?);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(read, msgs);
    }

    /// (b) Typed params of representative methods survive `to_value`, the codec and
    /// `parse_params`.
    #[test]
    fn register_params_round_trip(p in register_params()) {
        prop_assert!(p.manifest.validate().is_ok(), "{:?}", p.manifest.validate());
        typed_round_trip("app.register", &p)?;
    }

    #[test]
    fn tool_call_params_round_trip(p in tool_call_params()) {
        typed_round_trip("tool.call", &p)?;
    }

    #[test]
    fn hook_result_params_round_trip(p in hook_result_params()) {
        typed_round_trip("hook.result", &p)?;
    }

    #[test]
    fn config_change_round_trips(c in config_change(), paths in option::of(vec(text(), 0..4))) {
        typed_round_trip("config.watch", &c)?;
        typed_round_trip("config.watch", &ConfigWatchParams { paths })?;
    }

    #[test]
    fn session_list_params_round_trip(p in session_list_params()) {
        typed_round_trip("session.list", &p)?;
    }

    #[test]
    fn capability_configs_round_trip(c in capability_config()) {
        let params = RegisterCapabilityParams { kind: c.kind(), config: config_value(&c) };
        typed_round_trip("capability.register", &params)?;
        let parsed = CapabilityConfig::parse(params.kind, params.config)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, c);
    }

    /// (c) Random bytes, and bytes that look like MessagePack, give a message or a clean
    /// error; `decode_frame` with any limit never consumes more than it was given.
    #[test]
    fn random_bytes_decode_cleanly(
        bytes in prop_oneof![vec(any::<u8>(), 0..256), msgpackish()],
        limit in 0usize..96,
    ) {
        if let Ok(msg) = codec::decode_body(&bytes) {
            fuzzing::check_round_trip(&msg);
        }
        for limit in [limit, MAX_FRAME_BYTES] {
            match codec::decode_frame(&bytes, limit) {
                None => prop_assert!(
                    bytes.len() < HEADER_BYTES
                        || bytes.len() < HEADER_BYTES
                            + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
                ),
                Some((Err(DecodeError::TooLarge { len, max }), used)) => {
                    prop_assert_eq!(used, 0);
                    prop_assert!(len > limit && max == limit);
                }
                Some((_, used)) => prop_assert!(used >= HEADER_BYTES && used <= bytes.len()),
            }
        }
        fuzzing::decode_frame_target(&bytes);
        fuzzing::validate_target(&bytes);
    }

    /// (c) The same bytes behind a header that announces exactly their length.
    #[test]
    fn random_bodies_in_a_frame_decode_cleanly(
        body in prop_oneof![vec(any::<u8>(), 0..256), msgpackish()],
    ) {
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let (result, used) = codec::decode_frame(&bytes, MAX_FRAME_BYTES).expect("whole frame");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(result.is_ok(), codec::decode_body(&body).is_ok());
        fuzzing::decode_frame_target(&bytes);
    }

    /// (c) The envelope reader decodes every body as reading it whole into one value
    /// does (but for binary map keys, the reserved key and non-finite floats, refused on
    /// purpose): the same message, or the same kind of error (the same one, when the body
    /// is MessagePack but not a message; the same path, for a non-finite float).
    #[test]
    fn the_envelope_reader_agrees_with_reading_a_whole_value(
        body in prop_oneof![envelope_like(), vec(any::<u8>(), 0..64), msgpackish()],
    ) {
        match (codec::decode_body(&body), decode_via_value(&body)) {
            (Ok(read), Ok(whole)) => prop_assert_eq!(read, whole),
            (Err(read), Err(whole)) => {
                prop_assert_eq!(
                    std::mem::discriminant(&read),
                    std::mem::discriminant(&whole),
                    "{:?} against {:?}", read, whole
                );
                if matches!(read, DecodeError::Invalid(_) | DecodeError::TrailingBytes(_)) {
                    prop_assert_eq!(read, whole);
                } else if let (
                    DecodeError::NotFinite { path: read, .. },
                    DecodeError::NotFinite { path: whole, .. },
                ) = (read, whole) {
                    prop_assert_eq!(read, whole);
                }
            }
            (read, whole) => prop_assert!(false, "{:?} against {:?}", read, whole),
        }
    }

    /// (c) A NaN or an infinity anywhere in a frame is never read (as null): in a
    /// request's or a notification's params it is `INVALID_PARAMS` naming its path inside
    /// them (with the request's id); in an answer, the answer is unreadable (the request
    /// it answered fails, its sender hears without the id) naming its path.
    #[test]
    fn a_non_finite_float_anywhere_is_refused_naming_its_path(
        (v, path) in with_a_non_finite_float(),
        i in id(),
    ) {
        use rmpv::Value as Mp;
        let id = match &i {
            Id::Num(n) => Mp::from(*n),
            Id::Str(s) => Mp::from(s.as_str()),
        };
        let under = |key: &str| {
            let mut full = vec![Step::Key(key.into())];
            full.extend(path.iter().cloned());
            render(&full)
        };
        let in_params = under("p");
        let params = Mp::Map(vec![(Mp::from("p"), v.clone())]);
        let cases = [
            (vec![("id", id.clone()), ("method", Mp::from("m")), ("params", params.clone())], Some(i.clone())),
            (vec![("params", params), ("method", Mp::from("m"))], None),
        ];
        for (members, answered_with) in cases {
            let err = codec::decode_body(&msgpack_body(members)).unwrap_err();
            let Message::Response(r) = err.to_response() else {
                return Err(TestCaseError::fail("not a response"));
            };
            prop_assert_eq!(r.id, answered_with);
            let e = r.outcome.unwrap_err();
            prop_assert_eq!(e.code, ErrorCode::InvalidParams);
            prop_assert_eq!(e.data, Some(serde_json::json!({ "field": in_params })));
            let at = format!("`params.{in_params}`");
            prop_assert!(e.message.contains(&at), "{}", e.message);
        }
        for key in ["result", "chunk"] {
            let err = codec::decode_body(&msgpack_body(vec![("id", id.clone()), (key, v.clone())]))
                .unwrap_err();
            prop_assert_eq!(err.answered(), Some(i.clone()));
            let Message::Response(r) = err.to_response() else {
                return Err(TestCaseError::fail("not a response"));
            };
            prop_assert_eq!(r.id, None);
            let e = r.outcome.unwrap_err();
            prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
            let path = under(key);
            prop_assert_eq!(e.data, Some(serde_json::json!({ "path": path })));
        }
    }

    /// (c) The host surfaces' strict JSON reader reads text as `serde_json` reads a
    /// `Value`: the same value or an error both times, but for the reserved key, which
    /// it refuses on purpose. The text is a value's JSON, whole, cut short, or with a
    /// character of JSON's syntax put in somewhere.
    #[test]
    fn strict_json_reads_text_as_serde_json_does(
        v in value(),
        edit in option::of((any::<prop::sample::Index>(), option::of(select(JSON_SYNTAX)))),
    ) {
        let mut text = serde_json::to_string(&v).expect("a value has JSON text");
        if let Some((at, put)) = edit {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match put {
                Some(c) => text.insert(at, c),
                None => text.truncate(at),
            }
        }
        match (strict::from_json(&text), serde_json::from_str::<Value>(&text)) {
            (Ok(read), Ok(plain)) => prop_assert_eq!(read, plain),
            (Err(e), _) if e.to_string().contains(strict::RESERVED_KEY) => {}
            (Err(_), Err(_)) => {}
            (read, plain) => prop_assert!(false, "{text}: {read:?} against {plain:?}"),
        }
        if edit.is_none() {
            prop_assert_eq!(strict::from_json(&text).ok(), Some(v));
        }
    }

    /// (d) Bytes after a valid frame do not change it; after a valid body they are
    /// `TrailingBytes`.
    #[test]
    fn appended_bytes(msg in message(), extra in vec(any::<u8>(), 1..32)) {
        let mut bytes = frame(&msg);
        let body_len = bytes.len() - HEADER_BYTES;
        bytes.extend_from_slice(&extra);
        let (decoded, used) = codec::decode_frame(&bytes, MAX_FRAME_BYTES).expect("whole frame");
        prop_assert_eq!(used, body_len + HEADER_BYTES);
        prop_assert_eq!(decoded.map_err(|e| TestCaseError::fail(e.to_string()))?, msg);
        let err = codec::decode_body(&bytes[HEADER_BYTES..]).unwrap_err();
        prop_assert_eq!(err, DecodeError::TrailingBytes(extra.len()));
        fuzzing::decode_frame_target(&bytes);
    }

    /// (d) A truncated frame needs more bytes; a truncated body is an error.
    #[test]
    fn truncated(msg in message(), cut in any::<prop::sample::Index>()) {
        let bytes = frame(&msg);
        let cut = cut.index(bytes.len());
        prop_assert!(codec::decode_frame(&bytes[..cut], MAX_FRAME_BYTES).is_none());
        let body = &bytes[HEADER_BYTES..];
        let cut = cut.min(body.len() - 1);
        prop_assert!(codec::decode_body(&body[..cut]).is_err());
        fuzzing::decode_frame_target(&bytes[..cut]);
    }

    /// (d) One flipped byte gives a clean error or a (possibly different) valid message.
    #[test]
    fn flipped_byte(msg in message(), at in any::<prop::sample::Index>(), mask in 1u8..) {
        let mut bytes = frame(&msg);
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        if let Some((result, used)) = codec::decode_frame(&bytes, MAX_FRAME_BYTES) {
            prop_assert!(used <= bytes.len());
            if let Ok(m) = result {
                fuzzing::check_round_trip(&m);
            }
        }
        if let Ok(m) = codec::decode_body(&bytes[HEADER_BYTES..]) {
            fuzzing::check_round_trip(&m);
        }
        fuzzing::decode_frame_target(&bytes);
        fuzzing::validate_target(&bytes[HEADER_BYTES..]);
    }

    /// (e) `Manifest::validate` never panics, and refuses with a field under `manifest.`.
    #[test]
    fn manifest_validation_never_panics(v in prop_oneof![manifest_like(), value()]) {
        if let Ok(m) = methods::parse_params::<Manifest>(v.clone())
            && let Err(e) = m.validate()
        {
            assert_field_under(&e, "manifest.")?;
        }
        let register = serde_json::json!({"manifest": v, "protocolVersion": "1.0"});
        if let Ok(p) = methods::parse_params::<RegisterParams>(register.clone()) {
            let _ = p.manifest.validate();
        }
        fuzzing::validate_params(register);
    }

    /// (e) `CapabilityConfig::parse` never panics for any type, and refuses with a field
    /// under `config`.
    #[test]
    fn capability_config_parse_never_panics(
        v in prop_oneof![value(), btree_map(
            select(vec!["name", "description", "inputSchema", "timeoutMs", "channelId", "event",
                        "priority", "failMode", "method", "path", "providerId", "models"]),
            prop_oneof![value(), Just(Value::from("closed"))],
            0..5,
        ).prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))],
    ) {
        for kind in fuzzing::CAPABILITY_TYPES {
            match CapabilityConfig::parse(kind, v.clone()) {
                Ok(c) => prop_assert_eq!(c.kind(), kind),
                Err(e) => assert_field_under(&e, "config")?,
            }
        }
        fuzzing::validate_params(serde_json::json!({"type": "tool", "config": v}));
    }

    /// (e) Arbitrary maps as params of every checked method.
    #[test]
    fn arbitrary_params_never_panic(m in map(), v in value()) {
        fuzzing::validate_params(Value::Object(m));
        fuzzing::validate_params(v);
    }
}

/// A request whose `params.p` nests `arrays` arrays: `arrays + 2` levels in all. Built by
/// hand: encoding a very deep `Value` would itself recurse too far.
fn nested_body(arrays: usize) -> Vec<u8> {
    let mut b = vec![0x83, 0xa2, b'i', b'd', 0x07, 0xa6];
    b.extend_from_slice(b"method");
    b.extend_from_slice(&[0xa1, b'm', 0xa6]);
    b.extend_from_slice(b"params");
    b.extend_from_slice(&[0x81, 0xa1, b'p']);
    b.extend(std::iter::repeat_n(0x91u8, arrays));
    b.push(0x01);
    b
}

/// Maps and arrays nest at most `MAX_DEPTH` levels (docs/protocol.md §2), and at most
/// `MAX_DEPTH_TO_KERNEL` in what the kernel reads: exactly the limit decodes, one more is
/// refused with the id, far more does not overflow.
#[test]
fn nesting_depth_boundary() {
    let to_kernel = codec::MAX_DEPTH_TO_KERNEL;
    for levels in [
        3,
        64,
        to_kernel,
        to_kernel + 1,
        codec::MAX_DEPTH - 1,
        codec::MAX_DEPTH,
        codec::MAX_DEPTH + 1,
        100_000,
    ] {
        let body = nested_body(levels - 2);
        let decoded = codec::decode_body(&body);
        match &decoded {
            Ok(msg) => fuzzing::check_round_trip(msg),
            Err(e) => {
                assert!(matches!(e, DecodeError::NotMessagePack { .. }), "{e:?}");
                assert_eq!(e.id(), Some(Id::Num(7)));
            }
        }
        assert_eq!(decoded.is_ok(), levels <= codec::MAX_DEPTH, "{levels} levels");
        // What the kernel reads: `MAX_DEPTH_TO_KERNEL` levels, refused beyond with the id.
        let to_kernel = codec::decode_body_within(&body, codec::MAX_DEPTH_TO_KERNEL);
        assert_eq!(to_kernel.is_ok(), levels <= codec::MAX_DEPTH_TO_KERNEL, "{levels} levels");
        if let Err(e) = to_kernel {
            assert_eq!(e.id(), Some(Id::Num(7)), "{levels} levels");
        }
        if levels < 1000 {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            fuzzing::decode_frame_target(&frame);
        }
    }
}
