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

use burrow_protocol::methods::session::{RunStatus, TranscriptMessage};
use rusqlite::{Connection, OptionalExtension, params};

mod apply;
mod write;

use super::journal::{self, Journal};
use super::{
    Fence, HistoryPage, Page, PeerRequestRow, RunRow, SessionQuery, SessionRow, Storage,
    StoreError, StoreFuture, Write, WriteDone,
};
use apply::{apply_all, set_applied};
use write::Writer;

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
    // 6: runs by creation order: a run's write looks up the last one, which without this
    // index scanned `runs_unfinished` whole (every run ever, since `status` comes first).
    "CREATE INDEX runs_by_seq ON runs (created_seq);",
    // 7: hosts' labels, the tokens of a session's runs, archived sessions.
    "ALTER TABLE sessions ADD COLUMN labels TEXT;
     ALTER TABLE sessions ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;",
    // 8: external events by their idempotency key (`session/external_event`; a copy of
    // the metadata's `external_event.idempotency_key`, taken when the message is written).
    "ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
     CREATE INDEX messages_by_idempotency_key ON messages (session_key, idempotency_key)
        WHERE idempotency_key IS NOT NULL;",
];

/// A session's external event by its idempotency key.
const EXTERNAL_EVENT: &str =
    "SELECT id, role, content, created_at, metadata, tool_calls, tool_call_id, run_id FROM messages
     WHERE session_key = ?1 AND idempotency_key = ?2 LIMIT 1";

/// The newest messages of a session before a message id, newest first.
const HISTORY_PAGE: &str = "SELECT id, role, content, created_at, metadata, tool_calls, tool_call_id, run_id FROM messages
     WHERE session_key = ?1 AND seq < COALESCE((SELECT seq FROM messages WHERE id = ?2 AND session_key = ?1), 9223372036854775807)
     ORDER BY seq DESC LIMIT ?3";

/// A session's messages from its start, after skipping some.
const HISTORY_RANGE: &str =
    "SELECT id, role, content, created_at, metadata, tool_calls, tool_call_id, run_id FROM messages
     WHERE session_key = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3";

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

/// A message as [`HISTORY_RANGE`] and [`HISTORY_PAGE`] select it.
fn transcript_row(r: &rusqlite::Row<'_>) -> Result<TranscriptMessage, rusqlite::Error> {
    let id: String = r.get(0)?;
    Ok(TranscriptMessage {
        role: parse_role(&r.get::<_, String>(1)?),
        content: r.get(2)?,
        created_at: r.get::<_, i64>(3)? as u64,
        metadata: stored_member(&id, "metadata", r.get(4)?),
        tool_calls: stored_member(&id, "tool_calls", r.get(5)?),
        tool_call_id: r.get(6)?,
        run_id: r.get(7)?,
        id,
    })
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
        labels: r.get::<_, Option<String>>(9)?.and_then(|l| serde_json::from_str(&l).ok()),
        input_tokens: r.get::<_, i64>(10)? as u64,
        output_tokens: r.get::<_, i64>(11)? as u64,
        archived: r.get(12)?,
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

const SESSION_COLUMNS: &str = "key, agent_id, channel_id, account_id, created_at, last_active_at, message_count, keep_alive, comms_name, labels, input_tokens, output_tokens, archived";

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
        query: SessionQuery,
        limit: u32,
        offset: u32,
    ) -> StoreFuture<'_, (Vec<SessionRow>, u64)> {
        Box::pin(self.read(move |c| {
            let SessionQuery { filter, within } = query;
            // Archived sessions are left out; each label must match.
            let mut cond = "archived = 0 AND (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR channel_id = ?2) AND (?3 IS NULL OR account_id = ?3) AND (?4 IS NULL OR keep_alive = ?4)".to_owned();
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![
                Box::new(filter.agent_id),
                Box::new(filter.channel_id),
                Box::new(filter.account_id),
                Box::new(filter.keep_alive),
            ];
            if let Some((keys, among)) = within {
                let not = if among { "" } else { "NOT " };
                cond.push_str(&format!(
                    " AND key {not}IN (SELECT value FROM json_each(?{}))",
                    args.len() + 1
                ));
                args.push(Box::new(serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into())));
            }
            for (key, value) in filter.labels.into_iter().flatten() {
                let n = args.len();
                cond.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM json_each(sessions.labels) WHERE key = ?{} AND value = ?{})",
                    n + 1,
                    n + 2
                ));
                args.push(Box::new(key));
                args.push(Box::new(value));
            }
            let params = rusqlite::params_from_iter(args.iter().map(|a| a.as_ref()));
            let total: i64 = c.query_row(&format!("SELECT COUNT(*) FROM sessions WHERE {cond}"), params, |r| r.get(0))?;
            let n = args.len();
            let mut stmt = c.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {cond} ORDER BY last_active_at DESC, key LIMIT ?{} OFFSET ?{}", n + 1, n + 2
            ))?;
            args.push(Box::new(limit));
            args.push(Box::new(offset));
            let params = rusqlite::params_from_iter(args.iter().map(|a| a.as_ref()));
            let rows = stmt.query_map(params, session_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total as u64))
        }))
    }

    fn history_range(
        &self,
        key: &str,
        offset: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<TranscriptMessage>> {
        let key = key.to_owned();
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(HISTORY_RANGE)?;
            let offset = i64::try_from(offset).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![key, limit, offset], transcript_row)?;
            rows.collect::<Result<Vec<_>, _>>()
        }))
    }

    fn history_page(&self, key: &str, page: Page) -> StoreFuture<'_, HistoryPage> {
        let key = key.to_owned();
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(HISTORY_PAGE)?;
            let mut rows = stmt.query(params![key, page.before, page.limit])?;
            let (mut out, mut bytes, mut truncated) = (Vec::new(), 0usize, false);
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                let content: String = r.get(2)?;
                let (metadata, tool_calls): (Option<String>, Option<String>) =
                    (r.get(4)?, r.get(5)?);
                let size = content.len()
                    + metadata.as_ref().map_or(0, String::len)
                    + tool_calls.as_ref().map_or(0, String::len);
                if !out.is_empty() && bytes.saturating_add(size) > page.max_bytes {
                    truncated = true;
                    break;
                }
                bytes = bytes.saturating_add(size);
                out.push(TranscriptMessage {
                    role: parse_role(&r.get::<_, String>(1)?),
                    content,
                    created_at: r.get::<_, i64>(3)? as u64,
                    metadata: stored_member(&id, "metadata", metadata),
                    tool_calls: stored_member(&id, "tool_calls", tool_calls),
                    tool_call_id: r.get(6)?,
                    run_id: r.get(7)?,
                    id,
                });
            }
            out.reverse();
            Ok(HistoryPage { messages: out, truncated })
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

    fn external_event(
        &self,
        key: &str,
        idempotency_key: &str,
    ) -> StoreFuture<'_, Option<TranscriptMessage>> {
        let (key, idempotency_key) = (key.to_owned(), idempotency_key.to_owned());
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(EXTERNAL_EVENT)?;
            stmt.query_row(params![key, idempotency_key], transcript_row).optional()
        }))
    }
}

/// A stored message's JSON member. What the store wrote reads back; should a row's not,
/// say so, and leave the member out rather than the whole page.
fn stored_member<T: serde::de::DeserializeOwned>(
    id: &str,
    column: &str,
    text: Option<String>,
) -> Option<T> {
    serde_json::from_str(&text?)
        .map_err(|e| tracing::error!(message = %id, column, error = %e, "a stored message's member cannot be read; left out"))
        .ok()
}

#[cfg(test)]
mod tests;
