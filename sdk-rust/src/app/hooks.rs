//! Hooks: observing events ([`App::on_event`]) and intercepting them
//! ([`App::intercept`]), and the dispatch of the kernel's `hook.event` notifications.
//!
//! Every delivery runs in a task of its own, so a slow handler never holds up the
//! connection or the other events. The tasks of one connection are bounded
//! ([`MAX_OBSERVER_TASKS`], [`MAX_INTERCEPT_TASKS`]): beyond that, events wait in the
//! connection's bounded notification queue ([`crate::peer::NOTIFICATION_QUEUE`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use burrow_protocol::methods::capability::{CapabilityType, FailMode, HookConfig};
use burrow_protocol::methods::hook::{HookEventParams, HookResult, HookResultParams, HookVerdict};
use burrow_protocol::methods::{parse_params, to_value};
use burrow_protocol::{Map, Value, now_ms};
use futures_util::FutureExt;
use tokio::sync::Semaphore;

use super::App;
use super::tools::deadline_ms;
use crate::Client;
use crate::peer::BoxFuture;

/// Observer handler tasks one connection runs at once.
pub const MAX_OBSERVER_TASKS: usize = 256;
/// Interceptor handler tasks one connection runs at once.
pub const MAX_INTERCEPT_TASKS: usize = 256;
/// How long the SDK waits for the kernel to acknowledge a `hook.result`.
const RESULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One delivery of a hook event (`hook.event`), observed or to intercept.
#[derive(Debug, Clone)]
pub struct HookEvent {
    /// Unique per delivery; the SDK echoes it in `hook.result`.
    pub event_id: String,
    /// The event's name, e.g. `before_tool_call`.
    pub event: String,
    /// What happened (PROTOCOL.md §6 lists the payloads of interceptable events).
    pub payload: Value,
    /// Where it happened (session, run, app).
    pub context: Map,
    /// For an interception: the kernel's deadline for the verdict, ms since the epoch.
    pub deadline_ms: Option<u64>,
    client: Client,
}

impl HookEvent {
    fn new(params: HookEventParams, client: Client) -> Self {
        Self {
            event_id: params.event_id,
            event: params.event,
            payload: params.payload,
            context: params.context,
            deadline_ms: params.deadline_ms,
            client,
        }
    }

    /// The app's connection to the kernel, to call kernel methods from the handler.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// How an app intercepts one event: the `hook` capability's config.
#[derive(Debug, Clone, PartialEq)]
pub struct InterceptSpec {
    /// The event, by its exact name (no pattern).
    pub event: String,
    /// Interceptors run one at a time, lower priority first.
    pub priority: i64,
    /// How long the kernel waits for the verdict (`timeoutMs`); the kernel's default
    /// when `None`.
    pub timeout: Option<Duration>,
    /// What the kernel does when no verdict comes in time; the kernel's default
    /// (`open`: continue) when `None`.
    pub fail_mode: Option<FailMode>,
}

impl InterceptSpec {
    /// Intercepts `event` at `priority`, with the kernel's deadline and fail mode.
    pub fn new(event: impl Into<String>, priority: i64) -> Self {
        Self { event: event.into(), priority, timeout: None, fail_mode: None }
    }

    /// Sets the deadline (`timeoutMs`, rounded up to whole milliseconds).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the fail mode.
    #[must_use]
    pub fn fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = Some(fail_mode);
        self
    }

    fn config(&self) -> HookConfig {
        HookConfig {
            event: self.event.clone(),
            priority: Some(self.priority),
            timeout_ms: self.timeout.and_then(deadline_ms),
            fail_mode: self.fail_mode,
        }
    }
}

type ObserverFn = Arc<dyn Fn(HookEvent) -> BoxFuture<()> + Send + Sync>;
type InterceptFn = Arc<dyn Fn(HookEvent) -> BoxFuture<HookVerdict> + Send + Sync>;

struct Intercept {
    spec: InterceptSpec,
    handler: InterceptFn,
}

/// The observers and interceptors of an app, in declaration order.
#[derive(Default)]
pub(super) struct Hooks {
    observers: Vec<(String, ObserverFn)>,
    intercepts: Vec<Intercept>,
}

/// Bounds on one connection's hook tasks.
pub(super) struct Permits {
    observers: Arc<Semaphore>,
    intercepts: Arc<Semaphore>,
}

impl Default for Permits {
    fn default() -> Self {
        Self {
            observers: Arc::new(Semaphore::new(MAX_OBSERVER_TASKS)),
            intercepts: Arc::new(Semaphore::new(MAX_INTERCEPT_TASKS)),
        }
    }
}

impl Hooks {
    pub(super) fn is_empty(&self) -> bool {
        self.observers.is_empty() && self.intercepts.is_empty()
    }

    /// The events (or patterns) to `hook.subscribe`: the observed patterns, then the
    /// intercepted events, each once.
    pub(super) fn subscriptions(&self) -> Vec<String> {
        let mut events: Vec<String> = Vec::new();
        let all = self
            .observers
            .iter()
            .map(|(pattern, _)| pattern)
            .chain(self.intercepts.iter().map(|i| &i.spec.event));
        for event in all {
            if !events.contains(event) {
                events.push(event.clone());
            }
        }
        events
    }

    /// The intercepted events.
    pub(super) fn intercepted(&self) -> impl Iterator<Item = &str> {
        self.intercepts.iter().map(|i| i.spec.event.as_str())
    }

    /// The `capability.register` requests: `(type, name, config)`.
    pub(super) fn capabilities(&self) -> impl Iterator<Item = (CapabilityType, String, Value)> {
        self.intercepts.iter().map(|i| {
            let config = i.spec.config();
            (CapabilityType::Hook, i.spec.event.clone(), to_value(&config))
        })
    }

    /// Takes one `hook.event` notification: starts the handlers' tasks once there is room
    /// for them, and returns.
    pub(super) fn deliver(
        &self,
        params: Value,
        client: Client,
        permits: &Permits,
    ) -> BoxFuture<()> {
        let event: HookEventParams = match parse_params(params) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "malformed hook.event; ignored");
                return Box::pin(async {});
            }
        };
        if event.intercept {
            let handler = self
                .intercepts
                .iter()
                .find(|i| i.spec.event == event.event)
                .map(|i| i.handler.clone());
            let permits = permits.intercepts.clone();
            return Box::pin(async move {
                let Ok(permit) = permits.acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    intercept(handler, event, client).await;
                    drop(permit);
                });
            });
        }
        let handlers: Vec<ObserverFn> = self
            .observers
            .iter()
            .filter(|(pattern, _)| {
                burrow_protocol::manifest::pattern_matches(pattern, &event.event)
            })
            .map(|(_, handler)| handler.clone())
            .collect();
        if handlers.is_empty() {
            tracing::debug!(event = %event.event, "observed event without a handler");
            return Box::pin(async {});
        }
        let permits = permits.observers.clone();
        Box::pin(async move {
            for handler in handlers {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let delivery = HookEvent::new(event.clone(), client.clone());
                let name = event.event.clone();
                tokio::spawn(async move {
                    let run = AssertUnwindSafe(async move { handler(delivery).await });
                    if run.catch_unwind().await.is_err() {
                        tracing::error!(event = %name, "event handler panicked");
                    }
                    drop(permit);
                });
            }
        })
    }
}

/// Runs an interceptor and sends its verdict with `hook.result`. Sends nothing when the
/// handler panics or misses the deadline: the kernel's fail mode decides. An event the
/// app does not intercept (a kernel mistake) is answered `continue`.
async fn intercept(handler: Option<InterceptFn>, event: HookEventParams, client: Client) {
    let event_id = event.event_id.clone();
    let name = event.event.clone();
    let verdict = match handler {
        None => {
            tracing::warn!(event = %name, "asked to intercept an event we did not register for; continuing");
            HookVerdict::Continue
        }
        Some(handler) => {
            let left =
                event.deadline_ms.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
            let delivery = HookEvent::new(event, client.clone());
            let run = AssertUnwindSafe(async move { handler(delivery).await }).catch_unwind();
            let outcome = match left {
                // A handler that is done at once still counts, even past the deadline.
                Some(left) => tokio::time::timeout(left, run).await,
                None => Ok(run.await),
            };
            match outcome {
                Ok(Ok(verdict)) => verdict,
                Ok(Err(_)) => {
                    tracing::error!(event = %name, %event_id, "interceptor panicked; no verdict sent, the kernel's fail mode decides");
                    return;
                }
                Err(_) => {
                    tracing::warn!(event = %name, %event_id, "interceptor missed the deadline; abandoned, the kernel's fail mode decides");
                    return;
                }
            }
        }
    };
    let params = HookResultParams { event_id: event_id.clone(), result: verdict };
    if let Err(e) = client.call_with_timeout::<HookResult>(params, RESULT_TIMEOUT).await {
        tracing::warn!(event = %name, %event_id, error = %e, "hook.result was not accepted");
    }
}

/// Whether `pattern` is an event name or a trailing-`*` pattern.
fn is_event_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 256
        && !pattern.trim_end_matches('*').contains('*')
        && !pattern.ends_with("**")
        && !pattern.chars().any(char::is_whitespace)
}

impl App {
    /// Observes the events matching `pattern` (a name, or a trailing-`*` pattern such as
    /// `session_*`): subscribed with `hook.subscribe` on every connection and added to the
    /// manifest's `capabilities.hooks.subscribe` unless a pattern there covers it.
    ///
    /// Each observed `hook.event` goes to every `on_event` handler whose pattern matches,
    /// each in a task of its own (so handlers may see events out of order); a panic is
    /// logged. Several handlers may share a pattern.
    pub fn on_event<F, Fut>(mut self, pattern: impl Into<String>, handler: F) -> Self
    where
        F: Fn(HookEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let pattern = pattern.into();
        if !is_event_pattern(&pattern) {
            self.mistakes
                .push(format!("{pattern:?} is not an event name or a trailing-`*` pattern"));
        }
        let handler: ObserverFn = Arc::new(move |event| Box::pin(handler(event)));
        self.handlers.hooks.observers.push((pattern, handler));
        self
    }

    /// Intercepts `event` at `priority` (lower runs first), with the kernel's deadline
    /// and fail mode. See [`App::intercept_with`].
    pub fn intercept<F, Fut>(self, event: impl Into<String>, priority: i64, handler: F) -> Self
    where
        F: Fn(HookEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookVerdict> + Send + 'static,
    {
        self.intercept_with(InterceptSpec::new(event, priority), handler)
    }

    /// Intercepts one event: on every connection the SDK `hook.subscribe`s it, then
    /// registers a `hook` capability (`{event, priority, timeoutMs?, failMode?}`); it adds
    /// the event to the manifest's `capabilities.hooks.subscribe` and `.intercept` unless
    /// patterns there cover it.
    ///
    /// For each interception (`hook.event` with `intercept: true`) the handler runs in a
    /// task of its own and its [`HookVerdict`] is sent back with `hook.result`. If the
    /// handler panics, or is still running at the kernel's deadline (it is then
    /// abandoned), **nothing is sent** and the kernel's fail mode decides. Naming an event
    /// by pattern, twice, or with a zero timeout fails the run at start-up.
    ///
    /// ```no_run
    /// use burrow_sdk::{App, HookVerdict, InterceptSpec, Manifest};
    /// use burrow_sdk::protocol::methods::capability::FailMode;
    /// use std::time::Duration;
    ///
    /// let spec = InterceptSpec::new("before_tool_call", 10)
    ///     .timeout(Duration::from_secs(2))
    ///     .fail_mode(FailMode::Closed);
    /// let app = App::new(Manifest::new("guard", "0.1.0")).intercept_with(spec, |event| async move {
    ///     if event.payload["name"] == "rm" {
    ///         HookVerdict::Block { reason: "no rm".into() }
    ///     } else {
    ///         HookVerdict::Continue
    ///     }
    /// });
    /// ```
    pub fn intercept_with<F, Fut>(mut self, spec: InterceptSpec, handler: F) -> Self
    where
        F: Fn(HookEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookVerdict> + Send + 'static,
    {
        let event = &spec.event;
        if event.is_empty() || event.contains('*') || event.chars().any(char::is_whitespace) {
            self.mistakes.push(format!("{event:?} does not name one event to intercept"));
        } else if !burrow_protocol::rules::is_interceptable(event) {
            let can: Vec<&str> =
                burrow_protocol::rules::INTERCEPTABLE.iter().map(|(e, _)| *e).collect();
            self.mistakes.push(format!(
                "{event} cannot be intercepted (interceptable: {}); observe it with on_event",
                can.join(", ")
            ));
        }
        if self.handlers.hooks.intercepted().any(|e| e == event) {
            self.mistakes.push(format!("{event} is intercepted twice"));
        }
        if spec.timeout.is_some_and(|t| deadline_ms(t).is_none()) {
            self.mistakes.push(format!("the timeout of the {event} interceptor must be positive"));
        }
        let handler: InterceptFn = Arc::new(move |event| Box::pin(handler(event)));
        self.handlers.hooks.intercepts.push(Intercept { spec, handler });
        self
    }
}

#[cfg(test)]
mod tests;
