//! One JSON-RPC message (a request, a notification or a batch): from its text to its
//! answer, in two steps.
//!
//! [`triage`] runs in order, where the message was read: it parses, validates, and
//! decides admission (`rpc/authenticate` is answered here, so what follows it on the same
//! connection sees the result). [`complete`] then makes the host calls, possibly
//! concurrently with other messages, and builds the answer (`None` when nothing is owed:
//! notifications, or a batch of notifications only).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use burrow_protocol::{ErrorCode, ErrorObject, Map, Value};
use futures_util::{FutureExt, StreamExt, stream};
use serde_json::json;

use crate::sizes::json_len;
use crate::surface::answers::{is_large, prepares_large};
use crate::surface::auth::Auth;
use crate::surface::{Host, Link, RpcError};

/// The method that authenticates a connection: `{"token": "brw_..."}` → `{"ok": true}`.
/// `rpc/authenticate`.
pub const AUTHENTICATE: &str =
    <burrow_protocol::methods::host::Authenticate as burrow_protocol::methods::Method>::NAME;

/// Admission of one connection: whether its caller has authenticated.
#[derive(Debug)]
pub(crate) struct Gate {
    auth: Arc<Auth>,
    authenticated: bool,
    /// Told once the caller authenticates (the TCP server's login deadline watches it).
    admitted: tokio_util::sync::CancellationToken,
}

impl Gate {
    /// A connection checked by `auth`: open from the start when no token is required.
    pub(crate) fn new(auth: Arc<Auth>) -> Gate {
        let authenticated = !auth.required();
        let admitted = tokio_util::sync::CancellationToken::new();
        if authenticated {
            admitted.cancel();
        }
        Gate { auth, authenticated, admitted }
    }

    /// Completes once the caller is admitted.
    pub(crate) fn admitted(&self) -> tokio_util::sync::CancellationToken {
        self.admitted.clone()
    }

    /// A caller already admitted by its transport (REST's bearer token, stdio).
    pub(crate) fn trusted() -> Gate {
        Gate::new(Arc::new(Auth::open()))
    }

    fn authenticate(&mut self, params: &Value) -> Result<Value, ErrorObject> {
        let token = params.get("token").and_then(Value::as_str);
        self.auth.check(token)?;
        self.authenticated = true;
        self.admitted.cancel();
        Ok(json!({ "ok": true }))
    }
}

/// A host call to make; `id` is `None` for a notification.
#[derive(Debug)]
pub(crate) struct Call {
    id: Option<Value>,
    method: String,
    params: Value,
}

/// One request or notification after triage.
#[derive(Debug)]
pub(crate) enum Item {
    /// Answered without the host.
    Answer(Value),
    /// For the host.
    Call(Call),
    /// Nothing to do or answer (a notification that was not admitted or not valid).
    Nothing,
    /// The peer's answer to one of the kernel's requests on this connection
    /// ([`Link::request`]): handed to its waiter, never answered.
    Reply(Value, Result<Value, ErrorObject>),
}

/// A message after triage, ready for [`complete`].
#[derive(Debug)]
pub(crate) enum Triaged {
    Single(Item),
    Batch(Vec<Item>),
}

impl Triaged {
    fn items(&self) -> &[Item] {
        match self {
            Triaged::Single(item) => std::slice::from_ref(item),
            Triaged::Batch(items) => items,
        }
    }

    /// Whether one of its calls is a host method that prepares an answer as large as a
    /// frame (a transcript page): a large-answer slot is taken before it runs.
    pub(crate) fn prepares_large(&self) -> bool {
        self.items().iter().any(|i| matches!(i, Item::Call(c) if prepares_large(&c.method)))
    }

    /// Whether one of its calls is routed to an app (a gateway method), whose answer may
    /// be as large as a frame: a large-answer slot is taken once it is in hand.
    pub(crate) fn is_routed(&self) -> bool {
        let routed = |m: &str| is_large(m) && !prepares_large(m);
        self.items().iter().any(|i| matches!(i, Item::Call(c) if routed(&c.method)))
    }

    /// About how much memory its calls' params hold (see
    /// [`crate::connection::value_weight`]).
    pub(crate) fn weight(&self) -> usize {
        let weigh = |i: &Item| match i {
            Item::Call(c) => crate::connection::value_weight(&c.params),
            _ => 0,
        };
        self.items().iter().map(weigh).sum()
    }

    /// How many host calls completing it makes.
    pub(crate) fn calls(&self) -> usize {
        let is_call = |item: &Item| matches!(item, Item::Call(_));
        match self {
            Triaged::Single(item) => usize::from(is_call(item)),
            Triaged::Batch(items) => items.iter().filter(|i| is_call(i)).count(),
        }
    }
}

/// Most items in one batch; a larger batch is answered with one `-32600` error
/// (`batch_too_large`), none of it run.
pub(crate) const MAX_BATCH_ITEMS: usize = 1000;

/// Parses and validates one message and decides its admission.
pub(crate) fn triage(text: &str, gate: &mut Gate) -> Triaged {
    match burrow_protocol::strict::from_json(text) {
        Err(e) => Triaged::Single(Item::Answer(failure(Value::Null, RpcError::parse(e)))),
        Ok(Value::Array(items)) if items.is_empty() => Triaged::Single(Item::Answer(failure(
            Value::Null,
            invalid_request("empty_batch", "a batch must not be empty"),
        ))),
        Ok(Value::Array(items)) if items.len() > MAX_BATCH_ITEMS => {
            let mut err = invalid_request("batch_too_large", "a batch holds too many items");
            err.data["max_items"] = Value::from(MAX_BATCH_ITEMS);
            Triaged::Single(Item::Answer(failure(Value::Null, err)))
        }
        Ok(Value::Array(items)) => {
            Triaged::Batch(items.into_iter().map(|item| triage_one(item, gate)).collect())
        }
        Ok(other) => Triaged::Single(triage_one(other, gate)),
    }
}

/// Makes the host calls of `triaged`, at most `concurrency` at once, and builds the
/// answer. In a batch, the calls that may answer with as much as a frame run one at a
/// time, and once the batch's answer has reached `max_answer_bytes` the calls not yet run
/// are answered with an error instead (`UNKNOWN_ERROR`, `reason: "batch_too_large"`): a
/// batch's answer is one line, held whole until it is written.
pub(crate) async fn complete(
    host: &dyn Host,
    triaged: Triaged,
    concurrency: usize,
    max_answer_bytes: usize,
    link: &Link,
) -> Option<Value> {
    match triaged {
        Triaged::Single(item) => run(host, item, link).await,
        Triaged::Batch(items) => {
            let batch = Batch { bytes: AtomicUsize::new(0), large: tokio::sync::Mutex::new(()) };
            let answers: Vec<Value> = stream::iter(items)
                .map(|item| batch.run(host, item, max_answer_bytes, link))
                .buffered(concurrency.max(1))
                .filter_map(std::future::ready)
                .collect()
                .await;
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
    }
}

/// A batch under way: the size of its answer so far, and its turn for large calls.
struct Batch {
    bytes: AtomicUsize,
    large: tokio::sync::Mutex<()>,
}

impl Batch {
    async fn run(
        &self,
        host: &dyn Host,
        item: Item,
        max_bytes: usize,
        link: &Link,
    ) -> Option<Value> {
        let _turn = match &item {
            Item::Call(call) => {
                let turn = match is_large(&call.method) {
                    true => Some(self.large.lock().await),
                    false => None,
                };
                if self.bytes.load(Ordering::Relaxed) >= max_bytes {
                    let err = ErrorObject::new(
                        ErrorCode::UnknownError,
                        format!("the batch's answer reached {max_bytes} bytes; send this call again on its own"),
                    )
                    .with_data(json!({ "reason": "batch_too_large", "max_bytes": max_bytes }));
                    return answer_or_nothing(call.id.clone(), &call.method, Err(err))
                        .into_answer();
                }
                turn
            }
            _ => None,
        };
        let answer = run(host, item, link).await?;
        self.bytes.fetch_add(json_len(&answer), Ordering::Relaxed);
        Some(answer)
    }
}

impl Item {
    fn into_answer(self) -> Option<Value> {
        match self {
            Item::Answer(answer) => Some(answer),
            Item::Call(_) | Item::Nothing | Item::Reply(..) => None,
        }
    }
}

/// The answer to a line longer than the limit (`-32600`, `data.reason` `oversize`).
pub(crate) fn oversize(max_bytes: usize) -> Value {
    let mut err = invalid_request("oversize", "the message is longer than the limit");
    err.data["max_bytes"] = Value::from(max_bytes);
    failure(Value::Null, err)
}

/// The answer to a line that is not UTF-8.
pub(crate) fn not_utf8() -> Value {
    failure(Value::Null, RpcError::parse("the line is not UTF-8"))
}

fn triage_one(value: Value, gate: &mut Gate) -> Item {
    let Value::Object(mut request) = value else {
        return Item::Answer(failure(
            Value::Null,
            invalid_request("not_an_object", "a request must be an object"),
        ));
    };
    let id = request.remove("id");
    if !matches!(id, None | Some(Value::Null | Value::String(_) | Value::Number(_))) {
        return Item::Answer(failure(
            Value::Null,
            invalid_request("bad_id", "id must be a string, a number or null"),
        ));
    }
    let reply_id = id.clone().unwrap_or(Value::Null);
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Item::Answer(failure(
            reply_id,
            invalid_request("bad_version", "jsonrpc must be \"2.0\""),
        ));
    }
    if !request.contains_key("method")
        && let Some(id @ (Value::String(_) | Value::Number(_))) = &id
        && let Some(outcome) = reply_outcome(&mut request)
    {
        return Item::Reply(id.clone(), outcome);
    }
    let method = match request.remove("method") {
        Some(Value::String(method)) => method,
        _ => {
            return Item::Answer(failure(
                reply_id,
                invalid_request("bad_method", "method must be a string"),
            ));
        }
    };
    let params = match request.remove("params") {
        None => Value::Object(Map::new()),
        Some(params @ Value::Object(_)) => params,
        Some(Value::Array(_)) => {
            let err = ErrorObject::invalid_params("params", "params must be an object");
            return answer_or_nothing(id, &method, Err(err));
        }
        Some(_) => {
            return Item::Answer(failure(
                reply_id,
                invalid_request("bad_params", "params must be an object"),
            ));
        }
    };
    if method == AUTHENTICATE {
        let outcome = gate.authenticate(&params);
        return answer_or_nothing(id, &method, outcome);
    }
    if !gate.authenticated {
        let err = ErrorObject::new(ErrorCode::Unauthorized, "call rpc/authenticate first")
            .with_data(json!({ "reason": "token_required" }));
        return answer_or_nothing(id, &method, Err(err));
    }
    Item::Call(Call { id, method, params })
}

/// The outcome a response carries: its `result`, or its `error` (`{code, message,
/// data}`) as an `UNKNOWN_ERROR` whose `data` is the peer's error object; `None` when it
/// has neither.
fn reply_outcome(response: &mut Map) -> Option<Result<Value, ErrorObject>> {
    if let Some(result) = response.remove("result") {
        return Some(Ok(result));
    }
    let error = response.remove("error")?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or("the peer failed");
    Some(Err(ErrorObject::new(ErrorCode::UnknownError, message).with_data(error.clone())))
}

/// An answer when there is an id; a notification is never answered (its error is logged).
fn answer_or_nothing(id: Option<Value>, method: &str, outcome: Result<Value, ErrorObject>) -> Item {
    match (id, outcome) {
        (Some(id), outcome) => Item::Answer(respond(id, outcome)),
        (None, Err(err)) => {
            tracing::debug!(method, error = %err, "notification refused");
            Item::Nothing
        }
        (None, Ok(_)) => Item::Nothing,
    }
}

async fn run(host: &dyn Host, item: Item, link: &Link) -> Option<Value> {
    let call = match item {
        Item::Answer(answer) => return Some(answer),
        Item::Nothing => return None,
        Item::Reply(id, outcome) => {
            if !link.answered(&id, outcome) {
                tracing::debug!(%id, "an answer to no request awaited; dropped");
            }
            return None;
        }
        Item::Call(call) => call,
    };
    let Call { id, method, params } = call;
    let name = method.clone();
    let link = link.clone();
    let outcome = AssertUnwindSafe(async move { host.call(method, params, link).await })
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(method = %name, "the host panicked");
            Err(ErrorObject::new(ErrorCode::InternalError, "the host failed"))
        });
    match id {
        Some(id) => Some(respond(id, outcome)),
        None => {
            if let Err(err) = outcome {
                tracing::debug!(method = %name, error = %err, "notification failed");
            }
            None
        }
    }
}

fn respond(id: Value, outcome: Result<Value, ErrorObject>) -> Value {
    match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(err) => failure(id, RpcError::from(&err)),
    }
}

fn failure(id: Value, err: RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": err.to_value() })
}

fn invalid_request(reason: &str, message: &str) -> RpcError {
    let err =
        ErrorObject::new(ErrorCode::InvalidRequest, message).with_data(json!({ "reason": reason }));
    RpcError::from(&err)
}
