//! What an app observes and intercepts: `hook.subscribe` grants each event pattern its
//! manifest covers and the policy does not wholly deny; `hook.unsubscribe` removes
//! subscriptions (granted hook capabilities stay); `hook.result` is an interceptor's
//! verdict on a question the kernel asked it.

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::hook::{
    HookResultParams, SubscribeParams, SubscribeResult, UnsubscribeParams, UnsubscribeResult,
};
use serde_json::json;

use super::{App, ServiceError};
use crate::config::policy::covers;
use crate::kernel::Kernel;

/// The longest event pattern.
const MAX_PATTERN: usize = 128;

/// `hook.subscribe`.
pub fn subscribe(
    kernel: &Kernel,
    app: App<'_>,
    p: SubscribeParams,
) -> Result<SubscribeResult, ServiceError> {
    for (i, pattern) in p.events.iter().enumerate() {
        let bad_star = pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**");
        if pattern.is_empty() || bad_star || pattern.len() > MAX_PATTERN {
            return Err(ServiceError::invalid(
                format!("events[{i}]"),
                format!("{pattern:?} is not an event name or a trailing-`*` pattern"),
            ));
        }
    }
    let policy = &kernel.config().policy;
    let grants = &app.manifest.capabilities.hooks.subscribe;
    let (subscribed, denied): (Vec<String>, Vec<String>) = p
        .events
        .into_iter()
        .partition(|e| grants.iter().any(|g| covers(g, e)) && !policy.denies_pattern(app.id, e));
    let queue = kernel.config().hooks.observer_queue;
    kernel.hooks.subscribe(app.id, app.conn, &subscribed, queue);
    Ok(SubscribeResult { subscribed, denied })
}

/// `hook.unsubscribe`.
pub fn unsubscribe(kernel: &Kernel, app: App<'_>, p: UnsubscribeParams) -> UnsubscribeResult {
    UnsubscribeResult { unsubscribed: kernel.hooks.unsubscribe(app.conn.id(), &p.events) }
}

/// `hook.result`: anything but an answer to a question waiting for this app's verdict
/// is [`ServiceError::NotSubscribed`] and changes nothing.
pub fn result(kernel: &Kernel, app: App<'_>, p: HookResultParams) -> Result<Ack, ServiceError> {
    if kernel.hooks.resolve(app.conn.id(), &p.event_id, p.result) {
        return Ok(Ack::OK);
    }
    Err(ServiceError::NotSubscribed {
        message: format!("no interception {:?} is waiting for this app's answer", p.event_id),
        data: json!({ "eventId": p.event_id }),
    })
}

#[cfg(test)]
mod tests {
    use burrow_protocol::methods::hook::HookVerdict;

    use super::*;
    use crate::service::testing::{connection, fixture, manifest};

    #[tokio::test]
    async fn subscriptions_follow_the_manifest_and_a_stray_verdict_changes_nothing() {
        let f = fixture().await;
        let conn = connection(1);
        let m = manifest("a", &[], &["session_*"], &[]);
        let a = App { id: "a", manifest: &m, conn: &conn };
        let events =
            |e: &[&str]| SubscribeParams { events: e.iter().map(|s| (*s).to_owned()).collect() };
        let e = subscribe(&f.kernel, a, events(&["ok", "a*b"])).unwrap_err();
        assert!(
            matches!(e, ServiceError::InvalidParams { ref field, .. } if field == "events[1]"),
            "{e:?}"
        );
        let got = subscribe(&f.kernel, a, events(&["session_start", "app_ready"])).unwrap();
        assert_eq!(
            (got.subscribed, got.denied),
            (vec!["session_start".to_owned()], vec!["app_ready".to_owned()])
        );
        let gone =
            unsubscribe(&f.kernel, a, UnsubscribeParams { events: vec!["session_start".into()] });
        assert_eq!(gone.unsubscribed, ["session_start"]);
        let verdict = HookResultParams { event_id: "e-1".into(), result: HookVerdict::Continue };
        let e = result(&f.kernel, a, verdict).unwrap_err();
        assert!(
            matches!(&e, ServiceError::NotSubscribed { data, .. } if data["eventId"] == "e-1"),
            "{e:?}"
        );
    }
}
