//! What a [`FakeKernel`](super::FakeKernel) knows and how it answers the app.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burrow_protocol::manifest::pattern_matches;
use burrow_protocol::methods::app::{
    AppHeartbeat, AppReady, AppRegister, AppShutdown, HeartbeatResult, KernelInfo,
    KernelInfoResult, PROTOCOL_VERSION, RegisterParams, RegisterResult, ShutdownParams,
    protocol_major_matches,
};
use burrow_protocol::methods::capability::{
    CapabilityConfig, CapabilityRegister, CapabilityUnregister, RegisterCapabilityParams,
    RegisterCapabilityResult, UnregisterCapabilityParams,
};
use burrow_protocol::methods::config::{
    ConfigChange, ConfigGet, ConfigGetParams, ConfigGetResult, ConfigWatch, ConfigWatchParams,
};
use burrow_protocol::methods::hook::{
    HookResult, HookResultParams, HookSubscribe, HookUnsubscribe, HookVerdict, SubscribeParams,
    SubscribeResult, UnsubscribeParams, UnsubscribeResult,
};
use burrow_protocol::methods::operator::{SessionEvents, SessionEventsParams};
use burrow_protocol::methods::{Ack, Cancel, CancelParams, Method, parse_params, to_value};
use burrow_protocol::{
    ErrorCode, ErrorObject, Id, Manifest, Notification, Request, Value, now_ms, rules,
};
use tokio::sync::{Notify, oneshot};

use super::{FakeConfig, RecordedCapability};
use crate::peer::{BoxFuture, Service, method_not_found};
use crate::{Client, Error, Result};

type Answer = std::result::Result<Value, ErrorObject>;
pub(super) type FakeHandler = Arc<dyn Fn(Value) -> Answer + Send + Sync>;

/// What the fake has seen; every change wakes the waiters.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) registrations: Vec<RegisterParams>,
    pub(super) manifest: Option<Manifest>,
    pub(super) app_shutdown: Option<ShutdownParams>,
    /// Every request method but `app.heartbeat`, in arrival order.
    pub(super) calls: Vec<String>,
    pub(super) capabilities: Vec<RecordedCapability>,
    pub(super) subscriptions: Vec<String>,
}

/// An open `config.watch` or `session.events`.
struct Watch {
    what: Watched,
    end: oneshot::Sender<&'static str>,
}

/// What a watch follows.
enum Watched {
    /// Changes of the configuration under these paths (`config.watch`).
    Config(Vec<String>),
    /// A session's events (`session.events`).
    Session(String),
}

pub(super) struct State {
    pub(super) config: FakeConfig,
    seen: Mutex<Seen>,
    pub(super) ready: AtomicBool,
    pub(super) heartbeats: AtomicU64,
    changed: Notify,
    pub(super) handlers: Mutex<HashMap<String, FakeHandler>>,
    /// Numbers the ids the fake mints (`cap-N`, `call-N`, `evt-N`).
    counter: AtomicU64,
    /// Interceptions waiting for the app's `hook.result`, by event id.
    verdicts: Mutex<HashMap<String, oneshot::Sender<HookVerdict>>>,
    /// The document `config.get` reads.
    document: Mutex<Value>,
    watches: Mutex<HashMap<Id, Watch>>,
}

/// Locks a mutex whose data a panic cannot leave inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether dotted `path` is `base` or lies under it.
fn is_under(path: &str, base: &str) -> bool {
    path == base
        || base.is_empty()
        || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('.'))
}

/// The value at a dotted path of `document`; `null` when missing.
fn lookup(document: &Value, path: &str) -> Value {
    if path.is_empty() {
        return document.clone();
    }
    path.split('.').try_fold(document, |v, key| v.get(key)).cloned().unwrap_or(Value::Null)
}

/// Sets the value at a dotted path of `document` (`null` removes it), creating maps.
fn set_at(document: &mut Value, path: &str, value: Value) {
    if path.is_empty() {
        *document = value;
        return;
    }
    let mut node = document;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let Value::Object(map) = node else { return };
        if keys.peek().is_none() {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), value);
            }
            return;
        }
        node = map.entry(key.to_owned()).or_insert(Value::Null);
    }
}

/// The name a capability is granted by, and the manifest list that grants it.
impl State {
    pub(super) fn new(config: FakeConfig) -> Self {
        Self {
            config,
            seen: Mutex::default(),
            ready: AtomicBool::new(false),
            heartbeats: AtomicU64::new(0),
            changed: Notify::new(),
            handlers: Mutex::default(),
            counter: AtomicU64::new(0),
            verdicts: Mutex::default(),
            document: Mutex::new(Value::Object(Default::default())),
            watches: Mutex::default(),
        }
    }

    pub(super) fn seen(&self) -> MutexGuard<'_, Seen> {
        lock(&self.seen)
    }

    /// A fresh id with this prefix.
    pub(super) fn mint(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.counter.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn manifest(&self) -> std::result::Result<Manifest, ErrorObject> {
        self.seen()
            .manifest
            .clone()
            .ok_or_else(|| ErrorObject::new(ErrorCode::AppNotRegistered, "register first"))
    }

    fn register(&self, params: Value) -> Answer {
        let params: RegisterParams = parse_params(params)?;
        let presented_token = params.token.is_some();
        let manifest = params.manifest.clone();
        let mut seen = self.seen();
        seen.registrations.push(params.clone());
        let attempt = seen.registrations.len();
        drop(seen);
        if let Some(e) = &self.config.refuse_registration {
            return Err(e.clone());
        }
        if presented_token && self.config.reject_tokens {
            return Err(ErrorObject::new(ErrorCode::Unauthorized, "unknown token"));
        }
        if !protocol_major_matches(&params.protocol_version) {
            return Err(ErrorObject::new(
                ErrorCode::InvalidRequest,
                "unsupported protocol version",
            )
            .with_data(serde_json::json!({ "supported": [PROTOCOL_VERSION] })));
        }
        manifest.validate()?;
        let result = RegisterResult {
            app_id: manifest.id.clone(),
            token: format!("fake-token-{}-{attempt}", manifest.id),
            protocol_version: PROTOCOL_VERSION.to_owned(),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.config.heartbeat_timeout.as_millis() as u64,
        };
        self.seen().manifest = Some(manifest);
        Ok(to_value(&result))
    }

    fn register_capability(&self, params: Value) -> Answer {
        let manifest = self.manifest()?;
        let params: RegisterCapabilityParams = parse_params(params)?;
        let config = CapabilityConfig::parse(params.kind, params.config.clone())?;
        // The kernel's own rules first, in its order.
        rules::validate(&config)?;
        let refused = rules::refusal(&manifest, &config);
        let name = rules::grant_name(&config);
        let mut seen = self.seen();
        if refused.is_none()
            && let CapabilityConfig::Hook(hook) = &config
            && !seen.subscriptions.iter().any(|s| pattern_matches(s, &hook.event))
        {
            return Err(ErrorObject::new(
                ErrorCode::HookNotSubscribed,
                format!("subscribe to {} before intercepting it", hook.event),
            ));
        }
        let taken = !matches!(config, CapabilityConfig::Hook(_))
            && seen
                .capabilities
                .iter()
                .any(|c| c.active && c.params.kind == params.kind && c.name == name);
        let reason = if refused.is_some() {
            refused
        } else if self.config.deny_capabilities.iter().any(|d| d == name) {
            Some(format!("{name:?} is denied by the fake kernel"))
        } else if taken {
            Some(format!("{name:?} is taken"))
        } else {
            None
        };
        let result = RegisterCapabilityResult {
            capability_id: if reason.is_none() { self.mint("cap") } else { String::new() },
            granted: reason.is_none(),
            reason,
        };
        seen.capabilities.push(RecordedCapability {
            name: name.to_owned(),
            params,
            active: result.granted,
            result: result.clone(),
        });
        Ok(to_value(&result))
    }

    fn unregister_capability(&self, params: Value) -> Answer {
        let params: UnregisterCapabilityParams = parse_params(params)?;
        let mut seen = self.seen();
        let Some(entry) = seen
            .capabilities
            .iter_mut()
            .find(|c| c.active && c.result.capability_id == params.capability_id)
        else {
            return Err(ErrorObject::new(ErrorCode::NotFound, "no such capability"));
        };
        entry.active = false;
        Ok(to_value(&Ack::OK))
    }

    fn subscribe(&self, params: Value) -> Answer {
        let manifest = self.manifest()?;
        let params: SubscribeParams = parse_params(params)?;
        let allowed = &manifest.capabilities.hooks.subscribe;
        let mut result = SubscribeResult { subscribed: Vec::new(), denied: Vec::new() };
        let mut seen = self.seen();
        for event in params.events {
            let denied = self.config.deny_events.contains(&event)
                || !allowed.iter().any(|p| pattern_matches(p, &event));
            if denied {
                result.denied.push(event);
                continue;
            }
            if !seen.subscriptions.contains(&event) {
                seen.subscriptions.push(event.clone());
            }
            result.subscribed.push(event);
        }
        Ok(to_value(&result))
    }

    fn unsubscribe(&self, params: Value) -> Answer {
        let params: UnsubscribeParams = parse_params(params)?;
        let mut seen = self.seen();
        let unsubscribed = params
            .events
            .into_iter()
            .filter(|e| {
                let before = seen.subscriptions.len();
                seen.subscriptions.retain(|s| s != e);
                seen.subscriptions.len() < before
            })
            .collect();
        Ok(to_value(&UnsubscribeResult { unsubscribed }))
    }

    fn hook_result(&self, params: Value) -> Answer {
        let params: HookResultParams = parse_params(params)?;
        match lock(&self.verdicts).remove(&params.event_id) {
            Some(waiter) => {
                let _ = waiter.send(params.result);
                Ok(to_value(&Ack::OK))
            }
            None => Err(ErrorObject::new(
                ErrorCode::HookNotSubscribed,
                format!("no interception {:?} is waiting", params.event_id),
            )),
        }
    }

    fn config_get(&self, params: Value) -> Answer {
        let manifest = self.manifest()?;
        let params: ConfigGetParams = parse_params(params)?;
        let path = params.path.unwrap_or_else(|| format!("apps.{}", manifest.id));
        let value = lookup(&lock(&self.document), &path);
        Ok(to_value(&ConfigGetResult { value, origins: None }))
    }

    /// The answer to the requests that are answered at once; `None` for the rest.
    fn answer(&self, request: &Request) -> Option<Answer> {
        let params = || request.params.clone();
        let answer = match request.method.as_str() {
            AppRegister::NAME => self.register(params()),
            AppReady::NAME => self.manifest().map(|_| {
                self.ready.store(true, Ordering::Release);
                to_value(&Ack::OK)
            }),
            AppHeartbeat::NAME => {
                self.heartbeats.fetch_add(1, Ordering::AcqRel);
                Ok(to_value(&HeartbeatResult { ok: true, server_time: now_ms() }))
            }
            AppShutdown::NAME => {
                self.seen().app_shutdown = Some(parse_params(params()).unwrap_or_default());
                self.ready.store(false, Ordering::Release);
                self.end_watches("closed");
                Ok(to_value(&Ack::OK))
            }
            KernelInfo::NAME => Ok(to_value(&KernelInfoResult {
                version: "fake".to_owned(),
                protocol_version: PROTOCOL_VERSION.to_owned(),
                started_at: 0,
                apps: u64::from(self.seen().manifest.is_some()),
                sessions: 0,
                endpoints: Default::default(),
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            })),
            CapabilityRegister::NAME => self.register_capability(params()),
            CapabilityUnregister::NAME => self.unregister_capability(params()),
            HookSubscribe::NAME => self.subscribe(params()),
            HookUnsubscribe::NAME => self.unsubscribe(params()),
            HookResult::NAME => self.hook_result(params()),
            ConfigGet::NAME => self.config_get(params()),
            _ => return None,
        };
        Some(answer)
    }

    /// Opens a `config.watch` or `session.events`: the returned future is its final
    /// answer.
    fn watch(self: &Arc<Self>, request: Request) -> BoxFuture<Answer> {
        let opened = if request.method == SessionEvents::NAME {
            parse_params(request.params)
                .map(|p: SessionEventsParams| Watched::Session(p.session_id))
        } else {
            self.manifest().and_then(|manifest| {
                let params: ConfigWatchParams = parse_params(request.params)?;
                let paths = params.paths.unwrap_or_else(|| vec![format!("apps.{}", manifest.id)]);
                Ok(Watched::Config(paths))
            })
        };
        let what = match opened {
            Ok(what) => what,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (end, ended) = oneshot::channel();
        lock(&self.watches).insert(request.id, Watch { what, end });
        self.touch();
        Box::pin(async move {
            let reason = ended.await.unwrap_or("closed");
            Ok(serde_json::json!({ "ended": reason }))
        })
    }

    /// Ends every open watch with `{ended: reason}`.
    pub(super) fn end_watches(&self, reason: &'static str) {
        for (_, watch) in lock(&self.watches).drain() {
            let _ = watch.end.send(reason);
        }
        self.touch();
    }

    /// Open `config.watch` streams.
    pub(super) fn watch_count(&self) -> usize {
        lock(&self.watches).values().filter(|w| matches!(w.what, Watched::Config(_))).count()
    }

    /// The open `session.events` streams of session `key`.
    pub(super) fn followers(&self, key: &str) -> Vec<Id> {
        let watches = lock(&self.watches);
        let of_key = |w: &Watch| matches!(&w.what, Watched::Session(k) if k == key);
        watches.iter().filter(|(_, w)| of_key(w)).map(|(id, _)| id.clone()).collect()
    }

    /// Applies a change to the document and returns the chunks to send: for each watch,
    /// the change itself when it lies under a watched path, or, when it lies above one,
    /// the change narrowed to that path (as the kernel reports them).
    pub(super) fn change(&self, change: &ConfigChange) -> Vec<(Id, ConfigChange)> {
        let (old, new) = {
            let mut document = lock(&self.document);
            let old = document.clone();
            set_at(&mut document, &change.path, change.new_value.clone());
            (old, document.clone())
        };
        let mut chunks = Vec::new();
        for (id, watch) in lock(&self.watches).iter() {
            let Watched::Config(paths) = &watch.what else { continue };
            if paths.iter().any(|p| is_under(&change.path, p)) {
                chunks.push((id.clone(), change.clone()));
                continue;
            }
            for path in paths.iter().filter(|p| is_under(p, &change.path)) {
                let (old_value, new_value) = (lookup(&old, path), lookup(&new, path));
                if old_value != new_value {
                    let narrowed = ConfigChange { path: path.clone(), old_value, new_value };
                    chunks.push((id.clone(), narrowed));
                }
            }
        }
        chunks
    }

    pub(super) fn set_document(&self, document: Value) {
        *lock(&self.document) = document;
    }

    /// Sends a `hook.event` interception and waits for its verdict.
    pub(super) async fn intercept(
        &self,
        client: &Client,
        event: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<HookVerdict> {
        let event_id = self.mint("evt");
        let (tx, rx) = oneshot::channel();
        lock(&self.verdicts).insert(event_id.clone(), tx);
        let deadline = now_ms() + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        let params = serde_json::json!({
            "eventId": event_id, "event": event, "payload": payload, "context": {},
            "intercept": true, "deadlineMs": deadline,
        });
        let waited = async {
            client.notify("hook.event", params).await?;
            rx.await.map_err(|_| Error::Closed)
        };
        let outcome = tokio::time::timeout(timeout, waited).await;
        lock(&self.verdicts).remove(&event_id);
        outcome.unwrap_or(Err(Error::Timeout))
    }

    fn touch(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until `done` holds, for at most `timeout`.
    pub(super) async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&State) -> bool,
    ) -> Result<()> {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if done(self) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| Error::Timeout)
    }
}

/// The fake's side of the connection.
pub(super) struct FakeService(pub(super) Arc<State>);

impl Service for FakeService {
    fn request(&self, request: Request, client: Client) -> BoxFuture<Answer> {
        let state = &self.0;
        if request.method != AppHeartbeat::NAME {
            state.seen().calls.push(request.method.clone());
        }
        if request.method == ConfigWatch::NAME || request.method == SessionEvents::NAME {
            return state.watch(request);
        }
        let answer = match state.answer(&request) {
            Some(answer) => answer,
            None => {
                let handler = lock(&state.handlers).get(&request.method).cloned();
                match handler {
                    Some(handler) => handler(request.params),
                    None => Err(method_not_found(&request.method)),
                }
            }
        };
        state.touch();
        if request.method == AppShutdown::NAME {
            // Like the kernel: answer, then close.
            tokio::spawn(async move { client.close(Duration::from_secs(1)).await });
        }
        Box::pin(std::future::ready(answer))
    }

    fn notification(&self, notification: Notification, _client: Client) -> BoxFuture<()> {
        if notification.method == Cancel::NAME
            && let Ok(params) = parse_params::<CancelParams>(notification.params)
        {
            if let Some(watch) = lock(&self.0.watches).remove(&params.id) {
                let _ = watch.end.send("cancelled");
            }
            self.0.touch();
        }
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths() {
        let mut doc = json!({"apps": {"a": {"x": 1}}});
        assert_eq!(lookup(&doc, "apps.a.x"), json!(1));
        assert_eq!(lookup(&doc, "apps.b"), Value::Null);
        set_at(&mut doc, "apps.b.y", json!("new"));
        set_at(&mut doc, "apps.a.x", Value::Null);
        assert_eq!(doc, json!({"apps": {"a": {}, "b": {"y": "new"}}}));
        assert!(is_under("apps.a.x", "apps.a"));
        assert!(!is_under("apps.ab", "apps.a"));
    }
}
