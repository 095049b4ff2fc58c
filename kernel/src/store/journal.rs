//! The write-ahead journal in front of the SQLite engine: what makes a write durable.
//!
//! A write is acknowledged once its frame is in the journal and the journal is synced
//! (`fdatasync`); the engine applies it afterwards, on its own thread, in transactions as
//! large as the backlog. Acknowledging costs one sequential append and one flush per
//! group of writes, however many B-tree pages those writes will dirty in the database.
//!
//! Layout: a directory of segment files named by the first sequence number (LSN) they
//! hold, `00000000000000000001.log`, each a header and a run of frames:
//!
//! ```text
//! header: b"BRWJNL01" | u64 LE salt (random, new for every segment)
//! frame:  u32 LE length of the rest | u32 LE CRC-32 of (salt, rest) | u64 LE lsn | payload
//! payload: MessagePack [Write], fields by name (so later kernels can add optional fields)
//! ```
//!
//! LSNs are consecutive, across segments too. A segment that passes [`SEGMENT_BYTES`] is
//! sealed and the next one started. Once the database durably holds a sealed segment's
//! writes, the segment becomes the spare (`spare.log`) that the next segment is renamed
//! from: overwriting blocks that are already written makes each `fdatasync` cheaper than
//! growing a file. When a segment is half full and there is no spare, one is filled with
//! zeros in the background.
//!
//! So a segment's frames end at the first one that is cut short, zero, fails its CRC
//! (older content of a recycled file fails it: another salt) or does not carry the next
//! LSN. The end of the newest segment is where writing stopped: a frame cut short there
//! was never acknowledged. At open, [`recover`] replays the frames the database has not
//! applied. A segment may start at or before the LSN the writes before it reach (the
//! database, then each older segment); one that starts after it means lost writes, and a
//! frame whose CRC holds but whose writes cannot be decoded means a format this kernel
//! does not know: both refuse to open rather than skip acknowledged writes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{StoreError, Write};

/// A segment is sealed once it grows past this.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Largest payload (one caller's writes) the journal takes.
pub const MAX_PAYLOAD: usize = 64 << 20;
const MAGIC: &[u8; 8] = b"BRWJNL01";
const SEGMENT_HEADER: usize = 16;
const FRAME_HEADER: usize = 8;
const SPARE: &str = "spare.log";

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Db(format!("journal: {what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync", dir, e))
}

/// The segment file of the run starting at `first_lsn`.
fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.log"))
}

/// The encoded form of one caller's writes; made by the caller, framed by the journal.
pub fn payload(writes: &[Write]) -> Result<Vec<u8>, StoreError> {
    // Room for a dispatch's writes up front: growing from nothing reallocates many times.
    let mut payload = Vec::with_capacity(512);
    rmp_serde::encode::write_named(&mut payload, writes)
        .map_err(|e| StoreError::Db(format!("journal: cannot encode a write: {e}")))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(StoreError::Db(format!(
            "journal: {} bytes of writes at once is more than the {MAX_PAYLOAD} taken",
            payload.len()
        )));
    }
    Ok(payload)
}

/// Appends the frame of `payload` as `lsn` of the segment salted `salt` to `buf`.
pub fn frame(buf: &mut Vec<u8>, salt: u64, lsn: u64, payload: &[u8]) {
    let len = (8 + payload.len()) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&lsn.to_le_bytes());
    crc.update(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The salt of a segment's bytes, if it has a header.
pub fn salt(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..SEGMENT_HEADER).filter(|h| h[..8] == *MAGIC)?;
    Some(u64::from_le_bytes(header[8..16].try_into().ok()?))
}

/// The frames of a segment whose first LSN is `first`, up to where they end.
fn frames(bytes: &[u8], first: u64, path: &Path) -> Result<Vec<(u64, Vec<Write>)>, StoreError> {
    let mut out = Vec::new();
    let Some(salt) = salt(bytes) else { return Ok(out) };
    let mut at = SEGMENT_HEADER;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(rest) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len).filter(|_| len > 8)
        else {
            break;
        };
        let mut check = crc32fast::Hasher::new();
        check.update(&salt.to_le_bytes());
        check.update(rest);
        let lsn = first + out.len() as u64;
        if check.finalize() != crc || rest[..8] != lsn.to_le_bytes() {
            break;
        }
        let writes = rmp_serde::from_slice::<Vec<Write>>(&rest[8..]).map_err(|e| {
            StoreError::Db(format!(
                "journal: LSN {lsn} in {} is intact but cannot be read ({e}): written by a \
                 kernel with another format? Start that kernel version to apply it",
                path.display()
            ))
        })?;
        out.push((lsn, writes));
        at += FRAME_HEADER + len;
    }
    Ok(out)
}

/// The segment files in `dir`, oldest first, with their first LSN; leftovers of spare
/// fills cut short are removed.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io("cannot list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io("cannot list", dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        } else if let Some(first) = name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Replays, through `apply`, every journaled write after `applied` (in LSN order, in
/// chunks ending at the LSN given), then returns the segments read and the next LSN.
/// The caller retires the segments ([`retire`]) once what `apply` did is durable.
pub fn recover(
    dir: &Path,
    applied: u64,
    mut apply: impl FnMut(Vec<Vec<Write>>, u64) -> Result<(), StoreError>,
) -> Result<(Vec<PathBuf>, u64), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let segments = segments(dir)?;
    // Everything before `next` is applied or in `chunk`.
    let mut next = applied.checked_add(1).ok_or_else(|| {
        StoreError::Db(format!("journal: the database records an impossible LSN {applied}"))
    })?;
    let mut before = "the database".to_owned();
    let mut chunk = Vec::new();
    for (first, path) in &segments {
        if *first > next {
            return Err(StoreError::Db(format!(
                "journal: {} starts at LSN {first} but {before} ends at LSN {}: writes between \
                 them are missing. Moving the journal directory aside starts without the \
                 writes it holds",
                path.display(),
                next - 1
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| io("cannot read", path, e))?;
        for (lsn, writes) in frames(&bytes, *first, path)? {
            if lsn < next {
                continue; // applied before
            }
            chunk.push(writes);
            next = lsn + 1;
            if chunk.len() >= 1024 {
                apply(std::mem::take(&mut chunk), next - 1)?;
            }
        }
        before = path.display().to_string();
    }
    if !chunk.is_empty() {
        apply(chunk, next - 1)?;
    }
    if next > applied + 1 {
        tracing::info!(writes = next - applied - 1, "replayed journaled writes into the store");
    }
    Ok((segments.into_iter().map(|(_, p)| p).collect(), next))
}

/// Retires segments whose writes the database durably holds: one becomes the spare
/// (if there is none and it is full size), the others are deleted.
pub fn retire(dir: &Path, segments: impl IntoIterator<Item = PathBuf>) {
    let spare = dir.join(SPARE);
    for path in segments {
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let full = (SEGMENT_BYTES..=2 * SEGMENT_BYTES).contains(&len);
        let kept = full && !spare.exists() && std::fs::rename(&path, &spare).is_ok();
        if !kept && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(segment = %path.display(), error = %e, "cannot remove an applied journal segment");
        }
    }
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(error = %e, "cannot sync the journal directory");
    }
}

/// Makes a zero-filled spare segment if there is none.
pub fn fill_spare(dir: &Path) -> Result<(), StoreError> {
    let spare = dir.join(SPARE);
    if spare.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!("spare-{}.tmp", uuid::Uuid::now_v7().simple()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io("cannot create", &tmp, e))?;
    let zeros = vec![0u8; 1 << 20];
    let filled = (0..SEGMENT_BYTES / zeros.len() as u64)
        .try_for_each(|_| file.write_all(&zeros))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &spare));
    if let Err(e) = filled {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot fill", &tmp, e));
    }
    sync_dir(dir)
}

/// Fills a spare on its own thread unless one is being filled already.
fn fill_spare_in_background(dir: &Path, filling: &Arc<AtomicBool>) {
    if filling.swap(true, Ordering::AcqRel) {
        return;
    }
    let (dir, done) = (dir.to_owned(), filling.clone());
    let spawned =
        std::thread::Builder::new().name("burrow-journal-spare".into()).spawn(move || {
            if let Err(e) = fill_spare(&dir) {
                tracing::warn!(error = %e, "cannot prepare a spare journal segment");
            }
            done.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        filling.store(false, Ordering::Release);
        tracing::warn!(error = %e, "cannot start filling a spare journal segment");
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    salt: u64,
    size: u64,
    /// The file's length when the segment began: blocks up to it are already allocated.
    created_len: u64,
    next_lsn: u64,
    broken: bool,
    /// A spare was asked for while this segment filled.
    spare_asked: bool,
    /// A spare is being filled (shared by the segments of one journal).
    filling: Arc<AtomicBool>,
}

impl Journal {
    /// Starts a new segment in `dir` whose first frame will be `next_lsn`, from the
    /// spare when there is one.
    pub fn create(dir: &Path, next_lsn: u64) -> Result<Self, StoreError> {
        Self::create_with(dir, next_lsn, Arc::default())
    }

    fn create_with(
        dir: &Path,
        next_lsn: u64,
        filling: Arc<AtomicBool>,
    ) -> Result<Self, StoreError> {
        let path = segment_path(dir, next_lsn);
        let salt = uuid::Uuid::now_v7().as_u64_pair().1; // the random bits
        let opened = match std::fs::rename(dir.join(SPARE), &path) {
            Ok(()) => OpenOptions::new().write(true).open(&path),
            Err(_) => OpenOptions::new().create(true).truncate(true).write(true).open(&path),
        }
        .and_then(|mut file| {
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(&salt.to_le_bytes());
            file.write_all(&header)?;
            file.sync_data()?;
            Ok(file)
        })
        .map_err(|e| io("cannot create", &path, e))
        // The new name must survive a crash too.
        .and_then(|file| sync_dir(dir).map(|()| file));
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                // Not left behind as a segment that starts inside its predecessor.
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let created_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            dir: dir.to_owned(),
            file,
            path,
            salt,
            size: SEGMENT_HEADER as u64,
            created_len,
            next_lsn,
            broken: false,
            spare_asked: false,
            filling,
        })
    }

    /// The LSN the next frame gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Appends the frame of `payload` as `lsn` to `buf`, salted for this segment.
    pub fn frame(&self, buf: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
        frame(buf, self.salt, lsn, payload);
    }

    /// Appends `frames` (framed from LSN [`Self::next_lsn`] on, `count` of them) and
    /// syncs. On failure nothing of them counts: what grew the file is cut off and what
    /// overwrote allocated blocks is zeroed (the end of the segment), neither of which
    /// needs new disk space; if even that fails the journal refuses every later append.
    pub fn append(&mut self, frames: &[u8], count: u64) -> Result<(), StoreError> {
        use std::io::{Seek, SeekFrom};
        if self.broken {
            return Err(StoreError::Db(
                "journal: an earlier append failed and could not be undone".into(),
            ));
        }
        let written = self.file.write_all(frames).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let end = self.size + frames.len() as u64;
            let mut undo = || -> std::io::Result<()> {
                if end > self.created_len {
                    self.file.set_len(self.size.max(self.created_len))?;
                }
                let zero_to = end.min(self.created_len);
                if zero_to > self.size {
                    self.file.seek(SeekFrom::Start(self.size))?;
                    self.file.write_all(&vec![0; (zero_to - self.size) as usize])?;
                }
                self.file.sync_data()?;
                self.file.seek(SeekFrom::Start(self.size)).map(|_| ())
            };
            self.broken = undo().is_err();
            return Err(io("cannot append to", &self.path, e));
        }
        self.size += frames.len() as u64;
        self.next_lsn += count;
        if self.size >= SEGMENT_BYTES / 2 && !std::mem::replace(&mut self.spare_asked, true) {
            fill_spare_in_background(&self.dir, &self.filling);
        }
        Ok(())
    }

    /// When the segment is full: starts the next one and returns the sealed one's path.
    pub fn rotate_if_full(&mut self) -> Result<Option<PathBuf>, StoreError> {
        if self.size < SEGMENT_BYTES {
            return Ok(None);
        }
        let next = Self::create_with(&self.dir, self.next_lsn, self.filling.clone())?;
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

    fn framed(j: &Journal, lsn: u64, id: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        j.frame(&mut buf, lsn, &payload(&[append("s", id)]).unwrap());
        buf
    }

    /// Journals `ids` one frame each into a fresh segment of `dir` starting at `lsn`.
    fn journal(dir: &Path, lsn: u64, ids: &[&str]) -> Journal {
        let mut j = Journal::create(dir, lsn).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let f = framed(&j, lsn + i as u64, id);
            j.append(&f, 1).unwrap();
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
        let buf = framed(&j, 3, "c");
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
        assert!(err.contains("starts at LSN 3") && err.contains("ends at LSN 1"), "{err}");
    }

    #[test]
    fn a_gap_in_the_lsns_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), 1, &["a"]);
        journal(dir.path(), 5, &["e"]);
        let err = replay(dir.path(), 0).unwrap_err().to_string();
        assert!(err.contains("starts at LSN 5") && err.contains("missing"), "{err}");
        // A journal starting after what the database applied lost writes too.
        let later = tempfile::tempdir().unwrap();
        journal(later.path(), 9, &["i"]);
        let err = replay(later.path(), 3).unwrap_err().to_string();
        assert!(err.contains("starts at LSN 9") && err.contains("the database"), "{err}");
    }

    #[test]
    fn an_older_segment_left_behind_after_its_writes_were_applied_is_passed_over() {
        // Killed between recording LSN 3 as applied and retiring the sealed segment 1.
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), 1, &["a", "b"]);
        journal(dir.path(), 3, &["c", "d"]);
        assert_eq!(replay(dir.path(), 3).unwrap(), (vec!["d".into()], 4, 5));
        assert_eq!(replay(dir.path(), 4).unwrap(), (vec![], 0, 5));
    }

    #[test]
    fn a_segment_whose_creation_failed_midway_holds_nothing() {
        // The spare was renamed to LSN 3's segment, then the rotation failed and the
        // writes went on in segment 1.
        let dir = tempfile::tempdir().unwrap();
        journal(dir.path(), 1, &["a", "b", "c", "d"]);
        std::fs::write(segment_path(dir.path(), 3), vec![0u8; 4096]).unwrap();
        let all = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        assert_eq!(replay(dir.path(), 0).unwrap(), (all, 4, 5));
    }

    #[test]
    fn an_intact_frame_this_kernel_cannot_read_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1, &["a"]);
        let mut f = Vec::new();
        j.frame(&mut f, 2, &[0xc1, 0xc1, 0xc1]); // 0xc1 is never valid MessagePack
        j.append(&f, 1).unwrap();
        let err = replay(dir.path(), 0).unwrap_err().to_string();
        assert!(err.contains("LSN 2") && err.contains("cannot be read"), "{err}");
    }

    #[test]
    fn frames_of_an_earlier_use_of_a_recycled_file_never_count() {
        // The file held LSNs 5, 6, 7 once (never acknowledged past 5, say); reused for
        // a segment starting at 5 again, its old frame 6 sits exactly where the next
        // frame would: the salt tells them apart.
        let dir = tempfile::tempdir().unwrap();
        let mut old = journal(dir.path(), 5, &["e", "f", "g"]);
        let mut bytes = std::fs::read(&old.path).unwrap();
        bytes.resize(SEGMENT_BYTES as usize, 0);
        std::fs::write(&old.path, bytes).unwrap();
        old.size = SEGMENT_BYTES;
        let sealed = old.rotate_if_full().unwrap().unwrap();
        drop(old);
        std::fs::remove_file(segment_path(dir.path(), 8)).unwrap();
        retire(dir.path(), [sealed]);
        let j = journal(dir.path(), 5, &["E"]);
        assert_eq!(std::fs::metadata(&j.path).unwrap().len(), SEGMENT_BYTES);
        assert_eq!(replay(dir.path(), 4).unwrap(), (vec!["E".into()], 5, 6));
    }

    #[test]
    fn a_recycled_segment_ends_where_the_new_frames_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = journal(dir.path(), 1, &["a", "b", "c", "d"]);
        old.size = SEGMENT_BYTES;
        let sealed = old.rotate_if_full().unwrap().unwrap();
        // Applied and retired: a full-size segment becomes the spare...
        let mut bytes = std::fs::read(&sealed).unwrap();
        bytes.resize(SEGMENT_BYTES as usize, 0);
        std::fs::write(&sealed, bytes).unwrap();
        retire(dir.path(), [sealed.clone()]);
        assert!(!sealed.exists() && dir.path().join(SPARE).exists());
        drop(old);
        std::fs::remove_file(segment_path(dir.path(), 5)).unwrap();
        // ...that the next segment is made from, over the old frames.
        let j = journal(dir.path(), 5, &["e"]);
        assert!(!dir.path().join(SPARE).exists());
        assert_eq!(std::fs::metadata(&j.path).unwrap().len(), SEGMENT_BYTES);
        assert_eq!(replay(dir.path(), 4).unwrap(), (vec!["e".into()], 5, 6));
    }

    #[test]
    fn a_zero_filled_spare_reads_as_an_empty_segment() {
        let dir = tempfile::tempdir().unwrap();
        fill_spare(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join(SPARE)).unwrap().len(), SEGMENT_BYTES);
        let j = journal(dir.path(), 1, &["a"]);
        assert_eq!(std::fs::metadata(&j.path).unwrap().len(), SEGMENT_BYTES);
        assert_eq!(replay(dir.path(), 0).unwrap(), (vec!["a".into()], 1, 2));
        // Retired, the full-size segment is the spare again; a second one is deleted, and
        // so is one too small to be worth keeping.
        let small = tempfile::tempdir().unwrap();
        let fresh = journal(small.path(), 1, &["a"]);
        retire(small.path(), [fresh.path.clone()]);
        assert!(!fresh.path.exists() && !small.path().join(SPARE).exists());
        let copy = dir.path().join("00000000000000000002.log");
        std::fs::copy(&j.path, &copy).unwrap();
        retire(dir.path(), [j.path.clone(), copy.clone()]);
        assert!(dir.path().join(SPARE).exists() && !j.path.exists() && !copy.exists());
    }

    #[test]
    fn a_full_segment_is_sealed_and_frames_go_on_in_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1, &["a"]);
        assert_eq!(j.rotate_if_full().unwrap(), None);
        j.size = SEGMENT_BYTES;
        let sealed = j.rotate_if_full().unwrap().expect("sealed");
        assert!(sealed.ends_with("00000000000000000001.log"));
        let f = framed(&j, 2, "b");
        j.append(&f, 1).unwrap();
        assert!(j.path.ends_with("00000000000000000002.log"));
        assert_eq!(replay(dir.path(), 0).unwrap(), (vec!["a".into(), "b".into()], 2, 3));
    }
}
