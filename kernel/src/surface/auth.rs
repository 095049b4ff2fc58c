//! Who may use the host surfaces.
//!
//! A surface bound off loopback (anything but 127.0.0.0/8 and `::1`; `0.0.0.0` and `::`
//! are *not* loopback) or configured with `require_token` admits only callers holding a
//! host token made by `burrow token create` ([`TokenStore::create`]). The kernel keeps the
//! tokens' SHA-256 hashes only, in `<state_dir>/host-tokens.json`, and compares in
//! constant time.
//!
//! - **REST**: `Authorization: Bearer <token>` on every request; otherwise `401` with
//!   `WWW-Authenticate: Bearer` and `{"error": {"code": "UNAUTHORIZED", "data":
//!   {"reason": "token_required" | "invalid_token"}}}`.
//! - **JSON-RPC over TCP**: the connection's first call is `rpc/authenticate {"token"}`
//!   (answered `{"ok": true}`); any other method before that is answered `-32040` with
//!   `data.reason` `token_required` (see [`super::rpc`]).
//!
//! Where no token is required the `Authorization` header is ignored, and REST refuses
//! requests whose `Host` is not a loopback name (`403`, `data.reason`
//! `host_not_allowed`), so a web page cannot reach the kernel by DNS rebinding.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use burrow_protocol::{ErrorCode, ErrorObject};
use serde_json::json;

mod tokens;

pub use tokens::{NewToken, TOKENS_FILE, TokenStore};

/// Whether a surface bound to `addr` must require a token: when `configured`, or when
/// `addr` is not a loopback address.
pub fn requires_token(addr: &SocketAddr, configured: bool) -> bool {
    configured || !addr.ip().is_loopback()
}

/// Why a surface cannot start with its token check ([`Auth::for_surface`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file exists but cannot be read.
    #[error("cannot read the host tokens: {0}")]
    Store(#[from] std::io::Error),
    /// Tokens are required but none exists.
    #[error(
        "{addr} requires a host token and there is none; create one with `burrow token create`"
    )]
    NoTokens {
        /// The surface's address.
        addr: SocketAddr,
    },
}

/// The token check of one surface.
#[derive(Debug)]
pub struct Auth {
    required: bool,
    store: Option<TokenStore>,
}

impl Auth {
    /// The check for a surface bound to `addr`: tokens are required per
    /// [`requires_token`] and verified against `store`.
    pub fn new(addr: &SocketAddr, require_token: bool, store: TokenStore) -> Auth {
        Auth { required: requires_token(addr, require_token), store: Some(store) }
    }

    /// The check for a surface bound to `addr` with the tokens of `state_dir`; refuses
    /// to start one that requires tokens while none exists.
    pub fn for_surface(
        addr: &SocketAddr,
        require_token: bool,
        state_dir: &Path,
    ) -> Result<Auth, AuthError> {
        let store = TokenStore::open(state_dir)?;
        let auth = Auth::new(addr, require_token, store);
        if auth.required() && auth.store.as_ref().is_none_or(TokenStore::is_empty) {
            return Err(AuthError::NoTokens { addr: *addr });
        }
        Ok(auth)
    }

    /// No token required (loopback without a store, and tests).
    pub fn open() -> Auth {
        Auth { required: false, store: None }
    }

    /// Whether callers must present a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Admits a caller presenting `token`: always when no token is required; otherwise
    /// `UNAUTHORIZED` with `data.reason` `token_required` (none given) or `invalid_token`.
    pub fn check(&self, token: Option<&str>) -> Result<(), ErrorObject> {
        if !self.required {
            return Ok(());
        }
        let Some(token) = token else {
            return Err(unauthorized("token_required", "a host token is required"));
        };
        match &self.store {
            Some(store) if store.verify(token) => Ok(()),
            _ => Err(unauthorized("invalid_token", "the host token is not valid")),
        }
    }
}

fn unauthorized(reason: &str, message: &str) -> ErrorObject {
    ErrorObject::new(ErrorCode::Unauthorized, message).with_data(json!({ "reason": reason }))
}

/// Whether an HTTP `Host` header names this machine's loopback (`localhost`,
/// `127.x.y.z`, `[::1]`, with or without a port).
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || after.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_but_wildcards_do() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(!requires_token(&addr("127.0.0.1:80"), false));
        assert!(!requires_token(&addr("127.9.8.7:80"), false));
        assert!(!requires_token(&addr("[::1]:80"), false));
        assert!(requires_token(&addr("127.0.0.1:80"), true));
        assert!(requires_token(&addr("0.0.0.0:80"), false));
        assert!(requires_token(&addr("[::]:80"), false));
        assert!(requires_token(&addr("192.168.1.2:80"), false));
    }

    #[test]
    fn check_requires_a_stored_token() {
        let dir = tempfile::tempdir().unwrap();
        let made = TokenStore::create(dir.path()).unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let auth = Auth::new(&"0.0.0.0:1".parse().unwrap(), false, store);
        assert!(auth.required());
        let reason = |r: Result<(), ErrorObject>| r.unwrap_err().data.unwrap()["reason"].clone();
        assert_eq!(reason(auth.check(None)), "token_required");
        assert_eq!(reason(auth.check(Some("brw_nope"))), "invalid_token");
        assert!(auth.check(Some(&made.token)).is_ok());
        assert!(Auth::open().check(None).is_ok());
    }

    #[test]
    fn a_surface_that_requires_tokens_needs_one() {
        let dir = tempfile::tempdir().unwrap();
        let wide: SocketAddr = "0.0.0.0:1".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(matches!(
            Auth::for_surface(&wide, false, dir.path()),
            Err(AuthError::NoTokens { .. })
        ));
        assert!(matches!(
            Auth::for_surface(&local, true, dir.path()),
            Err(AuthError::NoTokens { .. })
        ));
        assert!(!Auth::for_surface(&local, false, dir.path()).unwrap().required());
        TokenStore::create(dir.path()).unwrap();
        assert!(Auth::for_surface(&wide, false, dir.path()).unwrap().required());
    }

    #[test]
    fn loopback_host_names() {
        for ok in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:80"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:80", "10.0.0.1:80", "[::2]:80", "[::1]x", ""] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
