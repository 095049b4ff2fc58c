//! # burrow-sdk
//!
//! Write Burrow apps and clients in Rust. An app connects to the kernel's socket,
//! registers its [`Manifest`], becomes ready, answers the kernel's requests and
//! heartbeats until it leaves; a client just calls kernel methods.
//!
//! Layout, from the wire up:
//! - [`transport`]: the frame codec for tokio streams, local-socket connect, the default
//!   socket path, and an in-memory pipe for tests;
//! - [`peer`]: the correlation engine over one transport, both directions: fresh request
//!   ids, pending requests resolved by their responses, streams, the far side's requests
//!   served concurrently by a [`peer::Service`];
//! - [`client`]: [`Client`], a cheap handle for calling the far side (typed with
//!   [`protocol::methods::Method`], or by name);
//! - [`app`]: [`App`], the consuming builder an app is written with, and its run loop
//!   (register, ready, heartbeat, shutdown both ways, reconnect with the kernel's token);
//! - [`testing`]: [`testing::FakeKernel`], to unit-test apps without a kernel;
//! - [`error`]: [`Error`] and its mapping to the wire's error codes.
//!
//! ```no_run
//! use burrow_sdk::{App, Manifest};
//! use serde_json::json;
//!
//! #[tokio::main]
//! async fn main() -> burrow_sdk::Result<()> {
//!     App::new(Manifest::new("hello", "0.1.0"))
//!         .on_request("hello.greet", |params, _cx| async move {
//!             Ok(json!({ "greeting": format!("Hello, {}!", params["name"]) }))
//!         })
//!         .on_ready(|client| async move {
//!             let info = client.kernel_info().await;
//!             tracing::info!(?info, "ready");
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
pub mod transport;

pub use burrow_protocol as protocol;
pub use burrow_protocol::{ErrorCode, ErrorObject, Manifest, Value};

pub use app::{App, Context, ReconnectPolicy, shutdown_signal};
pub use client::Client;
pub use error::{Error, Result};
pub use peer::{CallStream, StreamItem};
pub use transport::Transport;
