//! Owner-only files and directories (0600 / 0700 on Unix), and lock files.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and missing parents with mode 0700. An existing directory is left as it
/// is (it may be the operator's own choice, e.g. `/tmp`).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates a new file that only its owner can read and write, from its first byte.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Opens (creating, owner-only) the lock file `path` and takes its exclusive lock,
/// waiting for up to `wait`; `WouldBlock` when another holder keeps it. The lock lasts
/// as long as the returned file (the OS releases it if the process dies).
///
/// A wait blocks a thread of its own in the OS's lock call, so the lock is taken the
/// moment it is free; a thread still blocked at the deadline gives the lock back as soon
/// as it gets it.
pub fn lock_file(path: &Path, wait: std::time::Duration) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    let held = || {
        let held = format!("{} is held by another process", path.display());
        io::Error::new(io::ErrorKind::WouldBlock, held)
    };
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) if !wait.is_zero() => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(held()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name("burrow-lock-wait".into()).spawn(move || {
        // A send that fails (the waiter gave up) drops the file, which releases the lock.
        let _ = tx.send(file.lock().map(|()| file));
    })?;
    match rx.recv_timeout(wait) {
        Ok(locked) => locked,
        Err(_) => Err(held()),
    }
}

/// Makes an existing file owner-only.
pub fn restrict_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_held_lock_is_refused_at_once_without_a_wait_and_at_the_deadline_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let _held = lock_file(&path, Duration::ZERO).unwrap();
        let refused = lock_file(&path, Duration::ZERO).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(refused.to_string().contains("held by another process"));
        let start = Instant::now();
        let refused = lock_file(&path, Duration::from_millis(200)).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_waiter_takes_the_lock_when_it_is_let_go_and_a_late_one_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = lock_file(&path, Duration::ZERO).unwrap();
        // One waiter gives up while the lock is held; its thread stays blocked.
        assert!(lock_file(&path, Duration::from_millis(50)).is_err());
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || lock_file(&path, Duration::from_secs(30)))
        };
        drop(held);
        let second = waiter.join().unwrap().expect("the waiter got the lock once it was free");
        drop(second);
        // The thread of the waiter that gave up got the lock too, and gave it back.
        let third = lock_file(&path, Duration::from_secs(30));
        assert!(third.is_ok(), "nobody keeps the lock after giving up on it");
    }
}
