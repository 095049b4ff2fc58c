//! The connection's reader: reads frames, answers malformed ones, resolves answers to
//! the kernel's own requests, and hands requests and notifications to the owner within
//! the bounds the parent module lists (queued, queued bytes, writer queue, in flight).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use burrow_protocol::{ErrorCode, ErrorObject, Id, Message, Response, Value, codec};
use burrow_transport::FrameReader;
use burrow_transport::outbox::Batch;
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{Connection, Inbound, Limits, OWNER_GRACE, QueuePermit, Responder, connection_closed};
use crate::clock::mono_ms;

impl Connection {
    pub(super) async fn read_loop<F>(self, mut reader: FrameReader, limits: Limits, deliver: F)
    where
        F: Fn(Inbound) -> bool + Send + Sync + 'static,
    {
        let max_bytes = clamp_u32(limits.max_queued_bytes);
        let bytes = self.queued.clone();
        let queue_unit = (max_bytes / clamp_u32(limits.max_queued)).max(1);
        // Requests waiting for an in-flight slot, oldest first. The client goes on being
        // read meanwhile (their queue permits and bytes bound them), and they are handed
        // over in order as slots free up.
        let mut parked = Parked { waiting: VecDeque::new(), deliver: &deliver };
        let mut frames = 0u32;
        // What handling the frames of one read sends goes out together, in one write to
        // each connection, once they are handled: before the next read from the socket
        // (so a client that never stops writing still gets its answers), and before the
        // reader waits for anything.
        let mut batch = Batch::default();
        let reason = loop {
            if !holds_whole_frame(reader.read_buffer()) {
                batch.flush();
            }
            // Requests waiting for a slot go first when one is free.
            if !parked.hand_over(&self) {
                break "owner stopped".to_owned();
            }
            // What the read buffer holds, and the requests waiting, are not handed over.
            let unread = reader.read_buffer().len() + parked.waiting.len();
            self.unread.store(unread, Ordering::Release);
            self.requests.settle.poke();
            // What is read next may need an answer: read only while there is room to
            // write it.
            if !self.out.has_room() {
                match self.wait(true, &mut parked, &mut batch, self.out.room()).await {
                    Waited::Done(()) => {}
                    Waited::Closed => break "closed by the kernel".to_owned(),
                    Waited::OwnerGone => break "owner stopped".to_owned(),
                }
            }
            // The clock is read when a frame needed a read from the socket, and every so
            // often while frames come from what was read already.
            let fresh = reader.read_buffer().is_empty() || frames.is_multiple_of(64);
            frames = frames.wrapping_add(1);
            let frame = match self.wait(false, &mut parked, &mut batch, reader.next()).await {
                Waited::Done(frame) => frame,
                Waited::Closed => break "closed by the kernel".to_owned(),
                Waited::OwnerGone => break "owner stopped".to_owned(),
            };
            let decoded = match frame {
                None => break "closed by the peer".to_owned(),
                Some(Err(e)) => break format!("read error: {e}"),
                Some(Ok(decoded)) => decoded,
            };
            self.unread.store(usize::MAX, Ordering::Release);
            if fresh {
                self.last_seen.store(mono_ms(), Ordering::Relaxed);
            }
            let msg = match decoded {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::debug!(conn = self.id, error = %e, "bad frame");
                    // An answer the kernel cannot read fails the request it answered now,
                    // not at its timeout.
                    if let Some(id) = e.answered() {
                        let why = format!("the app's answer could not be read: {e}");
                        let outcome = Err(ErrorObject::new(ErrorCode::InternalError, why));
                        self.resolve(Response { id: Some(id), outcome });
                    }
                    self.send(e.to_response());
                    if e.is_fatal() {
                        // The owner answers what it already received, then closes.
                        break format!("fatal frame error: {e}");
                    }
                    continue;
                }
            };
            if let Message::Response(resp) = msg {
                batch.defer(|| self.resolve(resp));
                continue;
            }
            if let Message::Chunk(chunk) = msg {
                // A chunk of a streamed answer goes to whoever asked; any other is ignored.
                let taken = match chunk.id {
                    Id::Num(n) => batch.defer(|| self.requests.chunk(n, chunk.chunk)),
                    _ => false,
                };
                if !taken {
                    tracing::debug!(conn = self.id, "unexpected stream chunk ignored");
                }
                continue;
            }
            // Requests and notifications wait for a permit and for their bytes:
            // back-pressure on the client.
            let size = weight(reader.decoder().last_frame_bytes(), &msg);
            let size = u32::try_from(size).unwrap_or(u32::MAX).clamp(1, max_bytes);
            // One semaphore bounds both: a message holds its bytes, and at least
            // `max_queued_bytes / max_queued` of them, so at most `max_queued` are held.
            let cost = size.max(queue_unit).min(max_bytes);
            let permits = async {
                match bytes.clone().try_acquire_many_owned(cost) {
                    Ok(held) => Some(held),
                    Err(_) => bytes.clone().acquire_many_owned(cost).await.ok(),
                }
            };
            let held = match self.wait(true, &mut parked, &mut batch, permits).await {
                Waited::Done(Some(permits)) => permits,
                Waited::Done(None) | Waited::Closed => break "closed by the kernel".to_owned(),
                Waited::OwnerGone => break "owner stopped".to_owned(),
            };
            let inbound = match msg {
                Message::Request(req) => {
                    let method = burrow_protocol::methods::table::by_ipc_name(&req.method);
                    let slot = takes_slot(method);
                    let responder = Responder {
                        conn: self.clone(),
                        id: Some(req.id.clone()),
                        permit: None,
                        large: None,
                        cancellable: false,
                        timer: crate::metrics::RequestTimer::start(method),
                        method,
                    };
                    let queued = QueuePermit::new(held);
                    let mut inbound = Inbound::Request(req, responder, queued);
                    // At once when a slot is free and none waits (the common case), else
                    // behind those waiting.
                    let free = slot && parked.waiting.is_empty();
                    match free.then(|| self.try_slot(size)).flatten() {
                        Some(slot) => {
                            if let Inbound::Request(_, responder, _) = &mut inbound {
                                responder.permit = Some(slot);
                            }
                        }
                        None if slot => {
                            let until = tokio::time::Instant::now() + limits.slot_wait;
                            parked.waiting.push_back((inbound, size, until));
                            continue;
                        }
                        None => {}
                    }
                    inbound
                }
                Message::Notification(n) => Inbound::Notification(n, QueuePermit::new(held)),
                Message::Response(_) | Message::Chunk(_) => continue,
            };
            if !batch.defer(|| deliver(inbound)) {
                break "owner stopped".to_owned();
            }
        };
        batch.flush();
        // Requests still waiting for a slot are dropped: each is answered INTERNAL_ERROR
        // if the connection can still take it.
        parked.waiting.clear();
        // Every kernel → app request still waiting fails with CONNECTION_CLOSED.
        self.unread.store(0, Ordering::Release);
        self.requests.settle.poke();
        self.read_done.store(true, Ordering::SeqCst);
        self.requests.fail_all(|| Err(connection_closed()));
        self.read_ended.cancel();
        tracing::debug!(conn = self.id, %reason, "connection read side ended");
        // The owner answers what it already received, then closes. One that is gone or
        // on its way out (an app actor answering its app's `app.shutdown` as it stops)
        // gets a moment to do so; then the connection closes gracefully here, so answers
        // already queued still go out.
        if !deliver(Inbound::Closed(reason))
            && tokio::time::timeout(OWNER_GRACE, self.closed()).await.is_err()
        {
            self.close_within(OWNER_GRACE);
        }
    }

    /// Awaits `wait` (with the reader marked as held back when `pause`), handing parked
    /// requests over as in-flight slots free up meanwhile; what `batch` holds goes out
    /// first, unless `wait` is ready at once. A held-back client's silence is not its
    /// own: its clock restarts when the wait ends.
    async fn wait<T, F>(
        &self,
        pause: bool,
        parked: &mut Parked<'_, F>,
        batch: &mut Batch,
        wait: impl Future<Output = T>,
    ) -> Waited<T>
    where
        F: Fn(Inbound) -> bool,
    {
        let mut wait = std::pin::pin!(wait);
        // The common case costs no select: what is awaited is ready now (a frame already
        // read, a free permit) and no request waits for a slot.
        if parked.waiting.is_empty() && !self.closed_flag.load(Ordering::Acquire) {
            let mut ready = None;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = wait.as_mut().poll(cx) {
                    ready = Some(done);
                }
                Poll::Ready(())
            })
            .await;
            if let Some(done) = ready {
                return Waited::Done(done);
            }
        }
        // Whoever the batch's frames are for may be what this waits on.
        batch.flush();
        self.paused.store(pause, Ordering::Relaxed);
        let outcome = loop {
            let front = parked.waiting.front().map(|(_, weight, _)| *weight);
            let until = parked.waiting.front().map(|(_, _, until)| *until);
            tokio::select! {
                biased;
                () = self.closing.cancelled() => break Waited::Closed,
                () = tokio::time::sleep_until(until.unwrap_or_else(tokio::time::Instant::now)), if until.is_some() => {
                    parked.expire(self.limits.slot_wait);
                }
                slot = self.slot(front.unwrap_or(1)), if front.is_some() => {
                    let Some(slot) = slot else { break Waited::Closed };
                    if !parked.hand_over_with(slot) || !parked.hand_over(self) {
                        break Waited::OwnerGone;
                    }
                }
                done = &mut wait => break Waited::Done(done),
            }
        };
        if pause {
            self.paused.store(false, Ordering::Relaxed);
            self.last_seen.store(mono_ms(), Ordering::Relaxed);
        }
        outcome
    }

    /// An in-flight slot for a request of `weight` bytes, if free now.
    fn try_slot(&self, weight: u32) -> Option<Slot> {
        self.in_flight.clone().try_acquire_many_owned(self.slot_cost(weight)).ok()
    }

    /// An in-flight slot for a request of `weight` bytes, once free; `None` once closed.
    async fn slot(&self, weight: u32) -> Option<Slot> {
        self.in_flight.clone().acquire_many_owned(self.slot_cost(weight)).await.ok()
    }

    /// What a slot takes of the in-flight semaphore, whose permits are the bytes of
    /// `max_queued_bytes`: the request's bytes, and at least `max_queued_bytes /
    /// max_in_flight` of them, so at most `max_in_flight` requests hold slots.
    fn slot_cost(&self, weight: u32) -> u32 {
        let total = clamp_u32(self.limits.max_queued_bytes);
        let unit = (total / clamp_u32(self.limits.max_in_flight)).max(1);
        weight.max(unit).min(total)
    }

    fn resolve(&self, resp: Response) {
        let Response { id, outcome } = resp;
        let unclaimed = match &id {
            Some(Id::Num(n)) => self.requests.resolve(*n, outcome),
            _ => Some(outcome),
        };
        match unclaimed {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(conn = self.id, id = ?id, error = %e, "error from client")
            }
            Some(Ok(_)) => {
                tracing::debug!(conn = self.id, id = ?id, "response to no pending request")
            }
        }
    }
}

/// Whether `buf` starts with a whole frame: the next one comes without a read from the
/// socket.
fn holds_whole_frame(buf: &[u8]) -> bool {
    codec::frame_extent(buf).is_some_and(|extent| buf.len() >= extent)
}

/// How a reader's wait ended.
enum Waited<T> {
    Done(T),
    Closed,
    OwnerGone,
}

/// An in-flight slot: the in-flight semaphore's permits a request holds.
type Slot = OwnedSemaphorePermit;

/// Requests read and waiting for an in-flight slot (each with its weight), and where
/// they go once they have one.
struct Parked<'a, F> {
    waiting: VecDeque<(Inbound, u32, tokio::time::Instant)>,
    deliver: &'a F,
}

impl<F: Fn(Inbound) -> bool> Parked<'_, F> {
    /// Hands over, in order, the waiting requests `conn`'s free slots can take; false
    /// when the owner is gone.
    fn hand_over(&mut self, conn: &Connection) -> bool {
        while let Some((_, weight, _)) = self.waiting.front() {
            let Some(slot) = conn.try_slot(*weight) else { break };
            if !self.hand_over_with(slot) {
                return false;
            }
        }
        true
    }

    /// Answers the requests that have waited `waited` for a slot, oldest first: an error
    /// rather than a wait without end (the work in flight may itself wait for them).
    fn expire(&mut self, waited: Duration) {
        let now = tokio::time::Instant::now();
        while self.waiting.front().is_some_and(|(_, _, until)| *until <= now) {
            let Some((Inbound::Request(_, responder, _), _, _)) = self.waiting.pop_front() else {
                continue;
            };
            let ms = waited.as_millis() as u64;
            let err = ErrorObject::new(
                ErrorCode::UnknownError,
                format!("no in-flight slot came free on this connection within {ms} ms; retry when some finish"),
            )
            .with_data(serde_json::json!({ "reason": "too_many_in_flight", "waitedMs": ms }));
            responder.reply(Err(err));
        }
    }

    /// Hands the oldest waiting request over with `slot`.
    fn hand_over_with(&mut self, slot: Slot) -> bool {
        let Some((mut inbound, _, _)) = self.waiting.pop_front() else { return true };
        if let Inbound::Request(_, responder, _) = &mut inbound {
            responder.permit = Some(slot);
        }
        (self.deliver)(inbound)
    }
}

/// `n` as a semaphore's permit count: at most `u32::MAX`, at least 1.
pub(super) fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// Whether a request holds an in-flight slot from when it is read: every method the
/// table says is answered later but streams (which take theirs when they start, and are
/// refused when none is left), and any name the table does not know (an app's gateway
/// method).
fn takes_slot(method: Option<&burrow_protocol::methods::table::MethodInfo>) -> bool {
    use burrow_protocol::methods::table::Shape;
    method.is_none_or(|m| m.long_running && m.shape != Shape::Stream && m.to_kernel())
}

/// About how much memory a decoded message holds: its frame, and its params' values
/// ([`value_weight`]).
fn weight(frame_bytes: usize, msg: &Message) -> usize {
    let params = match msg {
        Message::Request(r) => &r.params,
        Message::Notification(n) => &n.params,
        Message::Response(_) | Message::Chunk(_) => return frame_bytes,
    };
    frame_bytes.saturating_add(value_weight(params))
}

/// What `value` takes in memory beyond its strings' bytes, about: a [`Value`] for every
/// value and a tree node for every map, as the strict reader counts them
/// ([`burrow_protocol::strict::MAX_VALUE_UNITS`]): a text of many tiny values reads into
/// many times its size.
pub fn value_weight(value: &Value) -> usize {
    use burrow_protocol::strict::MAP_UNITS;
    fn units(v: &Value) -> usize {
        match v {
            Value::Array(items) => 1 + items.iter().map(units).sum::<usize>(),
            Value::Object(map) => 1 + MAP_UNITS + map.values().map(units).sum::<usize>(),
            _ => 1,
        }
    }
    units(value).saturating_mul(std::mem::size_of::<Value>())
}

#[cfg(test)]
mod tests {
    use super::holds_whole_frame;

    #[test]
    fn a_whole_frame_is_one_whose_header_and_body_are_all_there() {
        assert!(!holds_whole_frame(&[]));
        assert!(!holds_whole_frame(&[0, 0, 0]), "part of a header");
        assert!(holds_whole_frame(&[0, 0, 0, 0]), "an empty body");
        assert!(!holds_whole_frame(&[0, 0, 0, 2, 7]), "part of a body");
        assert!(holds_whole_frame(&[0, 0, 0, 2, 7, 8]));
        assert!(holds_whole_frame(&[0, 0, 0, 1, 7, 0, 0]), "a whole frame, then part of one");
        assert!(!holds_whole_frame(&[0xff, 0xff, 0xff, 0xff, 1]), "a length no read holds");
    }
}
