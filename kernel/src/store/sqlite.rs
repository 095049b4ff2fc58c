//! The SQLite engine: WAL mode, versioned migrations, a write-ahead [`journal`] that makes
//! writes durable, one applier thread, and a reader connection for queries.
//!
//! Threads: `burrow-journal` takes every write waiting, appends them to the journal,
//! syncs once and acknowledges them (group commit); `burrow-store` applies what was
//! journaled to the database in one transaction per backlog (`synchronous = NORMAL`:
//! the journal, not the database, is what a crash is recovered from) and records the
//! last applied LSN in the same transaction. A sealed journal segment is retired after
//! a fully synced commit covers it. Reads first wait until every acknowledged write is
//! applied. A lock file keeps a second store (in this process or another) off the same
//! database until the first one's threads are done. The threads live in [`write`]; this
//! file opens, migrates and recovers, and answers queries.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_protocol::methods::session::{RunStatus, SessionFilter, TranscriptMessage};
use rusqlite::{Connection, OptionalExtension, params};

mod write;

use super::journal::{self, Journal};
use super::{
    Fence, PeerRequestRow, RunRow, SessionRow, Storage, StoreError, StoreFuture, Write, WriteDone,
};
#[cfg(test)]
use write::{Touched, append, apply_one};
use write::{Writer, apply_all, set_applied};

const MIGRATIONS: &[&str] = &[
    // 1: sessions, transcripts, runs.
    "CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        channel_id TEXT,
        account_id TEXT,
        created_at INTEGER NOT NULL,
        last_active_at INTEGER NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX sessions_by_activity ON sessions (last_active_at DESC, key);
     CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        session_key TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        metadata TEXT,
        tool_calls TEXT,
        tool_call_id TEXT,
        created_at INTEGER NOT NULL
     );
     CREATE INDEX messages_by_session ON messages (session_key, seq);
     CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        session_key TEXT NOT NULL,
        status TEXT NOT NULL,
        output TEXT,
        error TEXT,
        created_seq INTEGER NOT NULL
     );
     CREATE INDEX runs_unfinished ON runs (status, created_seq);",
    // 2: keep-alive sessions and peers, the run that answers a message, open peer requests.
    "ALTER TABLE sessions ADD COLUMN keep_alive INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN comms_name TEXT;
     CREATE INDEX sessions_peers ON sessions (comms_name) WHERE comms_name IS NOT NULL;
     CREATE INDEX sessions_keep_alive ON sessions (keep_alive) WHERE keep_alive = 1;
     ALTER TABLE messages ADD COLUMN run_id TEXT;
     CREATE TABLE peer_requests (
        id TEXT PRIMARY KEY,
        requester TEXT NOT NULL,
        responder TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        answered_at INTEGER
     );",
    // 3: the kernel of a request's remote party (NULL when both are here).
    "ALTER TABLE peer_requests ADD COLUMN peer_kernel TEXT;",
    // 4: the last journal LSN applied to the database.
    "CREATE TABLE journal_state (id INTEGER PRIMARY KEY CHECK (id = 1), applied_lsn INTEGER NOT NULL);
     INSERT INTO journal_state (id, applied_lsn) VALUES (1, 0);",
    // 5: messages without AUTOINCREMENT (messages are never deleted, so the plain rowid
    // still only grows, and an append no longer updates sqlite_sequence).
    "CREATE TABLE messages_v5 (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        session_key TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        metadata TEXT,
        tool_calls TEXT,
        tool_call_id TEXT,
        created_at INTEGER NOT NULL,
        run_id TEXT
     );
     INSERT INTO messages_v5 (seq, id, session_key, role, content, metadata, tool_calls, tool_call_id, created_at, run_id)
        SELECT seq, id, session_key, role, content, metadata, tool_calls, tool_call_id, created_at, run_id FROM messages;
     DROP TABLE messages;
     ALTER TABLE messages_v5 RENAME TO messages;
     CREATE INDEX messages_by_session ON messages (session_key, seq);
     DELETE FROM sqlite_sequence WHERE name = 'messages';",
];

/// How long a read waits for the applier to catch up.
const READ_BARRIER: Duration = Duration::from_secs(30);
/// How long opening waits for a previous store of the same database to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    reader: Arc<Mutex<Connection>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
    )
    .map_err(db)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db)?;
    let version = version.max(0) as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "database schema version {version} is newer than this kernel's {}",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = i + 1, "store migrated");
    }
    Ok(())
}

/// Takes the store's lock file in `dir`, waiting for a previous holder.
fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    crate::fsutil::lock_file(&path, LOCK_WAIT).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => StoreError::Db(format!(
            "{} is held by another store (another kernel on this state directory?)",
            path.display()
        )),
        _ => StoreError::Db(format!("cannot lock {}: {e}", path.display())),
    })
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`, replays its journal
    /// (`<path>.journal/`), and starts the journal and applier threads.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, write::APPLY_BACKLOG)
    }

    /// [`open`](Self::open), the applier falling at most `max_backlog` bytes behind.
    fn open_with(path: &Path, max_backlog: usize) -> Result<Self, StoreError> {
        let dir = PathBuf::from(format!("{}.journal", path.display()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock(&dir)?;
        let mut writer = open(path)?;
        migrate(&mut writer)?;
        let applied: i64 = writer
            .query_row("SELECT applied_lsn FROM journal_state", [], |r| r.get(0))
            .map_err(db)?;
        let applied = u64::try_from(applied).map_err(|_| {
            StoreError::Db(format!("the database records an impossible LSN {applied}"))
        })?;
        let (replayed, next) = journal::recover(&dir, applied, |jobs, last| {
            apply_all(&mut writer, &jobs, last).map_err(db)
        })?;
        // What was replayed is durable (a FULL commit) before its segments go.
        set_applied(&mut writer, next - 1)?;
        journal::retire(&dir, replayed);
        writer.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        // The applier touches index pages all over `messages_by_session`; a page cache of
        // 32 MiB (the default is 2 MiB) keeps them in memory instead of re-reading them.
        writer.pragma_update(None, "cache_size", -32768).map_err(db)?;
        let journal = Journal::create(&dir, next)?;
        let reader = open(path)?;
        let writer = write::start(writer, journal, dir, lock, next - 1, max_backlog)?;
        Ok(Self { writer, reader: Arc::new(Mutex::new(reader)) })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Read your writes: everything acknowledged so far is applied first.
        self.writer.caught_up(READ_BARRIER).await?;
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Closed)?;
            f(&conn).map_err(db)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn parse_role(s: &str) -> burrow_protocol::methods::invoke::Role {
    use burrow_protocol::methods::invoke::Role::*;
    match s {
        "system" => System,
        "assistant" => Assistant,
        "tool" => Tool,
        _ => User,
    }
}

fn parse_status(s: &str) -> RunStatus {
    match s {
        "queued" => RunStatus::Queued,
        "running" => RunStatus::Running,
        "completed" => RunStatus::Completed,
        "cancelled" => RunStatus::Cancelled,
        _ => RunStatus::Failed,
    }
}

fn session_row(r: &rusqlite::Row<'_>) -> Result<SessionRow, rusqlite::Error> {
    Ok(SessionRow {
        key: r.get(0)?,
        agent_id: r.get(1)?,
        channel_id: r.get(2)?,
        account_id: r.get(3)?,
        created_at: r.get::<_, i64>(4)? as u64,
        last_active_at: r.get::<_, i64>(5)? as u64,
        message_count: r.get::<_, i64>(6)? as u64,
        keep_alive: r.get(7)?,
        comms_name: r.get(8)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> Result<RunRow, rusqlite::Error> {
    Ok(RunRow {
        id: r.get(0)?,
        session_key: r.get(1)?,
        status: parse_status(&r.get::<_, String>(2)?),
        output: r.get(3)?,
        error: r.get(4)?,
    })
}

const SESSION_COLUMNS: &str = "key, agent_id, channel_id, account_id, created_at, last_active_at, message_count, keep_alive, comms_name";

impl Storage for SqliteStore {
    fn write(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        Box::pin(self.writer.write(writes))
    }

    fn submit<'a>(
        &'a self,
        writes: Vec<Write>,
        fence: &Fence,
        done: WriteDone,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.writer.submit(writes, Some(fence.clone()), done))
    }

    fn session(&self, key: &str) -> StoreFuture<'_, Option<SessionRow>> {
        let key = key.to_owned();
        Box::pin(self.read(move |c| {
            c.query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE key = ?1"),
                [key],
                session_row,
            )
            .optional()
        }))
    }

    fn sessions(
        &self,
        filter: SessionFilter,
        limit: u32,
        offset: u32,
    ) -> StoreFuture<'_, (Vec<SessionRow>, u64)> {
        Box::pin(self.read(move |c| {
            let cond = "(?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR channel_id = ?2) AND (?3 IS NULL OR account_id = ?3)";
            let args = params![filter.agent_id, filter.channel_id, filter.account_id];
            let total: i64 = c.query_row(&format!("SELECT COUNT(*) FROM sessions WHERE {cond}"), args, |r| r.get(0))?;
            let mut stmt = c.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {cond} ORDER BY last_active_at DESC, key LIMIT ?4 OFFSET ?5"
            ))?;
            let rows = stmt
                .query_map(params![filter.agent_id, filter.channel_id, filter.account_id, limit, offset], session_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total as u64))
        }))
    }

    fn history(
        &self,
        key: &str,
        limit: u32,
        before: Option<String>,
    ) -> StoreFuture<'_, Vec<TranscriptMessage>> {
        let key = key.to_owned();
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, role, content, created_at, metadata, tool_calls, tool_call_id, run_id FROM messages
                 WHERE session_key = ?1 AND seq < COALESCE((SELECT seq FROM messages WHERE id = ?2 AND session_key = ?1), 9223372036854775807)
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            let mut out = stmt
                .query_map(params![key, before, limit], |r| {
                    let id: String = r.get(0)?;
                    // What the store wrote reads back; should a row not, say so, and
                    // leave the member out rather than the whole page.
                    fn parse<T: serde::de::DeserializeOwned>(
                        id: &str,
                        column: &str,
                        text: Option<String>,
                    ) -> Option<T> {
                        serde_json::from_str(&text?)
                            .map_err(|e| tracing::error!(message = %id, column, error = %e, "a stored message's member cannot be read; left out"))
                            .ok()
                    }
                    Ok(TranscriptMessage {
                        role: parse_role(&r.get::<_, String>(1)?),
                        content: r.get(2)?,
                        created_at: r.get::<_, i64>(3)? as u64,
                        metadata: parse(&id, "metadata", r.get(4)?),
                        tool_calls: parse(&id, "tool_calls", r.get(5)?),
                        tool_call_id: r.get(6)?,
                        run_id: r.get(7)?,
                        id,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            out.reverse();
            Ok(out)
        }))
    }

    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRow>> {
        let id = id.to_owned();
        Box::pin(self.read(move |c| {
            c.query_row(
                "SELECT id, session_key, status, output, error FROM runs WHERE id = ?1",
                [id],
                run_row,
            )
            .optional()
        }))
    }

    fn unfinished_runs(&self, session_key: Option<&str>) -> StoreFuture<'_, Vec<RunRow>> {
        let key = session_key.map(str::to_owned);
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, session_key, status, output, error FROM runs
                 WHERE status IN ('queued', 'running') AND (?1 IS NULL OR session_key = ?1) ORDER BY created_seq",
            )?;
            let rows = stmt.query_map([key], run_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        }))
    }

    fn resident_sessions(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        Box::pin(self.read(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE keep_alive = 1"))?;
            let rows = stmt.query_map([], session_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        }))
    }

    fn peers(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        Box::pin(self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE comms_name IS NOT NULL ORDER BY comms_name, key"
            ))?;
            let rows = stmt.query_map([], session_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        }))
    }

    fn peer_request(&self, id: &str) -> StoreFuture<'_, Option<PeerRequestRow>> {
        let id = id.to_owned();
        Box::pin(self.read(move |c| {
            c.query_row(
                "SELECT id, requester, responder, created_at, answered_at, peer_kernel FROM peer_requests WHERE id = ?1",
                [id],
                |r| {
                    Ok(PeerRequestRow {
                        id: r.get(0)?,
                        requester: r.get(1)?,
                        responder: r.get(2)?,
                        created_at: r.get::<_, i64>(3)? as u64,
                        answered_at: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
                        peer_kernel: r.get(5)?,
                    })
                },
            )
            .optional()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;
    use burrow_protocol::methods::invoke::Role;
    use std::time::Instant;

    fn msg(id: &str, text: &str, at: u64) -> NewMessage {
        NewMessage {
            id: id.into(),
            role: Role::User,
            content: text.into(),
            metadata: None,
            tool_calls: None,
            tool_call_id: None,
            created_at: at,
            run_id: None,
        }
    }

    fn session(key: &str, at: u64) -> SessionRow {
        SessionRow {
            key: key.into(),
            agent_id: "main".into(),
            channel_id: Some("c".into()),
            account_id: None,
            created_at: at,
            last_active_at: at,
            message_count: 0,
            keep_alive: false,
            comms_name: None,
        }
    }

    #[tokio::test]
    async fn writes_are_durable_and_queries_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("burrow.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .write(vec![
                    Write::CreateSession(session("a", 1)),
                    Write::Append { session_key: "a".into(), message: msg("m1", "hi", 2) },
                ])
                .await
                .unwrap();
            store.write(vec![Write::CreateSession(session("b", 3))]).await.unwrap();
            store
                .write(vec![Write::Append {
                    session_key: "a".into(),
                    message: msg("m2", "again", 5),
                }])
                .await
                .unwrap();
            store
                .write(vec![Write::Run(RunRow {
                    id: "r1".into(),
                    session_key: "a".into(),
                    status: RunStatus::Queued,
                    output: None,
                    error: None,
                })])
                .await
                .unwrap();
        }
        // Reopened: everything acknowledged is there.
        let store = SqliteStore::open(&path).unwrap();
        let a = store.session("a").await.unwrap().unwrap();
        assert_eq!((a.message_count, a.last_active_at), (2, 5));
        let (list, total) = store.sessions(SessionFilter::default(), 10, 0).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(list.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let (page, _) = store.sessions(SessionFilter::default(), 1, 1).await.unwrap();
        assert_eq!(page[0].key, "b");
        let filtered = SessionFilter { channel_id: Some("other".into()), ..Default::default() };
        assert_eq!(store.sessions(filtered, 10, 0).await.unwrap().1, 0);
        let h = store.history("a", 100, None).await.unwrap();
        assert_eq!(h.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi", "again"]);
        let back = store.history("a", 100, Some("m2".into())).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(store.history("a", 1, None).await.unwrap()[0].id, "m2");
        assert_eq!(store.unfinished_runs(None).await.unwrap().len(), 1);
        store
            .write(vec![Write::Run(RunRow {
                id: "r1".into(),
                session_key: "a".into(),
                status: RunStatus::Completed,
                output: Some("ok".into()),
                error: None,
            })])
            .await
            .unwrap();
        assert!(store.unfinished_runs(None).await.unwrap().is_empty());
        assert_eq!(store.run("r1").await.unwrap().unwrap().output.as_deref(), Some("ok"));
    }

    #[tokio::test]
    async fn content_and_metadata_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        // Stored as JSON text: each float must read back as the same double (the first
        // came back a step off before serde_json parsed floats to the nearest double);
        // text keeps its NULs and the last code point.
        let metadata = serde_json::json!({
            "floats": [5.756_165_480_829_173_5e-96, 0.1, 1e300, -2.5, f64::MIN_POSITIVE],
            "ints": [u64::MAX, i64::MIN],
            "nested": {"s": "ü\n\"\0", "empty": {}, "none": null},
        });
        let mut m = msg("m1", "a\0b\u{10FFFF}", 2);
        m.metadata = metadata.as_object().cloned();
        let writes = vec![
            Write::CreateSession(session("a", 1)),
            Write::Append { session_key: "a".into(), message: m },
        ];
        store.write(writes).await.unwrap();
        let h = store.history("a", 10, None).await.unwrap();
        assert_eq!(h[0].metadata.clone().map(serde_json::Value::Object), Some(metadata));
        assert_eq!(h[0].content, "a\0b\u{10FFFF}");
    }

    #[tokio::test]
    async fn a_stored_member_that_cannot_be_read_is_left_out_not_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let store = SqliteStore::open(&path).unwrap();
        let mut m = msg("m1", "kept", 2);
        m.metadata = serde_json::json!({"k": 1}).as_object().cloned();
        let writes = vec![
            Write::CreateSession(session("a", 1)),
            Write::Append { session_key: "a".into(), message: m },
        ];
        store.write(writes).await.unwrap();
        assert!(store.history("a", 10, None).await.unwrap()[0].metadata.is_some());
        // Damaged behind the store's back.
        let other = Connection::open(&path).unwrap();
        other.execute("UPDATE messages SET metadata = '{not json' WHERE id = 'm1'", []).unwrap();
        let page = store.history("a", 10, None).await.unwrap();
        assert_eq!((page[0].content.as_str(), &page[0].metadata), ("kept", &None));
    }

    /// Creates session `s`, then appends `each` messages to it from each of `writers`
    /// tasks at once.
    async fn append_concurrently(store: &SqliteStore, writers: usize, each: usize) {
        store.write(vec![Write::CreateSession(session("s", 1))]).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..each {
                    let m = msg(&format!("m-{t}-{i}"), "x", 2);
                    store
                        .write(vec![Write::Append { session_key: "s".into(), message: m }])
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t).await.expect("in time").unwrap();
        }
    }

    #[tokio::test]
    async fn concurrent_writers_share_commits_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("b.db")).unwrap();
        append_concurrently(&store, 16, 50).await;
        assert_eq!(store.session("s").await.unwrap().unwrap().message_count, 800);
    }

    #[tokio::test]
    async fn writers_wait_for_an_applier_held_to_a_tiny_backlog_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // One byte: every group waits until the applier has applied the one before.
        let store = SqliteStore::open_with(&dir.path().join("b.db"), 1).unwrap();
        append_concurrently(&store, 8, 25).await;
        assert_eq!(store.session("s").await.unwrap().unwrap().message_count, 200);
    }

    #[tokio::test]
    async fn a_writer_never_finds_more_than_its_own_write_behind_a_one_byte_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(&dir.path().join("r.db"), 1).unwrap();
        store.write(vec![Write::CreateSession(session("s", 1))]).await.unwrap();
        let append = |i: usize| Write::Append {
            session_key: "s".into(),
            message: msg(&format!("m-{i:04}"), "x", 2),
        };
        let one = super::journal::payload(&[append(0)]).unwrap().len();
        for i in 0..50 {
            store.write(vec![append(i)]).await.unwrap();
            let behind = store.writer.backlog();
            assert!(behind <= one, "write {i}: {behind} bytes behind");
        }
    }

    #[tokio::test]
    async fn a_write_the_database_refuses_is_skipped_and_the_others_apply() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        let append = |id: &str| Write::Append { session_key: "s".into(), message: msg(id, "x", 1) };
        store.write(vec![append("dup")]).await.unwrap();
        // A duplicate id is a kernel bug (ids are the kernel's own): journaled, then
        // refused by the database, logged and skipped; writes beside it still apply.
        let (a, b, c) = tokio::join!(
            store.write(vec![append("ok-1")]),
            store.write(vec![append("dup")]),
            store.write(vec![append("ok-2")]),
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        store.write(vec![append("new")]).await.unwrap();
        let ids: Vec<String> =
            store.history("s", 100, None).await.unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["dup", "ok-1", "ok-2", "new"]);
    }

    #[tokio::test]
    async fn journaled_writes_the_database_missed_are_replayed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let journal_dir = dir.path().join("d.db.journal");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.write(vec![Write::CreateSession(session("s", 1))]).await.unwrap();
            store
                .write(vec![Write::Append { session_key: "s".into(), message: msg("a", "x", 2) }])
                .await
                .unwrap();
        }
        // As if the process died after journaling two more writes but before the
        // database applied them: append their frames by hand.
        // The segment holds LSNs 1 and 2, both applied.
        let segment = journal_dir.join("00000000000000000001.log");
        let mut frames = std::fs::read(&segment).unwrap();
        let salt = journal::salt(&frames).unwrap();
        for (lsn, id) in [(3, "b"), (4, "c")] {
            let w = Write::Append { session_key: "s".into(), message: msg(id, "y", 3) };
            journal::frame(&mut frames, salt, lsn, &journal::payload(&[w]).unwrap());
        }
        std::fs::write(&segment, frames).unwrap();
        let store = SqliteStore::open(&path).unwrap();
        let ids: Vec<String> =
            store.history("s", 100, None).await.unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(store.session("s").await.unwrap().unwrap().message_count, 3);
        // The replayed segment is gone; the new one starts after it, with no frames.
        assert!(!segment.exists());
        let new = std::fs::read(journal_dir.join("00000000000000000005.log")).unwrap();
        assert!(journal::salt(&new).is_some() && new.len() == 16);
    }

    /// Submits `writes` behind `fence` and waits for the outcome.
    async fn submitted(
        store: &SqliteStore,
        writes: Vec<Write>,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.submit(writes, fence, Box::new(move |outcome| drop(tx.send(outcome)))).await;
        rx.await.expect("done runs exactly once")
    }

    #[tokio::test]
    async fn submitted_writes_complete_in_order_and_are_then_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("o.db")).unwrap();
        let fence = Fence::default();
        let done = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut last = Some(tx);
        store.submit(vec![Write::CreateSession(session("s", 1))], &fence, Box::new(|_| {})).await;
        for i in 0..200u64 {
            let append = Write::Append {
                session_key: "s".into(),
                message: msg(&format!("m{i:03}"), "x", i),
            };
            let (done, last) = (done.clone(), if i == 199 { last.take() } else { None });
            // Returns once queued: the journal thread answers each in turn.
            store
                .submit(
                    vec![append],
                    &fence,
                    Box::new(move |outcome| {
                        done.lock().unwrap().push((i, outcome.is_ok()));
                        if let Some(tx) = last {
                            let _ = tx.send(());
                        }
                    }),
                )
                .await;
        }
        tokio::time::timeout(Duration::from_secs(10), rx).await.unwrap().unwrap();
        let done = done.lock().unwrap().clone();
        assert_eq!(done, (0..200).map(|i| (i, true)).collect::<Vec<_>>());
        // Acknowledged means readable.
        let history = store.history("s", 1000, None).await.unwrap();
        assert_eq!(history.len(), 200);
        assert_eq!(store.session("s").await.unwrap().unwrap().message_count, 200);
    }

    #[tokio::test]
    async fn a_completion_that_panics_leaves_the_journal_working() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        let create = vec![Write::CreateSession(session("s", 1))];
        store.submit(create, &Fence::default(), Box::new(|_| panic!("a buggy completion"))).await;
        let append = Write::Append { session_key: "s".into(), message: msg("m", "x", 2) };
        submitted(&store, vec![append], &Fence::default()).await.expect("the journal goes on");
        assert_eq!(store.history("s", 10, None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn writes_the_database_cannot_take_yet_are_retried_and_new_ones_refused_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let store = SqliteStore::open(&path).unwrap();
        store.write(vec![Write::CreateSession(session("s", 1))]).await.unwrap();
        // Every insert into messages now fails, and not as a constraint violation.
        let other = open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER broken AFTER INSERT ON messages BEGIN INSERT INTO missing VALUES (1); END;",
            )
            .unwrap();
        let append =
            |id: String| Write::Append { session_key: "s".into(), message: msg(&id, "x", 2) };
        store.write(vec![append("m1".into())]).await.expect("acknowledged once journaled");
        // Once the applier has failed, new writes are refused rather than queued.
        let mut accepted = vec!["m1".to_owned()];
        let deadline = Instant::now() + Duration::from_secs(10);
        let fence = Fence::default();
        let refused = loop {
            assert!(Instant::now() < deadline, "writes were never refused");
            let id = format!("probe-{}", accepted.len());
            match submitted(&store, vec![append(id.clone())], &fence).await {
                Ok(()) => accepted.push(id),
                Err(e) => break e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(refused.contains("cannot take writes"), "{refused}");
        // Reads say so too, rather than wait.
        let read = store.history("s", 1000, None).await.unwrap_err().to_string();
        assert!(read.contains("cannot take the journaled writes"), "{read}");
        other.execute_batch("DROP TRIGGER broken;").unwrap();
        // Everything acknowledged arrives once the database takes it again.
        let deadline = Instant::now() + Duration::from_secs(10);
        let history = loop {
            match store.history("s", 1000, None).await {
                Ok(history) => break history,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the store never recovered: {e}"),
            }
        };
        assert_eq!(history.into_iter().map(|m| m.id).collect::<Vec<_>>(), accepted);
        let count = store.session("s").await.unwrap().unwrap().message_count;
        assert_eq!(count, accepted.len() as u64);
        store.write(vec![append("after".into())]).await.expect("taken again");
        // Not behind the refused write's fence: its writer must start again first.
        let behind = submitted(&store, vec![append("behind".into())], &fence).await;
        let behind = behind.expect_err("refused behind a broken fence").to_string();
        assert!(behind.contains("earlier write of the same writer was refused"), "{behind}");
        let barrier = submitted(&store, Vec::new(), &fence).await;
        assert!(barrier.is_err(), "a barrier behind a broken fence is refused too");
        submitted(&store, vec![append("anew".into())], &Fence::default())
            .await
            .expect("a new fence");
        let barrier = submitted(&store, Vec::new(), &Fence::default()).await;
        barrier.expect("a barrier writes nothing and is done");
        let ids: Vec<String> =
            store.history("s", 1000, None).await.unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids[accepted.len()..], ["after", "anew"]);
    }

    #[tokio::test]
    async fn migrations_keep_the_messages_of_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A database as schema version 4 left it.
            let mut conn = open(&path).unwrap();
            for (i, sql) in MIGRATIONS[..4].iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", (i + 1) as i64).unwrap();
            }
            let tx = conn.transaction().unwrap();
            apply_one(&tx, &Write::CreateSession(session("s", 1)), &mut Touched::default())
                .unwrap();
            append(&tx, "s", &msg("old-1", "before", 2)).unwrap();
            append(&tx, "s", &msg("old-2", "before", 3)).unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        store
            .write(vec![Write::Append { session_key: "s".into(), message: msg("new", "after", 4) }])
            .await
            .unwrap();
        let ids: Vec<String> =
            store.history("s", 100, None).await.unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["old-1", "old-2", "new"]);
        let back = store.history("s", 100, Some("new".into())).await.unwrap();
        assert_eq!(back.len(), 2, "seq order survives the rebuild");
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_database_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let first = SqliteStore::open(&path).unwrap();
        let held = tokio::task::spawn_blocking({
            let path = path.clone();
            move || SqliteStore::open(&path).map(|_| ())
        });
        first.write(vec![Write::CreateSession(session("s", 1))]).await.unwrap();
        drop(first);
        held.await.unwrap().expect("opens once the first store is done");
    }
}
