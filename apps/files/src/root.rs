//! [`Root`]: the directory the tools may see, and the only way to reach a file under it.
//!
//! A requested path is taken relative to the root (an absolute path must lie under it),
//! normalized without touching the disk (`..` may not climb above the root), then
//! canonicalized, which resolves every symlink: the result must still lie under the
//! canonical root. A path that does not exist is reported as missing only when its
//! nearest existing ancestor lies under the root, so nothing is learnt about what lies
//! outside. The tools then open the canonical path that was checked.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Most entries [`Root::list`] returns (the first ones by name).
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes [`Root::read`] reads, whatever `maxBytes` asks.
pub const MAX_READ_BYTES: u64 = 4 * 1024 * 1024;

/// The directory the tools are confined to.
#[derive(Debug, Clone)]
pub struct Root {
    /// Canonical.
    dir: PathBuf,
    /// As configured, made absolute (absolute paths may name it this way too).
    given: PathBuf,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The file name (lossily converted when not UTF-8).
    pub name: String,
    /// `file` or `dir`.
    pub kind: &'static str,
    /// Bytes for a file, 0 for a directory.
    pub size: u64,
}

impl Root {
    /// The root at `dir`, which must be an existing directory.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let given = std::path::absolute(dir)?;
        let canonical = dir.canonicalize()?;
        if !canonical.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(Root { dir: canonical, given })
    }

    /// The canonical directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The canonical path of `path` under the root, or why it is refused.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let outside = || format!("refused: {path:?} is outside the shared directory");
        let requested = Path::new(path);
        let relative = if requested.is_absolute() {
            requested
                .strip_prefix(&self.dir)
                .or_else(|_| requested.strip_prefix(&self.given))
                .map_err(|_| outside())?
        } else {
            requested
        };
        let mut normal = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::CurDir => {}
                Component::Normal(part) => normal.push(part),
                Component::ParentDir => {
                    if !normal.pop() {
                        return Err(outside());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        let joined = self.dir.join(normal);
        match joined.canonicalize() {
            Ok(real) if real.starts_with(&self.dir) => Ok(real),
            Ok(_) => Err(outside()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Missing, or a link leading outside to something missing: look at the
                // nearest ancestor that exists.
                let ancestor = joined.ancestors().skip(1).find_map(|a| a.canonicalize().ok());
                match ancestor {
                    Some(real) if real.starts_with(&self.dir) => {
                        Err(format!("no such file or directory: {path:?}"))
                    }
                    _ => Err(outside()),
                }
            }
            Err(e) => Err(format!("cannot open {path:?}: {e}")),
        }
    }

    /// The entries of directory `path`, sorted by name: files and directories (symlinks
    /// count as what they lead to) that lie under the root; anything else (links leading
    /// outside or nowhere, sockets, devices) is left out.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, String> {
        let dir = self.resolve(path)?;
        let read = fs::read_dir(&dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotADirectory => format!("not a directory: {path:?}"),
            _ => format!("cannot list {path:?}: {e}"),
        })?;
        let mut entries = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| format!("cannot list {path:?}: {e}"))?;
            let Ok(mut kind) = entry.file_type() else { continue };
            let mut metadata = entry.metadata();
            if kind.is_symlink() {
                match entry.path().canonicalize() {
                    Ok(target) if target.starts_with(&self.dir) => {
                        metadata = fs::metadata(&target);
                        match &metadata {
                            Ok(m) => kind = m.file_type(),
                            Err(_) => continue,
                        }
                    }
                    _ => continue,
                }
            }
            let (kind, size) = if kind.is_dir() {
                ("dir", 0)
            } else if kind.is_file() {
                ("file", metadata.map_or(0, |m| m.len()))
            } else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(Entry { name, kind, size });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.truncate(MAX_ENTRIES);
        Ok(entries)
    }

    /// The text of file `path`: its first `max_bytes` bytes (at most
    /// [`MAX_READ_BYTES`]), cut back to a whole character if that splits one. A file
    /// that is not UTF-8 text is refused.
    pub fn read(&self, path: &str, max_bytes: u64) -> Result<String, String> {
        let file = self.resolve(path)?;
        if file.is_dir() {
            return Err(format!("{path:?} is a directory; use list_files"));
        }
        let opened = fs::File::open(&file).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        let limit = max_bytes.min(MAX_READ_BYTES);
        let mut bytes = Vec::new();
        opened
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {path:?}: {e}"))?;
        let cut = u64::try_from(bytes.len()).is_ok_and(|len| len == limit);
        match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            // Only the last character was split by the limit.
            Err(e) if cut && e.utf8_error().error_len().is_none() => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).map_err(|_| format!("{path:?} is not UTF-8 text"))
            }
            Err(_) => Err(format!("{path:?} is not UTF-8 text")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `outside/secret.txt`, and the root `shared/` with `a.txt`, `sub/b.txt`,
    /// `bin.dat` (not UTF-8), `up -> ../outside` and `escape.txt ->
    /// ../outside/secret.txt` (links leading out), `inner -> sub` and `same.txt ->
    /// sub/b.txt` (links staying in), `dangling -> nowhere`.
    fn tree() -> (tempfile::TempDir, Root) {
        let top = tempfile::tempdir().unwrap();
        let outside = top.path().join("outside");
        let shared = top.path().join("shared");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(shared.join("sub")).unwrap();
        fs::write(outside.join("secret.txt"), "top secret").unwrap();
        fs::write(shared.join("a.txt"), "hello").unwrap();
        fs::write(shared.join("sub/b.txt"), "inner b").unwrap();
        fs::write(shared.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, shared.join(name)).unwrap();
        };
        link("../outside", "up");
        link("../outside/secret.txt", "escape.txt");
        link("sub", "inner");
        link("sub/b.txt", "same.txt");
        link("nowhere", "dangling");
        let root = Root::new(&shared).unwrap();
        (top, root)
    }

    fn refused(result: Result<impl std::fmt::Debug, String>) -> bool {
        matches!(&result, Err(e) if e.starts_with("refused:") && e.contains("outside"))
    }

    #[test]
    fn paths_inside_resolve_to_canonical_paths() {
        let (_top, root) = tree();
        let a = root.dir().join("a.txt");
        for path in ["a.txt", "./a.txt", "sub/../a.txt", "inner/../a.txt"] {
            assert_eq!(root.resolve(path).unwrap(), a, "{path}");
        }
        assert_eq!(root.resolve("").unwrap(), root.dir());
        assert_eq!(root.resolve(".").unwrap(), root.dir());
        assert_eq!(root.resolve("same.txt").unwrap(), root.dir().join("sub/b.txt"));
        let absolute = root.dir().join("sub").display().to_string();
        assert_eq!(root.resolve(&absolute).unwrap(), root.dir().join("sub"));
    }

    #[test]
    fn paths_leading_outside_are_refused() {
        let (top, root) = tree();
        let secret = top.path().join("outside/secret.txt").display().to_string();
        for path in [
            "..",
            "../outside/secret.txt",
            "sub/../../outside",
            "/etc/passwd",
            secret.as_str(),
            "escape.txt",
            "up",
            "up/secret.txt",
            "up/missing.txt",
            "up/missing/deeper",
        ] {
            assert!(refused(root.resolve(path)), "{path}: {:?}", root.resolve(path));
            assert!(refused(root.read(path, 100)), "{path}");
        }
        assert!(refused(root.list("up")));
        assert!(refused(root.list("..")));
    }

    #[test]
    fn missing_paths_inside_are_reported_missing() {
        let (_top, root) = tree();
        let missing = root.resolve("sub/nope.txt").unwrap_err();
        assert_eq!(missing, "no such file or directory: \"sub/nope.txt\"");
        assert!(root.read("dangling", 10).unwrap_err().starts_with("no such file"));
    }

    #[test]
    fn listing_shows_files_and_dirs_inside_only() {
        let (_top, root) = tree();
        let listed = root.list("").unwrap();
        let entry = |name: &str, kind, size| Entry { name: name.into(), kind, size };
        assert_eq!(
            listed,
            [
                entry("a.txt", "file", 5),
                entry("bin.dat", "file", 3),
                entry("inner", "dir", 0),
                entry("same.txt", "file", 7),
                entry("sub", "dir", 0),
            ]
        );
        assert_eq!(root.list("inner").unwrap(), [entry("b.txt", "file", 7)]);
        assert!(root.list("a.txt").unwrap_err().starts_with("not a directory"));
    }

    #[test]
    fn reading_returns_text_up_to_max_bytes() {
        let (_top, root) = tree();
        assert_eq!(root.read("a.txt", 1024).unwrap(), "hello");
        assert_eq!(root.read("inner/b.txt", 5).unwrap(), "inner");
        assert_eq!(root.read("a.txt", 0).unwrap(), "");
        assert_eq!(root.read("bin.dat", 10).unwrap_err(), "\"bin.dat\" is not UTF-8 text");
        assert!(root.read("sub", 10).unwrap_err().contains("is a directory"));

        // A limit inside a character cuts back to the character before it.
        fs::write(root.dir().join("accents.txt"), "aé").unwrap();
        assert_eq!(root.read("accents.txt", 2).unwrap(), "a");
        assert_eq!(root.read("accents.txt", 3).unwrap(), "aé");
    }

    #[test]
    fn the_root_must_be_a_directory() {
        let (top, root) = tree();
        assert!(Root::new(&root.dir().join("a.txt")).is_err());
        assert!(Root::new(&top.path().join("missing")).is_err());
    }
}
