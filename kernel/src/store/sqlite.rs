//! The SQLite engine: WAL, `synchronous = FULL`, versioned migrations, one writer thread
//! doing group commit, and a reader connection for queries.

use std::path::Path;
use std::sync::{Arc, Mutex};

use burrow_protocol::methods::session::{RunStatus, SessionFilter, TranscriptMessage};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    NewMessage, PeerRequestRow, RunRow, SessionRow, Storage, StoreError, StoreFuture, Write,
};

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
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
];

/// Most writes one transaction takes.
const MAX_BATCH: usize = 1024;
/// Writes waiting for the writer thread.
const QUEUE: usize = 8192;

type Job = (Vec<Write>, oneshot::Sender<Result<(), StoreError>>);

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
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

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = open(path)?;
        migrate(&mut writer)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("burrow-store".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs: tx, reader: Arc::new(Mutex::new(reader)) })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Closed)?;
            f(&conn).map_err(db)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// The writer thread: take what waits, one transaction, one commit, answer everyone.
fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match apply(&mut conn, &batch) {
            Ok(()) => {
                for (_, reply) in batch {
                    let _ = reply.send(Ok(()));
                }
            }
            // One bad write must not fail the others it shared a transaction with: redo
            // each job on its own.
            Err(_) => {
                for job in batch {
                    let outcome = apply(&mut conn, std::slice::from_ref(&job));
                    let _ = job.1.send(outcome);
                }
            }
        }
    }
}

fn apply(conn: &mut Connection, batch: &[Job]) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(db)?;
    for (writes, _) in batch {
        for w in writes {
            apply_one(&tx, w).map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

fn apply_one(tx: &rusqlite::Transaction<'_>, w: &Write) -> Result<(), rusqlite::Error> {
    match w {
        Write::CreateSession(s) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO sessions (key, agent_id, channel_id, account_id, created_at, last_active_at, message_count, keep_alive, comms_name)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
            )?
            .execute(params![s.key, s.agent_id, s.channel_id, s.account_id, s.created_at as i64, s.last_active_at as i64, s.keep_alive, s.comms_name])?;
        }
        Write::Append { session_key, message } => append(tx, session_key, message)?,
        Write::Run(r) => {
            tx.prepare_cached(
                "INSERT INTO runs (id, session_key, status, output, error, created_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM runs))
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, output = excluded.output, error = excluded.error",
            )?
            .execute(params![r.id, r.session_key, status_str(r.status), r.output, r.error])?;
        }
        Write::AssignRun { message_id, run_id } => {
            tx.prepare_cached("UPDATE messages SET run_id = ?2 WHERE id = ?1")?
                .execute(params![message_id, run_id])?;
        }
        Write::PeerRequest(r) => {
            tx.prepare_cached(
                "INSERT INTO peer_requests (id, requester, responder, created_at, answered_at, peer_kernel) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET answered_at = COALESCE(peer_requests.answered_at, excluded.answered_at)",
            )?
            .execute(params![r.id, r.requester, r.responder, r.created_at as i64, r.answered_at.map(|t| t as i64), r.peer_kernel])?;
        }
    }
    Ok(())
}

fn append(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    m: &NewMessage,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO messages (id, session_key, role, content, metadata, tool_calls, tool_call_id, created_at, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
            m.id,
            key,
            role_str(m.role),
            m.content,
            m.metadata.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default()),
            m.tool_calls.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default()),
            m.tool_call_id,
            m.created_at as i64,
            m.run_id
        ])?;
    tx.prepare_cached(
        "UPDATE sessions SET message_count = message_count + 1, last_active_at = MAX(last_active_at, ?2) WHERE key = ?1",
    )?
    .execute(params![key, m.created_at as i64])?;
    Ok(())
}

fn role_str(r: burrow_protocol::methods::invoke::Role) -> &'static str {
    use burrow_protocol::methods::invoke::Role::*;
    match r {
        System => "system",
        User => "user",
        Assistant => "assistant",
        Tool => "tool",
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

fn status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Queued => "queued",
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
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
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.jobs.send((writes, tx)).await.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
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
                    fn parse<T: serde::de::DeserializeOwned>(s: Option<String>) -> Option<T> {
                        s.and_then(|s| serde_json::from_str(&s).ok())
                    }
                    Ok(TranscriptMessage {
                        id: r.get(0)?,
                        role: parse_role(&r.get::<_, String>(1)?),
                        content: r.get(2)?,
                        created_at: r.get::<_, i64>(3)? as u64,
                        metadata: parse(r.get(4)?),
                        tool_calls: parse(r.get(5)?),
                        tool_call_id: r.get(6)?,
                        run_id: r.get(7)?,
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
    use burrow_protocol::methods::invoke::Role;

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
    async fn concurrent_writers_share_commits_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("b.db")).unwrap();
        store.write(vec![Write::CreateSession(session("s", 1))]).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let m = msg(&format!("m-{t}-{i}"), "x", 2);
                    store
                        .write(vec![Write::Append { session_key: "s".into(), message: m }])
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.session("s").await.unwrap().unwrap().message_count, 800);
    }

    #[tokio::test]
    async fn a_failed_batch_is_reported_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        store
            .write(vec![Write::Append { session_key: "s".into(), message: msg("dup", "x", 1) }])
            .await
            .unwrap();
        let again = store
            .write(vec![Write::Append { session_key: "s".into(), message: msg("dup", "x", 1) }])
            .await;
        assert!(again.is_err(), "a duplicate id is refused");
        // Good writes that share a batch with a bad one still succeed.
        let (good, bad) = tokio::join!(
            store.write(vec![Write::Append {
                session_key: "s".into(),
                message: msg("ok-1", "x", 1)
            }]),
            store.write(vec![Write::Append {
                session_key: "s".into(),
                message: msg("dup", "x", 1)
            }]),
        );
        assert!(good.is_ok() && bad.is_err());
        store
            .write(vec![Write::Append { session_key: "s".into(), message: msg("new", "x", 1) }])
            .await
            .unwrap();
    }
}
