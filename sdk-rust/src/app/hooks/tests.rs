use std::sync::atomic::{AtomicBool, Ordering};

use burrow_protocol::Manifest;
use burrow_protocol::methods::capability::HookConfig;
use serde_json::json;
use tokio::sync::{Barrier, mpsc};

use super::*;
use crate::test_support::{WAIT, start_ready, within};
use crate::testing::FakeKernel;
use crate::{Error, ErrorCode};

fn base() -> App {
    App::new(Manifest::new("tester", "0.1.0"))
}

/// Sends `(tag, event name)` for every delivery.
fn observer(
    tag: &'static str,
    tx: &mpsc::Sender<(&'static str, String)>,
) -> impl Fn(HookEvent) -> BoxFuture<()> + Send + Sync + 'static {
    let tx = tx.clone();
    move |event| {
        let tx = tx.clone();
        Box::pin(async move {
            tx.send((tag, event.event)).await.unwrap();
        })
    }
}

#[tokio::test]
async fn observed_events_reach_every_handler_whose_pattern_matches() {
    let (tx, mut rx) = mpsc::channel(64);
    let app = base()
        .on_event("session_*", observer("sessions", &tx))
        .on_event("session_start", observer("starts", &tx))
        .on_event("message_*", observer("messages", &tx))
        .on_event("barrier", observer("barrier", &tx));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    assert_eq!(kernel.subscriptions(), ["session_*", "session_start", "message_*", "barrier"]);
    for event in ["session_start", "session_end", "message_sent", "app_ready", "barrier"] {
        kernel.send_event(event, json!({})).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.last() != Some(&("barrier", "barrier".to_owned())) {
        seen.push(within(rx.recv()).await.unwrap());
    }
    seen.sort();
    let expected = [
        ("barrier", "barrier"),
        ("messages", "message_sent"),
        ("sessions", "session_end"),
        ("sessions", "session_start"),
        ("starts", "session_start"),
    ];
    let seen: Vec<(&str, &str)> = seen.iter().map(|(t, e)| (*t, e.as_str())).collect();
    assert_eq!(seen, expected);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn observers_get_the_whole_event_and_a_panic_is_contained() {
    let (tx, mut rx) = mpsc::channel(8);
    let app = base().on_event("boom", |_event| async { panic!("observer bug") }).on_event(
        "app_*",
        move |event| {
            let tx = tx.clone();
            async move {
                let deadline = event.deadline_ms;
                let who = event.client().app_id().map(str::to_owned);
                tx.send((event.event_id, event.payload, event.context, deadline, who))
                    .await
                    .unwrap();
            }
        },
    );
    let running = start_ready(app).await;
    running.kernel.send_event("boom", json!({})).await.unwrap();
    let id = running.kernel.send_event("app_ready", json!({"appId": "x"})).await.unwrap();
    let (event_id, payload, context, deadline, who) = within(rx.recv()).await.unwrap();
    assert_eq!(event_id, id);
    assert_eq!(payload, json!({"appId": "x"}));
    assert!(context.is_empty());
    assert_eq!(deadline, None);
    assert_eq!(who.as_deref(), Some("tester"));
    assert!(!running.run.is_finished());
}

fn verdicts() -> App {
    base().intercept("before_tool_call", 5, |event| async move {
        let name = event.payload["name"].as_str().unwrap_or_default().to_owned();
        match name.as_str() {
            "rm" => HookVerdict::Block { reason: "no rm".into() },
            "login" => {
                let mut payload = event.payload;
                payload["arguments"]["password"] = json!("[redacted]");
                HookVerdict::Modify { payload }
            }
            _ => HookVerdict::Continue,
        }
    })
}

#[tokio::test]
async fn interceptors_continue_modify_and_block() {
    let running = start_ready(verdicts()).await;
    let kernel = &running.kernel;
    let intercept = |payload| kernel.intercept("before_tool_call", payload, WAIT);
    assert_eq!(
        intercept(json!({"name": "ls", "arguments": {}})).await.unwrap(),
        HookVerdict::Continue
    );
    assert_eq!(
        intercept(json!({"name": "rm", "arguments": {}})).await.unwrap(),
        HookVerdict::Block { reason: "no rm".into() }
    );
    let modified =
        intercept(json!({"name": "login", "arguments": {"user": "a", "password": "pw"}}))
            .await
            .unwrap();
    assert_eq!(
        modified,
        HookVerdict::Modify {
            payload: json!({"name": "login", "arguments": {"user": "a", "password": "[redacted]"}})
        }
    );
}

#[tokio::test]
async fn interceptors_are_registered_after_subscribing_with_their_config() {
    let spec = InterceptSpec::new("message_received", -3)
        .timeout(Duration::from_millis(1500))
        .fail_mode(FailMode::Closed);
    let app = verdicts().intercept_with(spec, |_event| async { HookVerdict::Continue });
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    assert_eq!(kernel.subscriptions(), ["before_tool_call", "message_received"]);
    let hooks: Vec<HookConfig> = kernel
        .capabilities()
        .into_iter()
        .map(|c| {
            assert!(c.result.granted, "{c:?}");
            serde_json::from_value(c.params.config).unwrap()
        })
        .collect();
    let expected = [
        HookConfig {
            event: "before_tool_call".into(),
            priority: Some(5),
            timeout_ms: None,
            fail_mode: None,
        },
        HookConfig {
            event: "message_received".into(),
            priority: Some(-3),
            timeout_ms: Some(1500),
            fail_mode: Some(FailMode::Closed),
        },
    ];
    assert_eq!(hooks, expected);
}

#[tokio::test]
async fn interceptions_run_concurrently_and_observers_do_not_hold_them_up() {
    let inside = Arc::new(Barrier::new(2));
    let app = base()
        .intercept("message_received", 0, move |_event| {
            let inside = inside.clone();
            async move {
                // Both interceptions must be in here at once to get past.
                inside.wait().await;
                HookVerdict::Continue
            }
        })
        .on_event("stuck", |_event| std::future::pending::<()>());
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    for _ in 0..3 {
        kernel.send_event("stuck", json!({})).await.unwrap();
    }
    let (a, b) = tokio::join!(
        kernel.intercept("message_received", json!({"n": 1}), WAIT),
        kernel.intercept("message_received", json!({"n": 2}), WAIT),
    );
    assert_eq!(a.unwrap(), HookVerdict::Continue);
    assert_eq!(b.unwrap(), HookVerdict::Continue);
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>, Arc<tokio::sync::Notify>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
        self.1.notify_one();
    }
}

#[tokio::test]
async fn a_panicking_or_late_interceptor_sends_nothing() {
    let dropped = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(tokio::sync::Notify::new());
    let (flag, wake) = (dropped.clone(), woken.clone());
    let app = base()
        .intercept("message_received", 0, |event| async move {
            if event.payload["panic"] == true {
                panic!("interceptor bug");
            }
            HookVerdict::Continue
        })
        .intercept("message_sending", 0, move |_event| {
            let guard = DropFlag(flag.clone(), wake.clone());
            async move {
                let _guard = guard;
                std::future::pending::<HookVerdict>().await
            }
        });
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    // No verdict comes: the fake gives up at its deadline.
    let short = Duration::from_millis(300);
    let panicked =
        kernel.intercept("message_received", json!({"panic": true}), short).await.unwrap_err();
    assert!(matches!(panicked, Error::Timeout), "{panicked:?}");
    let late = kernel.intercept("message_sending", json!({}), short).await.unwrap_err();
    assert!(matches!(late, Error::Timeout), "{late:?}");
    // The late handler was abandoned at the deadline.
    within(async {
        while !dropped.load(Ordering::Acquire) {
            woken.notified().await;
        }
    })
    .await;
    // And the app still answers.
    let fine = kernel.intercept("message_received", json!({}), WAIT).await.unwrap();
    assert_eq!(fine, HookVerdict::Continue);
}

#[tokio::test]
async fn an_unexpected_interception_is_answered_continue() {
    let running = start_ready(verdicts()).await;
    let verdict = running.kernel.intercept("message_sending", json!({}), WAIT).await.unwrap();
    assert_eq!(verdict, HookVerdict::Continue);
}

#[tokio::test]
async fn hook_mistakes_fail_at_start_up() {
    let go_on = |_event: HookEvent| async { HookVerdict::Continue };
    let cases = [
        base().on_event("a*b", |_event| async {}),
        base().on_event("", |_event| async {}),
        base().intercept("before_*", 0, go_on),
        base().intercept("app_ready", 0, go_on),
        verdicts().intercept("before_tool_call", 1, go_on),
        base().intercept_with(
            InterceptSpec::new("message_received", 0).timeout(Duration::ZERO),
            go_on,
        ),
        verdicts().on_notification("hook.event", |_params, _cx| async {}),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let (_kernel, transport) = FakeKernel::new();
        let err = within(case.run_on(transport, std::future::pending())).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "case {i}: {err:?}");
    }
    assert_eq!(Error::Timeout.code(), Some(ErrorCode::Timeout));
}
