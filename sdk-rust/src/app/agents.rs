//! What agent runs use from an app: model providers ([`App::provider`], answering the
//! kernel's `provider.complete`) and channels ([`App::channel`], answering its
//! `channel.send`), the contexts their handlers get, and the dispatch of those requests.

use std::future::Future;
use std::sync::Arc;

use burrow_protocol::methods::Method;
use burrow_protocol::methods::capability::{CapabilityType, ChannelConfig, ProviderConfig};
use burrow_protocol::methods::invoke::{
    ChannelDelta, ChannelDeltaParams, ChannelSendParams, ChannelSendResult, ChannelStreamEndParams,
    ProviderChunk, ProviderCompleteParams, ProviderCompleteResult,
};
use burrow_protocol::methods::{parse_params, to_value};
use burrow_protocol::{ErrorCode, ErrorObject, Id, Value};

use super::App;
use crate::Client;
use crate::peer::BoxFuture;

/// Longest provider or channel id, in bytes (the kernel's bound).
pub const MAX_ID_LEN: usize = 128;

/// What a provider handler learns about the completion it serves (`provider.complete`),
/// and how it streams its answer as it is produced.
#[derive(Debug, Clone)]
pub struct ProviderContext {
    /// The provider asked (useful when one handler serves several).
    pub provider_id: String,
    client: Client,
    request_id: Id,
}

impl ProviderContext {
    /// Streams more of the answer's text to the kernel, before the handler returns the
    /// whole message (which is what the kernel stores): the kernel passes it on to the
    /// session's followers at once.
    pub async fn text_delta(&self, text: impl Into<String>) -> crate::Result<()> {
        self.chunk(ProviderChunk::TextDelta { text: text.into() }).await
    }

    /// Streams one chunk of the answer ([`ProviderChunk`]: text, or a piece of a tool
    /// call), in order with the others.
    pub async fn chunk(&self, chunk: ProviderChunk) -> crate::Result<()> {
        self.client.shared.send_chunk(self.request_id.clone(), to_value(&chunk)).await
    }

    /// The app's connection to the kernel, to call kernel methods from the handler.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The id the app registered as.
    pub fn app_id(&self) -> &str {
        self.client.app_id().unwrap_or_default()
    }
}

/// What a channel handler learns about the delivery it serves (`channel.send`).
#[derive(Debug, Clone)]
pub struct ChannelContext {
    /// The channel asked (useful when one handler serves several).
    pub channel_id: String,
    client: Client,
}

impl ChannelContext {
    /// The app's connection to the kernel, to call kernel methods (e.g.
    /// [`Client::dispatch`]) from the handler.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The id the app registered as.
    pub fn app_id(&self) -> &str {
        self.client.app_id().unwrap_or_default()
    }
}

type Answer<T> = BoxFuture<std::result::Result<T, ErrorObject>>;
type ProviderFn = Arc<
    dyn Fn(ProviderCompleteParams, ProviderContext) -> Answer<ProviderCompleteResult> + Send + Sync,
>;
type ChannelFn =
    Arc<dyn Fn(ChannelSendParams, ChannelContext) -> Answer<ChannelSendResult> + Send + Sync>;
type DeltaFn = Arc<dyn Fn(ChannelStreamEvent, ChannelContext) -> BoxFuture<()> + Send + Sync>;

/// What a streaming channel is told before (or instead of) a reply's `channel.send`
/// ([`App::channel_deltas`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelStreamEvent {
    /// `channel.delta`: a piece of a reply as the model produces it.
    Delta(ChannelDeltaParams),
    /// `channel.stream_end`: no `channel.send` will follow the pieces of a run's reply
    /// (cancelled, failed or blocked): withdraw or mark what was shown.
    End(ChannelStreamEndParams),
}

impl ChannelStreamEvent {
    /// The session the reply is for.
    pub fn session_key(&self) -> &str {
        match self {
            ChannelStreamEvent::Delta(d) => &d.session_key,
            ChannelStreamEvent::End(e) => &e.session_key,
        }
    }

    /// The channel.
    pub fn channel_id(&self) -> &str {
        match self {
            ChannelStreamEvent::Delta(d) => &d.channel_id,
            ChannelStreamEvent::End(e) => &e.channel_id,
        }
    }
}

struct Provider {
    config: ProviderConfig,
    handler: ProviderFn,
}

struct Channel {
    config: ChannelConfig,
    handler: ChannelFn,
    /// Takes the reply's pieces as they are produced (the channel streams).
    on_delta: Option<DeltaFn>,
}

/// The providers and channels of an app, in declaration order.
#[derive(Default)]
pub(super) struct Agents {
    providers: Vec<Provider>,
    channels: Vec<Channel>,
}

impl Agents {
    pub(super) fn provider_ids(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.config.provider_id.as_str())
    }

    pub(super) fn channel_ids(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(|c| c.config.channel_id.as_str())
    }

    pub(super) fn has_providers(&self) -> bool {
        !self.providers.is_empty()
    }

    pub(super) fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    pub(super) fn has_streaming_channels(&self) -> bool {
        self.channels.iter().any(|c| c.on_delta.is_some())
    }

    /// The `capability.register` requests: `(type, name, config)`, providers first.
    pub(super) fn capabilities(&self) -> impl Iterator<Item = (CapabilityType, String, Value)> {
        let providers = self
            .providers
            .iter()
            .map(|p| (CapabilityType::Provider, p.config.provider_id.clone(), to_value(&p.config)));
        let channels = self
            .channels
            .iter()
            .map(|c| (CapabilityType::Channel, c.config.channel_id.clone(), to_value(&c.config)));
        providers.chain(channels)
    }

    /// Answers `provider.complete`: the named provider's handler, or `NOT_FOUND`.
    pub(super) fn complete(&self, params: Value, client: Client, request_id: Id) -> Answer<Value> {
        let params: ProviderCompleteParams = match parse_params(params) {
            Ok(params) => params,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let Some(provider) =
            self.providers.iter().find(|p| p.config.provider_id == params.provider_id)
        else {
            let e = not_found("provider", "providerId", &params.provider_id);
            return Box::pin(std::future::ready(Err(e)));
        };
        let cx = ProviderContext { provider_id: params.provider_id.clone(), client, request_id };
        let traceparent = params.traceparent.clone();
        let call = crate::trace::within(traceparent.as_deref(), (provider.handler)(params, cx));
        Box::pin(async move { call.await.map(|result| to_value(&result)) })
    }

    /// Answers `channel.send`: the named channel's handler, or `NOT_FOUND`.
    pub(super) fn send(&self, params: Value, client: Client) -> Answer<Value> {
        let params: ChannelSendParams = match parse_params(params) {
            Ok(params) => params,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let Some(channel) = self.channels.iter().find(|c| c.config.channel_id == params.channel_id)
        else {
            let e = not_found("channel", "channelId", &params.channel_id);
            return Box::pin(std::future::ready(Err(e)));
        };
        let cx = ChannelContext { channel_id: params.channel_id.clone(), client };
        let call = (channel.handler)(params, cx);
        Box::pin(async move { call.await.map(|result| to_value(&result)) })
    }

    /// Takes a `channel.delta` or `channel.stream_end` notification: the named
    /// streaming channel's handler. One that names no streaming channel of this app, or
    /// does not decode, is logged and dropped (a notification has no answer).
    pub(super) fn stream_event(
        &self,
        method: &str,
        params: Value,
        client: Client,
    ) -> BoxFuture<()> {
        let event = if method == ChannelDelta::NAME {
            parse_params(params).map(ChannelStreamEvent::Delta)
        } else {
            parse_params(params).map(ChannelStreamEvent::End)
        };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(method, error = %e.message, "a streaming channel's notification that does not decode");
                return Box::pin(std::future::ready(()));
            }
        };
        let on_delta = self
            .channels
            .iter()
            .find(|c| c.config.channel_id == event.channel_id())
            .and_then(|c| c.on_delta.clone());
        let Some(on_delta) = on_delta else {
            tracing::debug!(channel = %event.channel_id(), method, "for no streaming channel of this app");
            return Box::pin(std::future::ready(()));
        };
        let cx = ChannelContext { channel_id: event.channel_id().to_owned(), client };
        on_delta(event, cx)
    }
}

fn not_found(what: &str, field: &str, id: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::NotFound, format!("this app has no {what} {id:?}"))
        .with_data(serde_json::json!({ field: id }))
}

/// Whether `id` is a provider or channel id the kernel and a manifest accept: 1–128 bytes,
/// no whitespace, control characters or `*`.
fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && !id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '*')
}

impl App {
    /// Offers a model provider for agent runs: registered on every connection with
    /// `capability.register {type: "provider", config: {providerId, models}}` and added to
    /// the manifest's `capabilities.providers` unless a pattern there covers it.
    ///
    /// The kernel asks it for the next assistant message with `provider.complete
    /// {providerId, model, messages, tools}`; the handler gets the params and a
    /// [`ProviderContext`], runs in a task of its own, and its `Err` is the error answer (a
    /// panic answers `INTERNAL_ERROR`). The SDK does not check `model` against `models`:
    /// the handler decides. An app may offer several providers; a `provider.complete` for
    /// none of them answers `NOT_FOUND`. An id that is empty, longer than 128 bytes, holds
    /// whitespace, control characters or `*`, or is declared twice fails the run at
    /// start-up.
    ///
    /// ```no_run
    /// use burrow_sdk::{App, AssistantMessage, Manifest, ProviderCompleteResult};
    ///
    /// let app = App::new(Manifest::new("parrot", "0.1.0")).provider(
    ///     "parrot",
    ///     vec!["parrot-1".to_owned()],
    ///     |params, _cx| async move {
    ///         let last = params.messages.last().map(|m| m.content.clone()).unwrap_or_default();
    ///         let message = AssistantMessage { content: last, tool_calls: None };
    ///         Ok(ProviderCompleteResult { message, usage: None })
    ///     },
    /// );
    /// ```
    pub fn provider<F, Fut>(
        mut self,
        provider_id: impl Into<String>,
        models: Vec<String>,
        handler: F,
    ) -> Self
    where
        F: Fn(ProviderCompleteParams, ProviderContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<ProviderCompleteResult, ErrorObject>>
            + Send
            + 'static,
    {
        let provider_id = provider_id.into();
        if !is_valid_id(&provider_id) {
            self.mistakes.push(format!(
                "provider id {provider_id:?} must be 1–{MAX_ID_LEN} bytes without whitespace, control characters or `*`"
            ));
        }
        if self.handlers.agents.provider_ids().any(|p| p == provider_id) {
            self.mistakes.push(format!("two providers with id {provider_id}"));
        }
        let handler: ProviderFn = Arc::new(move |params, cx| Box::pin(handler(params, cx)));
        let config = ProviderConfig { provider_id, models };
        self.handlers.agents.providers.push(Provider { config, handler });
        self
    }

    /// Offers a channel that delivers agent replies: registered on every connection with
    /// `capability.register {type: "channel", config: {channelId, description}}` (no
    /// `description` when it is empty) and added to the manifest's `capabilities.channels`
    /// unless a pattern there covers it.
    ///
    /// The kernel hands it each outgoing message with `channel.send {channelId,
    /// sessionKey, accountId?, content, metadata?}`; the handler gets the params and a
    /// [`ChannelContext`], runs in a task of its own, and answers `{messageId?}` (its `Err`
    /// is the error answer). Inbound messages go the other way, with
    /// [`Client::dispatch`]. A `channel.send` for a channel the app does not hold answers
    /// `NOT_FOUND`; ids are checked as for [`App::provider`].
    ///
    /// ```no_run
    /// use burrow_sdk::{App, ChannelSendResult, Manifest};
    ///
    /// let app = App::new(Manifest::new("console", "0.1.0")).channel(
    ///     "console",
    ///     "Prints replies on stdout",
    ///     |message, _cx| async move {
    ///         println!("[{}] {}", message.session_key, message.content);
    ///         Ok(ChannelSendResult { message_id: None })
    ///     },
    /// );
    /// ```
    pub fn channel<F, Fut>(
        mut self,
        channel_id: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        F: Fn(ChannelSendParams, ChannelContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<ChannelSendResult, ErrorObject>> + Send + 'static,
    {
        let channel_id = channel_id.into();
        if !is_valid_id(&channel_id) {
            self.mistakes.push(format!(
                "channel id {channel_id:?} must be 1–{MAX_ID_LEN} bytes without whitespace, control characters or `*`"
            ));
        }
        if self.handlers.agents.channel_ids().any(|c| c == channel_id) {
            self.mistakes.push(format!("two channels with id {channel_id}"));
        }
        let description = Some(description.into()).filter(|d| !d.is_empty());
        let handler: ChannelFn = Arc::new(move |params, cx| Box::pin(handler(params, cx)));
        let config = ChannelConfig { channel_id, description, streaming: false };
        self.handlers.agents.channels.push(Channel { config, handler, on_delta: None });
        self
    }

    /// Makes channel `channel_id` (declared with [`App::channel`] before) a streaming
    /// channel: it registers with `streaming: true`, and the kernel hands it each reply's
    /// pieces as the model produces them, with `channel.delta {channelId, sessionKey,
    /// runId, seq, delta}` notifications ([`ChannelStreamEvent::Delta`]), before the
    /// `channel.send` of the whole reply; when no reply will come after pieces it had
    /// (the run was cancelled or failed, or an interceptor blocked the reply), it is told
    /// with `channel.stream_end {channelId, sessionKey, runId, reason}`
    /// ([`ChannelStreamEvent::End`]).
    ///
    /// `on_delta` runs for each, one at a time, in the order the kernel sent them (on the
    /// connection's notification task: keep it short, or hand the piece on). The whole
    /// reply's `channel.send` is what counts: it may run before the last pieces are
    /// handled, and it is what `message_sending` interceptors saw (they may have changed
    /// what was streamed: then its content differs). `seq` starts again from 0 at each of
    /// a run's provider calls (a run that calls tools streams the text before its calls
    /// too, though only its last answer is sent). The kernel drops pieces for a channel
    /// that does not keep up (`seq` then skips). Naming a channel not declared fails the
    /// run at start-up.
    ///
    /// ```no_run
    /// use burrow_sdk::{App, ChannelSendResult, ChannelStreamEvent, Manifest, ProviderChunk};
    ///
    /// let app = App::new(Manifest::new("console", "0.1.0"))
    ///     .channel("console", "Prints replies as they are produced", |_sent, _cx| async move {
    ///         println!();
    ///         Ok(ChannelSendResult { message_id: None })
    ///     })
    ///     .channel_deltas("console", |event, _cx| async move {
    ///         match event {
    ///             ChannelStreamEvent::Delta(piece) => {
    ///                 if let ProviderChunk::TextDelta { text } = piece.delta {
    ///                     print!("{text}");
    ///                 }
    ///             }
    ///             ChannelStreamEvent::End(end) => println!(" ({:?})", end.reason),
    ///         }
    ///     });
    /// ```
    pub fn channel_deltas<F, Fut>(mut self, channel_id: &str, on_delta: F) -> Self
    where
        F: Fn(ChannelStreamEvent, ChannelContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(channel) =
            self.handlers.agents.channels.iter_mut().find(|c| c.config.channel_id == channel_id)
        else {
            self.mistakes.push(format!("channel_deltas for channel {channel_id}, not declared"));
            return self;
        };
        channel.config.streaming = true;
        channel.on_delta = Some(Arc::new(move |params, cx| Box::pin(on_delta(params, cx))));
        self
    }
}

#[cfg(test)]
mod tests;
