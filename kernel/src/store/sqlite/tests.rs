use super::*;
use crate::store::NewMessage;
use burrow_protocol::methods::invoke::Role;
use burrow_protocol::methods::session::SessionFilter;
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
    SessionRow { channel_id: Some("c".into()), ..SessionRow::new(key, "main", at) }
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
            .write(vec![Write::Append { session_key: "a".into(), message: msg("m2", "again", 5) }])
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
    let (list, total) = store.sessions(SessionFilter::default().into(), 10, 0).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(list.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let (page, _) = store.sessions(SessionFilter::default().into(), 1, 1).await.unwrap();
    assert_eq!(page[0].key, "b");
    let filtered = SessionFilter { channel_id: Some("other".into()), ..Default::default() };
    assert_eq!(store.sessions(filtered.into(), 10, 0).await.unwrap().1, 0);
    let h = store.history("a", 100, None).await.unwrap();
    assert_eq!(h.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi", "again"]);
    let back = store.history("a", 100, Some("m2".into())).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(store.history("a", 1, None).await.unwrap()[0].id, "m2");
    // A page bounded in bytes ends early and says so; it holds one message at least.
    let page = |max_bytes| store.history_page("a", Page { limit: 100, before: None, max_bytes });
    let small = page(6).await.unwrap();
    assert_eq!(small.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m2"]);
    assert!(small.truncated);
    let one = page(1).await.unwrap();
    assert_eq!((one.messages.len(), one.truncated), (1, true));
    let whole = page(7).await.unwrap();
    assert_eq!((whole.messages.len(), whole.truncated), (2, false));
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
        let append =
            Write::Append { session_key: "s".into(), message: msg(&format!("m{i:03}"), "x", i) };
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
    let append = |id: String| Write::Append { session_key: "s".into(), message: msg(&id, "x", 2) };
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
    submitted(&store, vec![append("anew".into())], &Fence::default()).await.expect("a new fence");
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
        // Version 4's columns (later ones add their own).
        tx.execute(
            "INSERT INTO sessions (key, agent_id, created_at, last_active_at) VALUES ('s', 'main', 1, 1)",
            [],
        )
        .unwrap();
        // Version 4's message columns.
        for (id, at) in [("old-1", 2), ("old-2", 3)] {
            tx.execute(
                "INSERT INTO messages (id, session_key, role, content, created_at) VALUES (?1, 's', 'user', 'before', ?2)",
                params![id, at],
            )
            .unwrap();
        }
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

/// SQLite's own count of the steps a statement took to run once (its VM steps), for
/// `sql` with `args` on `c`.
fn steps(c: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> i32 {
    let mut stmt = c.prepare_cached(sql).unwrap();
    stmt.reset_status(rusqlite::StatementStatus::VmStep);
    let mut rows = stmt.query(args).unwrap();
    while rows.next().unwrap().is_some() {}
    drop(rows);
    stmt.get_status(rusqlite::StatementStatus::VmStep)
}

/// `n` more runs (finished), messages and sessions, written straight to the database.
fn grow(c: &mut Connection, from: usize, n: usize) {
    let tx = c.transaction().unwrap();
    for i in from..from + n {
        let key = format!("s{}", i % 64);
        tx.execute(
            apply::UPSERT_RUN,
            params![format!("r{i}"), key, "completed", "out", None::<String>],
        )
        .unwrap();
        tx.execute(
            apply::APPEND_MESSAGE,
            params![
                format!("m{i}"),
                key,
                "user",
                "hi",
                None::<String>,
                None::<String>,
                None::<String>,
                i as i64,
                None::<String>,
                (i % 10 == 0).then(|| format!("k{i}"))
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT OR IGNORE INTO sessions (key, agent_id, created_at, last_active_at) VALUES (?1, 'main', 0, 0)",
            params![key],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// What each write and read on a growing table costs, run once: the same at 2 000 rows
/// as at 42 000 (issue 17: a run's write looked up the last run by scanning them all).
fn costs(c: &Connection, at: usize) -> Vec<(&'static str, i32)> {
    let (run, msg) = (format!("new-run-{at}"), format!("new-msg-{at}"));
    vec![
        (
            "a new run",
            steps(
                c,
                apply::UPSERT_RUN,
                &[&run, &"s1", &"queued", &None::<String>, &None::<String>],
            ),
        ),
        (
            "a run's update",
            steps(
                c,
                apply::UPSERT_RUN,
                &[&run, &"s1", &"running", &None::<String>, &None::<String>],
            ),
        ),
        (
            "a message",
            steps(
                c,
                apply::APPEND_MESSAGE,
                &[
                    &msg,
                    &"s1",
                    &"user",
                    &"x",
                    &None::<String>,
                    &None::<String>,
                    &None::<String>,
                    &0i64,
                    &None::<String>,
                    &None::<String>,
                ],
            ),
        ),
        ("a session's activity", steps(c, apply::TOUCH_SESSION, &[&"s1", &1i64, &2i64])),
        ("a history page", steps(c, HISTORY_PAGE, &[&"s1", &None::<String>, &20i64])),
        ("a page before a message", steps(c, HISTORY_PAGE, &[&"s1", &msg, &20i64])),
        ("an external event by its key", steps(c, EXTERNAL_EVENT, &[&"s10", &"k10"])),
        (
            "a run by id",
            steps(
                c,
                "SELECT id, session_key, status, output, error FROM runs WHERE id = ?1",
                &[&run],
            ),
        ),
    ]
}

#[tokio::test]
async fn no_statement_on_a_growing_table_costs_more_as_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burrow.db");
    drop(SqliteStore::open(&path).unwrap());
    let mut c = Connection::open(&path).unwrap();
    // Enough for every session to fill a page of 20 at either size.
    grow(&mut c, 0, 2_000);
    let small = costs(&c, 2_000);
    grow(&mut c, 2_000, 40_000);
    let large = costs(&c, 42_000);
    for ((what, small), (_, large)) in small.iter().zip(&large) {
        assert!(*large <= small + 16, "{what}: {small} steps at 2 000 rows, {large} at 42 000");
    }
}
