//! The binding file: what another kernel needs to trust and dial this one.
//!
//! JSON `{"version":1,"kernel_id","name","public_key","address","created_at"}`, written
//! owner-only (0600 from its first byte) and replaced atomically (temp file + rename).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// The only binding format version.
pub const BINDING_VERSION: u32 = 1;
/// A binding file larger than this is refused unread.
pub const MAX_BINDING_BYTES: u64 = 64 * 1024;
/// Longest display name accepted.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest address accepted.
pub const MAX_ADDRESS_CHARS: usize = 255;

/// How a kernel is trusted and reached: its public key and the address to dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Always [`BINDING_VERSION`].
    pub version: u32,
    /// The lowercase hex of the public key; the kernel's id.
    pub kernel_id: String,
    /// A display name.
    pub name: String,
    /// The ed25519 public key, 32 bytes as lowercase hex.
    pub public_key: String,
    /// `HOST:PORT` to dial.
    pub address: String,
    /// When the binding was made, ms since the Unix epoch.
    pub created_at: u64,
}

/// Why a binding was refused or could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The file could not be read or written.
    #[error("binding file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_BINDING_BYTES`].
    #[error("binding file {0} is larger than {MAX_BINDING_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The text is not a binding object.
    #[error(
        "not a binding (expected JSON with version, kernel_id, name, public_key, address, created_at): {0}"
    )]
    Json(String),
    /// An unknown format version.
    #[error("unsupported binding version {0} (expected {BINDING_VERSION})")]
    Version(u32),
    /// `public_key` is not 32 bytes of lowercase hex, or not a usable ed25519 key.
    #[error("invalid public_key: {0}")]
    PublicKey(String),
    /// `kernel_id` is not the hex of `public_key`.
    #[error("kernel_id {kernel_id:?} does not match the public key (expected {expected})")]
    KernelIdMismatch {
        /// The id in the binding.
        kernel_id: String,
        /// The id derived from the key.
        expected: String,
    },
    /// `address` is empty, too long or not `HOST:PORT`.
    #[error("invalid address {0:?} (expected HOST:PORT)")]
    Address(String),
    /// `name` is too long or holds control characters.
    #[error("invalid name: at most {MAX_NAME_CHARS} characters, no control characters")]
    Name,
}

/// The kernel id of a public key: its lowercase hex.
pub fn kernel_id(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

impl Binding {
    /// A binding for `key`, named `name`, reachable at `address`, made now.
    pub fn new(key: &VerifyingKey, name: &str, address: &str) -> Self {
        let id = kernel_id(key);
        Self {
            version: BINDING_VERSION,
            kernel_id: id.clone(),
            name: name.to_owned(),
            public_key: id,
            address: address.to_owned(),
            created_at: burrow_protocol::now_ms(),
        }
    }

    /// Checks every field; gives the public key on success.
    pub fn validate(&self) -> Result<VerifyingKey, BindingError> {
        if self.version != BINDING_VERSION {
            return Err(BindingError::Version(self.version));
        }
        let key = parse_public_key(&self.public_key)?;
        let expected = kernel_id(&key);
        if self.kernel_id != expected {
            return Err(BindingError::KernelIdMismatch {
                kernel_id: self.kernel_id.clone(),
                expected,
            });
        }
        if !valid_address(&self.address) {
            return Err(BindingError::Address(self.address.clone()));
        }
        if self.name.chars().count() > MAX_NAME_CHARS || self.name.chars().any(char::is_control) {
            return Err(BindingError::Name);
        }
        Ok(key)
    }

    /// The public key, checked as [`Binding::validate`] does.
    pub fn verifying_key(&self) -> Result<VerifyingKey, BindingError> {
        self.validate()
    }

    /// Parses and validates a binding from JSON text.
    pub fn from_json(text: &str) -> Result<Self, BindingError> {
        let binding: Self =
            serde_json::from_str(text).map_err(|e| BindingError::Json(e.to_string()))?;
        binding.validate()?;
        Ok(binding)
    }

    /// Parses and validates a binding from a JSON value (e.g. IPC params).
    pub fn from_value(value: serde_json::Value) -> Result<Self, BindingError> {
        let binding: Self =
            serde_json::from_value(value).map_err(|e| BindingError::Json(e.to_string()))?;
        binding.validate()?;
        Ok(binding)
    }

    /// Reads and validates a binding file.
    pub fn read(path: &Path) -> Result<Self, BindingError> {
        let io = |source| BindingError::Io { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_BINDING_BYTES + 1).read_to_string(&mut text).map_err(io)?;
        if text.len() as u64 > MAX_BINDING_BYTES {
            return Err(BindingError::TooLarge(path.to_owned()));
        }
        Self::from_json(&text)
    }

    /// Validates the binding (so a bad name or address fails here, not at the other
    /// kernel), then writes it to `path` (mode 0600), replacing any file there atomically.
    pub fn write(&self, path: &Path) -> Result<(), BindingError> {
        self.validate()?;
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        write_private_atomic(path, &text)
            .map_err(|source| BindingError::Io { path: path.to_owned(), source })
    }
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, BindingError> {
    let bad = |why: &str| BindingError::PublicKey(why.to_owned());
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad("expected 64 lowercase hex digits"));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| bad(&e.to_string()))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an ed25519 public key"))?;
    if key.is_weak() {
        return Err(bad("a weak (small-order) key"));
    }
    Ok(key)
}

/// `HOST:PORT` with a non-empty host and a non-zero port.
fn valid_address(address: &str) -> bool {
    if address.is_empty()
        || address.len() > MAX_ADDRESS_CHARS
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Writes `bytes` to `path` through a 0600 temp file in the same directory and a rename,
/// so readers see the old file or the new one, never a part.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let result = (|| {
        let mut file = crate::fsutil::create_private_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // Make the rename durable; not every platform can sync a directory.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::KernelKey;

    fn sample() -> Binding {
        Binding::new(KernelKey::from_seed([3; 32]).verifying_key(), "alpha", "127.0.0.1:7000")
    }

    #[cfg(unix)]
    #[test]
    fn write_read_roundtrip_private_and_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("binding.json");
        let b = sample();
        b.write(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Binding::read(&path).unwrap(), b);
        // Overwriting a world-readable file leaves a 0600 one, and no temp files.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let b2 = Binding { name: "beta".into(), ..b };
        b2.write(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Binding::read(&path).unwrap(), b2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let bad = Binding { address: "no port".into(), ..b2.clone() };
        assert!(matches!(bad.write(&path), Err(BindingError::Address(_))));
        assert_eq!(Binding::read(&path).unwrap(), b2);
    }

    #[test]
    fn bad_bindings_are_refused() {
        let good = sample();
        let other = KernelKey::from_seed([4; 32]);
        let cases: Vec<(Binding, &str)> = vec![
            (Binding { version: 2, ..good.clone() }, "version"),
            (Binding { public_key: "zz".into(), ..good.clone() }, "public_key"),
            (Binding { public_key: good.public_key.to_uppercase(), ..good.clone() }, "public_key"),
            (Binding { public_key: "00".repeat(32), ..good.clone() }, "public_key"),
            (Binding { kernel_id: kernel_id(other.verifying_key()), ..good.clone() }, "kernel_id"),
            (Binding { address: String::new(), ..good.clone() }, "address"),
            (Binding { address: "nohost".into(), ..good.clone() }, "address"),
            (Binding { address: "host:0".into(), ..good.clone() }, "address"),
            (Binding { address: ":80".into(), ..good.clone() }, "address"),
            (Binding { name: "a\nb".into(), ..good.clone() }, "name"),
        ];
        for (b, field) in cases {
            let err = b.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        for text in ["", "[]", "{}", r#"{"version":1}"#] {
            assert!(matches!(Binding::from_json(text), Err(BindingError::Json(_))), "{text}");
        }
        assert!(Binding::from_json(&serde_json::to_string(&good).unwrap()).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_BINDING_BYTES as usize + 1]).unwrap();
        assert!(matches!(Binding::read(&big), Err(BindingError::TooLarge(_))));
        let missing = Binding::read(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, BindingError::Io { .. }));
    }
}
