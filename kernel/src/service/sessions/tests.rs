//! The sessions service without sockets ([`crate::service::testing`]).

use burrow_protocol::ErrorCode;
use burrow_protocol::methods::comms::{ExternalEventParams, SessionCreateParams};
use burrow_protocol::methods::session::{DispatchParams, RunStatus};

use super::*;
use crate::service::testing::fixture;

fn me() -> Caller {
    Caller::new("tester")
}

/// Dispatches through the service's own path, as an adapter does.
async fn dispatch_as_adapter(
    kernel: &Arc<Kernel>,
    key: &str,
    content: &str,
) -> Result<DispatchResult, ErrorObject> {
    let (tx, rx) = oneshot::channel();
    let reply = DispatchReply::Then(Box::new(move |outcome| drop(tx.send(outcome))));
    let p = DispatchParams { session_key: key.into(), content: content.into(), metadata: None };
    dispatch(kernel, &me(), p, reply);
    tokio::time::timeout(Duration::from_secs(10), rx).await.expect("answered").unwrap()
}

fn field(e: ServiceError) -> String {
    match e {
        ServiceError::InvalidParams { field, .. } => field,
        other => panic!("not invalid params: {other:?}"),
    }
}

#[tokio::test]
async fn a_dispatched_message_is_stored_and_shown_in_both_views() {
    let f = fixture().await;
    let acked = dispatch_as_adapter(&f.kernel, "k1", "hello").await.expect("stored");
    assert!(acked.run_id.is_some(), "the main agent is woken");

    let view = get(&f.kernel, "k1").await.unwrap().expect("stored");
    assert_eq!((view.ipc().key, view.ipc().message_count), ("k1".to_owned(), 1));
    assert_eq!(read(&f.kernel, "k1").await.unwrap().summary().session_id, "k1");
    let (page, total) = list(&f.kernel, ListQuery::default()).await.unwrap();
    assert_eq!((page.len(), total), (1, 1));
    let active = SessionFilter { active: Some(false), ..Default::default() };
    let (page, total) =
        list(&f.kernel, ListQuery { filter: active, ..Default::default() }).await.unwrap();
    assert_eq!((page.len(), total), (0, 0), "its actor is in memory");

    let history = history(&f.kernel, "k1", HistoryQuery::default()).await.unwrap();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].content, "hello");
}

#[tokio::test]
async fn unknown_sessions_and_runs_and_bad_params_are_told_apart() {
    let f = fixture().await;
    let k = &f.kernel;
    assert!(get(k, "nobody").await.unwrap().is_none());
    assert!(
        matches!(read(k, "nobody").await, Err(ServiceError::UnknownSession(id)) if id == "nobody")
    );
    let quiet = HistoryQuery::default();
    assert!(history(k, "nobody", quiet).await.unwrap().messages.is_empty());
    let strict = HistoryQuery { must_exist: true, ..Default::default() };
    assert!(matches!(history(k, "nobody", strict).await, Err(ServiceError::UnknownSession(_))));
    let zero = ListQuery { limit: Some(0), ..Default::default() };
    assert_eq!(field(list(k, zero).await.unwrap_err()), "limit");
    assert!(matches!(wait(k, "no-run", Duration::ZERO).await, Err(ServiceError::UnknownRun(_))));
    assert!(matches!(cancel(k, "no-run").await, Err(ServiceError::UnknownRun(_))));

    let long_key = "k".repeat(257);
    let e = dispatch_as_adapter(k, &long_key, "x").await.unwrap_err();
    assert_eq!(
        (e.code, e.data.unwrap()["field"].clone()),
        (ErrorCode::InvalidParams, json!("sessionKey"))
    );
    assert_eq!(field(check_comms_name("has space").unwrap_err()), "comms_name");
    assert!(check_comms_name("ops.bot-1").is_ok());
    assert_eq!(caller_channel(k, "tester"), None, "no channel held");
}

#[tokio::test]
async fn a_run_is_waited_for_and_cancelled_once() {
    let f = fixture().await;
    let k = &f.kernel;
    let run = dispatch_as_adapter(k, "k1", "hello").await.unwrap().run_id.unwrap();
    // No provider: the run waits for one and does not end by itself.
    let now = wait(k, &run, Duration::from_millis(50)).await.unwrap();
    assert!(!now.status.is_terminal(), "{:?}", now.status);
    cancel(k, &run).await.expect("cancelled");
    let ended = wait(k, &run, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert!(matches!(cancel(k, &run).await, Err(ServiceError::Conflict(_))));
}

#[tokio::test]
async fn a_created_session_starts_its_first_turn_and_takes_external_events() {
    let f = fixture().await;
    let k = &f.kernel;
    let p = |prompt: &str, agent: Option<&str>| SessionCreateParams {
        prompt: prompt.into(),
        agent_id: agent.map(str::to_owned),
        keep_alive: true,
        comms_name: Some("watcher".into()),
        wait: Some(false),
        timeout_ms: None,
    };
    assert_eq!(field(create(k, &me(), p("  ", None)).await.unwrap_err()), "prompt");
    assert_eq!(field(create(k, &me(), p("hi", Some("nope"))).await.unwrap_err()), "agent_id");
    let created = create(k, &me(), p("watch", None)).await.unwrap();
    assert_eq!(created.status, RunStatus::Queued);
    let view = read(k, &created.session_id).await.unwrap().row;
    assert!(view.keep_alive && view.comms_name.as_deref() == Some("watcher"));

    let event = |session_id: &str, kind: &str| ExternalEventParams {
        session_id: session_id.into(),
        kind: kind.into(),
        event_type: "deploy".into(),
        payload: json!({"v": 1}),
        idempotency_key: None,
    };
    let e = external_event(k, &me(), event(&created.session_id, "xml")).await.unwrap_err();
    assert_eq!(field(e), "kind");
    let e = external_event(k, &me(), event("nobody", "generic_json")).await.unwrap_err();
    assert!(matches!(e, ServiceError::UnknownSession(_)));
    let receipt =
        external_event(k, &me(), event(&created.session_id, "generic_json")).await.unwrap();
    assert_eq!(receipt.status, "accepted");
    let page = history(k, &created.session_id, HistoryQuery::default()).await.unwrap();
    let stored = page.messages.iter().find(|m| m.id == receipt.event_id).expect("stored");
    assert_eq!(stored.metadata.as_ref().unwrap()["external_event"]["event_type"], "deploy");

    // With an idempotency key, a repeat stores nothing and names the first; the same key
    // for another event is a conflict; another session's keys are its own.
    let keyed = |session_id: &str, key: &str, payload: Value| ExternalEventParams {
        payload,
        idempotency_key: Some(key.into()),
        ..event(session_id, "generic_json")
    };
    let sid = created.session_id.as_str();
    let first = external_event(k, &me(), keyed(sid, "k1", json!({"a": 1, "b": 2}))).await.unwrap();
    assert_eq!(first.status, "accepted");
    let again = external_event(k, &me(), keyed(sid, "k1", json!({"b": 2, "a": 1}))).await.unwrap();
    assert_eq!(
        (again.status.as_str(), &again.event_id, again.run_id.as_ref()),
        ("deduplicated", &first.event_id, None)
    );
    let e = external_event(k, &me(), keyed(sid, "k1", json!({"a": 2}))).await.unwrap_err();
    let e = ErrorObject::from(e);
    assert_eq!(
        (e.code, e.data.unwrap()["code"].clone()),
        (ErrorCode::Conflict, json!("INPUT_IDEMPOTENCY_CONFLICT"))
    );
    let long = "x".repeat(257);
    assert_eq!(
        field(external_event(k, &me(), keyed(sid, &long, json!(1))).await.unwrap_err()),
        "idempotency_key"
    );
    let other = create(k, &me(), SessionCreateParams { comms_name: None, ..p("other", None) })
        .await
        .unwrap();
    let theirs = external_event(k, &me(), keyed(&other.session_id, "k1", json!(1))).await.unwrap();
    assert_eq!(theirs.status, "accepted");
    let page = history(k, sid, HistoryQuery::default()).await.unwrap();
    let keyed_rows = page.messages.iter().filter(|m| {
        m.metadata.as_ref().is_some_and(|m| m["external_event"]["idempotency_key"] == "k1")
    });
    assert_eq!(keyed_rows.count(), 1, "stored once");
}

#[tokio::test]
async fn session_read_gives_the_last_assistant_text_among_the_last_messages() {
    use crate::store::NewMessage;
    let f = fixture().await;
    let row = SessionRow::new("chat", "main", 1);
    let message = |n: u64, role: Role, content: &str| Write::Append {
        session_key: "chat".into(),
        message: NewMessage {
            id: format!("m{n}"),
            role,
            content: content.into(),
            metadata: None,
            tool_calls: None,
            tool_call_id: None,
            created_at: n,
            run_id: None,
        },
    };
    let store = f.kernel.store();
    store.write(vec![Write::CreateSession(row)]).await.unwrap();
    store.write(vec![message(1, Role::User, "question")]).await.unwrap();
    assert_eq!(details(&f.kernel, "chat").await.unwrap().last_assistant_text, None, "none yet");
    // The last one with text, past an assistant message of tool calls only.
    let writes = vec![
        message(2, Role::Assistant, "the answer"),
        message(3, Role::User, "use a tool"),
        message(4, Role::Assistant, ""),
        message(5, Role::Tool, "its result"),
    ];
    store.write(writes).await.unwrap();
    let read = details(&f.kernel, "chat").await.unwrap();
    assert_eq!((read.message_count, read.last_assistant_text.as_deref()), (5, Some("the answer")));
    // Only the last LAST_TEXT_WITHIN are looked through.
    let users = (6..6 + u64::from(LAST_TEXT_WITHIN)).map(|n| message(n, Role::User, "more"));
    store.write(users.collect()).await.unwrap();
    assert_eq!(details(&f.kernel, "chat").await.unwrap().last_assistant_text, None);
    assert!(matches!(details(&f.kernel, "nobody").await, Err(ServiceError::UnknownSession(_))));
}
