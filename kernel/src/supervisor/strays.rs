//! Managed processes of an earlier run. Every start and stop is recorded in
//! `<state dir>/managed.json` as `{appId, pid, startTime}` (start time from
//! `/proc/<pid>/stat`, field 22). A kernel starting after a crash ends each recorded
//! process that is still alive *and* has the same start time, so a recycled pid is never
//! signalled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const FILE: &str = "managed.json";

/// One recorded process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The managed app.
    pub app_id: String,
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
}

/// The start time of `pid` (clock ticks since boot), if it is alive and readable.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it start
    // after the last ')'. Field 22 is the 20th of those (field 3 is the first).
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Record {
    /// Whether the recorded process is still the one running under its pid.
    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// Waits until `r`'s process has ended, or `until`. It is not a child of this kernel, so
/// there is no `wait` for it: on Linux a pidfd becomes readable when it exits; where
/// there is none, its liveness is checked every 20 ms.
async fn ended(r: &Record, until: tokio::time::Instant) {
    #[cfg(target_os = "linux")]
    if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(r.pid).unwrap_or(0))
        && let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
    {
        // Opened after the pid was checked: if it ended and was reused in between, the
        // start time says so.
        if r.alive() {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            use std::os::fd::AsFd;
            let until = until.into_std();
            let _ = tokio::task::spawn_blocking(move || {
                // A signal interrupts poll(2) whatever SA_RESTART says: poll again for
                // what is left.
                loop {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                    match poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], left) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        done => return done,
                    }
                }
            })
            .await;
        }
        return;
    }
    while r.alive() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The record file in `state_dir`.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
}

impl Registry {
    /// The registry of `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self { path: state_dir.join(FILE) }
    }

    fn read(&self) -> Vec<Record> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Replaces the records with `live` (written atomically, mode 0600).
    pub fn write(&self, live: &BTreeMap<String, Record>) {
        let records: Vec<&Record> = live.values().collect();
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let result = crate::fsutil::create_private_file(&tmp)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(&serde_json::to_vec(&records).unwrap_or_default())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot record managed processes");
        }
    }

    /// Ends the processes an earlier kernel left behind: SIGTERM, up to `grace`, then
    /// SIGKILL; only those whose start time still matches. Returns the app ids ended.
    pub async fn end_strays(&self, grace: Duration) -> Vec<String> {
        let strays: Vec<Record> =
            self.read().into_iter().filter(|r| start_time(r.pid) == Some(r.start_time)).collect();
        for r in &strays {
            tracing::warn!(app = %r.app_id, pid = r.pid, "ending a managed process left by an earlier kernel");
            super::process::signal(r.pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        futures_util::future::join_all(strays.iter().map(|r| ended(r, deadline))).await;
        for r in strays.iter().filter(|r| r.alive()) {
            super::process::signal(r.pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.write(&BTreeMap::new());
        strays.into_iter().map(|r| r.app_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let t = start_time(me).expect("own stat");
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[tokio::test]
    async fn strays_with_a_different_start_time_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        // Our own pid with a wrong start time: a "recycled" pid that must not be signalled.
        let me = std::process::id();
        let wrong = Record { app_id: "x".into(), pid: me, start_time: start_time(me).unwrap() + 1 };
        reg.write(&BTreeMap::from([("x".to_owned(), wrong)]));
        assert_eq!(reg.read().len(), 1);
        assert!(reg.end_strays(Duration::from_millis(100)).await.is_empty());
        assert!(reg.read().is_empty(), "the record is cleared");
    }

    #[tokio::test]
    async fn a_stray_that_ends_on_sigterm_is_waited_for_until_it_ends_not_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        let started = start_time(pid).expect("its stat");
        reg.write(&BTreeMap::from([(
            "s".to_owned(),
            Record { app_id: "s".into(), pid, start_time: started },
        )]));
        let t = std::time::Instant::now();
        assert_eq!(reg.end_strays(Duration::from_secs(20)).await, ["s"]);
        assert!(t.elapsed() < Duration::from_secs(10), "waited for the grace: {:?}", t.elapsed());
        let status = child.wait().expect("reaped");
        assert!(!status.success(), "ended by a signal");
        assert!(reg.read().is_empty());
    }
}
