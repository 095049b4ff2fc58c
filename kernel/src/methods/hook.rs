//! `hook.subscribe`, `hook.unsubscribe`, `hook.result` (PROTOCOL.md §6).

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::hook::{
    HookResultParams, SubscribeParams, SubscribeResult, UnsubscribeParams, UnsubscribeResult,
};
use burrow_protocol::{ErrorCode, ErrorObject};

use crate::app_actor::AppActorState;
use crate::config::policy::covers;

/// Grants each pattern the manifest covers and the policy does not wholly deny.
pub fn subscribe(
    state: &mut AppActorState,
    p: SubscribeParams,
) -> Result<SubscribeResult, ErrorObject> {
    let Some(app) = state.app.as_ref() else {
        return Err(super::not_registered("hook.subscribe"));
    };
    for (i, pattern) in p.events.iter().enumerate() {
        let bad_star = pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**");
        if pattern.is_empty() || bad_star || pattern.len() > 128 {
            return Err(ErrorObject::invalid_params(
                format!("events[{i}]"),
                format!("{pattern:?} is not an event name or a trailing-`*` pattern"),
            ));
        }
    }
    let kernel = &state.kernel;
    let policy = &kernel.config().policy;
    let grants = &app.manifest.capabilities.hooks.subscribe;
    let (subscribed, denied): (Vec<String>, Vec<String>) = p.events.into_iter().partition(|e| {
        grants.iter().any(|g| covers(g, e)) && !policy.denies_pattern(&app.app_id, e)
    });
    let queue = kernel.config().hooks.observer_queue;
    kernel.hooks.subscribe(&app.app_id, &state.conn, &subscribed, queue);
    Ok(SubscribeResult { subscribed, denied })
}

/// Removes subscriptions (hook capabilities already granted stay).
pub fn unsubscribe(state: &mut AppActorState, p: UnsubscribeParams) -> UnsubscribeResult {
    UnsubscribeResult { unsubscribed: state.kernel.hooks.unsubscribe(state.conn.id(), &p.events) }
}

/// An interceptor's verdict; anything but an answer to a pending question of this app is
/// `HOOK_NOT_SUBSCRIBED` and changes nothing.
pub fn result(state: &mut AppActorState, p: HookResultParams) -> Result<Ack, ErrorObject> {
    if state.kernel.hooks.resolve(state.conn.id(), &p.event_id, p.result) {
        Ok(Ack::OK)
    } else {
        Err(ErrorObject::new(
            ErrorCode::HookNotSubscribed,
            format!("no interception {:?} is waiting for this app's answer", p.event_id),
        )
        .with_data(serde_json::json!({ "eventId": p.event_id })))
    }
}
