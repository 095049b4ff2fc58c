//! The trust store: the kernels this one accepts envelopes from.
//!
//! `<state dir>/peers/trusted.json` (directory 0700, file 0600), rewritten atomically on
//! every change. An in-memory copy answers reads (one per envelope); writers are
//! serialized and swap the copy in only after the file is written, so the file and memory
//! never disagree about what was acknowledged to the operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::binding::{Binding, BindingError, write_private_atomic};

/// The trust store's file name, under `<state dir>/peers/`.
pub const TRUST_FILE: &str = "trusted.json";
/// The trust store's format version.
const TRUST_VERSION: u32 = 1;

/// Why the trust store could not be opened or changed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Reading or writing the file failed.
    #[error("trust store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but is not a valid trust store.
    #[error("trust store {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The binding is invalid.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// The binding is this kernel's own.
    #[error("refusing to trust this kernel's own id {0}")]
    SelfTrust(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct TrustFile {
    version: u32,
    /// The trusted kernels' bindings (the key keeps its old name on disk).
    peers: Vec<Binding>,
}

#[derive(Debug, Clone)]
struct Entry {
    binding: Binding,
    key: VerifyingKey,
}

type Trusted = BTreeMap<String, Entry>;

/// The trusted kernels, by kernel id; shared behind an `Arc`.
///
/// Writes ([`TrustStore::trust`], [`TrustStore::revoke`]) do blocking file I/O (a small
/// write and an fsync).
#[derive(Debug)]
pub struct TrustStore {
    path: PathBuf,
    self_id: String,
    kernels: RwLock<Trusted>,
    writer: Mutex<()>,
}

impl TrustStore {
    /// Opens `<state_dir>/peers/trusted.json`, creating the directory (0700) if needed; a
    /// missing file is an empty store. `self_id` is this kernel's id, which
    /// [`TrustStore::trust`] refuses.
    pub fn open(state_dir: &Path, self_id: &str) -> Result<Self, TrustError> {
        let dir = state_dir.join("peers");
        crate::fsutil::create_private_dir(&dir)
            .map_err(|source| TrustError::Io { path: dir.clone(), source })?;
        let path = dir.join(TRUST_FILE);
        let kernels = match std::fs::read(&path) {
            Ok(bytes) => {
                crate::fsutil::restrict_file(&path)
                    .map_err(|source| TrustError::Io { path: path.clone(), source })?;
                parse(&bytes)
                    .map_err(|reason| TrustError::Corrupt { path: path.clone(), reason })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Trusted::new(),
            Err(source) => return Err(TrustError::Io { path, source }),
        };
        Ok(Self {
            path,
            self_id: self_id.to_owned(),
            kernels: RwLock::new(kernels),
            writer: Mutex::new(()),
        })
    }

    /// The file behind the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Trusts `binding` (validated first); `true` when newly added, `false` when it
    /// replaced the binding of the same kernel id.
    pub fn trust(&self, binding: Binding) -> Result<bool, TrustError> {
        let key = binding.validate()?;
        if binding.kernel_id == self.self_id {
            return Err(TrustError::SelfTrust(binding.kernel_id));
        }
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.snapshot();
        let added = next.insert(binding.kernel_id.clone(), Entry { binding, key }).is_none();
        self.commit(next)?;
        Ok(added)
    }

    /// Stops trusting `kernel_id`; `false` when it was not trusted.
    pub fn revoke(&self, kernel_id: &str) -> Result<bool, TrustError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.snapshot();
        if next.remove(kernel_id).is_none() {
            return Ok(false);
        }
        self.commit(next)?;
        Ok(true)
    }

    /// Every trusted binding, by kernel id.
    pub fn list(&self) -> Vec<Binding> {
        self.read().values().map(|e| e.binding.clone()).collect()
    }

    /// The binding of a trusted kernel.
    pub fn get(&self, kernel_id: &str) -> Option<Binding> {
        self.read().get(kernel_id).map(|e| e.binding.clone())
    }

    /// The public key of a trusted kernel (parsed once, when trusted).
    pub fn key_of(&self, kernel_id: &str) -> Option<VerifyingKey> {
        self.read().get(kernel_id).map(|e| e.key)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Trusted> {
        self.kernels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> Trusted {
        self.read().clone()
    }

    /// Writes `next` to disk, then makes it the in-memory copy. Called with `writer` held.
    fn commit(&self, next: Trusted) -> Result<(), TrustError> {
        let file = TrustFile {
            version: TRUST_VERSION,
            peers: next.values().map(|e| e.binding.clone()).collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        write_private_atomic(&self.path, &bytes)
            .map_err(|source| TrustError::Io { path: self.path.clone(), source })?;
        *self.kernels.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Result<Trusted, String> {
    let file: TrustFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != TRUST_VERSION {
        return Err(format!("unsupported version {}", file.version));
    }
    let mut kernels = Trusted::new();
    for binding in file.peers {
        let key = binding.validate().map_err(|e| format!("{}: {e}", binding.kernel_id))?;
        kernels.insert(binding.kernel_id.clone(), Entry { binding, key });
    }
    Ok(kernels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::KernelKey;

    fn binding(seed: u8, name: &str) -> Binding {
        Binding::new(KernelKey::from_seed([seed; 32]).verifying_key(), name, "127.0.0.1:9")
    }

    #[test]
    fn trust_and_revoke_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let me = binding(1, "me");
        let store = TrustStore::open(dir.path(), &me.kernel_id).unwrap();
        assert!(store.list().is_empty());
        let (b, c) = (binding(2, "b"), binding(3, "c"));
        assert!(store.trust(b.clone()).unwrap());
        assert!(store.trust(c.clone()).unwrap());
        let b2 = Binding { name: "b renamed".into(), ..b.clone() };
        assert!(!store.trust(b2.clone()).unwrap(), "same id replaces");
        assert_eq!(store.get(&b.kernel_id), Some(b2.clone()));
        assert!(store.key_of(&c.kernel_id).is_some());
        assert!(matches!(store.trust(me.clone()), Err(TrustError::SelfTrust(_))));
        let bad = Binding { address: String::new(), ..c.clone() };
        assert!(matches!(store.trust(bad), Err(TrustError::Binding(_))));

        let reopened = TrustStore::open(dir.path(), &me.kernel_id).unwrap();
        assert_eq!(reopened.list().len(), 2);
        assert_eq!(reopened.get(&b.kernel_id), Some(b2));
        assert!(reopened.revoke(&c.kernel_id).unwrap());
        assert!(!reopened.revoke(&c.kernel_id).unwrap());
        assert!(!reopened.revoke("unknown").unwrap());

        let third = TrustStore::open(dir.path(), &me.kernel_id).unwrap();
        assert_eq!(third.list().iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["b renamed"]);
        assert!(third.get(&c.kernel_id).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_corruption_is_loud() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path(), "me").unwrap();
        store.trust(binding(2, "b")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("peers")), 0o700);
        assert_eq!(mode(store.path()), 0o600);
        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(matches!(TrustStore::open(dir.path(), "me"), Err(TrustError::Corrupt { .. })));
    }
}
