//! Taking an inbound message: validated, applied to the session as if its writes took
//! effect, and submitted; its answer goes out once they are on disk, in turn with the
//! session's other answers.

use burrow_protocol::methods::comms::HandlingMode;
use burrow_protocol::methods::invoke::Role;
use burrow_protocol::methods::session::DispatchResult;
use burrow_protocol::{ErrorCode, ErrorObject, Map, now_ms};
use ractor::ActorRef;

use super::{
    AfterWrite, DispatchReply, Inbound, Queued, SessionMsg, SessionState, Wake, published,
    queued_run, requeue, write_now,
};
use crate::sessions::agent::{SteerBytes, Steered};
use crate::store::{NewMessage, SessionRow, StoreError, Write};

fn meta_str(metadata: &Option<Map>, key: &str) -> Option<String> {
    metadata.as_ref()?.get(key)?.as_str().map(str::to_owned)
}

/// Takes an inbound message: validates it, updates the session as if its writes took
/// effect, and submits them; the answer goes to `reply` once they are on disk.
pub(super) async fn dispatch(
    state: &mut SessionState,
    myself: &ActorRef<SessionMsg>,
    item: Inbound,
    reply: DispatchReply,
) {
    let Inbound { content, metadata, caller, wake, mode, create, must_exist, trace } = item;
    let now = now_ms();
    let mut writes = Vec::new();
    match (&state.session, &create) {
        (Some(_), Some(_)) => {
            let e = ErrorObject::new(ErrorCode::Conflict, "the session exists already");
            return Box::pin(answer_in_turn(state, reply, e)).await;
        }
        (None, None) if must_exist => {
            let e = ErrorObject::new(ErrorCode::NotFound, format!("no session {:?}", state.key))
                .with_data(serde_json::json!({ "reason": "unknown_session" }));
            return Box::pin(answer_in_turn(state, reply, e)).await;
        }
        _ => {}
    }
    if let Some(idempotency_key) = idempotency_key(&metadata) {
        match earlier_event(state, &idempotency_key, &content, &metadata).await {
            Ok(None) => {}
            Ok(Some(existing)) => {
                let reason = Some(DEDUPLICATED.to_owned());
                let result =
                    DispatchResult { dispatch_id: existing, queued: false, run_id: None, reason };
                return reply.send(Ok(result));
            }
            Err(e) => return reply.send(Err(e)),
        }
    }
    let config = state.kernel.config();
    let waiting: usize = state.waiting.values().sum();
    if state.queue.len() >= config.sessions.max_queue || waiting >= config.sessions.max_queue {
        let e =
            ErrorObject::new(ErrorCode::UnknownError, "the session's queue is full; retry later")
                .with_data(serde_json::json!({ "reason": "session_queue_full" }));
        return Box::pin(answer_in_turn(state, reply, e)).await;
    }
    let created = state.session.is_none();
    let session = state.session.get_or_insert_with(|| match create {
        Some(row) => *row,
        None => SessionRow {
            channel_id: meta_str(&metadata, "channelId")
                .or_else(|| crate::service::sessions::caller_channel(&state.kernel, &caller)),
            account_id: meta_str(&metadata, "accountId"),
            ..SessionRow::new(
                state.key.clone(),
                meta_str(&metadata, "agentId").unwrap_or_else(|| "main".into()),
                now,
            )
        },
    });
    if created {
        writes.push(Write::CreateSession(session.clone()));
    }
    let runs = match wake {
        Wake::Auto => config.agents.get(&session.agent_id).is_none_or(|a| a.auto_reply),
        Wake::Always => true,
        Wake::Never => false,
    };
    let message_id = uuid::Uuid::now_v7().to_string();
    // Steering goes into the running turn when it can still take it; otherwise the
    // message queues like any other.
    // (not a run whose own input is not known to be on disk yet: its message would be
    // made known before that input).
    let steer =
        runs && mode == HandlingMode::Steer
            && state.running.as_ref().is_some_and(|r| {
                r.steer.capacity() > 0 && !r.steer.is_closed() && r.opener.is_none()
            });
    let waits = !steer && (state.running.is_some() || !state.queue.is_empty());
    let mut new_run = None;
    let run_id = if steer {
        state.running.as_ref().map(|r| r.id.clone())
    } else if runs {
        match &state.joinable {
            Some(run) => Some(run.clone()),
            None => {
                let row = queued_run(&state.key);
                writes.push(Write::Run(row.clone()));
                let id = row.id.clone();
                new_run = Some(row);
                Some(id)
            }
        }
    } else {
        None
    };
    let message = NewMessage {
        id: message_id.clone(),
        role: Role::User,
        content,
        metadata,
        tool_calls: None,
        tool_call_id: None,
        created_at: now,
        // A steered message belongs to the running run, which takes it live; stored with
        // that run, it is its input again should the run be resumed after a restart.
        run_id: run_id.clone(),
    };
    if let Some(session) = state.session.as_mut() {
        session.message_count += 1;
        session.last_active_at = now;
    }
    // The transcript in memory: this message is stored after everything before it.
    state.note_message(&message);
    if steer {
        // The run takes it live, so it must be on disk first: wait for it.
        writes.push(Write::Append { session_key: state.key.clone(), message: message.clone() });
        return reply.send(Box::pin(store_and_steer(state, writes, created, message)).await);
    }
    // The run it queues or joins may start once this submission (the next) is on disk.
    let seq = state.writes.next();
    if let Some(row) = &new_run {
        state.queue.push_back(Queued { id: row.id.clone(), ready_at: seq, trace });
        state.joinable = Some(row.id.clone());
    } else if let Some(run) = &run_id
        && let Some(queued) = state.queue.iter_mut().rev().find(|q| q.id == *run)
    {
        queued.ready_at = seq;
    }
    if let Some(run) = &run_id {
        *state.waiting.entry(run.clone()).or_default() += 1;
    }
    // The actor hears back when it has something to do then: a run to start, an event
    // to emit, followers to tell (the copy is made only when someone follows), a refusal.
    let followed = state.kernel.sessions.followed();
    let tell = created || run_id.is_some() || followed;
    let after = AfterWrite { created, message: followed.then(|| message.clone()), run: new_run };
    let result = DispatchResult { dispatch_id: message_id, queued: waits, run_id, reason: None };
    writes.push(Write::Append { session_key: state.key.clone(), message });
    let me = myself.clone();
    let store = state.kernel.store();
    let submitted = state.writes.submit(store, writes, tell, move |outcome| {
        let answer = outcome.clone().map(|()| result).map_err(not_stored);
        // The actor first: the run this feeds starts while the caller hears.
        if tell || outcome.is_err() {
            let _ = me.cast(SessionMsg::Written(seq, outcome, Box::new(after)));
        }
        reply.send(answer);
    });
    submitted.await;
}

/// The `reason` of a [`DispatchResult`] that stored nothing: an external event with the
/// idempotency key of one stored before.
pub const DEDUPLICATED: &str = "deduplicated";

/// An external event's idempotency key (`metadata.external_event.idempotency_key`).
fn idempotency_key(metadata: &Option<Map>) -> Option<String> {
    let event = metadata.as_ref()?.get("external_event")?;
    event.get("idempotency_key")?.as_str().map(str::to_owned)
}

/// The id of the external event stored before with `key`, once the session's writes in
/// flight are on disk; `CONFLICT` (`INPUT_IDEMPOTENCY_CONFLICT`) when that one's type or
/// payload (compared as JSON, whatever the order of keys) differ from this one's.
async fn earlier_event(
    state: &mut SessionState,
    key: &str,
    content: &str,
    metadata: &Option<Map>,
) -> Result<Option<String>, ErrorObject> {
    write_now(state, Vec::new()).await.map_err(not_stored)?;
    let Some(earlier) =
        state.kernel.store().external_event(&state.key, key).await.map_err(not_stored)?
    else {
        return Ok(None);
    };
    let event_type = |m: Option<&Map>| m?.get("external_event")?.get("event_type").cloned();
    let payload = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let same = event_type(earlier.metadata.as_ref()) == event_type(metadata.as_ref())
        && payload(&earlier.content) == payload(content);
    if !same {
        let message = format!("idempotency key {key:?} was used for another event of this session");
        return Err(ErrorObject::new(ErrorCode::Conflict, message).with_data(serde_json::json!({
            "code": "INPUT_IDEMPOTENCY_CONFLICT", "idempotency_key": key, "existing_id": earlier.id,
        })));
    }
    Ok(Some(earlier.id))
}

/// Stores a steered message (the running run takes it live) and hands it to the run.
async fn store_and_steer(
    state: &mut SessionState,
    writes: Vec<Write>,
    created: bool,
    message: NewMessage,
) -> Result<DispatchResult, ErrorObject> {
    write_now(state, writes).await.map_err(not_stored)?;
    published(state, created, Some(&message));
    steer_into_run(state, message).await
}

/// Answers `reply` with `e` after the answers to the session's writes in flight (at once
/// when there are none): in order, and truthfully should those writes, which `e` took
/// for done, be refused.
async fn answer_in_turn(state: &mut SessionState, reply: DispatchReply, e: ErrorObject) {
    if !state.writes.busy() {
        return reply.send(Err(e));
    }
    let store = state.kernel.store();
    let barrier = state.writes.submit(store, Vec::new(), false, move |outcome| {
        reply.send(Err(outcome.map_or_else(not_stored, |()| e)));
    });
    barrier.await;
}

/// Why a message was not taken.
fn not_stored(e: StoreError) -> ErrorObject {
    ErrorObject::new(ErrorCode::InternalError, format!("could not store the message: {e}"))
}

/// Hands a stored message to the running run; should its turn have ended meanwhile, the
/// message waits for the next run instead.
async fn steer_into_run(
    state: &mut SessionState,
    message: NewMessage,
) -> Result<DispatchResult, ErrorObject> {
    let run_id = state.running.as_ref().map(|r| r.id.clone());
    let message_id = message.id.clone();
    if let Some(running) = &state.running {
        // Bounded in bytes as in count: a message that does not fit waits for the next
        // run like any other (its content is in the store).
        let metadata = message.metadata.as_ref();
        let size = message.content.len() + metadata.map_or(0, crate::sizes::json_len);
        let held = SteerBytes::take(
            &running.steer_bytes,
            size,
            state.kernel.config().ipc.max_queued_bytes,
        );
        let steered = held.map(|held| Steered {
            message_id: message.id.clone(),
            content: message.content,
            metadata: message.metadata,
            held,
        });
        if let Some(steered) = steered
            && running.steer.try_send(steered).is_ok()
        {
            return Ok(DispatchResult {
                dispatch_id: message_id,
                queued: false,
                run_id,
                reason: None,
            });
        }
    }
    let run_id = Some(requeue(state, &message_id).await?);
    Ok(DispatchResult { dispatch_id: message_id, queued: true, run_id, reason: None })
}
