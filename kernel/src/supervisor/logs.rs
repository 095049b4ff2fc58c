//! Captured stdout/stderr of managed apps: `<state dir>/logs/<id>.log`, rotated to
//! `.log.1` … `.log.N` at a size cap, and broadcast to `burrow logs -f` followers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, BufReader};
use tokio::sync::broadcast;

/// Where an app's log lives.
pub fn log_path(state_dir: &Path, app_id: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{app_id}.log"))
}

/// The writing end of one app's log.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<std::fs::File>,
    size: u64,
    lines: broadcast::Sender<String>,
}

impl LogFile {
    /// Opens (appending) `path`, rotating at `max_bytes` and keeping `keep` old files.
    pub fn open(
        path: PathBuf,
        max_bytes: u64,
        keep: usize,
        lines: broadcast::Sender<String>,
    ) -> Self {
        let mut log = Self { path, max_bytes, keep, file: None, size: 0, lines };
        log.reopen();
        log
    }

    fn reopen(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = crate::fsutil::create_private_dir(dir);
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        self.file = options.open(&self.path).ok();
        self.size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
    }

    fn rotate(&mut self) {
        self.file = None;
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1));
        }
        if self.keep > 0 {
            let _ = std::fs::rename(&self.path, numbered(&self.path, 1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        self.reopen();
    }

    /// Appends one line and tells followers.
    pub fn write_line(&mut self, line: &str) {
        self.write_lines(&[line]);
    }

    /// Appends lines and tells followers: one write per run of lines between rotations.
    /// Followers hear of a run only once it is written: one that subscribes and then reads
    /// the file (as `burrow logs -f` does) misses no line between the two.
    pub fn write_lines(&mut self, lines: &[impl AsRef<str>]) {
        let mut pending = Vec::new();
        let mut run = 0;
        for (i, line) in lines.iter().enumerate() {
            let line = line.as_ref();
            let written = self.size + pending.len() as u64;
            if written + line.len() as u64 + 1 > self.max_bytes && written > 0 {
                self.write_out(&mut pending, &lines[run..i]);
                run = i;
                self.rotate();
            }
            pending.extend_from_slice(line.as_bytes());
            pending.push(b'\n');
        }
        self.write_out(&mut pending, &lines[run..]);
    }

    /// Writes `pending` (the text of `run`), then tells followers of `run`: even when the
    /// write failed, they see what the app said.
    fn write_out(&mut self, pending: &mut Vec<u8>, run: &[impl AsRef<str>]) {
        if let Some(file) = self.file.as_mut()
            && !pending.is_empty()
            && file.write_all(pending).is_ok()
        {
            self.size += pending.len() as u64;
        }
        pending.clear();
        for line in run {
            let _ = self.lines.send(line.as_ref().to_owned());
        }
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Longest line kept; longer ones are split.
const MAX_LINE: usize = 64 * 1024;

/// Copies lines from a child's pipe into the shared log until the pipe closes. Lines are
/// capped (longer ones are split) and decoded lossily, and the pipe is drained whatever
/// it carries, so the app never dies writing its output. The lines of each read are
/// written together on a blocking thread, never on the runtime's: a slow disk slows this
/// app's output (its pipe fills), not the kernel.
pub async fn pump(reader: impl AsyncRead + Unpin, log: Arc<Mutex<LogFile>>) {
    use tokio::io::AsyncReadExt;
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = vec![0u8; 8192];
    let mut lines = Vec::new();
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &chunk[..n] {
            if b == b'\n' || line.len() >= MAX_LINE {
                lines.push(decode(&line));
                line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            line.push(b);
        }
        lines = write(&log, lines).await;
    }
    if !line.is_empty() {
        lines.push(decode(&line));
    }
    write(&log, lines).await;
}

fn decode(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.strip_suffix('\r').unwrap_or(&text).to_owned()
}

/// Writes `lines` to the log on a blocking thread; gives back the emptied vector.
async fn write(log: &Arc<Mutex<LogFile>>, mut lines: Vec<String>) -> Vec<String> {
    if lines.is_empty() {
        return lines;
    }
    let log = log.clone();
    let written = tokio::task::spawn_blocking(move || {
        if let Ok(mut log) = log.lock() {
            log.write_lines(&lines);
        }
        lines.clear();
        lines
    });
    written.await.unwrap_or_default()
}

/// The last `n` lines of an app's log (the current file, then older ones if needed).
pub fn tail(path: &Path, n: usize, keep: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in 0..=keep {
        let file = if k == 0 { path.to_path_buf() } else { numbered(path, k) };
        let Ok(text) = std::fs::read_to_string(&file) else { break };
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.append(&mut out);
        out = lines;
        if out.len() >= n {
            break;
        }
    }
    let skip = out.len().saturating_sub(n);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_survives_bad_bytes_and_endless_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "app");
        let (tx, _rx) = broadcast::channel(16);
        let log = Arc::new(Mutex::new(LogFile::open(path.clone(), 1 << 20, 1, tx)));
        let mut input = b"ok\n\xff\xfe bad\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\ntail".iter());
        pump(&input[..], log).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ok");
        assert!(lines[1].ends_with(" bad"));
        assert_eq!(lines[2].len(), MAX_LINE);
        assert_eq!(lines[3], "x".repeat(10));
        assert_eq!(lines[4], "tail");
    }

    #[test]
    fn rotation_keeps_a_bounded_number_of_files_and_tail_spans_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "app");
        let (tx, mut rx) = broadcast::channel(16);
        let mut log = LogFile::open(path.clone(), 100, 2, tx);
        for i in 0..30 {
            log.write_line(&format!("line {i:02} ........"));
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        assert!(numbered(&path, 1).exists() && numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        let last = tail(&path, 7, 2);
        assert_eq!(last.len(), 7);
        assert_eq!(last.last().unwrap(), "line 29 ........");
        assert_eq!(last.first().unwrap(), "line 23 ........");
        // Followers see lines as they come; one that lags skips ahead.
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(14))));
        assert_eq!(rx.try_recv().unwrap(), "line 14 ........");
    }

    #[test]
    fn lines_written_together_rotate_as_lines_written_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = |name: &str, together: bool| {
            let path = log_path(dir.path(), name);
            let (tx, _rx) = broadcast::channel(64);
            let mut log = LogFile::open(path.clone(), 100, 2, tx);
            let lines: Vec<String> = (0..30).map(|i| format!("line {i:02} ........")).collect();
            if together {
                log.write_lines(&lines);
            } else {
                lines.iter().for_each(|l| log.write_line(l));
            }
            (0..=3)
                .map(|n| {
                    let file = if n == 0 { path.clone() } else { numbered(&path, n) };
                    std::fs::read_to_string(file).ok()
                })
                .collect::<Vec<_>>()
        };
        let together = files("together", true);
        assert!(together[0].as_ref().is_some_and(|t| t.ends_with("line 29 ........\n")));
        assert_eq!(together, files("one-by-one", false));
    }

    /// A follower that hears a line finds it in the file: it can subscribe, then read
    /// the file, and miss nothing between the two.
    #[test]
    fn followers_hear_of_lines_only_once_they_are_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "app");
        // A batch large enough that a line told before the batch is written would be
        // read back before it is there; room for all of it, so the follower never lags.
        let lines: Vec<String> = (0..50_000).map(|i| format!("line {i:05} ........")).collect();
        let (tx, mut rx) = broadcast::channel(lines.len());
        let mut log = LogFile::open(path.clone(), 1 << 30, 1, tx);
        let file = path.clone();
        let (ready, started) = std::sync::mpsc::channel();
        let follower = std::thread::spawn(move || {
            ready.send(()).unwrap();
            let first = rx.blocking_recv().unwrap();
            std::fs::read_to_string(&file).unwrap().lines().next() == Some(first.as_str())
        });
        started.recv().unwrap();
        log.write_lines(&lines);
        assert!(follower.join().unwrap(), "a follower heard of a line not yet in the file");
    }

    /// The log's writes happen off the runtime: with the log held (as by a disk that does
    /// not answer), a single-threaded runtime still runs its other tasks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stalled_log_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "app");
        let (tx, _rx) = broadcast::channel(16);
        let log = Arc::new(Mutex::new(LogFile::open(path.clone(), 1 << 20, 1, tx)));
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let log = log.clone();
            std::thread::spawn(move || {
                let _held = log.lock().unwrap();
                locked_tx.send(()).unwrap();
                // Released when the test says so; a timeout means the runtime stalled.
                release_rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
            })
        };
        locked.recv().unwrap();
        let pump = tokio::spawn(pump(&b"one\ntwo\n"[..], log));
        // The pump is stuck behind the held log; this runtime's only thread is not.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!pump.is_finished());
        release.send(()).unwrap();
        assert!(holder.join().unwrap(), "the runtime stalled behind the held log");
        pump.await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }
}
