//! [`MemoryStore`]: the [`Storage`] contract held in memory, for tests of what sits above
//! the store (the service layer, the session runtime) without files or threads. It keeps
//! the SQLite engine's semantics — a batch applies whole or not at all, in submission
//! order; a refusal breaks its fence; sessions newest activity first; history pages
//! bounded in count and bytes — but nothing survives the process. A test can make it
//! refuse every write from a point on ([`MemoryStore::refuse_writes`]).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burrow_protocol::methods::session::RunStatus;

use super::{
    Fence, HistoryPage, NewMessage, Page, PeerRequestRow, RunRow, SessionQuery, SessionRow,
    Storage, StoreError, StoreFuture, Write, WriteDone,
};

#[derive(Debug, Default)]
struct Data {
    sessions: HashMap<String, SessionRow>,
    /// Each session's messages, oldest first.
    messages: HashMap<String, Vec<NewMessage>>,
    /// Where each message is: its session.
    message_session: HashMap<String, String>,
    runs: HashMap<String, (u64, RunRow)>,
    next_run_seq: u64,
    peer_requests: BTreeMap<String, PeerRequestRow>,
}

/// The store in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    refusing: AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every write is refused (as a full disk or a failed database would).
    pub fn refuse_writes(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `writes` whole, or refuses them all.
    fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        if self.refusing.load(Ordering::Acquire) {
            return Err(StoreError::Db("the test store refuses writes".into()));
        }
        let mut data = self.lock();
        // Checked first, so a refused batch changes nothing.
        let mut new_ids = std::collections::HashSet::new();
        for w in writes {
            if let Write::Append { message, .. } = w
                && (data.message_session.contains_key(&message.id) || !new_ids.insert(&message.id))
            {
                return Err(StoreError::Db(format!("message {:?} exists", message.id)));
            }
        }
        for w in writes {
            apply_one(&mut data, w);
        }
        Ok(())
    }

    fn read<T>(&self, f: impl FnOnce(&Data) -> T) -> Result<T, StoreError> {
        Ok(f(&self.lock()))
    }
}

fn apply_one(data: &mut Data, w: &Write) {
    match w {
        Write::CreateSession(s) => {
            data.sessions
                .entry(s.key.clone())
                .or_insert_with(|| SessionRow { message_count: 0, ..s.clone() });
        }
        Write::Append { session_key, message } => {
            if let Some(s) = data.sessions.get_mut(session_key) {
                s.message_count += 1;
                s.last_active_at = s.last_active_at.max(message.created_at);
            }
            data.message_session.insert(message.id.clone(), session_key.clone());
            data.messages.entry(session_key.clone()).or_default().push(message.clone());
        }
        Write::Run(r) => match data.runs.get_mut(&r.id) {
            Some((_, row)) => {
                (row.status, row.output, row.error) = (r.status, r.output.clone(), r.error.clone())
            }
            None => {
                data.next_run_seq += 1;
                let seq = data.next_run_seq;
                data.runs.insert(r.id.clone(), (seq, r.clone()));
            }
        },
        Write::AssignRun { message_id, run_id } => {
            let Some(key) = data.message_session.get(message_id).cloned() else { return };
            let messages = data.messages.entry(key).or_default();
            if let Some(m) = messages.iter_mut().find(|m| m.id == *message_id) {
                m.run_id = Some(run_id.clone());
            }
        }
        Write::PeerRequest(r) => {
            let row = data.peer_requests.entry(r.id.clone()).or_insert_with(|| r.clone());
            row.answered_at = row.answered_at.or(r.answered_at);
        }
        Write::Tokens { session_key, input_tokens, output_tokens } => {
            if let Some(s) = data.sessions.get_mut(session_key) {
                s.input_tokens += input_tokens;
                s.output_tokens += output_tokens;
            }
        }
        Write::Archive { session_key } => {
            if let Some(s) = data.sessions.get_mut(session_key) {
                (s.archived, s.keep_alive) = (true, false);
            }
        }
    }
}

/// The bytes of a message a history page counts, as the SQLite engine counts them.
fn page_size(m: &NewMessage) -> usize {
    use crate::sizes::json_len;
    m.content.len()
        + m.metadata.as_ref().map_or(0, json_len)
        + m.tool_calls.as_ref().map_or(0, json_len)
}

impl Storage for MemoryStore {
    fn write(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        let outcome = self.apply(&writes);
        Box::pin(async move { outcome })
    }

    fn submit<'a>(
        &'a self,
        writes: Vec<Write>,
        fence: &Fence,
        done: WriteDone,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let outcome = if fence.is_broken() {
            Err(StoreError::Db(
                "refused: an earlier write behind the same fence was refused".into(),
            ))
        } else {
            self.apply(&writes)
        };
        if outcome.is_err() {
            fence.break_now();
        }
        done(outcome);
        Box::pin(async {})
    }

    fn session(&self, key: &str) -> StoreFuture<'_, Option<SessionRow>> {
        let found = self.read(|d| d.sessions.get(key).cloned());
        Box::pin(async move { found })
    }

    fn sessions(
        &self,
        query: SessionQuery,
        limit: u32,
        offset: u32,
    ) -> StoreFuture<'_, (Vec<SessionRow>, u64)> {
        let SessionQuery { filter, within } = query;
        let within = within.map(|(keys, among)| {
            (keys.into_iter().collect::<std::collections::HashSet<_>>(), among)
        });
        let page = self.read(|d| {
            let labelled = |s: &SessionRow| {
                filter
                    .labels
                    .iter()
                    .flatten()
                    .all(|(k, v)| s.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
            };
            let matches = |s: &&SessionRow| {
                !s.archived
                    && labelled(s)
                    && filter.agent_id.as_ref().is_none_or(|a| *a == s.agent_id)
                    && filter.channel_id.as_ref().is_none_or(|c| Some(c) == s.channel_id.as_ref())
                    && filter.account_id.as_ref().is_none_or(|a| Some(a) == s.account_id.as_ref())
                    && filter.keep_alive.is_none_or(|k| k == s.keep_alive)
                    && within.as_ref().is_none_or(|(keys, among)| keys.contains(&s.key) == *among)
            };
            let mut rows: Vec<SessionRow> = d.sessions.values().filter(matches).cloned().collect();
            rows.sort_by(|a, b| {
                b.last_active_at.cmp(&a.last_active_at).then_with(|| a.key.cmp(&b.key))
            });
            let total = rows.len() as u64;
            let page = rows.into_iter().skip(offset as usize).take(limit as usize).collect();
            (page, total)
        });
        Box::pin(async move { page })
    }

    fn history_range(
        &self,
        key: &str,
        offset: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<burrow_protocol::methods::session::TranscriptMessage>> {
        let found = self.read(|d| {
            let all = d.messages.get(key).map_or(&[][..], Vec::as_slice);
            let skip = usize::try_from(offset).unwrap_or(usize::MAX);
            all.iter().skip(skip).take(limit as usize).map(NewMessage::transcript).collect()
        });
        Box::pin(async move { found })
    }

    fn history_page(&self, key: &str, page: Page) -> StoreFuture<'_, HistoryPage> {
        let found = self.read(|d| {
            let all = d.messages.get(key).map_or(&[][..], Vec::as_slice);
            let end = page
                .before
                .as_ref()
                .and_then(|b| all.iter().position(|m| m.id == *b))
                .unwrap_or(all.len());
            let (mut out, mut bytes, mut truncated) = (Vec::new(), 0usize, false);
            for m in all[..end].iter().rev().take(page.limit as usize) {
                let size = page_size(m);
                if !out.is_empty() && bytes.saturating_add(size) > page.max_bytes {
                    truncated = true;
                    break;
                }
                bytes = bytes.saturating_add(size);
                out.push(m.transcript());
            }
            out.reverse();
            HistoryPage { messages: out, truncated }
        });
        Box::pin(async move { found })
    }

    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRow>> {
        let found = self.read(|d| d.runs.get(id).map(|(_, r)| r.clone()));
        Box::pin(async move { found })
    }

    fn unfinished_runs(&self, session_key: Option<&str>) -> StoreFuture<'_, Vec<RunRow>> {
        let found = self.read(|d| {
            let mut runs: Vec<&(u64, RunRow)> = d
                .runs
                .values()
                .filter(|(_, r)| matches!(r.status, RunStatus::Queued | RunStatus::Running))
                .filter(|(_, r)| session_key.is_none_or(|k| r.session_key == k))
                .collect();
            runs.sort_by_key(|(seq, _)| *seq);
            runs.into_iter().map(|(_, r)| r.clone()).collect()
        });
        Box::pin(async move { found })
    }

    fn resident_sessions(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        let found = self.read(|d| d.sessions.values().filter(|s| s.keep_alive).cloned().collect());
        Box::pin(async move { found })
    }

    fn peers(&self) -> StoreFuture<'_, Vec<SessionRow>> {
        let found = self.read(|d| {
            let mut rows: Vec<SessionRow> =
                d.sessions.values().filter(|s| s.comms_name.is_some()).cloned().collect();
            rows.sort_by(|a, b| (&a.comms_name, &a.key).cmp(&(&b.comms_name, &b.key)));
            rows
        });
        Box::pin(async move { found })
    }

    fn peer_request(&self, id: &str) -> StoreFuture<'_, Option<PeerRequestRow>> {
        let found = self.read(|d| d.peer_requests.get(id).cloned());
        Box::pin(async move { found })
    }

    fn external_event(
        &self,
        key: &str,
        idempotency_key: &str,
    ) -> StoreFuture<'_, Option<burrow_protocol::methods::session::TranscriptMessage>> {
        let keyed = |m: &&NewMessage| m.idempotency_key() == Some(idempotency_key);
        let found = self.read(|d| {
            let all = d.messages.get(key).map_or(&[][..], Vec::as_slice);
            all.iter().find(keyed).map(NewMessage::transcript)
        });
        Box::pin(async move { found })
    }
}
