//! PROTOCOL.md §5 against the real kernel: grants, denials, uniqueness, policy,
//! namespaces, unregistering, and routing of tool and gateway calls.

use std::time::Duration;

use burrow_tests::{Kernel, RawConn};
use serde_json::{Value, json};

fn manifest(id: &str, caps: Value) -> Value {
    json!({"id": id, "version": "1.0.0", "capabilities": caps})
}

fn granted(resp: &Value) -> bool {
    resp["result"]["granted"] == true
}

fn reason(resp: &Value) -> String {
    assert_eq!(resp["result"]["granted"], false, "{resp}");
    resp["result"]["reason"].as_str().unwrap_or_default().to_owned()
}

const POLICY: &str = "[ipc]\nheartbeat_interval_ms = 200\nheartbeat_timeout_ms = 1000\n\
[policy]\ndeny_types = [\"http_route\"]\n[apps.beta.policy]\ndeny_names = [\"secret_*\"]\n";

#[tokio::test]
async fn grants_follow_manifest_policy_namespaces_and_uniqueness() {
    let kernel = Kernel::start_with_config(POLICY).await;
    let mut alpha = RawConn::app(
        &kernel.socket,
        manifest(
            "alpha",
            json!({
                "tools": ["alpha_*"], "gatewayMethods": ["*"], "httpRoutes": ["/apps/alpha/*"],
                "channels": ["tg"], "providers": ["p1"]
            }),
        ),
    )
    .await;
    let mut beta = RawConn::app(&kernel.socket, manifest("beta", json!({"tools": ["*"]}))).await;

    assert!(granted(&alpha.register_tool("alpha_one", None).await));
    assert!(reason(&alpha.register_tool("beta_one", None).await).contains("capabilities.tools"));
    assert!(
        reason(&beta.register_tool("alpha_one", None).await)
            .contains("already taken by app \"alpha\"")
    );
    assert!(reason(&beta.register_tool("secret_x", None).await).contains("policy"));
    assert!(granted(&beta.register_tool("public_x", None).await));

    let bad = alpha
        .call(
            "capability.register",
            json!({"type": "tool", "config": {"name": "bad name", "description": "d"}}),
        )
        .await;
    assert_eq!(
        (bad["error"]["code"].as_str(), bad["error"]["data"]["field"].as_str()),
        (Some("INVALID_PARAMS"), Some("config.name"))
    );
    let missing = alpha
        .call("capability.register", json!({"type": "tool", "config": {"name": "alpha_two"}}))
        .await;
    assert_eq!(missing["error"]["data"]["field"], "config.description", "{missing}");
    let bad_type = alpha.call("capability.register", json!({"type": "rocket", "config": {}})).await;
    assert_eq!(bad_type["error"]["data"]["field"], "type", "{bad_type}");

    let gw = |m: &str| json!({"type": "gateway_method", "config": {"method": m}});
    assert!(granted(&alpha.call("capability.register", gw("alpha.greet")).await));
    assert!(
        reason(&alpha.call("capability.register", gw("beta.greet")).await).contains("alpha.<name>")
    );
    let route = json!({"type": "http_route", "config": {"method": "GET", "path": "/apps/alpha/x"}});
    assert!(reason(&alpha.call("capability.register", route).await).contains("policy"));
    let ch = json!({"type": "channel", "config": {"channelId": "tg"}});
    assert!(granted(&alpha.call("capability.register", ch.clone()).await));
    assert!(reason(&alpha.call("capability.register", ch).await).contains("already taken"));
    let provider = json!({"type": "provider", "config": {"providerId": "p1", "models": ["m"]}});
    assert!(granted(&alpha.call("capability.register", provider).await));

    // The kernel's own namespaces are reserved whatever the app is called.
    let mut k =
        RawConn::app(&kernel.socket, manifest("kernel", json!({"gatewayMethods": ["*"]}))).await;
    assert!(reason(&k.call("capability.register", gw("kernel.info")).await).contains("reserved"));

    let listed = kernel
        .client()
        .await
        .request("kernel.capabilities", json!({"type": "tool"}))
        .await
        .unwrap();
    let names: Vec<&str> = listed["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["config"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["alpha_one", "public_x"]);
}

#[tokio::test]
async fn unregister_own_only_and_names_come_free() {
    let kernel = Kernel::start().await;
    let mut a = RawConn::app(&kernel.socket, manifest("a", json!({"tools": ["*"]}))).await;
    let mut b = RawConn::app(&kernel.socket, manifest("b", json!({"tools": ["*"]}))).await;
    let cap = a.register_tool("shared", None).await["result"]["capabilityId"].clone();
    let resp = b.call("capability.unregister", json!({"capabilityId": cap})).await;
    assert_eq!(resp["error"]["code"], "FORBIDDEN");
    let resp = b.call("capability.unregister", json!({"capabilityId": "cap-nope"})).await;
    assert_eq!(resp["error"]["code"], "NOT_FOUND");
    assert_eq!(
        a.call("capability.unregister", json!({"capabilityId": cap})).await["result"]["ok"],
        true
    );
    assert!(granted(&b.register_tool("shared", None).await));
}

#[tokio::test]
async fn tool_calls_reach_the_provider_and_its_answer_comes_back() {
    let kernel = Kernel::start().await;
    let mut provider =
        RawConn::app(&kernel.socket, manifest("prov", json!({"tools": ["*"]}))).await;
    provider.register_tool("adder", None).await;
    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;

    let id = caller
        .send_call(
            "tool.call",
            json!({"name": "adder", "arguments": {"a": 2, "b": 3}, "sessionKey": "s1"}),
        )
        .await;
    let invoke = provider.expect_method("tool.invoke").await;
    let p = &invoke["params"];
    assert_eq!(
        (p["name"].clone(), p["arguments"].clone(), p["sessionKey"].clone()),
        (json!("adder"), json!({"a": 2, "b": 3}), json!("s1"))
    );
    assert!(p["callId"].is_string());
    provider.answer(&invoke["id"], json!({"content": 5})).await;
    assert_eq!(caller.answer_to(id).await["result"], json!({"content": 5}));

    let unknown = caller.call("tool.call", json!({"name": "nope"})).await;
    assert_eq!(unknown["error"]["code"], "NOT_FOUND");

    // A provider's error answer reaches the caller as it is.
    let id = caller.send_call("tool.call", json!({"name": "adder", "arguments": {}})).await;
    let invoke = provider.expect_method("tool.invoke").await;
    provider.send_value(&json!({"id": invoke["id"], "error": {"code": "INVALID_PARAMS", "message": "need a and b", "data": {"field": "a"}}})).await;
    let resp = caller.answer_to(id).await;
    assert_eq!(
        (resp["error"]["code"].clone(), resp["error"]["data"]["field"].clone()),
        (json!("INVALID_PARAMS"), json!("a"))
    );
}

#[tokio::test]
async fn deadlines_death_mid_call_and_readiness() {
    let kernel = Kernel::start().await;
    let mut provider =
        RawConn::app(&kernel.socket, manifest("prov", json!({"tools": ["*"]}))).await;
    provider.register_tool("sleepy", Some(300)).await;
    provider.register_tool("doomed", None).await;
    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;

    let resp = caller.call("tool.call", json!({"name": "sleepy"})).await;
    assert_eq!(resp["error"]["code"], "TIMEOUT", "{resp}");

    let id = caller.send_call("tool.call", json!({"name": "doomed"})).await;
    provider
        .expect("doomed invoke", |v: &Value| {
            v["method"] == "tool.invoke" && v["params"]["name"] == "doomed"
        })
        .await;
    drop(provider); // the provider dies mid-call
    let resp = caller.answer_to(id).await;
    assert_eq!(resp["error"]["code"], "CONNECTION_CLOSED", "{resp}");
    // Its capabilities are gone with it.
    assert!(caller.wait_tool_gone("doomed").await);

    // Registered but not ready: not routable.
    let mut early = RawConn::connect(&kernel.socket).await;
    early.call("app.register", json!({"manifest": manifest("early", json!({"tools": ["*"]})), "protocolVersion": "1.0"})).await;
    assert!(granted(&early.register_tool("early_tool", None).await));
    let resp = caller.call("tool.call", json!({"name": "early_tool"})).await;
    assert_eq!(resp["error"]["code"], "NOT_FOUND");
    assert!(resp["error"]["message"].as_str().unwrap().contains("not ready"));
}

#[tokio::test]
async fn one_slow_tool_does_not_delay_other_calls() {
    let kernel = Kernel::start().await;
    let mut slow = RawConn::app(&kernel.socket, manifest("slow", json!({"tools": ["*"]}))).await;
    slow.register_tool("slow_tool", None).await;
    let mut fast = RawConn::app(&kernel.socket, manifest("fast", json!({"tools": ["*"]}))).await;
    fast.register_tool("fast_tool", None).await;
    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;

    let slow_id = caller.send_call("tool.call", json!({"name": "slow_tool"})).await;
    let slow_invoke = slow.expect_method("tool.invoke").await; // held, not answered yet
    let fast_id = caller.send_call("tool.call", json!({"name": "fast_tool"})).await;
    let invoke = fast.expect_method("tool.invoke").await;
    fast.answer(&invoke["id"], json!({"content": "quick"})).await;
    // The fast answer arrives while the slow call is still outstanding.
    assert_eq!(caller.answer_to(fast_id).await["result"]["content"], "quick");
    slow.answer(&slow_invoke["id"], json!({"content": "late"})).await;
    assert_eq!(caller.answer_to(slow_id).await["result"]["content"], "late");
}

#[tokio::test]
async fn gateway_methods_reach_their_owner() {
    let kernel = Kernel::start().await;
    let mut owner =
        RawConn::app(&kernel.socket, manifest("weather", json!({"gatewayMethods": ["weather.*"]})))
            .await;
    let resp = owner
        .call(
            "capability.register",
            json!({"type": "gateway_method", "config": {"method": "weather.now"}}),
        )
        .await;
    assert!(granted(&resp));
    let mut caller = RawConn::app(&kernel.socket, manifest("caller", json!({}))).await;
    let id = caller.send_call("weather.now", json!({"city": "Oslo"})).await;
    let invoke = owner.expect_method("gateway.invoke").await;
    assert_eq!(
        invoke["params"],
        json!({"method": "weather.now", "params": {"city": "Oslo"}, "caller": "caller"})
    );
    owner.answer(&invoke["id"], json!({"tempC": -3})).await;
    assert_eq!(caller.answer_to(id).await["result"], json!({"tempC": -3}));
    assert_eq!(caller.call("weather.later", json!({})).await["error"]["code"], "METHOD_NOT_FOUND");
    drop(owner);
    let gone = burrow_tests::poll_until(Duration::from_secs(5), || async {
        let c = kernel.client().await;
        let caps = c.request("kernel.capabilities", json!({})).await.unwrap();
        caps["capabilities"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(gone);
    assert_eq!(caller.call("weather.now", json!({})).await["error"]["code"], "METHOD_NOT_FOUND");
}

/// Issue 16.4: gateway methods named like any of the kernel's own methods, on any
/// surface, are refused whatever the app is called; a host asking for such a name over
/// JSON-RPC gets `METHOD_NOT_FOUND`, never an app's answer.
#[tokio::test]
async fn every_method_family_of_the_kernel_is_reserved() {
    let kernel = Kernel::start_with(burrow_tests::FAST_CONFIG, &["--rpc-tcp", "127.0.0.1:0"]).await;
    let gw = |m: &str| json!({"type": "gateway_method", "config": {"method": m}});
    let mut apps = Vec::new();
    for (id, method) in [
        ("peers", "peers.trust"),
        ("supervisor", "supervisor.logs"),
        ("host", "host.call"),
        ("rpc", "rpc.authenticate"),
        ("run", "run.wait"),
        ("agent", "agent.cancel"),
    ] {
        let mut app =
            RawConn::app(&kernel.socket, manifest(id, json!({"gatewayMethods": ["*"]}))).await;
        let why = reason(&app.call("capability.register", gw(method)).await);
        assert!(why.contains(&format!("the {id} method family is reserved")), "{method}: {why}");
        apps.push(app);
    }
    let mut rpc = burrow_tests::Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    for method in ["peers.trust", "supervisor.logs", "host.call"] {
        let answer = rpc.call(method, json!({})).await;
        assert_eq!(answer["error"]["data"]["code"], "METHOD_NOT_FOUND", "{method}: {answer}");
    }
}

/// The method table and the kernel agree: every method the table says the kernel
/// answers is answered on its surface (params that are not a map: an error, but never
/// `METHOD_NOT_FOUND`), and a name the table does not hold is not.
#[tokio::test]
async fn the_kernel_answers_every_method_of_the_table() {
    use burrow_protocol::methods::table::{self, Shape};
    let kernel = Kernel::start_with(burrow_tests::FAST_CONFIG, &["--rpc-tcp", "127.0.0.1:0"]).await;
    let mut app = RawConn::app(&kernel.socket, manifest("probe", json!({}))).await;
    let asked = table::METHODS.iter().filter(|m| m.to_kernel() && m.shape != Shape::Notification);
    let mut checked = 0;
    for method in asked.clone().filter_map(|m| m.ipc) {
        let id = app.send_call(method, json!("not a map")).await;
        let answer = app.answer_to(id).await;
        assert_ne!(answer["error"]["code"], "METHOD_NOT_FOUND", "{method}: {answer}");
        checked += 1;
    }
    let unknown = app.call("probe.nothing", json!({})).await;
    assert_eq!(unknown["error"]["code"], "METHOD_NOT_FOUND", "{unknown}");
    let mut rpc = burrow_tests::Rpc::connect(kernel.endpoint("rpc_tcp").await).await;
    for method in asked.filter_map(|m| m.host) {
        let answer = rpc.call(method, json!("not a map")).await;
        assert_ne!(answer["error"]["data"]["code"], "METHOD_NOT_FOUND", "{method}: {answer}");
        checked += 1;
    }
    let unknown = rpc.call("session/nothing", json!({})).await;
    assert_eq!(unknown["error"]["data"]["code"], "METHOD_NOT_FOUND", "{unknown}");
    assert!(checked > 40, "{checked} methods checked");
}
