//! # burrow-protocol
//!
//! The wire contract between the Burrow kernel and its apps, as plain serde types: no
//! sockets, no async. Both the kernel and `burrow-sdk` build on it, and so can any Rust
//! client.
//!
//! Layout:
//! - [`message`]: the five message kinds (request, success/error response, stream chunk,
//!   notification) and [`Id`];
//! - [`error`]: [`ErrorCode`] (the 14 stable code strings) and [`ErrorObject`];
//! - [`codec`]: frames — a 4-byte big-endian length and one MessagePack map with named keys;
//! - [`manifest`]: the app [`Manifest`] and its validation;
//! - [`methods`]: one module per family of methods, each method a marker type
//!   implementing [`methods::Method`] with typed params and result;
//! - [`rules`]: the decisions both ends make alike (capability configs and grants,
//!   interceptable events, route paths, session keys).
//!
//! Values that the protocol leaves free-form (`arguments`, `payload`, `metadata`) are
//! [`Value`]s, i.e. JSON-shaped data: maps with string keys, arrays, strings, numbers,
//! booleans, null. MessagePack binary and extension values, and NaN or infinite floats,
//! are not part of the contract: the codec refuses frames holding them.
//!
//! ```
//! use burrow_protocol::{codec, Message, methods::{self, Method, app::AppHeartbeat}};
//!
//! let request = Message::request(1u64, AppHeartbeat::NAME, serde_json::json!({}));
//! let frame = codec::encode_frame(&request, codec::MAX_FRAME_BYTES).unwrap();
//! let (decoded, used) = codec::decode_frame(&frame, codec::MAX_FRAME_BYTES).unwrap();
//! assert_eq!(used, frame.len());
//! assert_eq!(decoded.unwrap(), request);
//! # let _ = methods::Empty {};
//! ```
#![warn(missing_docs)]

pub mod codec;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod manifest;
pub mod message;
pub mod methods;
pub mod rules;
pub mod strict;

pub use error::{ErrorCode, ErrorObject};
pub use manifest::Manifest;
pub use message::{Chunk, Id, InvalidMessage, Message, Notification, Request, Response};

/// A free-form, JSON-shaped value.
pub type Value = serde_json::Value;
/// A map with string keys.
pub type Map = serde_json::Map<String, Value>;

/// Milliseconds since the Unix epoch, the protocol's time unit.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
