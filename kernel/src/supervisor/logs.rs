//! Captured stdout/stderr of managed apps: `<state dir>/logs/<id>.log`, rotated to
//! `.log.1` … `.log.N` at a size cap, and broadcast to `burrow logs -f` followers.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
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

/// Copies lines from a child's pipe into the shared log until the pipe closes.
pub async fn pump(reader: impl AsyncRead + Unpin, log: std::sync::Arc<std::sync::Mutex<LogFile>>) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut log) = log.lock() {
            log.write_line(&line);
        }
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
