//! PROTOCOL.md §8 with hand-played provider, tool and channel apps: dispatch → provider →
//! tool → reply on the channel; durability across a kernel SIGKILL; waiting and listing.

use burrow_tests::{DEADLINE, Kernel, RawConn};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 30000\n";

/// A kernel with a hand-played provider, the `term` channel and a tools app.
async fn agent_apps() -> (Kernel, RawConn, RawConn, RawConn) {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let prov = kernel.hand_provider().await;
    let chan = kernel.hand_channel().await;
    let tools = RawConn::app(
        &kernel.socket,
        json!({"id": "tools", "version": "1.0.0", "capabilities": {"tools": ["*"]}}),
    )
    .await;
    (kernel, prov, chan, tools)
}

#[tokio::test]
async fn a_message_runs_the_agent_through_provider_and_tool_and_the_reply_comes_back_on_the_channel()
 {
    let (_kernel, mut prov, mut chan, mut tools) = agent_apps().await;
    tools.register_tool("lookup", None).await;

    let d =
        chan.call("message.dispatch", json!({"sessionKey": "s1", "content": "what is x?"})).await;
    assert_eq!(d["result"]["queued"], false, "{d}");
    let run_id = d["result"]["runId"].as_str().unwrap().to_owned();

    // Turn 1: the provider asks for a tool.
    let c1 = prov.expect_method("provider.complete").await;
    let msgs = c1["params"]["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs.last().unwrap()["content"], "what is x?");
    assert_eq!(c1["params"]["tools"][0]["name"], "lookup");
    prov.answer(&c1["id"], json!({"message": {"content": "", "toolCalls": [{"id": "c1", "name": "lookup", "arguments": {"q": "x"}}]}})).await;
    let inv = tools.expect_method("tool.invoke").await;
    assert_eq!(
        (inv["params"]["sessionKey"].clone(), inv["params"]["runId"].clone()),
        (json!("s1"), json!(run_id))
    );
    tools.answer(&inv["id"], json!({"content": "x = 42"})).await;
    // Turn 2: the provider sees the tool result and answers.
    let c2 = prov.expect_method("provider.complete").await;
    let last = c2["params"]["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["role"].clone(), last["content"].clone(), last["toolCallId"].clone()),
        (json!("tool"), json!("x = 42"), json!("c1"))
    );
    prov.answer(&c2["id"], json!({"message": {"content": "x is 42"}})).await;

    let sent = chan.expect_method("channel.send").await;
    assert_eq!(sent["params"]["content"], "x is 42");
    assert_eq!(sent["params"]["sessionKey"], "s1");
    assert_eq!(sent["params"]["channelId"], "term");
    chan.answer(&sent["id"], json!({"messageId": "m-1"})).await;

    let w = chan.call("agent.wait", json!({"runId": run_id, "timeoutMs": 5000})).await;
    assert_eq!(
        (w["result"]["status"].clone(), w["result"]["output"].clone()),
        (json!("completed"), json!("x is 42"))
    );
    let h = chan.call("session.history", json!({"key": "s1"})).await;
    let roles: Vec<&str> = h["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    let s = chan.call("session.get", json!({"key": "s1"})).await;
    assert_eq!(
        (
            s["result"]["session"]["channelId"].clone(),
            s["result"]["session"]["messageCount"].clone()
        ),
        (json!("term"), json!(4))
    );
    let l = chan.call("session.list", json!({"limit": 10})).await;
    assert_eq!(l["result"]["total"], 1);
    assert_eq!(
        chan.call("session.get", json!({"key": "nope"})).await["result"]["session"],
        Value::Null
    );
    assert_eq!(
        chan.call("session.list", json!({"limit": 5000})).await["error"]["data"]["field"],
        "limit"
    );
}

#[tokio::test]
async fn a_missing_provider_fails_the_run_and_the_session_keeps_working() {
    let kernel =
        Kernel::start_with_config(&format!("{CONFIG}[sessions]\nprovider_wait_ms = 0\n")).await;
    let mut chan = kernel.hand_channel().await;
    let d =
        chan.call("message.dispatch", json!({"sessionKey": "lonely", "content": "hello?"})).await;
    let run = d["result"]["runId"].clone();
    let w = chan.call("agent.wait", json!({"runId": run, "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "failed", "{w}");
    assert!(w["result"]["error"].as_str().unwrap().contains("no provider"), "{w}");
    // The message itself was kept, and the session takes more.
    let mut prov = kernel.hand_provider().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "lonely", "content": "now?"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], json!({"message": {"content": "yes"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "completed");
}

#[tokio::test]
async fn acknowledged_messages_survive_a_kernel_sigkill_under_concurrent_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut kernel = Kernel::start_with_config(CONFIG).await;
    let count = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for t in 0..8 {
        let mut conn =
            RawConn::app(&kernel.socket, json!({"id": format!("sender-{t}"), "version": "1.0.0"}))
                .await;
        let count = count.clone();
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                let key = format!("load-{}", (t + i) % 6);
                let text = format!("t{t} m{i}");
                // The kernel dies at some point: stop at the first request it cannot
                // take or does not answer.
                let params = json!({"sessionKey": key, "content": text});
                let Some(id) = conn.try_send_call("message.dispatch", params).await else {
                    break;
                };
                match conn.try_answer_to(id).await {
                    Some(d) if d["result"]["dispatchId"].is_string() => {
                        acked.push((key, text));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    let enough =
        burrow_tests::poll_until(DEADLINE, || async { count.load(Ordering::Relaxed) >= 300 }).await;
    assert!(enough, "dispatches did not get going");
    kernel.signal(Signal::SIGKILL);
    kernel.wait_exit(DEADLINE).await;
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    kernel.restart().await;
    let mut reader =
        RawConn::app(&kernel.socket, json!({"id": "reader", "version": "1.0.0"})).await;
    let mut stored = std::collections::HashSet::new();
    for s in 0..6 {
        let h = reader
            .call("session.history", json!({"key": format!("load-{s}"), "limit": 1000}))
            .await;
        let mut before: Option<String> = None;
        let mut page = h["result"]["messages"].as_array().unwrap().clone();
        loop {
            for m in &page {
                if m["role"] == "user" {
                    stored.insert((format!("load-{s}"), m["content"].as_str().unwrap().to_owned()));
                }
            }
            if page.len() < 1000 {
                break;
            }
            before = page.first().and_then(|m| m["id"].as_str()).map(str::to_owned);
            let h = reader
                .call(
                    "session.history",
                    json!({"key": format!("load-{s}"), "limit": 1000, "before": before}),
                )
                .await;
            page = h["result"]["messages"].as_array().unwrap().clone();
        }
        let _ = &before;
    }
    let lost: Vec<_> = acked.iter().filter(|a| !stored.contains(*a)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
    // The runs that were queued or going when the kernel died start again, and finish
    // once a provider is there.
    let mut prov = kernel.hand_provider().await;
    let call = prov.expect_method("provider.complete").await;
    let users = call["params"]["messages"].to_string();
    assert!(users.contains("benchmark") || users.contains(" m"), "{users}");
    prov.answer(&call["id"], json!({"message": {"content": "resumed"}})).await;
}

#[tokio::test]
async fn sessions_run_in_parallel_and_messages_during_a_run_are_answered_together() {
    let kernel = Kernel::start_with_config(CONFIG).await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    // Two sessions: both provider calls are outstanding at once — neither waits for the other.
    let a = chan.call("message.dispatch", json!({"sessionKey": "par-a", "content": "a1"})).await;
    let b = chan.call("message.dispatch", json!({"sessionKey": "par-b", "content": "b1"})).await;
    let first = prov.expect_method("provider.complete").await;
    let second = prov
        .expect("the other session's call", |v| {
            v["method"] == "provider.complete" && v["id"] != first["id"]
        })
        .await;
    // Within session a, two more messages arrive while its run is going: they queue, and
    // are answered together by one next run.
    let (run_a, call_a, call_b) = if first["params"]["messages"].to_string().contains("a1") {
        (a["result"]["runId"].clone(), first, second)
    } else {
        (a["result"]["runId"].clone(), second, first)
    };
    let a2 = chan.call("message.dispatch", json!({"sessionKey": "par-a", "content": "a2"})).await;
    let a3 = chan.call("message.dispatch", json!({"sessionKey": "par-a", "content": "a3"})).await;
    assert_eq!(a2["result"]["queued"], true);
    assert_eq!(a2["result"]["runId"], a3["result"]["runId"], "later messages share the next run");
    assert_ne!(a2["result"]["runId"], run_a);
    prov.answer(&call_b["id"], json!({"message": {"content": "B"}})).await;
    prov.answer(&call_a["id"], json!({"message": {"content": "A"}})).await;
    let next = prov.expect_method("provider.complete").await;
    let msgs = next["params"]["messages"].as_array().unwrap();
    let users: Vec<&str> = msgs
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["a1", "a2", "a3"]);
    assert_eq!(msgs.iter().filter(|m| m["role"] == "assistant").count(), 1);
    prov.answer(&next["id"], json!({"message": {"content": "A again"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": a3["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["output"], "A again");
    let w =
        chan.call("agent.wait", json!({"runId": b["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["output"], "B");
}

#[tokio::test]
async fn idle_sessions_leave_memory_and_come_back_from_the_store() {
    let kernel = Kernel::start_with_config(
        "[ipc]\nheartbeat_timeout_ms = 30000\n[sessions]\nidle_timeout_ms = 300\n",
    )
    .await;
    let mut prov = kernel.hand_provider().await;
    let mut chan = kernel.hand_channel().await;
    let d = chan.call("message.dispatch", json!({"sessionKey": "napper", "content": "one"})).await;
    let c = prov.expect_method("provider.complete").await;
    prov.answer(&c["id"], json!({"message": {"content": "first"}})).await;
    chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    let evicted = burrow_tests::poll_until(DEADLINE, || async {
        let mut c = RawConn::app(&kernel.socket, json!({"id": format!("probe-{}", burrow_protocol::now_ms() % 1_000_000), "version": "1.0.0"})).await;
        c.call("session.get", json!({"key": "napper"})).await["result"]["session"]["active"] == false
    })
    .await;
    assert!(evicted, "the idle session never left memory");
    let d = chan.call("message.dispatch", json!({"sessionKey": "napper", "content": "two"})).await;
    let c = prov.expect_method("provider.complete").await;
    let users: Vec<&str> = c["params"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["one", "two"], "the transcript came back from the store");
    prov.answer(&c["id"], json!({"message": {"content": "second"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "completed");
}

#[tokio::test]
async fn pipelined_requests_of_one_app_are_handled_in_order() {
    // A session request the connection reader could hand straight to the session runtime
    // must not overtake the app's earlier request still queued at its actor: a dispatch
    // sent right behind the registration of a `message_received` interceptor meets it.
    let kernel = Kernel::start_with_config(CONFIG).await;
    let event = "message_received";
    let m = json!({"id": "guard", "version": "1.0.0", "capabilities": {"hooks": {"subscribe": [event], "intercept": [event]}}});
    let mut app = RawConn::app(&kernel.socket, m).await;
    app.call("hook.subscribe", json!({"events": [event]})).await;
    for round in 0..10 {
        let hook = json!({"type": "hook", "config": {"event": event}});
        let registered = app.send_call("capability.register", hook).await;
        let dispatch = json!({"sessionKey": format!("guarded-{round}"), "content": "hi"});
        let dispatched = app.send_call("message.dispatch", dispatch).await;
        let ev = next_interception(&mut app, event).await;
        let verdict = json!({"action": "block", "reason": format!("held {round}")});
        app.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": verdict}))
            .await;
        let d = app.answer_to(dispatched).await;
        assert_eq!(d["result"]["reason"], format!("blocked by guard: held {round}"), "{d}");
        let cap = app.answer_to(registered).await["result"]["capabilityId"].clone();
        let gone = app.call("capability.unregister", json!({"capabilityId": cap})).await;
        assert_eq!(gone["result"]["ok"], true, "{gone}");
    }
}

/// An interceptor app for one event; answers with `verdict` built from the payload.
async fn interceptor(kernel: &Kernel, id: &str, event: &str) -> RawConn {
    let m = json!({"id": id, "version": "1.0.0", "capabilities": {"hooks": {"subscribe": [event], "intercept": [event]}}});
    let mut app = RawConn::app(&kernel.socket, m).await;
    app.call("hook.subscribe", json!({"events": [event]})).await;
    let r =
        app.call("capability.register", json!({"type": "hook", "config": {"event": event}})).await;
    assert_eq!(r["result"]["granted"], true, "{r}");
    app
}

async fn next_interception(app: &mut RawConn, event: &str) -> Value {
    app.expect(event, |v| {
        v["method"] == "hook.event"
            && v["params"]["intercept"] == true
            && v["params"]["event"] == event
    })
    .await
}

#[tokio::test]
async fn interceptors_modify_and_block_at_each_hook_point() {
    let (kernel, mut prov, mut chan, mut tools) = agent_apps().await;
    tools.register_tool("secret", None).await;
    let mut recv = interceptor(&kernel, "g-recv", "message_received").await;
    let mut start = interceptor(&kernel, "g-start", "before_agent_start").await;
    let mut persist = interceptor(&kernel, "g-persist", "tool_result_persist").await;
    let mut sending = interceptor(&kernel, "g-send", "message_sending").await;

    // message_received: block → queued false with the reason, nothing stored.
    let id =
        chan.send_call("message.dispatch", json!({"sessionKey": "h", "content": "spam"})).await;
    let ev = next_interception(&mut recv, "message_received").await;
    recv.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "block", "reason": "spam"}})).await;
    let d = chan.answer_to(id).await;
    assert_eq!(
        (d["result"]["queued"].clone(), d["result"]["reason"].as_str().unwrap().contains("spam")),
        (json!(false), true)
    );

    // message_received: modify the content; before_agent_start: modify input and prompt.
    let id =
        chan.send_call("message.dispatch", json!({"sessionKey": "h", "content": "hello"})).await;
    let ev = next_interception(&mut recv, "message_received").await;
    recv.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "modify", "payload": {"content": "hello (checked)"}}})).await;
    let d = chan.answer_to(id).await;
    let ev = next_interception(&mut start, "before_agent_start").await;
    assert_eq!(ev["params"]["payload"]["input"], "hello (checked)");
    start.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "modify", "payload": {"input": "rewritten", "systemPrompt": "be brief"}}})).await;
    let call = prov.expect_method("provider.complete").await;
    let msgs = call["params"]["messages"].as_array().unwrap();
    assert_eq!(
        (msgs[0]["content"].clone(), msgs.last().unwrap()["content"].clone()),
        (json!("be brief"), json!("rewritten"))
    );
    prov.answer(&call["id"], json!({"message": {"content": "", "toolCalls": [{"id": "t1", "name": "secret", "arguments": {}}]}})).await;
    let inv = tools.expect_method("tool.invoke").await;
    tools.answer(&inv["id"], json!({"content": "the password is hunter2"})).await;
    // tool_result_persist: modify the result the transcript keeps and the model sees.
    let ev = next_interception(&mut persist, "tool_result_persist").await;
    persist.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "modify", "payload": {"result": {"content": "[redacted]"}}}})).await;
    let call = prov.expect_method("provider.complete").await;
    assert_eq!(
        call["params"]["messages"].as_array().unwrap().last().unwrap()["content"],
        "[redacted]"
    );
    prov.answer(&call["id"], json!({"message": {"content": "done: hunter2"}})).await;
    // message_sending: modify what the channel gets.
    let ev = next_interception(&mut sending, "message_sending").await;
    sending.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "modify", "payload": {"content": "done: ***"}}})).await;
    let sent = chan.expect_method("channel.send").await;
    assert_eq!(sent["params"]["content"], "done: ***");
    chan.answer(&sent["id"], json!({})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "completed");
    let h = chan.call("session.history", json!({"key": "h"})).await;
    let texts: Vec<String> = h["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        texts.contains(&"hello (checked)".to_owned()) && texts.contains(&"[redacted]".to_owned()),
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("spam")));

    // before_agent_start: block → the run fails with the reason.
    let id =
        chan.send_call("message.dispatch", json!({"sessionKey": "h", "content": "again"})).await;
    let ev = next_interception(&mut recv, "message_received").await;
    recv.call(
        "hook.result",
        json!({"eventId": ev["params"]["eventId"], "result": {"action": "continue"}}),
    )
    .await;
    let d = chan.answer_to(id).await;
    let ev = next_interception(&mut start, "before_agent_start").await;
    start.call("hook.result", json!({"eventId": ev["params"]["eventId"], "result": {"action": "block", "reason": "quiet hours"}})).await;
    let w =
        chan.call("agent.wait", json!({"runId": d["result"]["runId"], "timeoutMs": 5000})).await;
    assert_eq!(w["result"]["status"], "failed");
    assert!(w["result"]["error"].as_str().unwrap().contains("quiet hours"));
}

#[tokio::test]
async fn the_bundled_apps_give_an_agent_with_tools() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("notes.txt"), "hello file").unwrap();
    let config = format!(
        "{CONFIG}[apps.echo-provider.run]\ncommand = \"echo-provider\"\n\
         [apps.files.run]\ncommand = \"burrow-files\"\nargs = [\"--root\", {:?}]\n",
        root.path().display().to_string()
    );
    let kernel = Kernel::start_with_config(&config).await;
    let ready = burrow_tests::poll_until(DEADLINE, || async {
        let apps = kernel.app_ids().await;
        apps.contains(&"echo-provider".to_owned()) && apps.contains(&"files".to_owned())
    })
    .await;
    assert!(ready, "bundled apps did not come up; log:\n{}", kernel.log());
    let out =
        kernel.cli(&["send", "demo", r#"/tool read_file {"path": "notes.txt"}"#, "--wait"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("tool read_file returned: hello file"), "{text}");
}

/// Empty metadata is stored as none, as it always was behind a `message_received`
/// interceptor; without one it was stored as `{}`.
#[tokio::test]
async fn empty_metadata_is_stored_as_none() {
    let kernel = Kernel::start_with_config("[agents.main]\nauto_reply = false\n").await;
    let mut chan = kernel.hand_channel().await;
    for (key, metadata) in [("empty", json!({})), ("some", json!({"k": 1}))] {
        let d = chan
            .call(
                "message.dispatch",
                json!({"sessionKey": key, "content": "x", "metadata": metadata}),
            )
            .await;
        assert!(d["result"].is_object(), "{d}");
        let h = chan.call("session.history", json!({"key": key})).await;
        let stored = &h["result"]["messages"][0];
        assert_eq!(stored["content"], "x", "{h}");
        let expected = if key == "empty" { None } else { Some(&metadata) };
        assert_eq!(stored.get("metadata"), expected, "{h}");
    }
}

/// The conversation a `provider.complete` carries, as `role: content` lines (the
/// system prompt left out).
fn conversation(call: &Value) -> Vec<String> {
    call["params"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| format!("{}: {}", m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn each_run_sees_the_whole_conversation_before_it_from_memory_or_the_store() {
    // Runs take their context from the session's memory when it certainly matches the
    // store, else from the store: both give the same conversation.
    let (_kernel, mut prov, mut chan, _tools) = agent_apps().await;
    let turn = |said: &str| json!({"sessionKey": "talk", "content": said});
    let mut expected: Vec<String> = Vec::new();
    for (said, reply) in [("one", "r1"), ("two", "r2")] {
        chan.call("message.dispatch", turn(said)).await;
        let c = prov.expect_method("provider.complete").await;
        expected.push(format!("user: {said}"));
        assert_eq!(conversation(&c), expected);
        prov.answer(&c["id"], json!({"message": {"content": reply}})).await;
        expected.push(format!("assistant: {reply}"));
        let sent = chan.expect_method("channel.send").await;
        chan.answer(&sent["id"], json!({})).await;
    }
    // A message that comes while a run runs: the next run reads the store.
    chan.call("message.dispatch", turn("three")).await;
    let c = prov.expect_method("provider.complete").await;
    chan.call("message.dispatch", turn("four")).await;
    expected.push("user: three".into());
    assert_eq!(conversation(&c), expected);
    prov.answer(&c["id"], json!({"message": {"content": "r3"}})).await;
    let c = prov.expect_method("provider.complete").await;
    expected.extend(["assistant: r3".into(), "user: four".into()]);
    assert_eq!(conversation(&c), expected);
    prov.answer(&c["id"], json!({"message": {"content": "r4"}})).await;
    // The one after, from memory again, goes on from the store's order: "four" came
    // while run three ran, so it was stored before "r3".
    for _ in 0..2 {
        let sent = chan.expect_method("channel.send").await;
        chan.answer(&sent["id"], json!({})).await;
    }
    chan.call("message.dispatch", turn("five")).await;
    let c = prov.expect_method("provider.complete").await;
    expected.swap(5, 6);
    expected.extend(["assistant: r4".into(), "user: five".into()]);
    assert_eq!(conversation(&c), expected);
    prov.answer(&c["id"], json!({"message": {"content": "r5"}})).await;
    let sent = chan.expect_method("channel.send").await;
    chan.answer(&sent["id"], json!({})).await;
    let history = chan.call("session.history", json!({"key": "talk"})).await;
    let stored: Vec<String> = history["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}: {}", m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    expected.push("assistant: r5".into());
    assert_eq!(stored, expected, "the store holds what the runs saw");
}
