//! What a run streams while its provider produces answers ([`RunStream`]): each chunk of
//! a streamed `provider.complete` answer goes to the session's followers (`text_delta` /
//! `tool_call_delta` events) and, when the session's channel streams, to that channel
//! (`channel.delta`), as it arrives, in order, never waiting for either. The run keeps
//! the text of the answer being produced, so that a cancelled run can store what was
//! said before it was cut short, and knows whether the channel had pieces, so that it can
//! tell the channel when no reply will follow them (`channel.stream_end`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burrow_protocol::methods::capability::{CapabilityConfig, CapabilityType};
use burrow_protocol::methods::invoke::{
    ChannelDelta, ChannelDeltaParams, ChannelStreamEnd, ChannelStreamEndParams, ProviderChunk,
    StreamEndReason,
};
use burrow_protocol::methods::{Method, to_value};
use burrow_protocol::{Message, Value};

use crate::capabilities::Capability;
use crate::kernel::Kernel;
use crate::store::SessionRow;

/// How long a `channel.stream_end` may wait for room in the channel's queue.
const END_WAIT: Duration = Duration::from_secs(5);

/// One run's streaming: see the module's documentation.
pub(super) struct RunStream {
    kernel: Arc<Kernel>,
    session: SessionRow,
    run_id: String,
    state: Arc<Mutex<Streamed>>,
}

/// What a run took: its provider calls (`turns`), the tool calls they asked for, and the
/// tokens the providers reported (`usage.promptTokens` / `completionTokens`, or
/// `input_tokens` / `output_tokens`; none reported counts 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Provider calls answered.
    pub turns: u64,
    /// Tool calls asked for.
    pub tool_calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl RunStats {
    /// Counts one provider answer.
    pub fn count(&mut self, answer: &burrow_protocol::methods::invoke::ProviderCompleteResult) {
        self.turns += 1;
        self.tool_calls += answer.message.tool_calls.as_ref().map_or(0, Vec::len) as u64;
        let tokens = |names: [&str; 2]| {
            let usage = answer.usage.as_ref();
            names.iter().find_map(|n| usage.and_then(|u| u.get(*n)).and_then(Value::as_u64))
        };
        self.input_tokens += tokens(["promptTokens", "input_tokens"]).unwrap_or(0);
        self.output_tokens += tokens(["completionTokens", "output_tokens"]).unwrap_or(0);
    }
}

/// What a run streamed so far.
#[derive(Default)]
struct Streamed {
    /// What the run took so far.
    stats: RunStats,
    /// The text of the provider call in progress, as streamed (empty between calls).
    partial: String,
    /// The streaming channel that got pieces of this run.
    channel: Option<Arc<Capability>>,
    /// Pieces that came before the run's input was known to be on disk, in order
    /// (`None` once it is): they go out when it is ([`RunStream::opener`]).
    held: Option<Vec<(Arc<CallSink>, Value)>>,
}

/// Most pieces held while a run's input is not known to be on disk (for one
/// `fdatasync`, normally). Past that, those held are not passed on, as for a subscriber
/// that lags: they are numbered (receivers see the gap) and their text is kept.
const MAX_HELD: usize = 4096;

/// Where a chunk of a provider's answer goes: what [`RunStream::call`] returns.
pub(super) type OnChunk = Box<dyn Fn(Value) + Send + Sync>;

/// Where the chunks of one provider call go.
struct CallSink {
    kernel: Arc<Kernel>,
    key: String,
    run_id: String,
    channel: Option<Arc<Capability>>,
    seq: AtomicU64,
}

impl CallSink {
    /// Numbers `chunk` and keeps its text; then, when `pass`, publishes it to followers
    /// and passes it to the streaming channel (under the run's lock, so pieces keep their
    /// order).
    fn deliver(&self, state: &mut Streamed, chunk: Value, pass: bool) {
        let chunk = match serde_json::from_value::<ProviderChunk>(chunk) {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::debug!(error = %e, "a provider sent a chunk that is not a ProviderChunk");
                return;
            }
        };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        if let ProviderChunk::TextDelta { text } = &chunk {
            state.partial.push_str(text);
        }
        if !pass {
            return;
        }
        self.kernel.sessions.publish_delta(&self.key, &self.run_id, n, &chunk);
        let Some(channel) = &self.channel else { return };
        if state.channel.is_none() {
            state.channel = Some(channel.clone());
        }
        let params = ChannelDeltaParams {
            channel_id: channel.name().unwrap_or_default(),
            session_key: self.key.clone(),
            run_id: self.run_id.clone(),
            seq: n,
            delta: chunk,
        };
        if !channel.conn.try_notify_with(ChannelDelta::NAME, &params) {
            tracing::debug!(app = %channel.app_id, "a streaming channel is not keeping up; a delta was dropped");
        }
    }
}

impl RunStream {
    /// The stream of run `run_id`; `open` when its input is on disk already, else its
    /// pieces are held until [`RunStream::opener`].
    pub(super) fn new(
        kernel: &Arc<Kernel>,
        session: &SessionRow,
        run_id: &str,
        open: bool,
    ) -> Self {
        let state = Streamed { held: (!open).then(Vec::new), ..Streamed::default() };
        Self {
            kernel: kernel.clone(),
            session: session.clone(),
            run_id: run_id.to_owned(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Streamed> {
        lock(&self.state)
    }

    /// What lets the pieces held go out, in order, and later ones as they come: for
    /// when the run's input is on disk ([`Gate`](super::gate::Gate)).
    pub(super) fn opener(&self) -> impl FnOnce() + Send + 'static {
        let state = self.state.clone();
        move || {
            let mut state = lock(&state);
            for (sink, chunk) in state.held.take().unwrap_or_default() {
                sink.deliver(&mut state, chunk, true);
            }
        }
    }

    /// Where the chunks of the run's next provider call go: numbered from 0 (`seq`),
    /// published to followers, passed to the session's channel when it streams, their
    /// text kept until [`RunStream::answered`].
    pub(super) fn call(&self) -> OnChunk {
        self.lock().partial.clear();
        let sink = Arc::new(CallSink {
            kernel: self.kernel.clone(),
            key: self.session.key.clone(),
            run_id: self.run_id.clone(),
            channel: streaming_channel(&self.kernel, &self.session),
            seq: AtomicU64::new(0),
        });
        let state = self.state.clone();
        Box::new(move |chunk: Value| {
            let mut state = lock(&state);
            let Some(held) = &mut state.held else {
                return sink.deliver(&mut state, chunk, true);
            };
            if held.len() >= MAX_HELD {
                tracing::debug!("too many pieces before the run's input is stored: not passed on");
                for (sink, chunk) in std::mem::take(held) {
                    sink.deliver(&mut state, chunk, false);
                }
            }
            if let Some(held) = &mut state.held {
                held.push((sink.clone(), chunk));
            }
        })
    }

    /// The provider call in progress answered whole: its text is no longer partial, and
    /// the answer counts in the run's [`RunStats`].
    pub(super) fn answered(
        &self,
        answer: &burrow_protocol::methods::invoke::ProviderCompleteResult,
    ) {
        let mut state = self.lock();
        state.partial.clear();
        state.stats.count(answer);
    }

    /// What the run took so far.
    pub(super) fn stats(&self) -> RunStats {
        self.lock().stats
    }

    /// The text the provider had streamed of the answer it was producing when the run
    /// was cut short; `None` when it had streamed none.
    pub(super) fn cut_short(&self) -> Option<String> {
        Some(std::mem::take(&mut self.lock().partial)).filter(|t| !t.is_empty())
    }

    /// Tells the channel that had pieces of this run that no reply follows them.
    pub(super) fn end(&self, reason: StreamEndReason) {
        let channel = self.lock().channel.take();
        if let Some(channel) = channel {
            tell_end(&channel, &self.session.key, &self.run_id, reason);
        }
    }
}

fn lock(state: &Mutex<Streamed>) -> MutexGuard<'_, Streamed> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The session's channel, when it takes replies as they are produced.
pub(super) fn streaming_channel(kernel: &Kernel, session: &SessionRow) -> Option<Arc<Capability>> {
    let channel = kernel.caps.by_name(CapabilityType::Channel, session.channel_id.as_deref()?)?;
    matches!(&channel.config, CapabilityConfig::Channel(c) if c.streaming).then_some(channel)
}

/// Sends `channel` a `channel.stream_end` for run `run_id` of session `key`: at once when
/// its queue has room, else waiting a while for room (it must not be lost as a delta may).
pub(super) fn tell_end(channel: &Capability, key: &str, run_id: &str, reason: StreamEndReason) {
    let params = ChannelStreamEndParams {
        channel_id: channel.name().unwrap_or_default(),
        session_key: key.to_owned(),
        run_id: run_id.to_owned(),
        reason,
    };
    let note = || Message::notification(ChannelStreamEnd::NAME, to_value(&params));
    if channel.conn.try_notify(note()) {
        return;
    }
    let (conn, note) = (channel.conn.clone(), note());
    tokio::spawn(async move {
        if !matches!(tokio::time::timeout(END_WAIT, conn.send_wait(note)).await, Ok(true)) {
            tracing::warn!("a streaming channel did not take the end of a stream in time");
        }
    });
}
