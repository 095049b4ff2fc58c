//! Traces over OTLP: a kernel with `[telemetry] otlp_endpoint` pointing at an OTLP/HTTP
//! receiver in this test (protobuf, decoded with `opentelemetry-proto`) exports an agent
//! run's span tree: `invoke_agent` over its `chat` provider calls and its `execute_tool`
//! call, the interceptor's `intercept` under the tool call, with the GenAI conventions'
//! attributes; the provider app is handed its call's span as `traceparent`; and a run a
//! host starts over REST with a `traceparent` header continues the host's trace.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use burrow_tests::{DEADLINE, Kernel};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

/// The spans received, with their resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver on a free loopback port: its URL and what it received.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(|State(r): State<Received>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut spans = r.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
                    }
                }
                ""
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn text(value: Option<&any_value::Value>) -> String {
    match value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Span `name`'s attribute `key`, as text.
fn attribute(span: &Span, key: &str) -> String {
    let found = span.attributes.iter().find(|a| a.key == key);
    text(found.and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_runs_spans_reach_an_otlp_receiver_as_one_tree() {
    let (url, received) = receiver().await;
    let config =
        format!("[ipc]\nheartbeat_timeout_ms = 30000\n[telemetry]\notlp_endpoint = \"{url}\"\n");
    let mut kernel = Kernel::start_with(&config, &["--http", "127.0.0.1:0"]).await;
    let mut clock = kernel.example("clock-tool", "clock", &[]);
    let mut redactor = kernel.example("redactor", "redactor", &[]);
    clock.wait_line("clock-tool: ready as clock").await;
    redactor.wait_line("redactor: ready as redactor").await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "t1", "content": "go"})).await;
    let run_id = d["result"]["runId"].clone();
    let first = prov.expect_method("provider.complete").await;
    let call = json!({"id": "c1", "name": "echo", "arguments": {"password": "hunter2"}});
    let usage = json!({"input_tokens": 12, "output_tokens": 3});
    let answer = json!({"message": {"content": "", "toolCalls": [call]}, "usage": usage});
    prov.answer(&first["id"], answer).await;
    let second = prov.expect_method("provider.complete").await;
    prov.answer(&second["id"], json!({"message": {"content": "done"}})).await;
    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 10000})).await;
    assert_eq!(w["result"]["status"], "completed", "{w}");
    // A host's run, in the host's trace.
    let host_trace = "0af7651916cd43dd8448eb211c80319c";
    let host_span = "b7ad6b7169203331";
    let base = format!("http://{}", kernel.endpoint("http").await);
    let created = tokio::spawn(
        burrow_tests::http_client()
            .post(format!("{base}/sessions"))
            .header("traceparent", format!("00-{host_trace}-{host_span}-01"))
            .json(&json!({"prompt": "hi"}))
            .send(),
    );
    let third = prov.expect_method("provider.complete").await;
    prov.answer(&third["id"], json!({"message": {"content": "hello"}})).await;
    assert_eq!(created.await.unwrap().unwrap().status(), 200);
    // The kernel's stop sends what is buffered.
    kernel.signal(nix::sys::signal::Signal::SIGTERM);
    kernel.wait_exit(DEADLINE).await;

    let spans = received.lock().unwrap().clone();
    let named = |prefix: &str| -> Vec<&Span> {
        spans.iter().map(|(_, s)| s).filter(|s| s.name.starts_with(prefix)).collect()
    };
    assert!(spans.iter().all(|(service, _)| service == "burrow"), "{spans:?}");
    let runs = named("invoke_agent");
    assert_eq!(runs.len(), 2, "{spans:?}");
    let (hosts, ours): (Vec<&Span>, Vec<&Span>) =
        runs.iter().partition(|r| hex(&r.trace_id) == host_trace);
    assert_eq!(hosts.len(), 1, "{runs:?}");
    assert_eq!(hex(&hosts[0].parent_span_id), host_span);
    let run = ours[0];
    assert!(run.parent_span_id.is_empty(), "a channel's run is a root: {run:?}");
    assert_eq!(attribute(run, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(attribute(run, "burrow.run.id"), run_id.as_str().unwrap());
    assert_eq!(attribute(run, "burrow.run.status"), "completed");
    let chats: Vec<&Span> =
        named("chat ").into_iter().filter(|c| c.trace_id == run.trace_id).collect();
    assert_eq!(chats.len(), 2, "{spans:?}");
    for chat in &chats {
        assert_eq!(
            (chat.trace_id.clone(), chat.parent_span_id.clone()),
            (run.trace_id.clone(), run.span_id.clone())
        );
        assert_eq!(attribute(chat, "gen_ai.provider.name"), "echo");
    }
    let counted = chats.iter().find(|c| attribute(c, "gen_ai.usage.input_tokens") == "12");
    assert!(
        counted.is_some_and(|c| attribute(c, "gen_ai.usage.output_tokens") == "3"),
        "{chats:?}"
    );
    let tool = named("execute_tool");
    assert_eq!(tool.len(), 1, "{spans:?}");
    let tool = tool[0];
    assert_eq!(tool.parent_span_id, run.span_id);
    assert_eq!(attribute(tool, "gen_ai.tool.name"), "echo");
    assert_eq!(attribute(tool, "burrow.app"), "clock");
    let intercept = named("intercept before_tool_call");
    assert_eq!(intercept.len(), 1, "{spans:?}");
    assert_eq!(intercept[0].parent_span_id, tool.span_id);
    assert_eq!(attribute(intercept[0], "burrow.hook.decision"), "modify");
    // The provider app was handed its call's span.
    let handed = first["params"]["traceparent"].as_str().unwrap_or_default().to_owned();
    let first_chat = chats.iter().find(|c| handed.contains(&hex(&c.span_id))).expect("a chat span");
    assert_eq!(handed, format!("00-{}-{}-01", hex(&run.trace_id), hex(&first_chat.span_id)));
}
