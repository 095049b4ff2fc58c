//! The SDK's error type. The wire's stable codes live in [`ErrorCode`]; this enum says what
//! went wrong on *this* side, and [`Error::code`] maps it back to a wire code where one fits.

use burrow_protocol::{ErrorCode, ErrorObject};

/// What can go wrong talking to the kernel (or, in tests, to any peer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be opened, read or written.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The far side answered with an error.
    #[error("{0}")]
    Remote(ErrorObject),
    /// The connection closed before an answer came.
    #[error("connection closed before an answer")]
    Closed,
    /// No answer within the deadline.
    #[error("no answer within the deadline")]
    Timeout,
    /// The far side answered something we could not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// This side closed the connection ([`crate::Client::close`]); nothing more is sent.
    #[error("the connection was closed by this side")]
    Shutdown,
    /// The app's manifest is invalid (found before connecting).
    #[error("invalid manifest: {0}")]
    InvalidManifest(ErrorObject),
    /// The app was configured wrongly (found before connecting).
    #[error("invalid app configuration: {0}")]
    Config(String),
    /// The connection to the kernel was lost and reconnecting gave up.
    #[error("lost the kernel and gave up reconnecting after {attempts} attempts: {last}")]
    ReconnectFailed {
        /// How many connection attempts were made.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<Error>,
    },
}

/// `Result` with the SDK's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The wire code this error corresponds to, where there is one: the far side's code
    /// for [`Error::Remote`], `CONNECTION_CLOSED` for [`Error::Closed`], `TIMEOUT` for
    /// [`Error::Timeout`], `INVALID_PARAMS` for [`Error::InvalidManifest`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote(e) => Some(e.code),
            Error::Closed => Some(ErrorCode::ConnectionClosed),
            Error::Timeout => Some(ErrorCode::Timeout),
            Error::InvalidManifest(e) => Some(e.code),
            Error::ReconnectFailed { last, .. } => last.code(),
            Error::Io(_) | Error::Protocol(_) | Error::Shutdown | Error::Config(_) => None,
        }
    }

    /// An error object to answer a request with, so handlers can pass failures of their
    /// own calls on with `?`: a remote error as it came, everything else under its code
    /// (`INTERNAL_ERROR` when there is none).
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            Error::Remote(e) | Error::InvalidManifest(e) => e.clone(),
            other => ErrorObject::new(
                other.code().unwrap_or(ErrorCode::InternalError),
                other.to_string(),
            ),
        }
    }
}

impl From<Error> for ErrorObject {
    fn from(e: Error) -> Self {
        e.to_error_object()
    }
}

impl From<ErrorObject> for Error {
    fn from(e: ErrorObject) -> Self {
        Error::Remote(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let remote = Error::Remote(ErrorObject::new(ErrorCode::Conflict, "taken"));
        assert_eq!(remote.code(), Some(ErrorCode::Conflict));
        assert_eq!(Error::Closed.code(), Some(ErrorCode::ConnectionClosed));
        assert_eq!(Error::Timeout.code(), Some(ErrorCode::Timeout));
        assert_eq!(Error::Protocol("x".into()).code(), None);
        let gave_up = Error::ReconnectFailed { attempts: 3, last: Box::new(Error::Closed) };
        assert_eq!(gave_up.code(), Some(ErrorCode::ConnectionClosed));
        assert_eq!(ErrorObject::from(Error::Shutdown).code, ErrorCode::InternalError);
        assert_eq!(ErrorObject::from(remote).message, "taken");
    }
}
