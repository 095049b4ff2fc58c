//! # burrow-sdk
//!
//! (being written)
pub mod transport;
