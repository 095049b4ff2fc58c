//! The write-ahead journal in front of the SQLite engine: what makes a write durable.
//!
//! A write is acknowledged once its frame is in the journal and the journal is synced
//! (`fdatasync`); the engine applies it afterwards, on its own thread, in transactions as
//! large as the backlog. Acknowledging costs one sequential append and one flush per
//! group of writes, however many B-tree pages those writes will dirty in the database.
//!
//! Layout: a directory of segment files named by the first sequence number (LSN) they
//! hold, `00000000000000000001.log`, each a run of frames:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of the payload | payload
//! payload = MessagePack (lsn: u64, writes: [Write])
//! ```
//!
//! LSNs are consecutive. A segment that passes [`SEGMENT_BYTES`] is sealed and a new one
//! started; the engine deletes a sealed segment once everything in it is durable in the
//! database. At open, [`recover`] replays the frames the database has not applied.
//! A frame cut short or failing its CRC at the end of the newest segment is a write that
//! was never acknowledged (the process died mid-append) and ends the replay; anywhere
//! else it is damage, and opening fails rather than skip acknowledged writes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{StoreError, Write};

/// A segment is sealed once it grows past this.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest frame payload accepted when reading back (a frame is one caller's writes).
const MAX_FRAME: usize = 256 << 20;
const HEADER: usize = 8;

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Db(format!("journal: {what} {}: {e}", path.display()))
}

/// The segment file of the run starting at `first_lsn`.
fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.log"))
}

/// Appends `lsn`'s frame for `writes` to `buf`.
pub fn encode(buf: &mut Vec<u8>, lsn: u64, writes: &[Write]) -> Result<(), StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    if let Err(e) = rmp_serde::encode::write_named(buf, &(lsn, writes)) {
        buf.truncate(start);
        return Err(StoreError::Db(format!("journal: cannot encode a write: {e}")));
    }
    let payload = &buf[start + HEADER..];
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// How reading a segment's frames ended.
#[derive(Debug, PartialEq)]
enum Tail {
    /// At the end of the file, on a frame boundary.
    Clean,
    /// At a frame cut short or damaged, at this byte offset.
    Torn(usize),
}

/// The frames of one segment, in order, and how the segment ends.
fn frames(bytes: &[u8]) -> (Vec<(u64, Vec<Write>)>, Tail) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER) else { return (out, Tail::Torn(at)) };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len).filter(|_| len <= MAX_FRAME)
        else {
            return (out, Tail::Torn(at));
        };
        if crc32fast::hash(payload) != crc {
            return (out, Tail::Torn(at));
        }
        match rmp_serde::from_slice::<(u64, Vec<Write>)>(payload) {
            Ok(frame) => out.push(frame),
            Err(_) => return (out, Tail::Torn(at)),
        }
        at += HEADER + len;
    }
    (out, Tail::Clean)
}

/// The segment files in `dir`, oldest first, with their first LSN.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io("cannot list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io("cannot list", dir, e))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Replays, through `apply`, every journaled write after `applied` (in LSN order, in
/// chunks ending at the LSN given), then returns the segments read and the next LSN.
/// The caller deletes the segments once what `apply` did is durable.
pub fn recover(
    dir: &Path,
    applied: u64,
    mut apply: impl FnMut(Vec<Vec<Write>>, u64) -> Result<(), StoreError>,
) -> Result<(Vec<PathBuf>, u64), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let segments = segments(dir)?;
    let mut next = applied + 1;
    let mut chunk = Vec::new();
    for (i, (_, path)) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| io("cannot read", path, e))?;
        let (frames, tail) = frames(&bytes);
        if let Tail::Torn(at) = tail {
            if i + 1 < segments.len() {
                return Err(StoreError::Db(format!(
                    "journal: {} is damaged at byte {at}, before newer segments; \
                     move the journal directory aside to start without the writes it holds",
                    path.display()
                )));
            }
            tracing::warn!(segment = %path.display(), at, "journal ends in a write cut short; it was never acknowledged");
        }
        for (lsn, writes) in frames {
            if lsn < next {
                continue; // applied before
            }
            if lsn != next {
                return Err(StoreError::Db(format!(
                    "journal: {} jumps from LSN {} to {lsn}",
                    path.display(),
                    next - 1
                )));
            }
            chunk.push(writes);
            next += 1;
            if chunk.len() >= 1024 {
                apply(std::mem::take(&mut chunk), next - 1)?;
            }
        }
    }
    if !chunk.is_empty() {
        apply(chunk, next - 1)?;
    }
    if next > applied + 1 {
        tracing::info!(writes = next - applied - 1, "replayed journaled writes into the store");
    }
    Ok((segments.into_iter().map(|(_, p)| p).collect(), next))
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    size: u64,
    next_lsn: u64,
    broken: bool,
}

impl Journal {
    /// Starts a new segment in `dir` whose first frame will be `next_lsn`.
    pub fn create(dir: &Path, next_lsn: u64) -> Result<Self, StoreError> {
        let path = segment_path(dir, next_lsn);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot create", &path, e))?;
        // The new name must survive a crash too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync", dir, e))?;
        Ok(Self { dir: dir.to_owned(), file, path, size: 0, next_lsn, broken: false })
    }

    /// The LSN the next frame gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Appends `frames` (encoded from LSN [`Self::next_lsn`] on, `count` of them) and
    /// syncs. On failure nothing of them counts: the file is cut back to where it was,
    /// and if even that fails the journal refuses every later append.
    pub fn append(&mut self, frames: &[u8], count: u64) -> Result<(), StoreError> {
        if self.broken {
            return Err(StoreError::Db(
                "journal: an earlier append failed and could not be undone".into(),
            ));
        }
        let written = self.file.write_all(frames).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if self.file.set_len(self.size).and_then(|()| self.file.sync_data()).is_err() {
                self.broken = true;
            }
            return Err(io("cannot append to", &self.path, e));
        }
        self.size += frames.len() as u64;
        self.next_lsn += count;
        Ok(())
    }

    /// When the segment is full: starts the next one and returns the sealed one's path.
    pub fn rotate_if_full(&mut self) -> Result<Option<PathBuf>, StoreError> {
        if self.size < SEGMENT_BYTES {
            return Ok(None);
        }
        let next = Self::create(&self.dir, self.next_lsn)?;
        let sealed = std::mem::replace(self, next);
        Ok(Some(sealed.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;
    use burrow_protocol::methods::invoke::Role;

    fn append(key: &str, id: &str) -> Write {
        Write::Append {
            session_key: key.into(),
            message: NewMessage {
                id: id.into(),
                role: Role::User,
                content: format!("text of {id}"),
                metadata: Some(
                    serde_json::json!({"k": [1, 2.5, "x", null]}).as_object().cloned().unwrap(),
                ),
                tool_calls: None,
                tool_call_id: None,
                created_at: 7,
                run_id: None,
            },
        }
    }

    fn ids(jobs: &[Vec<Write>]) -> Vec<String> {
        jobs.iter()
            .flatten()
            .map(|w| match w {
                Write::Append { message, .. } => message.id.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Journals `ids` one frame each into a fresh segment of `dir` starting at `lsn`.
    fn journal(dir: &Path, lsn: u64, ids: &[&str]) -> Journal {
        let mut j = Journal::create(dir, lsn).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let mut buf = Vec::new();
            encode(&mut buf, lsn + i as u64, &[append("s", id)]).unwrap();
            j.append(&buf, 1).unwrap();
        }
        j
    }

    fn replay(dir: &Path, applied: u64) -> Result<(Vec<String>, u64, u64), StoreError> {
        let mut seen = Vec::new();
        let mut last = 0;
        let (_, next) = recover(dir, applied, |jobs, upto| {
            seen.extend(ids(&jobs));
            last = upto;
            Ok(())
        })?;
        Ok((seen, last, next))
    }

    #[test]
    fn frames_round_trip_and_replay_skips_what_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path(), 1, &["a", "b", "c"]);
        assert_eq!(j.next_lsn(), 4);
        assert_eq!(
            replay(dir.path(), 0).unwrap(),
            (vec!["a".into(), "b".into(), "c".into()], 3, 4)
        );
        assert_eq!(replay(dir.path(), 2).unwrap(), (vec!["c".into()], 3, 4));
        assert_eq!(replay(dir.path(), 3).unwrap(), (vec![], 0, 4));
    }

    #[test]
    fn a_write_cut_short_at_the_end_was_never_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path(), 1, &["a", "b"]);
        let mut buf = Vec::new();
        encode(&mut buf, 3, &[append("s", "c")]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&j.path).unwrap();
        f.write_all(&buf[..buf.len() - 3]).unwrap();
        assert_eq!(replay(dir.path(), 0).unwrap(), (vec!["a".into(), "b".into()], 2, 3));
    }

    #[test]
    fn damage_before_newer_segments_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let old = journal(dir.path(), 1, &["a", "b"]);
        journal(dir.path(), 3, &["c"]);
        let mut bytes = std::fs::read(&old.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&old.path, bytes).unwrap();
        let err = replay(dir.path(), 0).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn a_gap_in_the_lsns_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), 1, &["a"]);
        journal(dir.path(), 5, &["e"]);
        let err = replay(dir.path(), 0).unwrap_err().to_string();
        assert!(err.contains("jumps from LSN 1 to 5"), "{err}");
    }

    #[test]
    fn a_full_segment_is_sealed_and_frames_go_on_in_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1, &["a"]);
        assert_eq!(j.rotate_if_full().unwrap(), None);
        j.size = SEGMENT_BYTES;
        let sealed = j.rotate_if_full().unwrap().expect("sealed");
        assert!(sealed.ends_with("00000000000000000001.log"));
        let mut buf = Vec::new();
        encode(&mut buf, 2, &[append("s", "b")]).unwrap();
        j.append(&buf, 1).unwrap();
        assert!(j.path.ends_with("00000000000000000002.log"));
        assert_eq!(replay(dir.path(), 0).unwrap(), (vec!["a".into(), "b".into()], 2, 3));
    }
}
