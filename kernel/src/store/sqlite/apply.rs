//! Applying journaled writes to SQLite: a batch in one transaction (with the journal
//! position it reaches), each [`Write`] as its statements, the sessions' counts touched
//! once per transaction. The applier thread ([`super::write`]) and recovery at open call
//! it; the statements on growing tables are checked for cost in `tests.rs`.

use burrow_protocol::methods::session::RunStatus;
use rusqlite::{Connection, params};

use super::super::{NewMessage, StoreError, Write};
use super::db;

/// Applies `jobs` (journaled up to `last_lsn`) and records `last_lsn`, in one transaction.
/// When that fails, they are applied again one by one within one transaction: a job the
/// database refuses as a constraint violation is logged and skipped (it was acknowledged,
/// so this is a kernel bug, reported loudly); any other failure fails the whole call, to
/// be tried again.
pub(super) fn apply_all(
    conn: &mut Connection,
    jobs: &[Vec<Write>],
    last_lsn: u64,
) -> Result<(), rusqlite::Error> {
    let mut together = || -> Result<(), rusqlite::Error> {
        let tx = conn.transaction()?;
        let mut touched = Touched::default();
        for w in jobs.iter().flatten() {
            apply_one(&tx, w, &mut touched)?;
        }
        touched.flush(&tx)?;
        record_lsn(&tx, last_lsn)?;
        tx.commit()
    };
    if together().is_ok() {
        return Ok(());
    }
    let mut tx = conn.transaction()?;
    let mut touched = Touched::default();
    for writes in jobs {
        let mut job = Touched::default();
        let sp = tx.savepoint()?;
        let applied = writes.iter().try_for_each(|w| apply_one(&sp, w, &mut job));
        match applied {
            Ok(()) => {
                sp.commit()?;
                touched.merge(job);
            }
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                drop(sp); // rolls the job back
                tracing::error!(error = %e, ?writes, "the database refused an acknowledged write; skipped");
            }
            Err(e) => return Err(e),
        }
    }
    touched.flush(&tx)?;
    record_lsn(&tx, last_lsn)?;
    tx.commit()
}

fn record_lsn(tx: &Connection, lsn: u64) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("UPDATE journal_state SET applied_lsn = ?1 WHERE id = 1")?
        .execute([lsn as i64])?;
    Ok(())
}

/// Records `lsn` in a fully synced commit, which also makes every earlier commit durable.
pub(super) fn set_applied(conn: &mut Connection, lsn: u64) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
    let done = conn
        .transaction()
        .and_then(|tx| {
            // Touch the row even when the LSN is unchanged so the commit is not empty.
            tx.execute("UPDATE journal_state SET applied_lsn = ?1 WHERE id = 1", [lsn as i64])?;
            tx.commit()
        })
        .map_err(db);
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
    done
}

/// Sessions that got messages in a transaction: how many, and the latest time. One
/// `UPDATE` per session at the end of the transaction instead of one per message.
#[derive(Default)]
pub(super) struct Touched<'a>(std::collections::HashMap<&'a str, (u64, u64)>);

impl<'a> Touched<'a> {
    fn merge(&mut self, other: Touched<'a>) {
        for (key, (count, at)) in other.0 {
            let entry = self.0.entry(key).or_default();
            entry.0 += count;
            entry.1 = entry.1.max(at);
        }
    }

    fn add(&mut self, key: &'a str, at: u64) {
        let entry = self.0.entry(key).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(at);
    }

    fn flush(self, tx: &Connection) -> Result<(), rusqlite::Error> {
        let mut update = tx.prepare_cached(TOUCH_SESSION)?;
        for (key, (count, at)) in self.0 {
            update.execute(params![key, count as i64, at as i64])?;
        }
        Ok(())
    }
}

pub(super) fn apply_one<'a>(
    tx: &Connection,
    w: &'a Write,
    touched: &mut Touched<'a>,
) -> Result<(), rusqlite::Error> {
    match w {
        Write::CreateSession(s) => {
            let labels = s.labels.as_ref().map(|l| serde_json::to_string(l).unwrap_or_default());
            tx.prepare_cached(
                "INSERT OR IGNORE INTO sessions (key, agent_id, channel_id, account_id, created_at, last_active_at, message_count, keep_alive, comms_name, labels)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9)",
            )?
            .execute(params![s.key, s.agent_id, s.channel_id, s.account_id, s.created_at as i64, s.last_active_at as i64, s.keep_alive, s.comms_name, labels])?;
        }
        Write::Tokens { session_key, input_tokens, output_tokens } => {
            tx.prepare_cached(
                "UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3 WHERE key = ?1",
            )?
            .execute(params![session_key, *input_tokens as i64, *output_tokens as i64])?;
        }
        Write::Archive { session_key } => {
            tx.prepare_cached("UPDATE sessions SET archived = 1, keep_alive = 0 WHERE key = ?1")?
                .execute(params![session_key])?;
        }
        Write::Append { session_key, message } => {
            append(tx, session_key, message)?;
            touched.add(session_key, message.created_at);
        }
        Write::Run(r) => {
            tx.prepare_cached(UPSERT_RUN)?.execute(params![
                r.id,
                r.session_key,
                status_str(r.status),
                r.output,
                r.error
            ])?;
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

/// A run's row: new (numbered after the last one, found by `runs_by_seq`), or its status
/// and outcome updated.
pub(super) const UPSERT_RUN: &str = "INSERT INTO runs (id, session_key, status, output, error, created_seq)
     VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM runs))
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, output = excluded.output, error = excluded.error";

/// A message appended to a transcript.
pub(super) const APPEND_MESSAGE: &str = "INSERT INTO messages (id, session_key, role, content, metadata, tool_calls, tool_call_id, created_at, run_id, idempotency_key)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// A session's count and activity after a transaction's appends.
pub(super) const TOUCH_SESSION: &str = "UPDATE sessions SET message_count = message_count + ?2, last_active_at = MAX(last_active_at, ?3) WHERE key = ?1";

pub(super) fn append(tx: &Connection, key: &str, m: &NewMessage) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(APPEND_MESSAGE)?.execute(params![
        m.id,
        key,
        role_str(m.role),
        m.content,
        m.metadata.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default()),
        m.tool_calls.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default()),
        m.tool_call_id,
        m.created_at as i64,
        m.run_id,
        m.idempotency_key()
    ])?;
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

fn status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Queued => "queued",
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}
