//! The stable error codes of the wire (PROTOCOL.md §3) and the error object that carries them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

use crate::Value;

/// Every error code the protocol knows, as stable strings on the wire.
///
/// Internal error types map onto these; their `Display` text is never the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Nothing better fits.
    UnknownError,
    /// The frame or message is malformed, or too large.
    InvalidRequest,
    /// No such method.
    MethodNotFound,
    /// Params missing, mistyped or out of range (`data.field` names the field).
    InvalidParams,
    /// The kernel failed; it keeps running.
    InternalError,
    /// A token is missing, forged or expired.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// The named thing does not exist.
    NotFound,
    /// The name or id is already taken.
    Conflict,
    /// The far side did not answer within the deadline.
    Timeout,
    /// A method other than `app.register`/`kernel.info` before registering.
    AppNotRegistered,
    /// The app called a method its granted capabilities do not allow.
    CapabilityDenied,
    /// Intercepting or answering an event the app has not subscribed to.
    HookNotSubscribed,
    /// The peer that had to answer disconnected first.
    ConnectionClosed,
}

impl ErrorCode {
    /// All codes, in the order of PROTOCOL.md §3.
    pub const ALL: [ErrorCode; 14] = [
        Self::UnknownError,
        Self::InvalidRequest,
        Self::MethodNotFound,
        Self::InvalidParams,
        Self::InternalError,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::Timeout,
        Self::AppNotRegistered,
        Self::CapabilityDenied,
        Self::HookNotSubscribed,
        Self::ConnectionClosed,
    ];

    /// The wire string of this code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownError => "UNKNOWN_ERROR",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::MethodNotFound => "METHOD_NOT_FOUND",
            Self::InvalidParams => "INVALID_PARAMS",
            Self::InternalError => "INTERNAL_ERROR",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::Timeout => "TIMEOUT",
            Self::AppNotRegistered => "APP_NOT_REGISTERED",
            Self::CapabilityDenied => "CAPABILITY_DENIED",
            Self::HookNotSubscribed => "HOOK_NOT_SUBSCRIBED",
            Self::ConnectionClosed => "CONNECTION_CLOSED",
        }
    }

    /// Parses a wire string; `None` for a code this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    /// A code this version does not know reads as `UNKNOWN_ERROR`, so a newer peer's
    /// codes never make a response unreadable.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s).unwrap_or(Self::UnknownError))
    }
}

/// The `error` member of an error response: `{code, message, data?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The stable code.
    pub code: ErrorCode,
    /// Text for humans; never parse it.
    pub message: String,
    /// Structured detail, e.g. `{field}` for `INVALID_PARAMS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Attaches structured detail.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// `INVALID_PARAMS` naming the offending field in `data.field`.
    pub fn invalid_params(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
            .with_data(serde_json::json!({ "field": field.into() }))
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorObject {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_stable_string_that_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(seen.len(), 14);
    }

    #[test]
    fn unknown_code_reads_as_unknown_error() {
        let code: ErrorCode = serde_json::from_str("\"SOMETHING_NEW\"").unwrap();
        assert_eq!(code, ErrorCode::UnknownError);
    }
}
