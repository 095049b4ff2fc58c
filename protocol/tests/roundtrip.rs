//! Every message kind and every method's params and result survive the codec unchanged.

use burrow_protocol::methods::{
    self, Ack, Empty, Method, app::*, capability::*, config::*, hook::*, invoke::*, session::*,
};
use burrow_protocol::{ErrorCode, ErrorObject, Id, Manifest, Message, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt::Debug;

/// Encodes `msg` as a frame, decodes it, and checks it is unchanged.
fn through_codec(msg: Message) -> Message {
    let frame = codec::encode_frame(&msg, codec::MAX_FRAME_BYTES).unwrap();
    let (decoded, used) = codec::decode_frame(&frame, codec::MAX_FRAME_BYTES).unwrap();
    assert_eq!(used, frame.len());
    let decoded = decoded.unwrap();
    assert_eq!(decoded, msg);
    decoded
}

/// Sends `params` as a request and `result` as a response, with both id kinds, and
/// reads them back as the method's types.
fn round_trip<M: Method>(params: M::Params, result: M::Result)
where
    M::Params: PartialEq + Debug,
    M::Result: PartialEq + Debug,
{
    for id in [Id::Num(7), Id::Str("req-7".into())] {
        let req = Message::request(id.clone(), M::NAME, to_value(&params));
        let Message::Request(r) = through_codec(req) else { panic!("not a request") };
        assert_eq!(r.method, M::NAME);
        let back: M::Params = methods::parse_params(r.params).unwrap();
        assert_eq!(back, params, "{} params", M::NAME);

        let resp = Message::success(id.clone(), to_value(&result));
        let Message::Response(r) = through_codec(resp) else { panic!("not a response") };
        let back: M::Result = serde_json::from_value(r.outcome.unwrap()).unwrap();
        assert_eq!(back, result, "{} result", M::NAME);
    }
    let note = Message::notification(M::NAME, to_value(&params));
    through_codec(note);
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    methods::to_value(v)
}

#[allow(dead_code)]
fn assert_owned<T: DeserializeOwned>() {}

fn manifest() -> Manifest {
    let mut m = Manifest::new("weather", "1.2.0");
    m.description = Some("forecasts".into());
    m.capabilities.tools = vec!["weather_forecast".into()];
    m.capabilities.gateway_methods = vec!["weather.*".into()];
    m.capabilities.hooks.subscribe = vec!["session_*".into()];
    m.capabilities.hooks.intercept = vec!["before_tool_call".into()];
    m.config.read = vec!["agents.main.model".into()];
    m
}

#[test]
fn lifecycle_methods() {
    round_trip::<AppRegister>(
        RegisterParams {
            manifest: manifest(),
            protocol_version: "1.0".into(),
            token: Some("t".into()),
        },
        RegisterResult {
            app_id: "weather".into(),
            token: "t".into(),
            protocol_version: "1.0".into(),
            heartbeat_interval_ms: 5000,
            heartbeat_timeout_ms: 15000,
        },
    );
    let status = json!({"load": 0.5}).as_object().cloned();
    round_trip::<AppHeartbeat>(
        HeartbeatParams { status },
        HeartbeatResult { ok: true, server_time: 1_700_000_000_000 },
    );
    round_trip::<AppReady>(ReadyParams::default(), Ack::OK);
    round_trip::<AppShutdown>(
        ShutdownParams { reason: Some("bye".into()), timeout: Some(500) },
        Ack::OK,
    );
    round_trip::<KernelInfo>(
        Empty {},
        KernelInfoResult {
            version: "0.1.0".into(),
            protocol_version: "1.0".into(),
            started_at: 1,
            apps: 2,
            sessions: 3,
            endpoints: [("rpc_tcp".to_owned(), "127.0.0.1:7000".to_owned())].into(),
            heartbeat_interval_ms: 5000,
        },
    );
    round_trip::<KernelApps>(
        Empty {},
        KernelAppsResult {
            apps: vec![AppSummary {
                app_id: "a".into(),
                version: "1.0.0".into(),
                state: AppState::Ready,
                registered_at: 1,
                last_seen_at: 2,
            }],
            managed: vec![ManagedSummary {
                app_id: "m".into(),
                state: ProcState::Restarting,
                pid: None,
                started_at: Some(3),
                restarts: 1,
                last_exit: Some("exit status 1".into()),
                restart: RestartPolicy::OnFailure,
                command: "burrow-echo".into(),
            }],
        },
    );
    round_trip::<methods::Cancel>(methods::CancelParams { id: Id::Num(3) }, Empty {});
}

#[test]
fn capability_methods() {
    let configs = [
        (
            CapabilityType::Tool,
            json!({"name": "t", "description": "d", "inputSchema": {}, "timeoutMs": 5}),
        ),
        (CapabilityType::Channel, json!({"channelId": "c"})),
        (
            CapabilityType::Hook,
            json!({"event": "e", "priority": -1, "timeoutMs": 5, "failMode": "closed"}),
        ),
        (CapabilityType::GatewayMethod, json!({"method": "weather.now"})),
        (CapabilityType::HttpRoute, json!({"method": "GET", "path": "/apps/weather/x"})),
        (CapabilityType::Provider, json!({"providerId": "p", "models": ["m"]})),
    ];
    for (kind, config) in configs {
        let parsed = CapabilityConfig::parse(kind, config.clone()).unwrap();
        assert_eq!(parsed.kind(), kind);
        round_trip::<CapabilityRegister>(
            RegisterCapabilityParams { kind, config },
            RegisterCapabilityResult {
                capability_id: "cap-1".into(),
                granted: false,
                reason: Some("taken".into()),
            },
        );
    }
    round_trip::<CapabilityUnregister>(
        UnregisterCapabilityParams { capability_id: "cap-1".into() },
        Ack::OK,
    );
}

#[test]
fn hook_methods() {
    round_trip::<HookSubscribe>(
        SubscribeParams { events: vec!["session_*".into()] },
        SubscribeResult { subscribed: vec!["session_*".into()], denied: vec!["x".into()] },
    );
    round_trip::<HookUnsubscribe>(
        UnsubscribeParams { events: vec!["a".into()] },
        UnsubscribeResult { unsubscribed: vec!["a".into()] },
    );
    round_trip::<HookEvent>(
        HookEventParams {
            event_id: "e1".into(),
            event: "before_tool_call".into(),
            payload: json!({"name": "t"}),
            context: Default::default(),
            intercept: true,
            deadline_ms: Some(9),
        },
        Ack::OK,
    );
    for result in [
        HookVerdict::Continue,
        HookVerdict::Modify { payload: json!({"arguments": {}}) },
        HookVerdict::Block { reason: "no".into() },
    ] {
        round_trip::<HookResult>(HookResultParams { event_id: "e1".into(), result }, Ack::OK);
    }
}

#[test]
fn config_methods() {
    round_trip::<ConfigGet>(
        ConfigGetParams { path: Some("apps.a".into()), origin: true },
        ConfigGetResult {
            value: json!({"x": 1}),
            origins: Some([("apps.a.x".to_owned(), "built-in default".to_owned())].into()),
        },
    );
    round_trip::<ConfigWatch>(
        ConfigWatchParams { paths: Some(vec!["apps.a".into()]) },
        ConfigWatchEnd { ended: "cancelled".into() },
    );
    let change =
        ConfigChange { path: "apps.a.x".into(), old_value: json!(1), new_value: json!(null) };
    through_codec(Message::chunk(Id::Num(1), to_value(&change)));
}

#[test]
fn invoke_methods() {
    let result = ToolResult { content: json!("ok"), is_error: Some(false) };
    round_trip::<ToolCall>(
        ToolCallParams {
            name: "t".into(),
            arguments: json!({"a": 1}),
            session_key: Some("s".into()),
        },
        result.clone(),
    );
    round_trip::<ToolInvoke>(
        ToolInvokeParams {
            call_id: "c".into(),
            name: "t".into(),
            arguments: json!({}),
            session_key: None,
            run_id: Some("r".into()),
            timeout_ms: Some(30_000),
            traceparent: None,
        },
        result,
    );
    round_trip::<ChannelSend>(
        ChannelSendParams {
            channel_id: "c".into(),
            session_key: "s".into(),
            account_id: None,
            content: "hi".into(),
            metadata: None,
        },
        ChannelSendResult { message_id: Some("m".into()) },
    );
    round_trip::<GatewayInvoke>(
        GatewayInvokeParams {
            method: "weather.now".into(),
            params: json!({}),
            caller: "app".into(),
        },
        json!({"anything": [1, 2.5, "x", null, true]}),
    );
    round_trip::<HttpRequest>(
        HttpRequestParams {
            method: "GET".into(),
            path: "/apps/a/x".into(),
            query: Default::default(),
            headers: Default::default(),
            body: None,
        },
        HttpResponse { status: 200, headers: None, body: Some("ok".into()) },
    );
    let call = ToolCallRequest { id: "1".into(), name: "t".into(), arguments: json!({}) };
    round_trip::<ProviderComplete>(
        ProviderCompleteParams {
            provider_id: "p".into(),
            model: "m".into(),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "s".into(),
                    tool_calls: None,
                    tool_call_id: None,
                },
                ChatMessage {
                    role: Role::Assistant,
                    content: "".into(),
                    tool_calls: Some(vec![call.clone()]),
                    tool_call_id: None,
                },
                ChatMessage {
                    role: Role::Tool,
                    content: "r".into(),
                    tool_calls: None,
                    tool_call_id: Some("1".into()),
                },
            ],
            tools: vec![ToolSpec {
                name: "t".into(),
                description: "d".into(),
                input_schema: json!({}),
            }],
            traceparent: None,
        },
        ProviderCompleteResult {
            message: AssistantMessage { content: "c".into(), tool_calls: Some(vec![call]) },
            usage: None,
        },
    );
}

#[test]
fn session_methods() {
    let info = SessionInfo {
        key: "k".into(),
        agent_id: "main".into(),
        channel_id: Some("c".into()),
        account_id: None,
        created_at: 1,
        last_active_at: 2,
        message_count: 3,
        active: true,
        keep_alive: true,
        comms_name: Some("agent-a".into()),
    };
    round_trip::<SessionGet>(
        SessionGetParams { key: "k".into() },
        SessionGetResult { session: Some(info.clone()) },
    );
    round_trip::<SessionGet>(
        SessionGetParams { key: "k".into() },
        SessionGetResult { session: None },
    );
    round_trip::<SessionList>(
        SessionListParams {
            filter: Some(SessionFilter {
                agent_id: Some("main".into()),
                active: Some(true),
                ..Default::default()
            }),
            limit: Some(10),
            offset: Some(5),
        },
        SessionListResult { sessions: vec![info], total: 1 },
    );
    round_trip::<SessionHistory>(
        SessionHistoryParams { key: "k".into(), limit: Some(2), before: Some("m9".into()) },
        SessionHistoryResult {
            messages: vec![TranscriptMessage {
                id: "m1".into(),
                role: Role::User,
                content: "hi".into(),
                created_at: 1,
                metadata: None,
                tool_calls: None,
                tool_call_id: None,
                run_id: Some("r1".into()),
            }],
            truncated: Some(true),
        },
    );
    round_trip::<MessageDispatch>(
        DispatchParams { session_key: "k".into(), content: "hi".into(), metadata: None },
        DispatchResult {
            dispatch_id: "d".into(),
            queued: true,
            run_id: Some("r".into()),
            reason: None,
        },
    );
    round_trip::<AgentQueue>(
        AgentQueueParams { session_key: "k".into(), text: "go".into(), metadata: None },
        AgentQueueResult { run_id: "r".into(), queued: false },
    );
    for status in [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        round_trip::<AgentWait>(
            AgentWaitParams { run_id: "r".into(), timeout_ms: Some(100) },
            AgentWaitResult { run_id: "r".into(), status, output: None, error: None },
        );
    }
}

#[test]
fn error_responses_with_and_without_id() {
    for code in ErrorCode::ALL {
        let err = ErrorObject::new(code, "m").with_data(json!({"field": "x"}));
        through_codec(Message::error(Some(Id::Num(1)), err.clone()));
        through_codec(Message::error(None, err));
    }
}

#[test]
fn operator_and_host_methods_round_trip() {
    use burrow_protocol::methods::host::*;
    use burrow_protocol::methods::operator::*;
    round_trip::<KernelCapabilities>(
        KernelCapabilitiesParams { kind: Some(CapabilityType::Tool) },
        KernelCapabilitiesResult {
            capabilities: vec![CapabilitySummary {
                capability_id: "cap-1".into(),
                app_id: "a".into(),
                kind: CapabilityType::Tool,
                config: json!({"name": "t"}),
            }],
        },
    );
    round_trip::<KernelHooks>(
        Empty {},
        KernelHooksResult {
            subscribers: vec![SubscriberSummary {
                app_id: "a".into(),
                subscriptions: vec!["session_*".into()],
                dropped: 2,
            }],
            interceptors: vec![InterceptorSummary {
                capability_id: "cap-2".into(),
                app_id: "a".into(),
                event: "before_tool_call".into(),
                priority: -1,
                timeout_ms: None,
                fail_mode: FailMode::default(),
            }],
        },
    );
    round_trip::<SupervisorRestart>(AppIdParams { app_id: "a".into() }, Ack::OK);
    round_trip::<SupervisorLogs>(
        LogsParams { app_id: "a".into(), lines: 5, follow: true },
        StreamEnd { ended: "cancelled".into() },
    );
    round_trip::<SupervisorTail>(
        TailParams { app_id: "a".into(), lines: 5 },
        TailResult { lines: vec!["one".into(), "two".into()] },
    );
    round_trip::<KernelConfig>(
        Empty {},
        KernelConfigResult {
            file: Some("/etc/burrow.toml".into()),
            config: json!({"ipc": {"max_frame_bytes": 1}}),
            redacted: vec!["apps.x.token".into()],
        },
    );
    round_trip::<PeersTrust>(
        PeersTrustParams { binding: json!({"kernel_id": "ab"}) },
        PeersTrustResult { kernel_id: "ab".into(), name: "b".into(), added: true },
    );
    round_trip::<PeersList>(
        Empty {},
        PeersListResult {
            own: None,
            trusted: vec![json!({})],
            refusals: Default::default(),
            last_contact: [("k".into(), 1)].into(),
        },
    );
    round_trip::<PeersRevoke>(PeersRevokeParams { kernel_id: "ab".into() }, Ack::OK);
    round_trip::<SessionEvents>(
        SessionEventsParams { session_id: "s".into(), allow_new: true },
        StreamEnd { ended: "lagged".into() },
    );
    round_trip::<HostSessionRead>(
        SessionRef { session_id: "s".into() },
        burrow_protocol::methods::contract::SessionDetails {
            session_id: "s".into(),
            created_at: 1,
            updated_at: 2,
            message_count: 3,
            is_active: true,
            model: "default".into(),
            provider: "echo".into(),
            labels: Some([("team".to_owned(), "a".to_owned())].into()),
            last_assistant_text: Some("echo: hi".into()),
        },
    );
    round_trip::<RunWait>(
        RunWaitParams { run_id: "r".into(), timeout_ms: Some(10) },
        RunWaitResult {
            run_id: "r".into(),
            status: RunStatus::Completed,
            output: Some("ok".into()),
            error: None,
        },
    );
    round_trip::<Authenticate>(AuthenticateParams { token: "brw_x".into() }, Ack::OK);
    // LogsParams' defaults: the last 100 lines, not following.
    let p: LogsParams = serde_json::from_value(json!({"appId": "a"})).unwrap();
    assert_eq!((p.lines, p.follow), (100, false));
}
