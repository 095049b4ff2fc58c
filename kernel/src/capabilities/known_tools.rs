//! [`KnownTools`]: the tool names apps registered, kept in `<state dir>/tools.json`, so
//! that after a restart the kernel knows which tools were there before it. A run that
//! starts soon after a restart (a resumed one, typically) gives their apps time to
//! reconnect before it shows the provider its tools (docs/protocol.md §8, "Runs
//! survive"), as it waits for its provider.
//!
//! The file holds the tools registered since the kernel started (a name leaves it only
//! when its app unregisters it on purpose, not when the app disconnects); it is written
//! when a new name comes or one is withdrawn, off the caller's thread, the latest write
//! winning.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The file's name in the state directory.
pub const FILE: &str = "tools.json";

/// Tools registered before this start, and since.
#[derive(Debug)]
pub struct KnownTools {
    path: PathBuf,
    before: BTreeSet<String>,
    now: Mutex<BTreeSet<String>>,
    seq: AtomicU64,
    written: Arc<Mutex<u64>>,
}

impl KnownTools {
    /// Reads what the last run of the kernel in `state_dir` knew (nothing when there is
    /// no such file, or it cannot be read: logged).
    pub fn open(state_dir: &Path) -> KnownTools {
        let path = state_dir.join(FILE);
        let before = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the tools known before; none assumed");
                BTreeSet::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the tools known before; none assumed");
                BTreeSet::new()
            }
        };
        KnownTools {
            path,
            before,
            now: Mutex::new(BTreeSet::new()),
            seq: AtomicU64::new(0),
            written: Arc::new(Mutex::new(0)),
        }
    }

    /// The tools registered before this start.
    pub fn before(&self) -> &BTreeSet<String> {
        &self.before
    }

    /// An app registered tool `name`.
    pub fn registered(&self, name: &str) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if now.insert(name.to_owned()) {
            self.save(&now);
        }
    }

    /// An app unregistered tool `name` on purpose.
    pub fn withdrawn(&self, name: &str) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if now.remove(name) {
            self.save(&now);
        }
    }

    /// Writes `names` from a blocking thread (owner-only, replaced whole); a write
    /// started later has already won if it came first.
    fn save(&self, names: &BTreeSet<String>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let (path, written) = (self.path.clone(), self.written.clone());
        let text = serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
        let write = move || {
            let mut last = written.lock().unwrap_or_else(|e| e.into_inner());
            if *last > seq {
                return;
            }
            let tmp = path.with_extension("json.tmp");
            let _ = std::fs::remove_file(&tmp);
            let done = crate::fsutil::create_private_file(&tmp)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                .and_then(|()| std::fs::rename(&tmp, &path));
            match done {
                Ok(()) => *last = seq,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot record the known tools")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(write)),
            Err(_) => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn file_holds(dir: &Path, want: &[&str]) {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(dir.join(FILE)).unwrap_or_default();
            if serde_json::from_str::<BTreeSet<String>>(&text).ok().as_ref() == Some(&want) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the file holds {text:?}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn tools_registered_are_known_to_the_next_start_until_withdrawn() {
        let dir = tempfile::tempdir().unwrap();
        let first = KnownTools::open(dir.path());
        assert!(first.before().is_empty());
        first.registered("slow_echo");
        first.registered("clock_now");
        first.registered("slow_echo");
        first.withdrawn("clock_now");
        first.withdrawn("never");
        file_holds(dir.path(), &["slow_echo"]).await;
        // The first start's writes all done (an earlier one can show the same names
        // while a later one is still on its way), as when a kernel has stopped.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while *first.written.lock().unwrap() != first.seq.load(Ordering::Relaxed) {
            assert!(tokio::time::Instant::now() < deadline, "the first start's writes end");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let second = KnownTools::open(dir.path());
        assert_eq!(second.before().iter().collect::<Vec<_>>(), ["slow_echo"]);
        // This start's own list starts empty: names not seen again are forgotten.
        second.registered("other");
        file_holds(dir.path(), &["other"]).await;
        std::fs::write(dir.path().join(FILE), "not json").unwrap();
        assert!(KnownTools::open(dir.path()).before().is_empty());
    }
}
