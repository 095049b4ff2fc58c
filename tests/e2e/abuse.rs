//! The abuse suite: hostile and broken clients against the real kernel (real process,
//! real sockets), one test per hole, each named for the bound that closes it. Every
//! bound is in the table of docs/protocol.md ("Bounds"); these tests keep each one
//! closed. Counts and deadlines are small so the whole suite runs in CI within seconds.
//!
//! | module | holes |
//! |---|---|
//! | [`backpressure`] | outbound queues bounded in bytes on every surface; a client that reads nothing holds little memory; a reading client is always served; memory comes back |
//! | [`deadlines`] | HTTP header, body and idle deadlines; JSON-RPC idle timeout; connection caps answered at accept time; the descriptor budget that keeps the app socket serving |

mod backpressure;
mod deadlines;
