//! # burrow-sdk
//!
//! Write Burrow apps and clients in Rust. An app connects to the kernel's socket,
//! registers its [`Manifest`], declares what it offers (tools, gateway methods, model
//! providers, channels, event observers and interceptors), becomes ready, answers the kernel's requests and
//! heartbeats until it leaves; a client just calls kernel methods.
//!
//! Layout, from the wire up:
//! - [`transport`]: the frame codec for tokio streams, local-socket connect, the default
//!   socket path, and an in-memory pipe for tests;
//! - [`peer`]: the correlation engine over one transport, both directions: fresh request
//!   ids, pending requests resolved by their responses, streams, the far side's requests
//!   served concurrently by a [`peer::Service`];
//! - [`client`]: [`Client`], a cheap handle for calling the far side (typed with
//!   [`protocol::methods::Method`], or by name), with helpers for tools
//!   ([`Client::call_tool`]), configuration ([`Client::config_get`],
//!   [`Client::config_watch`]), sessions and agent runs ([`Client::dispatch`],
//!   [`Client::agent_queue`], [`Client::agent_wait`], [`Client::session_history`], ...),
//!   hooks and capabilities;
//! - [`app`]: [`App`], the consuming builder an app is written with ([`App::tool`],
//!   [`App::gateway_method`], [`App::provider`], [`App::channel`], [`App::on_event`],
//!   [`App::intercept`], ...), and its run loop
//!   (register, subscribe and register capabilities, ready, heartbeat, shutdown both
//!   ways, reconnect with the kernel's token and declare everything again);
//! - [`testing`]: [`testing::FakeKernel`], to unit-test apps without a kernel: it
//!   records what an app declares, invokes its tools, gateway methods, providers and
//!   channels, sends it events and interceptions, and serves configuration;
//! - [`error`]: [`Error`] and its mapping to the wire's error codes.
//!
//! Each app declares things once: the builder adds what its tools, gateway methods,
//! providers, channels and hooks need to the manifest's `capabilities`, unless a pattern
//! there covers it.
//!
//! ```no_run
//! use burrow_sdk::{App, HookVerdict, Manifest, ToolResult};
//! use serde_json::json;
//!
//! #[tokio::main]
//! async fn main() -> burrow_sdk::Result<()> {
//!     App::new(Manifest::new("hello", "0.1.0"))
//!         .tool("shout", "Upper-cases `text`", json!({"type": "object"}), |args, _cx| async move {
//!             let text = args["text"].as_str().unwrap_or_default().to_uppercase();
//!             Ok(ToolResult { content: json!(text), is_error: None })
//!         })
//!         .gateway_method("greet", |params, _cx| async move {
//!             Ok(json!({ "greeting": format!("Hello, {}!", params["name"]) }))
//!         })
//!         .on_event("session_*", |event| async move {
//!             tracing::info!(event = %event.event, "observed");
//!         })
//!         .intercept("before_tool_call", 10, |_event| async { HookVerdict::Continue })
//!         .on_ready(|client| async move {
//!             let grants = client.grants();
//!             tracing::info!(?grants, "ready");
//!         })
//!         .run() // until Ctrl-C/SIGTERM or the kernel's app.shutdown
//!         .await
//! }
//! ```
#![warn(missing_docs)]

pub mod app;
pub mod client;
pub mod error;
pub mod peer;
pub mod testing;
pub mod trace;
pub use burrow_transport as transport;

#[cfg(test)]
mod test_support;

pub use burrow_protocol as protocol;
pub use burrow_protocol::{ErrorCode, ErrorObject, Manifest, Map, Value};

pub use app::{
    App, CapabilityGrant, ChannelContext, ChannelStreamEvent, Context, GatewayContext, Grants,
    HookEvent, InterceptSpec, ProviderContext, ReconnectPolicy, ToolContext, shutdown_signal,
};
pub use burrow_protocol::methods::capability::{CapabilityType, FailMode};
pub use burrow_protocol::methods::config::ConfigChange;
pub use burrow_protocol::methods::hook::HookVerdict;
pub use burrow_protocol::methods::invoke::{
    AssistantMessage, ChannelDeltaParams, ChannelSendParams, ChannelSendResult,
    ChannelStreamEndParams, ChatMessage, ProviderChunk, ProviderCompleteParams,
    ProviderCompleteResult, Role, StreamEndReason, ToolCallRequest, ToolResult, ToolSpec,
};
pub use burrow_protocol::methods::operator::SessionEvent;
pub use client::{Client, ConfigWatchStream, SessionEventStream, WatchStream};
pub use error::{Error, Result};
pub use peer::{CallStream, StreamItem};
pub use transport::Transport;
