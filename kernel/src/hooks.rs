//! Hook events (PROTOCOL.md §6): subscriptions, delivery to observers, and interception.
//!
//! - **Observers** get `hook.event` notifications after the fact through a bounded queue
//!   per subscriber; a slow observer's queue fills, further events to it are dropped and
//!   counted, and the kernel never waits for it.
//! - **Interceptors** (`hook` capabilities) run one at a time, lowest priority first: the
//!   kernel sends `hook.event {intercept: true, deadlineMs}` and waits for the app's
//!   `hook.result` until the deadline; silence (or death) means continue for fail-open
//!   and block for fail-closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use burrow_protocol::manifest::pattern_matches;
use burrow_protocol::methods::Method;
use burrow_protocol::methods::capability::FailMode;
use burrow_protocol::methods::hook::{HookEvent, HookEventParams, HookVerdict};
use burrow_protocol::methods::to_value;
use burrow_protocol::{Map, Message, Value, now_ms};
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use burrow_protocol::rules::modifiable_fields;

use crate::capabilities::{Capabilities, fail_mode};
use crate::config::Config;
use crate::connection::Connection;
use crate::registry::AppRegistry;
use crate::service::timeline::Step;

/// An action stopped by an interceptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// The app that blocked it.
    pub by: String,
    /// Its reason.
    pub reason: String,
}

impl Blocked {
    /// The `FORBIDDEN` error a blocked caller receives, with `data: {blockedBy, reason}`.
    pub fn to_error(&self) -> burrow_protocol::ErrorObject {
        burrow_protocol::ErrorObject::new(
            burrow_protocol::ErrorCode::Forbidden,
            format!("blocked by {}: {}", self.by, self.reason),
        )
        .with_data(serde_json::json!({ "blockedBy": self.by, "reason": self.reason }))
    }
}

struct Subscriber {
    app_id: String,
    patterns: Vec<String>,
    queue: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

struct PendingIntercept {
    conn_id: u64,
    answer: oneshot::Sender<HookVerdict>,
}

pub use burrow_protocol::methods::operator::SubscriberSummary;

/// Subscriptions and interceptions in progress.
#[derive(Default)]
pub struct Hooks {
    subscribers: DashMap<u64, Subscriber>,
    /// How many entries `subscribers` holds: with none, emitting costs one load.
    subscriber_count: AtomicUsize,
    pending: DashMap<String, PendingIntercept>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// Adds subscriptions for the app on `conn`, starting its delivery queue if needed.
    pub fn subscribe(
        &self,
        app_id: &str,
        conn: &Connection,
        patterns: &[String],
        queue_len: usize,
    ) {
        let mut entry = self.subscribers.entry(conn.id()).or_insert_with(|| {
            self.subscriber_count.fetch_add(1, Ordering::AcqRel);
            let (tx, mut rx) = mpsc::channel::<Message>(queue_len.max(1));
            let conn = conn.clone();
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    if !conn.send_wait(msg).await {
                        break;
                    }
                }
            });
            Subscriber {
                app_id: app_id.to_owned(),
                patterns: Vec::new(),
                queue: tx,
                dropped: Arc::default(),
            }
        });
        for p in patterns {
            if !entry.patterns.contains(p) {
                entry.patterns.push(p.clone());
            }
        }
    }

    /// Removes subscriptions; returns those that existed.
    pub fn unsubscribe(&self, conn_id: u64, patterns: &[String]) -> Vec<String> {
        let Some(mut entry) = self.subscribers.get_mut(&conn_id) else {
            return Vec::new();
        };
        let removed: Vec<String> =
            patterns.iter().filter(|p| entry.patterns.contains(p)).cloned().collect();
        entry.patterns.retain(|p| !removed.contains(p));
        removed
    }

    /// Whether the app on `conn_id` observes `event`.
    pub fn is_subscribed(&self, conn_id: u64, event: &str) -> bool {
        self.subscribers
            .get(&conn_id)
            .is_some_and(|s| s.patterns.iter().any(|p| pattern_matches(p, event)))
    }

    /// Forgets everything of a closed connection; its pending interceptions fail at once.
    pub fn release_conn(&self, conn_id: u64) {
        if self.subscribers.remove(&conn_id).is_some() {
            self.subscriber_count.fetch_sub(1, Ordering::AcqRel);
        }
        self.pending.retain(|_, p| p.conn_id != conn_id);
    }

    /// Whether any observer subscribes to `event`: when none does, callers can skip
    /// building its payload.
    pub fn observed(&self, event: &str) -> bool {
        self.subscriber_count.load(Ordering::Acquire) > 0
            && self.subscribers.iter().any(|s| s.patterns.iter().any(|p| pattern_matches(p, event)))
    }

    /// Delivers `event` to every observer subscribed to it (and allowed by policy).
    pub fn emit(&self, config: &Config, event: &str, payload: Value, context: Map) {
        if self.subscriber_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut msg = None;
        for sub in self.subscribers.iter() {
            if !sub.patterns.iter().any(|p| pattern_matches(p, event))
                || config.policy.denies_event(&sub.app_id, event)
            {
                continue;
            }
            let msg = msg.get_or_insert_with(|| {
                let params = HookEventParams {
                    event_id: uuid::Uuid::now_v7().to_string(),
                    event: event.to_owned(),
                    payload: payload.clone(),
                    context: context.clone(),
                    intercept: false,
                    deadline_ms: None,
                };
                Message::notification(HookEvent::NAME, to_value(&params))
            });
            if sub.queue.try_send(msg.clone()).is_err() {
                let n = sub.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(app = %sub.app_id, dropped = n, "observer is not keeping up; dropping hook events");
                }
            }
        }
    }

    /// Resolves an interception with the app's verdict; false if the app on `conn_id` was
    /// not asked about `event_id` (or already answered, or was too late).
    pub fn resolve(&self, conn_id: u64, event_id: &str, verdict: HookVerdict) -> bool {
        match self.pending.remove_if(event_id, |_, p| p.conn_id == conn_id) {
            Some((_, p)) => {
                let _ = p.answer.send(verdict);
                true
            }
            None => false,
        }
    }

    /// Subscribers, for `kernel.hooks`.
    pub fn summaries(&self) -> Vec<SubscriberSummary> {
        let mut out: Vec<SubscriberSummary> = self
            .subscribers
            .iter()
            .map(|s| SubscriberSummary {
                app_id: s.app_id.clone(),
                subscriptions: s.patterns.clone(),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        out
    }
}

/// What interception needs from the kernel.
#[derive(Debug, Clone, Copy)]
pub struct InterceptScope<'a> {
    /// Interceptors.
    pub caps: &'a Capabilities,
    /// Who is ready.
    pub apps: &'a AppRegistry,
    /// Pending answers.
    pub hooks: &'a Hooks,
    /// Where a run's interceptions are told (its `runId` in the context).
    pub timelines: &'a Arc<crate::service::timeline::Timelines>,
}

/// Runs the interceptors of `event` over `payload`, in order, and returns the payload the
/// action goes on with, or who blocked it. Call outside actor handlers: it waits.
pub async fn intercept(
    scope: InterceptScope<'_>,
    config: &Config,
    event: &str,
    mut payload: Value,
    context: &Map,
) -> Result<Value, Blocked> {
    let fields = modifiable_fields(event).unwrap_or(&[]);
    for cap in scope.caps.interceptors(event) {
        let Some(hook) = cap.as_hook() else { continue };
        if !scope.apps.is_ready(&cap.app_id) || config.policy.denies_event(&cap.app_id, event) {
            continue;
        }
        let timeout = Duration::from_millis(
            hook.timeout_ms
                .unwrap_or(config.hooks.intercept_timeout_ms)
                .min(config.hooks.max_intercept_timeout_ms),
        );
        let event_id = uuid::Uuid::now_v7().to_string();
        let (tx, rx) = oneshot::channel();
        scope
            .hooks
            .pending
            .insert(event_id.clone(), PendingIntercept { conn_id: cap.conn.id(), answer: tx });
        let params = HookEventParams {
            event_id: event_id.clone(),
            event: event.to_owned(),
            payload: payload.clone(),
            context: context.clone(),
            intercept: true,
            deadline_ms: Some(now_ms() + timeout.as_millis() as u64),
        };
        // An interceptor whose queue stays full (it is not reading) within the deadline
        // is one that did not answer.
        let note = Message::notification(HookEvent::NAME, to_value(&params));
        let answer = async {
            if !cap.conn.send_wait(note).await {
                return None;
            }
            rx.await.ok()
        };
        let began = std::time::Instant::now();
        let span = crate::telemetry::intercept_span(event, &cap.app_id);
        let run = context.get("runId").and_then(Value::as_str);
        let session = context.get("sessionKey").and_then(Value::as_str);
        let name = || format!("{event}/{}", cap.app_id);
        let step = run.map(|r| Step::begin(scope.timelines, r, session, "intercept", name()));
        let verdict = tokio::time::timeout(timeout, answer).await.ok().flatten();
        if verdict.is_none() {
            scope.hooks.pending.remove(&event_id);
        }
        let decision = match &verdict {
            Some(HookVerdict::Continue) => "continue",
            Some(HookVerdict::Modify { .. }) => "modify",
            Some(HookVerdict::Block { .. }) => "block",
            None if fail_mode(hook) == FailMode::Closed => "fail_closed",
            None => "fail_open",
        };
        let decided = opentelemetry::KeyValue::new("burrow.hook.decision", decision);
        crate::telemetry::annotate(span.as_ref(), [decided]);
        crate::telemetry::end(span.as_ref(), None);
        if let Some(step) = step {
            let why = match &verdict {
                Some(HookVerdict::Block { reason }) => Some(reason.clone()),
                _ => None,
            };
            step.done(decision, why);
        }
        let app = cap.app_id.clone();
        metrics::counter!("burrow_interceptions_total", "event" => event.to_owned(), "app" => app.clone(), "decision" => decision)
            .increment(1);
        metrics::histogram!("burrow_interception_duration_seconds", "event" => event.to_owned(), "app" => app)
            .record(began.elapsed().as_secs_f64());
        match verdict {
            Some(HookVerdict::Continue) => {}
            Some(HookVerdict::Modify { payload: new }) => apply_modify(&mut payload, &new, fields),
            Some(HookVerdict::Block { reason }) => {
                return Err(Blocked { by: cap.app_id.clone(), reason });
            }
            None => {
                tracing::warn!(app = %cap.app_id, event, "interceptor did not answer in time");
                if fail_mode(hook) == FailMode::Closed {
                    let reason = format!(
                        "interceptor did not answer within {} ms (fail-closed)",
                        timeout.as_millis()
                    );
                    return Err(Blocked { by: cap.app_id.clone(), reason });
                }
            }
        }
    }
    Ok(payload)
}

/// Copies the modifiable `fields` present in `new` into `payload`; the rest is ignored.
pub fn apply_modify(payload: &mut Value, new: &Value, fields: &[&str]) {
    let (Some(target), Some(source)) = (payload.as_object_mut(), new.as_object()) else {
        return;
    };
    for field in fields {
        if let Some(value) = source.get(*field) {
            target.insert((*field).to_owned(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modify_takes_only_modifiable_fields() {
        let mut payload = json!({"name": "t", "arguments": {"a": 1}, "callerAppId": "x"});
        apply_modify(&mut payload, &json!({"name": "evil", "arguments": {"a": 2}}), &["arguments"]);
        assert_eq!(payload, json!({"name": "t", "arguments": {"a": 2}, "callerAppId": "x"}));
        apply_modify(&mut payload, &json!("not a map"), &["arguments"]);
        assert_eq!(payload["arguments"], json!({"a": 2}));
    }

    #[test]
    fn blocked_is_forbidden_with_data() {
        let e = Blocked { by: "guard".into(), reason: "no".into() }.to_error();
        assert_eq!(e.code, burrow_protocol::ErrorCode::Forbidden);
        assert_eq!(e.data.unwrap(), json!({"blockedBy": "guard", "reason": "no"}));
    }
}
