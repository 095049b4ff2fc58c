//! The signed channel between kernels (the kernel channel).
//!
//! Each kernel is identified by its ed25519 key ([`crate::token::KernelKey`]); its kernel
//! id is the lowercase hex of the public key. A kernel hands others its [`Binding`] (key
//! and `HOST:PORT`); they add it to their [`TrustStore`]. Kernels then exchange
//! [`Envelope`]s as newline-delimited JSON over TCP, each line a [`SignedEnvelope`] (the
//! exact JSON text plus a signature over it), each answered by one signed [`Ack`].
//!
//! ```text
//! sender                                          receiver
//!  send() ── dial, one SignedEnvelope line ──▶  serve(): per line, in order:
//!                                                 oversize, malformed, untrusted_sender,
//!                                                 invalid_signature, misaddressed, stale,
//!                                                 replayed → Inbox::deliver (inbox_full,
//!                                                 timeout, or the inbox's own reason)
//!  open_ack() ◀── one signed Ack line ─────────  accepted {body} | refused {reason}
//! ```
//!
//! ## Map
//!
//! | module | role |
//! |---|---|
//! | [`binding`] | the binding file: validation, 0600 atomic writes |
//! | [`trust`] | the trust store `<state>/peers/trusted.json` (the path keeps its old name), in memory and on disk |
//! | [`envelope`] | [`Envelope`], [`Ack`], [`SignedEnvelope`]; signing |
//! | [`refusal`] | [`Refusal`] and its wire names |
//! | `replay` | the bounded replay cache |
//! | [`node`] | [`KernelNode`]: key, id, limits, the checks on each line, counters |
//! | [`listener`] | [`serve`] and the [`Inbox`] trait |
//! | [`client`] | [`send`], [`KernelConnection`], [`open_ack`] |
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo(state: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use burrow_kernel::remote::{
//!     Binding, KernelChannelSettings, KernelNode, TrustStore, kernel_id, send,
//! };
//! use burrow_kernel::token::KernelKey;
//!
//! let key = KernelKey::load_or_create(state)?;
//! let trust = Arc::new(TrustStore::open(state, &kernel_id(key.verifying_key()))?);
//! let settings = KernelChannelSettings::default();
//! let node = Arc::new(KernelNode::new(&key, trust.clone(), settings));
//! node.binding("alpha", "alpha.example:7400").write(&state.join("binding.json"))?;
//! let beta = Binding::read(std::path::Path::new("beta-binding.json"))?;
//! trust.trust(beta.clone())?;
//! let body = send(&node, &beta, "message", serde_json::json!({"text": "hi"}),
//!     std::time::Duration::from_secs(10)).await?;
//! # let _ = body; Ok(()) }
//! ```

pub mod binding;
pub mod client;
pub mod envelope;
pub mod listener;
pub mod node;
pub mod refusal;
mod replay;
pub mod trust;

#[cfg(test)]
mod tests;

pub use binding::{Binding, BindingError, kernel_id};
pub use client::{KernelConnection, SendError, open_ack, send, send_envelope};
pub use envelope::{Ack, AckStatus, Envelope, SignedEnvelope, sign_ack, sign_envelope};
pub use listener::{DeliverFuture, Inbox, serve};
pub use node::{KernelChannelSettings, KernelNode, Rejected};
pub use refusal::Refusal;
pub use trust::{TrustError, TrustStore};
