//! The [`Storage`] contract, checked on both engines alike: the SQLite store (in a
//! temporary directory) and the memory store tests use in its place.

use std::sync::Arc;

use burrow_protocol::methods::invoke::Role;
use burrow_protocol::methods::session::{RunStatus, SessionFilter};

use super::memory::MemoryStore;
use super::sqlite::SqliteStore;
use super::*;

fn session(key: &str, agent: &str, at: u64) -> SessionRow {
    // A message count is not taken: a new session counts its own messages.
    SessionRow { message_count: 7, ..SessionRow::new(key, agent, at) }
}

fn message(id: &str, content: &str, at: u64) -> NewMessage {
    NewMessage {
        id: id.into(),
        role: Role::User,
        content: content.into(),
        metadata: None,
        tool_calls: None,
        tool_call_id: None,
        created_at: at,
        run_id: None,
    }
}

fn append(key: &str, m: NewMessage) -> Write {
    Write::Append { session_key: key.into(), message: m }
}

fn run(id: &str, key: &str, status: RunStatus) -> Write {
    Write::Run(RunRow { id: id.into(), session_key: key.into(), status, output: None, error: None })
}

/// Every check, on `store`.
async fn contract(store: Arc<dyn Storage>) {
    // Sessions: created once, counted and touched by their messages.
    let mut alpha = session("alpha", "main", 10);
    alpha.keep_alive = true;
    let mut beta = session("beta", "other", 20);
    beta.comms_name = Some("bee".into());
    store
        .write(vec![Write::CreateSession(alpha.clone()), Write::CreateSession(beta)])
        .await
        .unwrap();
    store.write(vec![Write::CreateSession(session("alpha", "changed", 99))]).await.unwrap();
    let writes = vec![
        append("alpha", message("m1", "one", 30)),
        append("alpha", message("m2", "two", 40)),
        append("alpha", message("m3", &"x".repeat(100), 50)),
    ];
    store.write(writes).await.unwrap();
    let row = store.session("alpha").await.unwrap().expect("stored");
    assert_eq!((row.agent_id.as_str(), row.message_count, row.last_active_at), ("main", 3, 50));
    assert!(store.session("nobody").await.unwrap().is_none());

    // Newest activity first, filtered, paged, with the total.
    let (rows, total) = store.sessions(SessionFilter::default().into(), 10, 0).await.unwrap();
    assert_eq!(
        (rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), total),
        (vec!["alpha", "beta"], 2)
    );
    let only = SessionFilter { agent_id: Some("other".into()), ..Default::default() };
    let (rows, total) = store.sessions(only.into(), 10, 0).await.unwrap();
    assert_eq!((rows.len(), rows[0].key.as_str(), total), (1, "beta", 1));
    let (rows, total) = store.sessions(SessionFilter::default().into(), 1, 1).await.unwrap();
    assert_eq!((rows[0].key.as_str(), total), ("beta", 2));
    for (among, expected) in [(true, "beta"), (false, "alpha")] {
        let within = Some((vec!["beta".to_owned(), "gamma".to_owned()], among));
        let query = crate::store::SessionQuery { filter: SessionFilter::default(), within };
        let (rows, total) = store.sessions(query, 10, 0).await.unwrap();
        assert_eq!((rows[0].key.as_str(), total), (expected, 1), "among {among}");
    }
    for (keep_alive, expected) in [(true, "alpha"), (false, "beta")] {
        let kept = SessionFilter { keep_alive: Some(keep_alive), ..Default::default() };
        let (rows, total) = store.sessions(kept.into(), 10, 0).await.unwrap();
        assert_eq!((rows[0].key.as_str(), total), (expected, 1), "keep_alive {keep_alive}");
    }
    assert_eq!(
        store.resident_sessions().await.unwrap().iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
        ["alpha"]
    );
    assert_eq!(
        store.peers().await.unwrap().iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
        ["beta"]
    );

    // History: the newest, oldest first; before an id; within a byte bound.
    let page = |limit, before: Option<&str>, max_bytes| Page {
        limit,
        before: before.map(str::to_owned),
        max_bytes,
    };
    let ids = |p: &HistoryPage| p.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    let last_two = store.history_page("alpha", page(2, None, usize::MAX)).await.unwrap();
    assert_eq!(
        (ids(&last_two), last_two.truncated),
        (vec!["m2".to_owned(), "m3".to_owned()], false)
    );
    let before = store.history_page("alpha", page(10, Some("m3"), usize::MAX)).await.unwrap();
    assert_eq!(ids(&before), ["m1", "m2"]);
    let small = store.history_page("alpha", page(10, None, 50)).await.unwrap();
    assert_eq!(
        (ids(&small), small.truncated),
        (vec!["m3".to_owned()], true),
        "one at least, then the bound"
    );
    assert!(store.history_page("nobody", page(10, None, 50)).await.unwrap().messages.is_empty());

    // Runs: created in order, updated in place; the unfinished ones oldest first.
    store
        .write(vec![run("r1", "alpha", RunStatus::Queued), run("r2", "beta", RunStatus::Running)])
        .await
        .unwrap();
    store
        .write(vec![
            run("r3", "alpha", RunStatus::Queued),
            Write::AssignRun { message_id: "m1".into(), run_id: "r1".into() },
        ])
        .await
        .unwrap();
    let done = RunRow {
        id: "r1".into(),
        session_key: "alpha".into(),
        status: RunStatus::Completed,
        output: Some("ok".into()),
        error: None,
    };
    store.write(vec![Write::Run(done.clone())]).await.unwrap();
    assert_eq!(store.run("r1").await.unwrap(), Some(done.clone()));
    let open = |runs: Vec<RunRow>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(open(store.unfinished_runs(None).await.unwrap()), ["r2", "r3"]);
    assert_eq!(open(store.unfinished_runs(Some("alpha")).await.unwrap()), ["r3"]);
    let first = store.history_page("alpha", page(1, Some("m2"), usize::MAX)).await.unwrap();
    assert_eq!(first.messages[0].run_id.as_deref(), Some("r1"));
    assert!(store.run("nope").await.unwrap().is_none());

    // Peer requests: the first answer stays.
    let request = |answered| PeerRequestRow {
        id: "q1".into(),
        requester: "alpha".into(),
        responder: "beta".into(),
        created_at: 1,
        answered_at: answered,
        peer_kernel: None,
    };
    store.write(vec![Write::PeerRequest(request(None))]).await.unwrap();
    store.write(vec![Write::PeerRequest(request(Some(5)))]).await.unwrap();
    store.write(vec![Write::PeerRequest(request(Some(9)))]).await.unwrap();
    assert_eq!(store.peer_request("q1").await.unwrap().unwrap().answered_at, Some(5));

    // Submissions: done in order, once each; nothing behind a broken fence is taken.
    let fence = Fence::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, id) in ["m4", "m5"].into_iter().enumerate() {
        let tx = tx.clone();
        let done: WriteDone = Box::new(move |outcome| {
            let _ = tx.send((i, outcome.is_ok()));
        });
        store.submit(vec![append("beta", message(id, "hi", 60))], &fence, done).await;
    }
    assert_eq!((rx.recv().await, rx.recv().await), (Some((0, true)), Some((1, true))));
    fence.break_now();
    let tx2 = tx.clone();
    store
        .submit(
            vec![append("beta", message("m6", "no", 70))],
            &fence,
            Box::new(move |o| {
                let _ = tx2.send((2, o.is_ok()));
            }),
        )
        .await;
    assert_eq!(rx.recv().await, Some((2, false)));
    let beta = store.history_page("beta", page(10, None, usize::MAX)).await.unwrap();
    assert_eq!(ids(&beta), ["m4", "m5"]);

    host_views(store).await;
}

/// What the host contract reads: labels to find sessions by, their runs' tokens,
/// archived sessions left out of lists, transcripts read from their start.
async fn host_views(store: Arc<dyn Storage>) {
    let labelled = |key: &str, team: &str| {
        let mut s = session(key, "main", 100);
        s.labels = Some([("team".to_owned(), team.to_owned())].into());
        Write::CreateSession(s)
    };
    store.write(vec![labelled("la", "a"), labelled("lb", "b"), labelled("lc", "a")]).await.unwrap();
    let team = |t: &str| SessionFilter {
        labels: Some([("team".to_owned(), t.to_owned())].into()),
        ..Default::default()
    };
    let (rows, total) = store.sessions(team("a").into(), 10, 0).await.unwrap();
    let mut keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!((keys, total), (vec!["la", "lc"], 2));
    assert_eq!(rows[0].labels.as_ref().unwrap()["team"], "a");
    let quoted = SessionFilter {
        labels: Some([("te\"am".to_owned(), "a".to_owned())].into()),
        ..Default::default()
    };
    assert_eq!(store.sessions(quoted.clone().into(), 10, 0).await.unwrap().1, 0, "no such label");
    // Any key matches as it is, quotes and dots included, on both engines.
    let mut odd = session("lq", "main", 100);
    odd.labels =
        Some([("te\"am".to_owned(), "a".to_owned()), ("a.b".to_owned(), "c".to_owned())].into());
    store.write(vec![Write::CreateSession(odd)]).await.unwrap();
    let (rows, total) = store.sessions(quoted.into(), 10, 0).await.unwrap();
    assert_eq!((rows[0].key.as_str(), total), ("lq", 1));
    let dotted = SessionFilter {
        labels: Some([("a.b".to_owned(), "c".to_owned())].into()),
        ..Default::default()
    };
    assert_eq!(store.sessions(dotted.into(), 10, 0).await.unwrap().1, 1);
    store.write(vec![Write::Archive { session_key: "lq".into() }]).await.unwrap();

    let tokens =
        |i, o| Write::Tokens { session_key: "la".into(), input_tokens: i, output_tokens: o };
    store.write(vec![tokens(3, 4), tokens(10, 1)]).await.unwrap();
    let la = store.session("la").await.unwrap().unwrap();
    assert_eq!((la.input_tokens, la.output_tokens), (13, 5));

    store.write(vec![Write::Archive { session_key: "lc".into() }]).await.unwrap();
    let (rows, total) = store.sessions(team("a").into(), 10, 0).await.unwrap();
    assert_eq!((rows.len(), total), (1, 1), "archived: left out");
    assert!(store.session("lc").await.unwrap().unwrap().archived, "but still readable");

    let msgs: Vec<Write> =
        (0..5).map(|n| append("lb", message(&format!("h{n}"), "x", 200 + n))).collect();
    store.write(msgs).await.unwrap();
    let range = store.history_range("lb", 1, 3).await.unwrap();
    let ids: Vec<&str> = range.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["h1", "h2", "h3"]);
    assert_eq!(store.history_range("lb", 4, 10).await.unwrap().len(), 1);
    assert!(store.history_range("lb", 9, 10).await.unwrap().is_empty());

    // External events by their idempotency key, within their session.
    let event = |id: &str, key: &str| {
        let mut m = message(id, "{}", 300);
        let meta =
            serde_json::json!({"external_event": {"event_type": "ci", "idempotency_key": key}});
        m.metadata = meta.as_object().cloned();
        m
    };
    store
        .write(vec![append("la", event("e1", "k1")), append("lb", event("e2", "k1"))])
        .await
        .unwrap();
    assert_eq!(store.external_event("la", "k1").await.unwrap().unwrap().id, "e1");
    assert_eq!(store.external_event("lb", "k1").await.unwrap().unwrap().id, "e2");
    assert!(store.external_event("la", "k2").await.unwrap().is_none());
    assert!(store.external_event("lc", "k1").await.unwrap().is_none());
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("burrow.db")).unwrap();
    contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn the_memory_store_refuses_a_batch_whole_when_told_to_or_on_a_duplicate() {
    let store = MemoryStore::new();
    store.write(vec![Write::CreateSession(session("s", "main", 1))]).await.unwrap();
    store.write(vec![append("s", message("m1", "a", 2))]).await.unwrap();
    let twice = store
        .write(vec![append("s", message("m2", "b", 3)), append("s", message("m1", "c", 4))])
        .await;
    assert!(twice.is_err());
    store.refuse_writes(true);
    assert!(store.write(vec![append("s", message("m3", "d", 5))]).await.is_err());
    let fence = Fence::default();
    store.submit(vec![], &fence, Box::new(|o| assert!(o.is_err()))).await;
    assert!(fence.is_broken(), "a refusal breaks its fence");
    let page = store
        .history_page("s", Page { limit: 10, before: None, max_bytes: usize::MAX })
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1, "nothing of a refused batch was taken");
    assert_eq!(store.session("s").await.unwrap().unwrap().message_count, 1);
}
