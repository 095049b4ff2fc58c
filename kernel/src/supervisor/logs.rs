//! Captured stdout/stderr of managed apps: `<state dir>/logs/<id>.log`, rotated to
//! `.log.1` … `.log.N` at a size cap, and broadcast to `burrow logs -f` followers.

use std::io::Write;
use std::path::{Path, PathBuf};

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
        if self.size + line.len() as u64 + 1 > self.max_bytes && self.size > 0 {
            self.rotate();
        }
        if let Some(file) = self.file.as_mut()
            && writeln!(file, "{line}").is_ok()
        {
            self.size += line.len() as u64 + 1;
        }
        let _ = self.lines.send(line.to_owned());
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
/// it carries, so the app never blocks or dies writing its output.
pub async fn pump(reader: impl AsyncRead + Unpin, log: std::sync::Arc<std::sync::Mutex<LogFile>>) {
    use tokio::io::AsyncReadExt;
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &chunk[..n] {
            if b == b'\n' || line.len() >= MAX_LINE {
                flush_line(&log, &line);
                line.clear();
                if b == b'\n' {
                    continue;
                }
            }
            line.push(b);
        }
    }
    if !line.is_empty() {
        flush_line(&log, &line);
    }
}

fn flush_line(log: &std::sync::Mutex<LogFile>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if let Ok(mut log) = log.lock() {
        log.write_line(text);
    }
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
        let log =
            std::sync::Arc::new(std::sync::Mutex::new(LogFile::open(path.clone(), 1 << 20, 1, tx)));
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
}
