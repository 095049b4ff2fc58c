//! # burrow-kernel
//!
//! The Burrow kernel as a library; the `burrow` binary ([`cli`]) is a thin command line
//! over it. Start one with [`server::run`], which takes the shutdown signal as a future:
//!
//! ```no_run
//! # async fn demo() -> Result<(), burrow_kernel::server::KernelError> {
//! use burrow_kernel::server::{run, Settings};
//! let settings = Settings {
//!     socket: "/tmp/burrow-demo/kernel.sock".into(),
//!     state_dir: "/tmp/burrow-demo/state".into(),
//!     config_path: None,
//!     listen: Default::default(),
//! };
//! run(settings, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! ## Map
//!
//! | module | role |
//! |---|---|
//! | [`endpoints`] | listeners besides the socket: JSON-RPC, REST, the kernel channel |
//! | [`descriptors`] | the descriptor limit raised at start; the host surfaces' share of it |
//! | [`server`] | state dir, config, key, socket binding (stale reclaimed, live never stolen), graceful stop |
//! | [`supervisor`] | managed app processes: start, restart with backoff, stop, logs, strays |
//! | [`sessions`] | session actors, their queues, the agent loop |
//! | [`store`] | durable sessions, transcripts, runs, peer requests (write-ahead journal with group commit, applied to SQLite) |
//! | [`service`] | the service layer: what every surface asks, as plain functions returning one error enum |
//! | [`handlers`] | the request handlers every surface shares: a method, its service call, its result's shape |
//! | [`host`] | the host surfaces' adapter (`session/create`, `comms/send`, ...) over the services |
//! | [`surface`] | JSON-RPC (TCP, stdio) and REST host surfaces over a [`surface::Host`] |
//! | [`telemetry`] | traces over OTLP: spans of runs, provider and tool calls, interceptors; `traceparent` |
//! | [`metrics`] | Prometheus metrics (`/metrics`): what is recorded, the recorder |
//! | [`mcp`] | Burrow as an MCP server (`burrow mcp serve`, `/mcp`): the kernel's tools and sessions |
//! | [`kernel`] | the shared [`kernel::Kernel`] context |
//! | [`root`] | the root [`root::KernelActor`]: accept loop, supervision of app actors, shutdown |
//! | [`app_actor`] | one [`app_actor::AppActor`] per connection: lifecycle, heartbeat deadline, cleanup |
//! | [`connection`] | framing, reader task, outbox (senders write directly; what a batch of frames already read sends goes out in one write), the [`connection::Responder`], bounded writer queue, in-flight bound, kernel → app requests awaiting answers (a task or a continuation each, with deadlines) |
//! | [`methods`] | the IPC adapter: the one dispatch point; one module per family of methods |
//! | [`registry`] | live apps (dashmap), written only by their own actor |
//! | [`capabilities`] | granted capabilities, unique names, grant decisions |
//! | [`hooks`] | subscriptions, observer delivery (bounded, drop-and-count), interception chains |
//! | [`surface`] | host surfaces over a [`surface::Host`]: JSON-RPC 2.0 (TCP, stdio), REST + SSE, host tokens |
//! | [`token`] | the ed25519 kernel key and app tokens |
//! | [`remote`] | the signed channel between kernels (the kernel channel): bindings, trust store, envelopes, TCP listener and client |
//! | [`config`] | the TOML configuration, policy, access rules, hot reload |
//! | [`fsutil`] | owner-only files and directories |
//! | [`sizes`] | values' sizes as JSON text, which bounds count |
//! | [`clock`] | the monotonic clock behind heartbeat deadlines |
//! | [`cli`] | the `burrow` command line |
//!
//! ## Rules the code keeps
//!
//! - An actor never awaits another process inside a handler: kernel → app requests are
//!   awaited in spawned tasks that report back with a message.
//! - Every queue is bounded where messages enter (the connection), every wait has a
//!   deadline, and nothing a client sends can panic the kernel.

pub mod app_actor;
pub mod capabilities;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod descriptors;
pub mod endpoints;
pub mod fsutil;
pub mod handlers;
pub mod hooks;
pub mod host;
pub mod kernel;
pub mod mcp;
pub mod methods;
pub mod metrics;
pub mod registry;
pub mod remote;
pub mod root;
pub mod server;
pub mod service;
pub mod sessions;
pub mod sizes;
pub mod stop;
pub mod store;
pub mod supervisor;
pub mod surface;
pub mod telemetry;
pub mod token;

/// The kernel's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
