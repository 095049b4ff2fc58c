use std::time::Duration;

use burrow_protocol::Manifest;
use burrow_protocol::methods::capability::ToolConfig;
use burrow_protocol::methods::invoke::ToolInvokeParams;
use serde_json::json;

use super::*;
use crate::Error;
use crate::test_support::{WAIT, start_ready, within};
use crate::testing::FakeKernel;

fn ok(content: Value) -> std::result::Result<ToolResult, ErrorObject> {
    Ok(ToolResult { content, is_error: None })
}

fn app() -> App {
    App::new(Manifest::new("tester", "0.1.0"))
        .tool("echo", "Echoes", json!({"type": "object"}), |args, _cx| async move { ok(args) })
        .tool("whoami", "The call's context", json!({}), |_args, cx| async move {
            use opentelemetry::trace::TraceContextExt;
            // The OpenTelemetry context the handler runs in: the kernel's span's.
            let current = opentelemetry::Context::current();
            let span = current.span();
            let parent = span.span_context();
            let trace =
                parent.is_valid().then(|| format!("{}/{}", parent.trace_id(), parent.span_id()));
            ok(json!({
                "callId": cx.call_id, "name": cx.name, "sessionKey": cx.session_key,
                "runId": cx.run_id, "appId": cx.app_id(), "traceparent": cx.traceparent,
                "trace": trace,
            }))
        })
        .tool_with_timeout(
            "fail",
            "Fails",
            json!({}),
            Duration::from_millis(1500),
            |args, _cx| async move {
                Err(ErrorObject::new(ErrorCode::UnknownError, "failed on purpose").with_data(args))
            },
        )
        .tool("panic", "Panics", json!({}), |_args, _cx| async move { panic!("tool bug") })
        .gateway_method("greet", |params, cx| async move {
            Ok(json!({"hello": params["name"], "caller": cx.caller, "method": cx.method}))
        })
        .gateway_method("tester.full", |_params, cx| async move { Ok(json!(cx.app_id())) })
}

#[tokio::test]
async fn tools_answer_with_their_content_and_context() {
    let running = start_ready(app()).await;
    let kernel = &running.kernel;
    let echo = kernel.invoke_tool("echo", json!({"x": [1, 2]})).await.unwrap();
    assert_eq!(echo.content, json!({"x": [1, 2]}));
    assert_eq!(echo.is_error, None);

    let params = ToolInvokeParams {
        call_id: "c-7".into(),
        name: "whoami".into(),
        arguments: json!({}),
        session_key: Some("s-1".into()),
        run_id: Some("r-1".into()),
        timeout_ms: None,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let who = kernel.invoke_tool_with(params).await.unwrap();
    assert_eq!(
        who.content,
        json!({"callId": "c-7", "name": "whoami", "sessionKey": "s-1", "runId": "r-1", "appId": "tester",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "trace": "4bf92f3577b34da6a3ce929d0e0e4736/00f067aa0ba902b7"})
    );
    let untraced = kernel.invoke_tool("whoami", json!({})).await.unwrap();
    assert_eq!(untraced.content["trace"], Value::Null);
}

#[tokio::test]
async fn tool_errors_panics_and_unknown_tools_are_error_answers() {
    let running = start_ready(app()).await;
    let kernel = &running.kernel;
    let failed = kernel.invoke_tool("fail", json!({"why": 1})).await.unwrap_err();
    let Error::Remote(e) = failed else { panic!("{failed:?}") };
    assert_eq!(e.code, ErrorCode::UnknownError);
    assert_eq!(e.message, "failed on purpose");
    assert_eq!(e.data, Some(json!({"why": 1})));

    let panicked = kernel.invoke_tool("panic", json!({})).await.unwrap_err();
    assert_eq!(panicked.code(), Some(ErrorCode::InternalError));
    let unknown = kernel.invoke_tool("nope", json!({})).await.unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::NotFound));
    let malformed = kernel.request("tool.invoke", json!({"name": "echo"})).await.unwrap_err();
    assert_eq!(malformed.code(), Some(ErrorCode::InvalidParams));

    // Still serving.
    let echo = kernel.invoke_tool("echo", json!(1)).await.unwrap();
    assert_eq!(echo.content, json!(1));
    assert!(!running.run.is_finished());
}

#[tokio::test]
async fn tools_are_registered_with_their_config() {
    let running = start_ready(app()).await;
    let tools: Vec<ToolConfig> = running
        .kernel
        .capabilities()
        .into_iter()
        .filter(|c| c.params.kind == CapabilityType::Tool)
        .map(|c| serde_json::from_value(c.params.config).unwrap())
        .collect();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["echo", "whoami", "fail", "panic"]);
    assert_eq!(tools[0].description, "Echoes");
    assert_eq!(tools[0].input_schema, Some(json!({"type": "object"})));
    assert_eq!(tools[0].timeout_ms, None);
    assert_eq!(tools[2].timeout_ms, Some(1500));
}

#[tokio::test]
async fn gateway_methods_live_in_the_apps_namespace() {
    let running = start_ready(app()).await;
    let kernel = &running.kernel;
    let methods: Vec<String> = kernel
        .capabilities()
        .into_iter()
        .filter(|c| c.params.kind == CapabilityType::GatewayMethod)
        .map(|c| c.name)
        .collect();
    assert_eq!(methods, ["tester.greet", "tester.full"]);

    let greet = kernel.invoke_gateway("tester.greet", json!({"name": "Ada"})).await.unwrap();
    assert_eq!(
        greet,
        json!({"hello": "Ada", "caller": crate::testing::FAKE_CALLER, "method": "tester.greet"})
    );
    let full = kernel.invoke_gateway("tester.full", json!({})).await.unwrap();
    assert_eq!(full, json!("tester"));
    let missing = kernel.invoke_gateway("tester.nope", json!({})).await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::MethodNotFound));
}

#[tokio::test]
async fn call_tool_goes_through_the_kernel() {
    let (app, client) = crate::test_support::with_client(app());
    let running = start_ready(app).await;
    running.kernel.on_request("tool.call", |params| {
        Ok(json!({"content": {"called": params["name"], "session": params["sessionKey"]}, "isError": true}))
    });
    let client = within(client).await.unwrap();
    let plain = client.call_tool("weather", json!({})).await.unwrap();
    assert_eq!(plain.content, json!({"called": "weather", "session": null}));
    assert_eq!(plain.is_error, Some(true));
    let in_session = client.call_tool_in_session("weather", json!({}), "s-9").await.unwrap();
    assert_eq!(in_session.content["session"], "s-9");
}

#[tokio::test]
async fn tool_and_gateway_mistakes_fail_at_start_up() {
    let noop = |_args: Value, _cx: ToolContext| async { ok(Value::Null) };
    let cases = [
        App::new(Manifest::new("tester", "0.1.0")).tool("bad name", "", json!({}), noop),
        app().tool("echo", "again", json!({}), noop),
        app().tool_with_timeout("zero", "", json!({}), Duration::ZERO, noop),
        app().gateway_method("other.method", |p, _cx| async move { Ok(p) }),
        app().gateway_method("greet", |p, _cx| async move { Ok(p) }),
        app().on_request("tool.invoke", |p, _cx| async move { Ok(p) }),
        app().on_request("gateway.invoke", |p, _cx| async move { Ok(p) }),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let (_kernel, transport) = FakeKernel::new();
        let err = within(case.run_on(transport, std::future::pending())).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "case {i}: {err:?}");
    }
    let _ = WAIT;
}
