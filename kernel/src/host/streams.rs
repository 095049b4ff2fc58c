//! Subscriptions of the host contract: `session/stream_open {session_id}` answers
//! `{opened: true, session_id, stream_id}` and from then on sends every run of the
//! session as `session/stream_event {stream_id, session_id, sequence, event}`
//! notifications ([`Envelopes::session`]; `sequence` counts the stream's notifications
//! from 1), until `session/stream_close {stream_id}` (answered `{closed, already_closed,
//! stream_id}`), the connection's end, or the follower's falling behind. A stream that
//! ends is told with `session/stream_end {stream_id, session_id, ended: true, outcome}`:
//! `explicit_close`, `remote_end` (the kernel stopped following), or `terminal_error`
//! with `error: {code: "stream_queue_overflow", message}`. A connection holds at most
//! [`crate::surface::MAX_STREAMS`] subscriptions; one more is refused (`too_many_streams`).

use std::sync::Arc;

use burrow_protocol::methods::host::{SessionRef, StreamRef};
use burrow_protocol::{ErrorCode, ErrorObject, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::Envelopes;
use crate::kernel::Kernel;
use crate::service::{ServiceError, sessions};
use crate::surface::Link;

/// `session/stream_open`.
pub async fn open(kernel: &Arc<Kernel>, p: SessionRef, link: Link) -> Result<Value, ErrorObject> {
    if !link.notifies() {
        let why = "a subscription needs a connection that takes notifications (JSON-RPC)";
        return Err(ServiceError::invalid("session_id", why).into());
    }
    let events = sessions::follow(kernel, &p.session_id, false).await?;
    let stream_id = format!("stream-{}", uuid::Uuid::now_v7());
    let Some((stop, done)) = link.open_stream(&stream_id) else {
        let max = crate::surface::MAX_STREAMS;
        let why = format!("this connection has {max} subscriptions open: close one first");
        let e = ErrorObject::new(ErrorCode::UnknownError, why);
        return Err(e.with_data(json!({ "reason": "too_many_streams", "limit": max })));
    };
    let stream = Stream { link, stream_id: stream_id.clone(), session_id: p.session_id.clone() };
    tokio::spawn(async move {
        stream.pump(events, stop).await;
        drop(done);
    });
    Ok(json!({ "opened": true, "session_id": p.session_id, "stream_id": stream_id }))
}

/// `session/stream_close`: answered once the stream's `session/stream_end` is sent.
pub async fn close(p: StreamRef, link: &Link) -> Value {
    let was_open = link.end_stream(&p.stream_id).await;
    json!({ "closed": true, "already_closed": !was_open, "stream_id": p.stream_id })
}

/// One open subscription.
struct Stream {
    link: Link,
    stream_id: String,
    session_id: String,
}

impl Stream {
    async fn pump(self, mut events: BoxStream<'static, Value>, stop: CancellationToken) {
        let mut envelopes = Envelopes::session(&self.session_id);
        let mut sequence = 0u64;
        let outcome = loop {
            let event = tokio::select! {
                () = stop.cancelled() => {
                    if self.link.is_closed() {
                        return; // the connection is gone: nobody to tell
                    }
                    break json!({ "outcome": "explicit_close" });
                }
                event = events.next() => event,
            };
            let Some(event) = event else { break json!({ "outcome": "remote_end" }) };
            if event["type"] == "lagged" {
                let error = json!({ "code": "stream_queue_overflow", "message": "the subscriber fell too far behind; events were lost" });
                break json!({ "outcome": "terminal_error", "error": error });
            }
            for note in envelopes.of(&event) {
                sequence += 1;
                let params = json!({
                    "stream_id": self.stream_id, "session_id": self.session_id,
                    "sequence": sequence, "event": note["event"],
                });
                if !self.link.notify("session/stream_event", params).await {
                    return;
                }
            }
        };
        self.link.forget_stream(&self.stream_id);
        let mut end =
            json!({ "stream_id": self.stream_id, "session_id": self.session_id, "ended": true });
        if let (Some(end), Some(outcome)) = (end.as_object_mut(), outcome.as_object()) {
            end.extend(outcome.clone());
        }
        self.link.notify("session/stream_end", end).await;
    }
}
