//! A run's reply on its way to the session's channel app: `message_sending`
//! (interceptable), `channel.send`, `message_sent`.
//!
//! A session's replies reach its channel in order: each delivery waits until the one
//! before it (of the same run or an earlier one) is through (`Outgoing`, kept by
//! [`super::Sessions`] so that neither the session's eviction nor a restart breaks it),
//! and none holds up a run. A channel more than [`MAX_UNDELIVERED`] replies behind misses
//! the newest (they are in the transcript).
//!
//! Most replies take a shorter way (`Direct`): when no interceptor sees
//! `message_sending` and nothing of the session's is on its way to the channel, the
//! reply is sent by whoever completes its durable write (the store's journal thread),
//! the moment it is on disk, with no task between.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use burrow_protocol::methods::Method;
use burrow_protocol::methods::capability::CapabilityType;
use burrow_protocol::methods::invoke::{ChannelSend, ChannelSendParams, StreamEndReason};
use burrow_protocol::{ErrorObject, Map, Value};
use serde_json::json;
use tokio::sync::oneshot;

use super::actor::context;
use crate::capabilities::Capability;
use crate::hooks;
use crate::kernel::Kernel;
use crate::store::SessionRow;

/// Replies of one session waiting for its channel, at most.
pub const MAX_UNDELIVERED: usize = 64;

/// A session's replies on their way to its channel.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// Resolves (closed) once the latest delivery is through.
    last: Option<oneshot::Receiver<()>>,
    pending: Arc<AtomicUsize>,
}

/// What runs when a delivery's place is given back.
pub(crate) type After = Box<dyn FnOnce() + Send + Sync>;

/// One delivery's place in its session's order: it counts toward [`MAX_UNDELIVERED`]
/// and holds back the next delivery until dropped (however the delivery ends: an
/// answer, a timeout, a panic), then runs its `after`.
pub(crate) struct Place {
    pending: Arc<AtomicUsize>,
    _through: oneshot::Sender<()>,
    after: Option<After>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        if let Some(after) = self.after.take() {
            after();
        }
    }
}

impl Outgoing {
    /// The next place in order and what it waits for; `None` when [`MAX_UNDELIVERED`]
    /// are waiting already. Its delivery is started with [`start`] once whatever guards
    /// this `Outgoing` is let go: a delivery ended at once gives its place back, which
    /// takes that guard again.
    pub(crate) fn place(&mut self, after: After) -> Option<(Place, Option<oneshot::Receiver<()>>)> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_UNDELIVERED {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let (through, last) = oneshot::channel();
        let before = self.last.replace(last);
        let place = Place { pending: self.pending.clone(), _through: through, after: Some(after) };
        Some((place, before))
    }

    /// Runs `delivery` once every earlier one is through, then `after` (once its place
    /// is given back); false (and dropped) when [`MAX_UNDELIVERED`] are waiting already.
    #[cfg(test)]
    pub(crate) fn then(
        &mut self,
        delivery: impl Future<Output = ()> + Send + 'static,
        after: impl FnOnce() + Send + Sync + 'static,
    ) -> bool {
        let Some((place, before)) = self.place(Box::new(after)) else { return false };
        start(place, before, delivery);
        true
    }

    /// A place for a delivery sent at once, only when none is on its way: nothing can
    /// come before it. The next delivery waits until it is dropped.
    pub(crate) fn now(&mut self, after: impl FnOnce() + Send + Sync + 'static) -> Option<Place> {
        if self.pending() != 0 {
            return None;
        }
        self.place(Box::new(after)).map(|(place, _)| place)
    }

    /// Replies not through yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// Runs `delivery` in its place: once `before` (the delivery before it) is through.
pub(crate) fn start(
    place: Place,
    before: Option<oneshot::Receiver<()>>,
    delivery: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        let _place = place;
        if let Some(before) = before {
            let _ = before.await;
        }
        delivery.await;
    });
}

/// Sends `text` through the session's channel after every earlier reply of the session.
pub(super) fn send_reply(kernel: &Arc<Kernel>, session: &SessionRow, run_id: &str, text: String) {
    if text.is_empty() {
        return;
    }
    let (k, row, run) = (kernel.clone(), session.clone(), run_id.to_owned());
    let delivery = async move { deliver(&k, &row, &run, text).await };
    if !kernel.sessions.deliver_in_order(&session.key, delivery, given_back(kernel, &session.key)) {
        tracing::warn!(session = %session.key, run = %run_id, "the channel is {MAX_UNDELIVERED} replies behind; this one is not delivered");
    }
}

/// What a delivery of session `key` does once through: forget the session's chain if
/// it was the last.
fn given_back(kernel: &Arc<Kernel>, key: &str) -> impl FnOnce() + Send + Sync + 'static {
    let (k, key) = (kernel.clone(), key.to_owned());
    move || k.sessions.delivered(&key)
}

/// The capability of the session's channel, when an app that is ready holds it.
fn channel_of(kernel: &Kernel, session: &SessionRow) -> Option<Arc<Capability>> {
    let channel_id = session.channel_id.as_deref()?;
    kernel
        .caps
        .by_name(CapabilityType::Channel, channel_id)
        .filter(|c| kernel.apps.is_ready(&c.app_id))
}

fn run_context(key: &str, run_id: &str) -> Map {
    let mut c = context(key);
    c.insert("runId".into(), run_id.into());
    c
}

/// Sends the reply through the session's channel app.
async fn deliver(kernel: &Arc<Kernel>, session: &SessionRow, run_id: &str, content: String) {
    let Some(channel_id) = session.channel_id.clone() else { return };
    let Some(channel) = channel_of(kernel, session) else {
        tracing::warn!(session = %session.key, channel = %channel_id, "no ready app holds the session's channel; reply not delivered");
        return;
    };
    let ctx = run_context(&session.key, run_id);
    let config = kernel.config();
    let payload = json!({ "sessionKey": session.key, "channelId": channel_id, "content": content, "metadata": {} });
    let payload = match hooks::intercept(
        kernel.intercept_scope(),
        &config,
        "message_sending",
        payload,
        &ctx,
    )
    .await
    {
        Ok(p) => p,
        Err(b) => {
            tracing::info!(session = %session.key, by = %b.by, reason = %b.reason, "reply blocked by an interceptor");
            if let Some(channel) = super::stream::streaming_channel(kernel, session) {
                super::stream::tell_end(&channel, &session.key, run_id, StreamEndReason::Blocked);
            }
            return;
        }
    };
    let params = ChannelSendParams {
        channel_id,
        session_key: session.key.clone(),
        account_id: session.account_id.clone(),
        content: payload["content"].as_str().unwrap_or_default().to_owned(),
        metadata: payload["metadata"].as_object().cloned(),
    };
    let timeout = Duration::from_millis(config.ipc.call_timeout_ms);
    let outcome = channel.conn.request(ChannelSend::NAME, &params, timeout).await;
    answered(kernel, &params, ctx, outcome);
}

/// What the channel said: `message_sent`, or a warning.
fn answered(
    kernel: &Kernel,
    params: &ChannelSendParams,
    ctx: Map,
    outcome: Result<Value, ErrorObject>,
) {
    let (key, channel_id) = (&params.session_key, &params.channel_id);
    match outcome {
        Ok(result) => kernel.emit_with("message_sent", || {
            let sent = json!({ "sessionKey": key, "channelId": channel_id, "content": params.content, "messageId": result.get("messageId") });
            (sent, ctx)
        }),
        Err(e) => {
            tracing::warn!(session = %key, channel = %channel_id, error = %e, "channel.send failed")
        }
    }
}

/// A reply sent by whoever completes its durable write, on any thread.
pub(super) struct Direct {
    kernel: Arc<Kernel>,
    session: SessionRow,
    run_id: String,
    channel: Arc<Capability>,
    params: ChannelSendParams,
    ctx: Map,
    timeout: Duration,
    place: Place,
    runtime: tokio::runtime::Handle,
    /// What comes first once the reply is stored (the run's `agent_end`).
    first: Option<Box<dyn FnOnce() + Send>>,
}

impl Direct {
    /// `text`'s delivery without a task, when nothing can come between: the session's
    /// channel is held by a ready app, no interceptor sees `message_sending`, and none of
    /// the session's replies is on its way. `None` otherwise: [`send_reply`] then.
    /// Dropped unsent (its write refused), it gives its place back.
    pub(super) fn prepare(
        kernel: &Arc<Kernel>,
        session: &SessionRow,
        run_id: &str,
        text: &str,
    ) -> Option<Direct> {
        if text.is_empty() || kernel.caps.intercepted("message_sending") {
            return None;
        }
        let channel = channel_of(kernel, session)?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let place = kernel.sessions.deliver_now(&session.key, given_back(kernel, &session.key))?;
        let params = ChannelSendParams {
            channel_id: session.channel_id.clone()?,
            session_key: session.key.clone(),
            account_id: session.account_id.clone(),
            content: text.to_owned(),
            metadata: Some(Map::new()),
        };
        let timeout = Duration::from_millis(kernel.config().ipc.call_timeout_ms);
        let ctx = run_context(&session.key, run_id);
        Some(Direct {
            kernel: kernel.clone(),
            session: session.clone(),
            run_id: run_id.to_owned(),
            channel,
            params,
            ctx,
            timeout,
            place,
            runtime,
            first: None,
        })
    }

    /// Runs `first` once the reply is stored, before it is sent.
    pub(super) fn after(mut self, first: impl FnOnce() + Send + 'static) -> Self {
        self.first = Some(Box::new(first));
        self
    }

    /// Sends it: once the reply is on disk. The answer is handled where it arrives.
    /// Should an interceptor of `message_sending` have come, or the channel have gone
    /// or changed hands, while the reply was being stored, it goes the ordered way,
    /// which judges that when it sends.
    pub(super) fn send(self) {
        let Direct {
            kernel,
            session,
            run_id,
            channel,
            params,
            ctx,
            timeout,
            place,
            runtime,
            first,
        } = self;
        // A task waiting for room in the channel's queue, or a delivery the ordered way,
        // needs the runtime.
        let _runtime = runtime.enter();
        if let Some(first) = first {
            first();
        }
        let same = |c: &Arc<Capability>| Arc::ptr_eq(c, &channel);
        let unchanged = !kernel.caps.intercepted("message_sending")
            && channel_of(&kernel, &session).is_some_and(|c| same(&c));
        if !unchanged {
            drop(place);
            return send_reply(&kernel, &session, &run_id, params.content);
        }
        let params = Arc::new(params);
        let sent = params.clone();
        let then = Box::new(move |outcome| {
            answered(&kernel, &sent, ctx, outcome);
            drop(place);
        });
        channel.conn.request_then(ChannelSend::NAME, &*params, timeout, then);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn deliveries_run_in_order_and_a_channel_too_far_behind_misses_the_newest() {
        let mut outgoing = Outgoing::default();
        let done = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = oneshot::channel::<()>();
        let first = done.clone();
        assert!(outgoing.then(
            async move {
                let _ = gate.await;
                first.lock().unwrap().push(0);
            },
            || {}
        ));
        for i in 1..MAX_UNDELIVERED {
            let done = done.clone();
            assert!(outgoing.then(async move { done.lock().unwrap().push(i) }, || {}));
        }
        assert!(!outgoing.then(async {}, || {}), "one more than the bound is refused");
        open.send(()).unwrap();
        let last = outgoing.last.take().expect("a delivery");
        let _ = tokio::time::timeout(Duration::from_secs(10), last).await.expect("in time");
        assert_eq!(*done.lock().unwrap(), (0..MAX_UNDELIVERED).collect::<Vec<_>>());
        assert_eq!(outgoing.pending(), 0);
        let done = done.clone();
        assert!(outgoing.then(async move { done.lock().unwrap().push(99) }, || {}), "room again");
    }

    #[tokio::test]
    async fn a_delivery_that_panics_gives_its_place_back_and_runs_its_after() {
        let mut outgoing = Outgoing::default();
        let (after, ran) = oneshot::channel();
        assert!(outgoing.then(async { panic!("a delivery panics") }, move || {
            let _ = after.send(());
        }));
        let last = outgoing.last.take().expect("a delivery");
        let _ = tokio::time::timeout(Duration::from_secs(10), last).await.expect("in time");
        tokio::time::timeout(Duration::from_secs(10), ran).await.expect("in time").unwrap();
        assert_eq!(outgoing.pending(), 0);
    }

    #[tokio::test]
    async fn a_delivery_sent_at_once_comes_only_first_and_holds_back_the_next() {
        let mut outgoing = Outgoing::default();
        let place = outgoing.now(|| {}).expect("nothing on its way: at once");
        assert!(outgoing.now(|| {}).is_none(), "one on its way: not at once");
        let done = Arc::new(Mutex::new(false));
        let next = done.clone();
        assert!(outgoing.then(async move { *next.lock().unwrap() = true }, || {}));
        tokio::task::yield_now().await;
        assert!(!*done.lock().unwrap(), "the next waits for the one sent at once");
        drop(place);
        let last = outgoing.last.take().expect("a delivery");
        let _ = tokio::time::timeout(Duration::from_secs(10), last).await.expect("in time");
        assert!(*done.lock().unwrap());
        assert_eq!(outgoing.pending(), 0);
        assert!(outgoing.now(|| {}).is_some(), "at once again");
    }
}
