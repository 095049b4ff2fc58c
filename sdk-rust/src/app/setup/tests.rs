use burrow_protocol::methods::invoke::ToolResult;
use serde_json::json;

use super::*;
use crate::App;
use crate::test_support::{WAIT, start_ready, start_with, with_client, within};
use crate::testing::FakeConfig;
use burrow_protocol::methods::hook::HookVerdict;

/// An app that declares one of everything.
fn app(manifest: Manifest) -> App {
    let tool = |_args, _cx| async { Ok(ToolResult { content: json!("done"), is_error: None }) };
    App::new(manifest)
        .on_event("session_*", |_event| async {})
        .tool("t1", "first", json!({}), tool)
        .tool("t2", "second", json!({}), tool)
        .gateway_method("g", |p, _cx| async move { Ok(p) })
        .intercept("before_tool_call", 1, |_event| async { HookVerdict::Continue })
}

fn tester() -> Manifest {
    Manifest::new("tester", "0.1.0")
}

#[tokio::test]
async fn declares_everything_between_register_and_ready_in_order() {
    let running = start_ready(app(tester())).await;
    let kernel = &running.kernel;
    let register = "capability.register";
    assert_eq!(
        kernel.calls(),
        ["app.register", "hook.subscribe", register, register, register, register, "app.ready"]
    );
    assert_eq!(kernel.subscriptions(), ["session_*", "before_tool_call"]);
    let asked: Vec<(CapabilityType, String, bool)> = kernel
        .capabilities()
        .into_iter()
        .map(|c| (c.params.kind, c.name, c.result.granted))
        .collect();
    let expected = [
        (CapabilityType::Tool, "t1", true),
        (CapabilityType::Tool, "t2", true),
        (CapabilityType::GatewayMethod, "tester.g", true),
        (CapabilityType::Hook, "before_tool_call", true),
    ];
    let expected: Vec<_> = expected.into_iter().map(|(k, n, g)| (k, n.to_owned(), g)).collect();
    assert_eq!(asked, expected);
}

#[tokio::test]
async fn an_app_without_hooks_or_capabilities_goes_straight_to_ready() {
    let running = start_ready(App::new(tester())).await;
    assert_eq!(running.kernel.calls(), ["app.register", "app.ready"]);
}

#[tokio::test]
async fn the_manifest_grants_what_the_app_declares_unless_covered() {
    let mut manifest = tester();
    manifest.capabilities.tools = vec!["t*".into()];
    manifest.capabilities.hooks.subscribe = vec!["session_*".into()];
    let app = app(manifest).tool("other", "", json!({}), |_args, _cx| async {
        Ok(ToolResult { content: json!(null), is_error: None })
    });
    let running = start_ready(app).await;
    let caps = running.kernel.manifest().unwrap().capabilities;
    assert_eq!(caps.tools, ["t*", "other"]);
    assert_eq!(caps.gateway_methods, ["tester.g"]);
    assert_eq!(caps.hooks.subscribe, ["session_*", "before_tool_call"]);
    assert_eq!(caps.hooks.intercept, ["before_tool_call"]);
    assert!(running.kernel.capabilities().iter().all(|c| c.result.granted));
}

#[tokio::test]
async fn denials_are_recorded_and_the_app_keeps_running() {
    let config = FakeConfig {
        deny_capabilities: vec!["t2".into(), "before_tool_call".into()],
        deny_events: vec!["session_*".into()],
        ..FakeConfig::default()
    };
    let (app, client) = with_client(app(tester()));
    let running = start_with(app, config);
    within(running.kernel.wait_ready(WAIT)).await.unwrap();
    let client = within(client).await.unwrap();
    let grants = client.grants().expect("grants are set before ready");
    assert_eq!(grants.subscribed, ["before_tool_call"]);
    assert_eq!(grants.denied_events, ["session_*"]);
    assert!(grants.is_granted(CapabilityType::Tool, "t1"));
    assert!(!grants.is_granted(CapabilityType::Tool, "t2"));
    assert!(!grants.all_granted());
    let denied: Vec<(&str, bool)> = grants
        .denied()
        .map(|c| (c.name.as_str(), c.reason.as_deref().unwrap().contains("denied")))
        .collect();
    assert_eq!(denied, [("t2", true), ("before_tool_call", true)]);
    let granted = &grants.capabilities[0];
    assert_eq!(granted.capability_id.as_deref(), Some("cap-1"));

    let answer = running.kernel.invoke_tool("t1", json!({})).await.unwrap();
    assert_eq!(answer.content, json!("done"));
    assert!(!running.run.is_finished());
}

#[tokio::test]
async fn an_error_answer_to_a_registration_counts_as_a_denial() {
    // The fake answers HOOK_NOT_SUBSCRIBED when the subscription was denied.
    let config =
        FakeConfig { deny_events: vec!["before_tool_call".into()], ..FakeConfig::default() };
    let (app, client) = with_client(app(tester()));
    let running = start_with(app, config);
    within(running.kernel.wait_ready(WAIT)).await.unwrap();
    let grants = within(client).await.unwrap().grants().unwrap();
    let hook = grants.denied().next().unwrap();
    assert_eq!(hook.kind, CapabilityType::Hook);
    assert!(hook.reason.as_deref().unwrap().contains("subscribe"), "{hook:?}");
}

#[tokio::test]
async fn clients_can_subscribe_and_register_by_hand() {
    let (app, client) = with_client(App::new(tester()));
    let _running = start_ready(app).await;
    let client = within(client).await.unwrap();
    // Nothing in the manifest covers these: the kernel refuses, without an error.
    let subscribed = client.hook_subscribe(["session_start"]).await.unwrap();
    assert_eq!(subscribed.denied, ["session_start"]);
    let config = burrow_protocol::methods::capability::ToolConfig {
        name: "extra".into(),
        description: "by hand".into(),
        input_schema: None,
        timeout_ms: None,
    };
    let result = client.register_capability(CapabilityType::Tool, &config).await.unwrap();
    assert!(!result.granted);
    assert!(result.reason.unwrap().contains("manifest"));
    let err = client.unregister_capability("cap-404").await.unwrap_err();
    assert_eq!(err.code(), Some(burrow_protocol::ErrorCode::NotFound));
    assert!(client.hook_unsubscribe(["x"]).await.unwrap().unsubscribed.is_empty());
}

#[tokio::test]
async fn the_fake_kernel_refuses_what_the_kernel_refuses() {
    let mut manifest = tester();
    manifest.capabilities.gateway_methods = vec!["*".into()];
    manifest.capabilities.hooks.intercept = vec!["*".into()];
    let (app, client) = with_client(App::new(manifest));
    let _running = start_ready(app).await;
    let client = within(client).await.unwrap();
    use burrow_protocol::methods::capability::{GatewayMethodConfig, HookConfig};
    // An event no interceptor may hold, a method in the kernel's own family, a method
    // of another app: refused with the kernel's reasons (burrow_protocol::rules).
    let hook =
        HookConfig { event: "app_ready".into(), priority: None, timeout_ms: None, fail_mode: None };
    let refused = client.register_capability(CapabilityType::Hook, &hook).await.unwrap();
    assert!(refused.reason.unwrap().contains("cannot be intercepted"));
    for (method, why) in
        [("kernel.x", "reserved for the kernel"), ("other.x", "must be named tester.")]
    {
        let gateway = GatewayMethodConfig { method: method.into(), description: None };
        let refused =
            client.register_capability(CapabilityType::GatewayMethod, &gateway).await.unwrap();
        assert!(
            !refused.granted && refused.reason.as_deref().unwrap().contains(why),
            "{refused:?}"
        );
    }
    // A malformed config is INVALID_PARAMS, naming its field.
    let bad = GatewayMethodConfig { method: "no-dot".into(), description: None };
    let err = client.register_capability(CapabilityType::GatewayMethod, &bad).await.unwrap_err();
    assert_eq!(err.code(), Some(burrow_protocol::ErrorCode::InvalidParams));
}
