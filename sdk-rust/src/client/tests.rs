use burrow_protocol::Manifest;
use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::App;
use crate::test_support::{WAIT, start_ready, with_client, within};

fn document() -> Value {
    json!({
        "apps": {"tester": {"greeting": "hi", "n": 1}, "other": {"secret": true}},
        "agents": {"main": {"model": "any"}},
    })
}

fn change(path: &str, old: Value, new: Value) -> ConfigChange {
    ConfigChange { path: path.to_owned(), old_value: old, new_value: new }
}

#[tokio::test]
async fn config_get_reads_the_own_subtree_or_a_path() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    running.kernel.set_config(document());
    let client = within(client).await.unwrap();
    let own = client.config_get(None).await.unwrap();
    assert_eq!(own, json!({"greeting": "hi", "n": 1}));
    let model = client.config_get(Some("agents.main.model")).await.unwrap();
    assert_eq!(model, json!("any"));
    let missing = client.config_get(Some("apps.tester.nope")).await.unwrap();
    assert_eq!(missing, Value::Null);
}

#[tokio::test]
async fn config_watch_streams_changes_and_cancels_when_dropped() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    kernel.set_config(document());
    let client = within(client).await.unwrap();

    let mut watch = client.config_watch(None).await.unwrap();
    within(kernel.wait_config_watches(1, WAIT)).await.unwrap();
    let elsewhere = change("agents.main.model", json!("any"), json!("big"));
    assert_eq!(kernel.push_config_change(elsewhere).await.unwrap(), 0);
    let mine = change("apps.tester.n", json!(1), json!(2));
    assert_eq!(kernel.push_config_change(mine.clone()).await.unwrap(), 1);
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), mine);
    // A change above the watched path is narrowed to it.
    let above = change("apps", Value::Null, json!({}));
    assert_eq!(kernel.push_config_change(above).await.unwrap(), 1);
    let narrowed = change("apps.tester", json!({"greeting": "hi", "n": 2}), Value::Null);
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), narrowed);
    assert_eq!(watch.ended(), None);
    // The changes were applied to the document.
    assert_eq!(client.config_get(None).await.unwrap(), Value::Null);

    drop(watch);
    within(kernel.wait_config_watches(0, WAIT)).await.unwrap();
    running.stop.send(()).unwrap();
    within(running.run).await.unwrap().unwrap();
}

#[tokio::test]
async fn config_watch_ends_when_the_kernel_ends_it() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    let client = within(client).await.unwrap();
    let paths = vec!["agents.main".to_owned(), "apps.tester.greeting".to_owned()];
    let mut watch = client.config_watch(Some(paths)).await.unwrap();
    within(kernel.wait_config_watches(1, WAIT)).await.unwrap();
    let model = change("agents.main.model", Value::Null, json!("m"));
    kernel.push_config_change(model.clone()).await.unwrap();
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), model);

    kernel.shutdown_app().await.unwrap();
    assert!(within(watch.next()).await.is_none());
    assert_eq!(watch.ended(), Some("closed"));
    within(running.run).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_undecodable_chunk_is_an_error_item() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    let client = within(client).await.unwrap();
    let mut watch = client.config_watch(None).await.unwrap();
    within(kernel.wait_config_watches(1, WAIT)).await.unwrap();
    let id = burrow_protocol::Id::Num(watch.id());
    kernel.client().send_chunk(id, json!({"nonsense": 1})).await.unwrap();
    let bad = within(watch.next()).await.unwrap().unwrap_err();
    assert!(matches!(bad, Error::Protocol(_)), "{bad:?}");
    let fine = change("apps.tester.n", json!(1), json!(3));
    kernel.push_config_change(fine.clone()).await.unwrap();
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), fine);
}

/// Records the params of every call to `method` and answers with `result`.
fn answer_with(
    kernel: &crate::testing::FakeKernel,
    method: &str,
    result: Value,
) -> std::sync::Arc<std::sync::Mutex<Vec<Value>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    kernel.on_request(method, move |params| {
        record.lock().unwrap().push(params);
        Ok(result.clone())
    });
    seen
}

#[tokio::test]
async fn session_helpers_send_typed_params_and_decode_the_answers() {
    use burrow_protocol::methods::session::{RunStatus, SessionFilter, SessionListParams};
    use std::time::Duration;

    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    let client = within(client).await.unwrap();
    let session = json!({
        "key": "s-1", "agentId": "main", "createdAt": 1, "lastActiveAt": 2,
        "messageCount": 3, "active": true,
    });
    let dispatched = answer_with(
        kernel,
        "message.dispatch",
        json!({"dispatchId": "d-1", "queued": false, "runId": "r-1"}),
    );
    let queued = answer_with(kernel, "agent.queue", json!({"runId": "r-2", "queued": true}));
    let waited = answer_with(
        kernel,
        "agent.wait",
        json!({"runId": "r-2", "status": "completed", "output": "hi"}),
    );
    let got = answer_with(kernel, "session.get", json!({"session": session}));
    let listed = answer_with(kernel, "session.list", json!({"sessions": [session], "total": 7}));
    let history = answer_with(
        kernel,
        "session.history",
        json!({"messages": [{"id": "m-1", "role": "user", "content": "hi", "createdAt": 5}]}),
    );

    let mut metadata = burrow_protocol::Map::new();
    metadata.insert("channelId".into(), json!("console"));
    let d = client.dispatch("s-1", "hello", Some(metadata)).await.unwrap();
    assert_eq!(
        (d.dispatch_id.as_str(), d.queued, d.run_id.as_deref()),
        ("d-1", false, Some("r-1"))
    );
    assert_eq!(
        dispatched.lock().unwrap()[0],
        json!({"sessionKey": "s-1", "content": "hello", "metadata": {"channelId": "console"}})
    );

    let q = client.agent_queue("s-1", "do it", None).await.unwrap();
    assert_eq!((q.run_id.as_str(), q.queued), ("r-2", true));
    assert_eq!(queued.lock().unwrap()[0], json!({"sessionKey": "s-1", "text": "do it"}));

    let w = client.agent_wait("r-2", Some(Duration::from_micros(1500))).await.unwrap();
    assert_eq!((w.status, w.output.as_deref()), (RunStatus::Completed, Some("hi")));
    client.agent_wait("r-2", Some(Duration::ZERO)).await.unwrap();
    client.agent_wait("r-2", None).await.unwrap();
    let waits = waited.lock().unwrap().clone();
    assert_eq!(
        waits,
        [
            json!({"runId": "r-2", "timeoutMs": 2}),
            json!({"runId": "r-2", "timeoutMs": 0}),
            json!({"runId": "r-2"})
        ]
    );

    let info = client.session_get("s-1").await.unwrap().unwrap();
    assert_eq!((info.key.as_str(), info.message_count), ("s-1", 3));
    assert_eq!(got.lock().unwrap()[0], json!({"key": "s-1"}));

    let filter = SessionFilter { active: Some(true), ..SessionFilter::default() };
    let params = SessionListParams { filter: Some(filter), limit: Some(10), offset: None };
    let page = client.session_list(params).await.unwrap();
    assert_eq!((page.sessions.len(), page.total), (1, 7));
    assert_eq!(listed.lock().unwrap()[0], json!({"filter": {"active": true}, "limit": 10}));

    let h = client.session_history("s-1", Some(20), Some("m-9")).await.unwrap();
    assert_eq!(h.messages[0].content, "hi");
    client.session_history("s-1", None, None).await.unwrap();
    let asked = history.lock().unwrap().clone();
    assert_eq!(asked, [json!({"key": "s-1", "limit": 20, "before": "m-9"}), json!({"key": "s-1"})]);

    // A null session is `None`; an error answer is `Error::Remote`.
    kernel.on_request("session.get", |_| Ok(json!({"session": null})));
    assert_eq!(client.session_get("nope").await.unwrap(), None);
    kernel.on_request("agent.wait", |_| {
        Err(burrow_protocol::ErrorObject::new(burrow_protocol::ErrorCode::NotFound, "no run"))
    });
    let e = client.agent_wait("r-9", None).await.unwrap_err();
    assert_eq!(e.code(), Some(burrow_protocol::ErrorCode::NotFound));
}

#[tokio::test]
async fn session_events_stream_typed_events_and_cancel_when_dropped() {
    use burrow_protocol::methods::operator::SessionEvent;
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    let client = within(client).await.unwrap();

    let mut events = client.session_events("s1").await.unwrap();
    within(kernel.wait_session_followers("s1", 1, WAIT)).await.unwrap();
    let delta = SessionEvent::TextDelta {
        session_id: "s1".into(),
        run_id: "r1".into(),
        seq: 0,
        text: "Hel".into(),
    };
    // Another session's events do not reach this stream.
    let elsewhere = SessionEvent::Lagged { session_id: "s2".into() };
    assert_eq!(kernel.push_session_event("s2", &elsewhere).await.unwrap(), 0);
    assert_eq!(kernel.push_session_event("s1", &delta).await.unwrap(), 1);
    assert_eq!(within(events.next()).await.unwrap().unwrap(), delta);
    // An event of a type this version does not know still decodes.
    let id = burrow_protocol::Id::Num(events.id());
    kernel.client().send_chunk(id, json!({"type": "thinking", "text": "hm"})).await.unwrap();
    assert_eq!(within(events.next()).await.unwrap().unwrap(), SessionEvent::Other);

    drop(events);
    within(kernel.wait_session_followers("s1", 0, WAIT)).await.unwrap();
    running.stop.send(()).unwrap();
    within(running.run).await.unwrap().unwrap();
}
