//! PROTOCOL.md §7 against the real kernel: access rules, hot reload streamed to
//! watchers, broken files, live policy.

use std::time::Duration;

use burrow_tests::{FAST_CONFIG, Kernel, RawConn};
use serde_json::{Value, json};

const CONFIG: &str = "[agents.main]\nmodel = \"small\"\n[apps.watcher]\ngreeting = \"hi\"\nlimit = 3\n[shared.secrets]\ntoken = \"s3cret\"\n";

fn config_file(kernel: &Kernel) -> std::path::PathBuf {
    kernel.dir().join("burrow.toml")
}

/// Rewrites the config file the way editors do: a new file renamed over the old one.
fn rewrite(kernel: &Kernel, text: &str) {
    let tmp = kernel.dir().join("burrow.toml.tmp");
    std::fs::write(&tmp, burrow_tests::bundled_off(text)).unwrap();
    std::fs::rename(&tmp, config_file(kernel)).unwrap();
}

async fn watcher_app(kernel: &Kernel) -> RawConn {
    let manifest =
        json!({"id": "watcher", "version": "1.0.0", "config": {"read": ["agents.main.model"]}});
    RawConn::app(&kernel.socket, manifest).await
}

#[tokio::test]
async fn config_get_follows_the_access_rules() {
    let kernel = Kernel::start_with_config(&format!("{FAST_CONFIG}{CONFIG}")).await;
    let mut app = watcher_app(&kernel).await;
    assert_eq!(
        app.call("config.get", json!({})).await["result"]["value"],
        json!({"greeting": "hi", "limit": 3})
    );
    assert_eq!(
        app.call("config.get", json!({"path": "apps.watcher.limit"})).await["result"]["value"],
        3
    );
    assert_eq!(
        app.call("config.get", json!({"path": "apps.watcher.nothing"})).await["result"]["value"],
        Value::Null
    );
    assert_eq!(
        app.call("config.get", json!({"path": "agents.main.model"})).await["result"]["value"],
        "small"
    );
    for forbidden in ["shared.secrets.token", "agents", "apps", "apps.other", "ipc"] {
        let resp = app.call("config.get", json!({"path": forbidden})).await;
        assert_eq!(resp["error"]["code"], "FORBIDDEN", "{forbidden}: {resp}");
    }
    let resp = app.call("config.watch", json!({"paths": ["apps.watcher", "shared.secrets"]})).await;
    assert_eq!(resp["error"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn watchers_get_changes_and_broken_files_change_nothing() {
    let kernel = Kernel::start_with_config(&format!("{FAST_CONFIG}{CONFIG}")).await;
    let mut app = watcher_app(&kernel).await;
    let mut obs = RawConn::app(&kernel.socket, json!({"id": "obs", "version": "1.0.0", "capabilities": {"hooks": {"subscribe": ["config_changed"]}}})).await;
    obs.call("hook.subscribe", json!({"events": ["config_changed"]})).await;
    let watch = app.send_call("config.watch", json!({})).await;
    // Make sure the watch is in place before editing (a config.get after it is answered later).
    app.call("config.get", json!({})).await;

    rewrite(
        &kernel,
        &format!(
            "{FAST_CONFIG}{}",
            CONFIG.replace("greeting = \"hi\"", "greeting = \"hello\"").replace("s3cret", "other")
        ),
    );
    let chunk =
        app.expect("a config chunk", |v| v["id"] == watch && v.get("chunk").is_some()).await;
    assert_eq!(
        chunk["chunk"],
        json!({"path": "apps.watcher.greeting", "oldValue": "hi", "newValue": "hello"})
    );
    let ev = obs.expect_event("config_changed").await;
    let paths = ev["params"]["payload"]["paths"].as_array().unwrap().clone();
    assert!(
        paths.contains(&json!("apps.watcher.greeting"))
            && paths.contains(&json!("shared.secrets.token")),
        "{paths:?}"
    );
    // The secret changed too, but it is outside what the watcher watches.
    assert!(
        !app.sees_within(Duration::from_millis(300), |v| v["chunk"]["path"]
            == "shared.secrets.token")
            .await
    );

    // A file that does not parse keeps the old configuration in force.
    rewrite(&kernel, "this is [not toml");
    let wrote_broken = std::time::Instant::now();
    let logged = burrow_tests::poll_until(Duration::from_secs(5), || async {
        kernel.log().contains("invalid")
    })
    .await;
    assert!(logged, "{}", kernel.log());
    assert!(wrote_broken.elapsed() < Duration::from_secs(5));
    assert_eq!(
        app.call("config.get", json!({"path": "apps.watcher.greeting"})).await["result"]["value"],
        "hello"
    );
    // So does a file with a bad setting.
    rewrite(&kernel, &format!("{CONFIG}[ipc]\nheartbeat_timeout_ms = \"soon\"\n"));
    assert!(!app.sees_within(Duration::from_millis(500), |v| v.get("chunk").is_some()).await);

    // Fixed again: the next change streams as usual.
    rewrite(
        &kernel,
        &format!(
            "{FAST_CONFIG}{}",
            CONFIG
                .replace("limit = 3", "limit = 4")
                .replace("greeting = \"hi\"", "greeting = \"hello\"")
        ),
    );
    let chunk =
        app.expect("the next chunk", |v| v["id"] == watch && v.get("chunk").is_some()).await;
    assert_eq!(chunk["chunk"], json!({"path": "apps.watcher.limit", "oldValue": 3, "newValue": 4}));

    app.send_value(&json!({"method": "$/cancel", "params": {"id": watch}})).await;
    let end = app.answer_to(watch).await;
    assert_eq!(end["result"], json!({"ended": "cancelled"}));
}

#[tokio::test]
async fn policy_changes_apply_live() {
    let kernel = Kernel::start().await;
    let manifest = json!({"id": "toolsmith", "version": "1.0.0", "capabilities": {"tools": ["*"]}});
    let mut app = RawConn::app(&kernel.socket, manifest).await;
    assert_eq!(app.register_tool("first", None).await["result"]["granted"], true);
    rewrite(&kernel, &format!("{FAST_CONFIG}[apps.toolsmith.policy]\ndeny_types = [\"tool\"]\n"));
    let mut reason = String::new();
    for attempt in 0..250 {
        let resp = app.register_tool(&format!("probe_{attempt}"), None).await;
        if resp["result"]["granted"] == false {
            reason = resp["result"]["reason"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reason.contains("policy"), "the new policy never applied: {reason:?}");
}
