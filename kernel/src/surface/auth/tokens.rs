//! Host tokens: `brw_` + 32 random bytes (base64url), stored as SHA-256 hashes in
//! `<state_dir>/host-tokens.json` (owner-only from creation, rewritten atomically).
//!
//! ```json
//! {"version": 1, "tokens": [{"id": "9f2c4e1a0b7d", "created_at": 1714000000000, "sha256": "<hex>"}]}
//! ```
//!
//! A running kernel sees tokens created after it started: [`TokenStore::verify`] re-reads
//! the file when its size, mtime or inode changed. `burrow token create` holds
//! `<state_dir>/host-tokens.lock` while it rewrites the file, so concurrent creations
//! all keep their token.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use burrow_protocol::now_ms;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::fsutil;

/// The file holding the hashes, in the state dir.
pub const TOKENS_FILE: &str = "host-tokens.json";
/// Held while the tokens file is rewritten.
const LOCK_FILE: &str = "host-tokens.lock";
/// How long a creation waits for another one to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longer tokens are refused without hashing.
const MAX_TOKEN_BYTES: usize = 512;

/// A token just created: `token` is shown once and never stored.
pub struct NewToken {
    /// The token's id (stored beside its hash; safe to print).
    pub id: String,
    /// The secret, `brw_...`.
    pub token: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("id", &self.id).field("token", &"<redacted>").finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenEntry {
    id: String,
    created_at: u64,
    sha256: String,
}

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[derive(Debug)]
struct Cache {
    /// `None` when the file does not exist.
    stamp: Option<Stamp>,
    /// The hashes, or why the file could not be read (then nothing verifies).
    hashes: Result<Vec<[u8; 32]>, String>,
}

/// The host tokens of one state dir (their hashes), re-read when the file changes.
pub struct TokenStore {
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Opens the store of `state_dir` (a missing file is an empty store). Fails when the
    /// file exists but cannot be read or parsed.
    pub fn open(state_dir: &Path) -> io::Result<TokenStore> {
        let path = state_dir.join(TOKENS_FILE);
        let stamp = stamp(&path)?;
        let hashes = match stamp {
            Some(_) => Ok(hashes(&read(&path)?)?),
            None => Ok(Vec::new()),
        };
        Ok(TokenStore { path, cache: Mutex::new(Cache { stamp, hashes }) })
    }

    /// Creates a token, stores its hash in `state_dir` (created 0700 if missing) and
    /// returns it: the only time the secret is seen.
    pub fn create(state_dir: &Path) -> io::Result<NewToken> {
        fsutil::create_private_dir(state_dir)?;
        let path = state_dir.join(TOKENS_FILE);
        let _lock = fsutil::lock_file(&state_dir.join(LOCK_FILE), LOCK_WAIT)?;
        let mut file = match read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => TokensFile::default(),
            Err(e) => return Err(e),
        };
        let secret: [u8; 32] = random()?;
        let token =
            format!("brw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let id = hex::encode(random::<6>()?);
        file.version = 1;
        file.tokens.push(TokenEntry {
            id: id.clone(),
            created_at: now_ms(),
            sha256: hex::encode(hash(&token)),
        });
        write_atomically(&path, &file)?;
        Ok(NewToken { id, token })
    }

    /// Where the hashes are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `token` is one of the stored tokens. Compares against every stored hash in
    /// constant time (no early exit); an unreadable file verifies nothing.
    pub fn verify(&self, token: &str) -> bool {
        if token.len() > MAX_TOKEN_BYTES {
            return false;
        }
        let presented = hash(token);
        let cache = self.refreshed();
        let Ok(hashes) = &cache.hashes else { return false };
        let mut found = Choice::from(0);
        for stored in hashes {
            found |= stored.ct_eq(&presented);
        }
        found.into()
    }

    /// How many tokens are stored (0 when the file is unreadable).
    pub fn len(&self) -> usize {
        self.refreshed().hashes.as_ref().map_or(0, Vec::len)
    }

    /// Whether no token is stored: a kernel that must require tokens should not start.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache, re-read first if the file changed since.
    fn refreshed(&self) -> std::sync::MutexGuard<'_, Cache> {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = match stamp(&self.path) {
            Ok(now) => now,
            Err(e) => {
                if cache.hashes.is_ok() {
                    let path = self.path.display();
                    tracing::error!(%path, error = %e, "cannot read host tokens; refusing all");
                }
                cache.stamp = None;
                cache.hashes = Err(e.to_string());
                return cache;
            }
        };
        // Read once per version of the file (so a broken file is logged once, not per
        // request); `None` after an error means "gone since": read that too.
        if now != cache.stamp || (now.is_none() && cache.hashes.is_err()) {
            let read = match now {
                None => Ok(Vec::new()),
                Some(_) => read(&self.path).and_then(|f| hashes(&f)).map_err(|e| e.to_string()),
            };
            if let Err(e) = &read {
                let path = self.path.display();
                tracing::error!(%path, error = %e, "cannot read host tokens; refusing all");
            }
            cache.hashes = read;
            cache.stamp = now;
        }
        cache
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    Ok(bytes)
}

fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode }))
}

fn read(path: &Path) -> io::Result<TokensFile> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn hashes(file: &TokensFile) -> io::Result<Vec<[u8; 32]>> {
    file.tokens
        .iter()
        .map(|entry| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut out).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("token {}: {e}", entry.id))
            })?;
            Ok(out)
        })
        .collect()
}

/// Writes a new owner-only file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, file: &TokensFile) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    let tmp = path.with_extension(format!("json.{}.tmp", hex::encode(random::<4>()?)));
    let result = (|| {
        let mut out = fsutil::create_private_file(&tmp)?;
        out.write_all(&text)?;
        out.write_all(b"\n")?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tokens_verify_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        assert!(store.is_empty());

        let first = TokenStore::create(dir.path()).unwrap();
        assert!(first.token.starts_with("brw_"));
        assert_eq!(first.token.len(), 4 + 43);
        assert!(!format!("{first:?}").contains(&first.token));

        // The running store sees the new file.
        assert!(store.verify(&first.token));
        assert_eq!(store.len(), 1);
        let second = TokenStore::create(dir.path()).unwrap();
        assert_ne!(first.token, second.token);
        assert!(store.verify(&second.token) && store.verify(&first.token));
        assert!(!store.verify("brw_wrong"));
        assert!(!store.verify(&"x".repeat(10_000)));

        let text = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!text.contains(&first.token[4..]));
        assert!(text.contains(&first.id) && text.contains(&hex::encode(hash(&first.token))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [TOKENS_FILE, LOCK_FILE], "no temporary files are left behind");
    }

    #[test]
    fn concurrent_creations_keep_every_token() {
        let dir = tempfile::tempdir().unwrap();
        let made: Vec<NewToken> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| TokenStore::create(dir.path()).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let store = TokenStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 8);
        assert!(made.iter().all(|t| store.verify(&t.token)));
    }

    #[test]
    fn a_corrupt_file_verifies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let made = TokenStore::create(dir.path()).unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        assert!(store.verify(&made.token));
        std::fs::write(store.path(), b"{not json").unwrap();
        assert!(!store.verify(&made.token));
        assert!(store.is_empty());
        assert!(TokenStore::open(dir.path()).is_err());
    }
}
