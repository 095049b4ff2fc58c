//! The kernel's ed25519 key and the app tokens it signs (PROTOCOL.md §4).
//!
//! A token is `v1.<claims>.<signature>`, both parts base64url without padding; the claims
//! are JSON `{appId, iat, exp}` and the signature covers `v1.<claims>`. The key lives in
//! `<state dir>/kernel.key` (32 raw bytes, mode 0600), so tokens survive a restart.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

const VERSION: &str = "v1";
const KEY_FILE: &str = "kernel.key";

/// Failure to load or create the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or securing the file failed.
    #[error("kernel key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("kernel key {0} is corrupt (expected 32 bytes)")]
    Corrupt(PathBuf),
    /// The OS gave no randomness.
    #[error("no randomness for a new kernel key: {0}")]
    Random(String),
}

/// Why a token was refused; all map to `UNAUTHORIZED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("malformed token")]
    Malformed,
    /// Not signed by this kernel's key.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("token has expired")]
    Expired,
    /// Issued for another app.
    #[error("token was issued for app {0:?}")]
    WrongApp(String),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claims {
    app_id: String,
    iat: u64,
    exp: u64,
}

/// The kernel's signing key.
pub struct KernelKey {
    signing: SigningKey,
    verifying: VerifyingKey,
}

impl std::fmt::Debug for KernelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelKey").field("public", &B64.encode(self.verifying.as_bytes())).finish()
    }
}

impl KernelKey {
    /// Loads `<state_dir>/kernel.key`, creating it (mode 0600 from the start) if missing.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, KeyError> {
        let path = state_dir.join(KEY_FILE);
        let io = |source| KeyError::Io { path: path.clone(), source };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] =
                    bytes.try_into().map_err(|_| KeyError::Corrupt(path.clone()))?;
                crate::fsutil::restrict_file(&path).map_err(io)?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
                let mut file = crate::fsutil::create_private_file(&path).map_err(io)?;
                file.write_all(&seed).and_then(|()| file.sync_all()).map_err(io)?;
                Ok(Self::from_seed(seed))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let verifying = signing.verifying_key();
        Self { signing, verifying }
    }

    /// The signing key, e.g. for signing envelopes on the kernel channel
    /// ([`crate::remote`]).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half of the key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Issues a token naming `app_id`, valid for `ttl_ms` from `now_ms`.
    pub fn issue(&self, app_id: &str, now_ms: u64, ttl_ms: u64) -> String {
        let claims =
            Claims { app_id: app_id.to_owned(), iat: now_ms, exp: now_ms.saturating_add(ttl_ms) };
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}", B64.encode(claims));
        let sig = self.signing.sign(signed.as_bytes());
        format!("{signed}.{}", B64.encode(sig.to_bytes()))
    }

    /// Checks a token's signature, expiry and app id.
    pub fn verify(&self, token: &str, app_id: &str, now_ms: u64) -> Result<(), TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (version, claims) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if version != VERSION {
            return Err(TokenError::Malformed);
        }
        let sig: [u8; 64] =
            B64.decode(sig).ok().and_then(|b| b.try_into().ok()).ok_or(TokenError::Malformed)?;
        self.verifying
            .verify(signed.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(claims)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.app_id != app_id {
            return Err(TokenError::WrongApp(claims.app_id));
        }
        if now_ms >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_for_their_app_only() {
        let key = KernelKey::from_seed([7; 32]);
        let t = key.issue("weather", 1_000, 10_000);
        assert_eq!(key.verify(&t, "weather", 2_000), Ok(()));
        assert_eq!(key.verify(&t, "other", 2_000), Err(TokenError::WrongApp("weather".into())));
        assert_eq!(key.verify(&t, "weather", 11_000), Err(TokenError::Expired));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let key = KernelKey::from_seed([7; 32]);
        let other = KernelKey::from_seed([8; 32]);
        let t = other.issue("weather", 1_000, 10_000);
        assert_eq!(key.verify(&t, "weather", 2_000), Err(TokenError::BadSignature));
        // Claims rewritten to another app keep the old signature: refused.
        let good = key.issue("weather", 1_000, 10_000);
        let (_, sig) = good.rsplit_once('.').unwrap();
        let claims = B64.encode(br#"{"appId":"evil","iat":0,"exp":99999999999999}"#);
        let forged = format!("v1.{claims}.{sig}");
        assert_eq!(key.verify(&forged, "evil", 2_000), Err(TokenError::BadSignature));
        for junk in ["", "v1", "v1.x.y", "v2.a.b", "....", "v1.!!.!!"] {
            assert!(key.verify(junk, "weather", 2_000).is_err(), "{junk}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = KernelKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = KernelKey::load_or_create(dir.path()).unwrap();
        let t = a.issue("x", 0, 100);
        assert_eq!(b.verify(&t, "x", 1), Ok(()));
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(KernelKey::load_or_create(dir.path()), Err(KeyError::Corrupt(_))));
    }
}
