use burrow_protocol::Manifest;
use burrow_protocol::methods::invoke::{AssistantMessage, ChatMessage, Role, ToolResult};
use serde_json::json;

use super::*;
use crate::test_support::{WAIT, start_ready, start_with, with_client, within};
use crate::testing::FakeConfig;
use crate::{Error, HookVerdict};

fn answer(content: String) -> std::result::Result<ProviderCompleteResult, ErrorObject> {
    Ok(ProviderCompleteResult {
        message: AssistantMessage { content, tool_calls: None },
        usage: None,
    })
}

/// An app with two providers, two channels, and a tool and an interceptor around them.
fn app() -> App {
    App::new(Manifest::new("tester", "0.1.0"))
        .tool("t", "a tool", json!({}), |args, _cx| async move {
            Ok(ToolResult { content: args, is_error: None })
        })
        .provider("upper", vec!["u-1".into(), "u-2".into()], |params, cx| async move {
            let last = params.messages.last().map(|m| m.content.to_uppercase());
            let tools: Vec<_> = params.tools.iter().map(|t| t.name.clone()).collect();
            answer(format!(
                "{}|{}|{}|{}|{}",
                cx.provider_id,
                params.model,
                last.unwrap_or_default(),
                tools.join(","),
                cx.app_id()
            ))
        })
        .provider("failing", vec![], |_params, _cx| async move {
            Err(ErrorObject::new(ErrorCode::UnknownError, "model offline"))
        })
        .channel("console", "Prints replies", |message, cx| async move {
            let id = format!("{}:{}:{}", cx.channel_id, message.session_key, message.content);
            Ok(ChannelSendResult { message_id: Some(id) })
        })
        .channel("quiet", "", |_message, _cx| async move { panic!("channel bug") })
        .intercept("message_sending", 0, |_event| async { HookVerdict::Continue })
}

fn conversation(text: &str) -> ProviderCompleteParams {
    ProviderCompleteParams {
        provider_id: String::new(),
        model: "u-1".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: text.into(),
            tool_calls: None,
            tool_call_id: None,
        }],
        tools: vec![burrow_protocol::methods::invoke::ToolSpec {
            name: "t".into(),
            description: "a tool".into(),
            input_schema: json!({}),
        }],
        traceparent: None,
    }
}

fn message(channel_id: &str, content: &str) -> ChannelSendParams {
    ChannelSendParams {
        channel_id: channel_id.into(),
        session_key: "s-1".into(),
        account_id: None,
        content: content.into(),
        metadata: None,
    }
}

#[tokio::test]
async fn providers_and_channels_are_declared_after_tools_and_before_interceptors() {
    let running = start_ready(app()).await;
    let kernel = &running.kernel;
    let asked: Vec<(CapabilityType, String)> =
        kernel.capabilities().into_iter().map(|c| (c.params.kind, c.name)).collect();
    let expected = [
        (CapabilityType::Tool, "t"),
        (CapabilityType::Provider, "upper"),
        (CapabilityType::Provider, "failing"),
        (CapabilityType::Channel, "console"),
        (CapabilityType::Channel, "quiet"),
        (CapabilityType::Hook, "message_sending"),
    ];
    let expected: Vec<_> = expected.into_iter().map(|(k, n)| (k, n.to_owned())).collect();
    assert_eq!(asked, expected);
    assert!(kernel.capabilities().iter().all(|c| c.result.granted));

    let providers = kernel.providers();
    assert_eq!(providers.len(), 2);
    assert_eq!(providers[0].provider_id, "upper");
    assert_eq!(providers[0].models, ["u-1", "u-2"]);
    assert!(providers[1].models.is_empty());
    let channels = kernel.channels();
    assert_eq!(channels[0].channel_id, "console");
    assert_eq!(channels[0].description.as_deref(), Some("Prints replies"));
    assert_eq!(channels[1].description, None);

    let caps = kernel.manifest().unwrap().capabilities;
    assert_eq!(caps.providers, ["upper", "failing"]);
    assert_eq!(caps.channels, ["console", "quiet"]);
}

#[tokio::test]
async fn provider_complete_goes_to_the_named_provider() {
    let running = start_ready(app()).await;
    let kernel = &running.kernel;
    let done = kernel.complete("upper", conversation("hello")).await.unwrap();
    assert_eq!(done.message.content, "upper|u-1|HELLO|t|tester");
    assert_eq!(done.message.tool_calls, None);

    let failed = kernel.complete("failing", conversation("x")).await.unwrap_err();
    let Error::Remote(e) = failed else { panic!("{failed:?}") };
    assert_eq!((e.code, e.message.as_str()), (ErrorCode::UnknownError, "model offline"));

    let unknown = kernel.complete("nope", conversation("x")).await.unwrap_err();
    let Error::Remote(e) = unknown else { panic!("{unknown:?}") };
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.data, Some(json!({"providerId": "nope"})));

    let malformed = kernel.request("provider.complete", json!({"providerId": "upper"})).await;
    assert_eq!(malformed.unwrap_err().code(), Some(ErrorCode::InvalidParams));
}

#[tokio::test]
async fn channel_send_goes_to_the_named_channel() {
    let running = start_ready(app()).await;
    let kernel = &running.kernel;
    let sent = kernel.channel_send(message("console", "hi")).await.unwrap();
    assert_eq!(sent.message_id.as_deref(), Some("console:s-1:hi"));

    let panicked = kernel.channel_send(message("quiet", "hi")).await.unwrap_err();
    assert_eq!(panicked.code(), Some(ErrorCode::InternalError));
    let unknown = kernel.channel_send(message("nope", "hi")).await.unwrap_err();
    let Error::Remote(e) = unknown else { panic!("{unknown:?}") };
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.data, Some(json!({"channelId": "nope"})));

    // Still serving.
    assert!(kernel.channel_send(message("console", "again")).await.is_ok());
    assert!(!running.run.is_finished());
}

#[tokio::test]
async fn without_providers_or_channels_their_requests_are_unknown_methods() {
    let running = start_ready(App::new(Manifest::new("tester", "0.1.0"))).await;
    let kernel = &running.kernel;
    let e = kernel.complete("upper", conversation("x")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MethodNotFound));
    let e = kernel.channel_send(message("console", "x")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MethodNotFound));
}

#[tokio::test]
async fn a_denied_provider_is_recorded_and_the_rest_keeps_working() {
    let config = FakeConfig { deny_capabilities: vec!["failing".into()], ..FakeConfig::default() };
    let (app, client) = with_client(app());
    let running = start_with(app, config);
    within(running.kernel.wait_ready(WAIT)).await.unwrap();
    let grants = within(client).await.unwrap().grants().unwrap();
    let denied: Vec<&str> = grants.denied().map(|c| c.name.as_str()).collect();
    assert_eq!(denied, ["failing"]);
    assert!(grants.is_granted(CapabilityType::Provider, "upper"));
    assert!(grants.is_granted(CapabilityType::Channel, "console"));
    let providers: Vec<String> =
        running.kernel.providers().into_iter().map(|p| p.provider_id).collect();
    assert_eq!(providers, ["upper"]);
    let done = running.kernel.complete("upper", conversation("ok")).await.unwrap();
    assert!(done.message.content.contains("OK"));
}

#[tokio::test]
async fn bad_ids_duplicates_and_raw_handlers_fail_at_start_up() {
    let ok = |_params, _cx| async { answer(String::new()) };
    let sent = |_params, _cx| async { Ok(ChannelSendResult::default()) };
    let tester = || App::new(Manifest::new("tester", "0.1.0"));
    let cases = [
        (tester().provider("", vec![], ok), "provider id \"\""),
        (tester().provider("a b", vec![], ok), "provider id \"a b\""),
        (tester().provider("x".repeat(129), vec![], ok), "must be 1–128 bytes"),
        (tester().provider("p", vec![], ok).provider("p", vec![], ok), "two providers with id p"),
        (tester().channel("c*", "", sent), "channel id \"c*\""),
        (tester().channel("c", "", sent).channel("c", "again", sent), "two channels with id c"),
        (
            tester()
                .provider("p", vec![], ok)
                .on_request("provider.complete", |_p, _cx| async { Ok(Value::Null) }),
            "cannot be combined with App::provider",
        ),
        (
            tester()
                .channel("c", "", sent)
                .on_request("channel.send", |_p, _cx| async { Ok(Value::Null) }),
            "cannot be combined with App::channel",
        ),
    ];
    for (app, expected) in cases {
        let (_kernel, transport) = crate::testing::FakeKernel::new();
        let err = app.run_on(transport, std::future::pending()).await.unwrap_err();
        let Error::Config(message) = &err else { panic!("{err:?}") };
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[tokio::test]
async fn a_provider_streams_its_answer_before_returning_it_whole() {
    use burrow_protocol::methods::invoke::ProviderChunk;
    let app = App::new(Manifest::new("tester", "0.1.0")).provider(
        "words",
        vec![],
        |params, cx| async move {
            let text = params.messages.last().map(|m| m.content.clone()).unwrap_or_default();
            for word in text.split_inclusive(' ') {
                cx.text_delta(word)
                    .await
                    .map_err(|e| ErrorObject::new(ErrorCode::UnknownError, e.to_string()))?;
            }
            let call = ProviderChunk::ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                name: Some("t".into()),
                arguments: Some("{}".into()),
            };
            cx.chunk(call)
                .await
                .map_err(|e| ErrorObject::new(ErrorCode::UnknownError, e.to_string()))?;
            answer(text)
        },
    );
    let running = start_ready(app).await;
    let (chunks, result) =
        running.kernel.complete_streamed("words", conversation("once upon a time")).await.unwrap();
    let texts: Vec<_> = chunks
        .iter()
        .filter_map(|c| match c {
            ProviderChunk::TextDelta { text } => Some(text.as_str()),
            ProviderChunk::ToolCallDelta { .. } => None,
        })
        .collect();
    assert_eq!(texts, ["once ", "upon ", "a ", "time"]);
    assert_eq!(texts.concat(), result.message.content);
    assert!(matches!(chunks.last(), Some(ProviderChunk::ToolCallDelta { index: 0, .. })));
    // A provider that does not stream gives its result alone.
    let plain = App::new(Manifest::new("plain", "0.1.0")).provider(
        "p",
        vec![],
        |_params, _cx| async move { answer("whole".into()) },
    );
    let plain = start_ready(plain).await;
    let (chunks, result) = plain.kernel.complete_streamed("p", conversation("x")).await.unwrap();
    assert!(chunks.is_empty());
    assert_eq!(result.message.content, "whole");
}

#[tokio::test]
async fn a_streaming_channel_gets_pieces_in_order_and_the_end_of_a_stream() {
    use burrow_protocol::methods::invoke::{
        ChannelDeltaParams, ChannelStreamEndParams, ProviderChunk, StreamEndReason,
    };
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let app = App::new(Manifest::new("tester", "0.1.0"))
        .channel("live", "", |_m, _cx| async move { Ok(ChannelSendResult { message_id: None }) })
        .channel("plain", "", |_m, _cx| async move { Ok(ChannelSendResult { message_id: None }) })
        .channel_deltas("live", move |event, cx| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send((cx.channel_id, event));
            }
        });
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    // Registered with `streaming: true`, and only the channel that streams.
    let streams: Vec<_> =
        kernel.channels().into_iter().map(|c| (c.channel_id, c.streaming)).collect();
    assert_eq!(streams, [("live".to_owned(), true), ("plain".to_owned(), false)]);

    let delta = |channel: &str, seq: u64, text: &str| {
        ChannelStreamEvent::Delta(ChannelDeltaParams {
            channel_id: channel.into(),
            session_key: "s".into(),
            run_id: "r".into(),
            seq,
            delta: ProviderChunk::TextDelta { text: text.into() },
        })
    };
    // A piece for the channel that does not stream is dropped, not handed to `live`.
    kernel.channel_stream(delta("plain", 0, "lost")).await.unwrap();
    for (seq, text) in ["a", "b", "c"].iter().enumerate() {
        kernel.channel_stream(delta("live", seq as u64, text)).await.unwrap();
    }
    let end = ChannelStreamEvent::End(ChannelStreamEndParams {
        channel_id: "live".into(),
        session_key: "s".into(),
        run_id: "r".into(),
        reason: StreamEndReason::Cancelled,
    });
    kernel.channel_stream(end.clone()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(within(seen.recv()).await.unwrap());
    }
    let expected = vec![
        ("live".to_owned(), delta("live", 0, "a")),
        ("live".to_owned(), delta("live", 1, "b")),
        ("live".to_owned(), delta("live", 2, "c")),
        ("live".to_owned(), end),
    ];
    assert_eq!(got, expected);
}

#[tokio::test]
async fn deltas_for_a_channel_not_declared_fail_the_app_at_start() {
    let app =
        App::new(Manifest::new("tester", "0.1.0")).channel_deltas("ghost", |_e, _cx| async {});
    let running = start_with(app, FakeConfig::default());
    let err = within(running.run).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("channel_deltas for channel ghost"), "{err}");
}
