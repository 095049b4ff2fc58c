//! The five message kinds of PROTOCOL.md §3 and how a decoded map is classified.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

use crate::{ErrorObject, Map, Value};

/// A request id: an unsigned integer or a string, chosen by the sender.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id.
    Num(u64),
    /// A string id.
    Str(String),
}

impl Id {
    /// Reads an id from a decoded value; `None` unless it is an unsigned integer or a string.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_u64().map(Id::Num),
            Value::String(s) => Some(Id::Str(s.clone())),
            _ => None,
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Num(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Str(s.to_owned())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// `{id, method, params?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Unique among the sender's outstanding requests.
    pub id: Id,
    /// The method name, e.g. `app.register`.
    pub method: String,
    /// The params; `{}` when absent on the wire.
    pub params: Value,
}

/// `{method, params?}`: no id, no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name, e.g. `$/cancel`.
    pub method: String,
    /// The params; `{}` when absent on the wire.
    pub params: Value,
}

/// `{id, result}` or `{id, error}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request this answers; `None` only for errors about frames whose id
    /// could not be read.
    pub id: Option<Id>,
    /// The result, or the error.
    pub outcome: Result<Value, ErrorObject>,
}

/// `{id, chunk}`: one piece of a streaming answer, before the final response.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The id of the streaming request.
    pub id: Id,
    /// The chunk's content.
    pub chunk: Value,
}

/// One whole protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request expecting a response.
    Request(Request),
    /// A success or error response.
    Response(Response),
    /// A stream chunk.
    Chunk(Chunk),
    /// A notification.
    Notification(Notification),
}

/// Why a decoded map is not a valid message; carries the id when one could be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidMessage {
    /// The message's id, when it had a readable one.
    pub id: Option<Id>,
    /// What is wrong, for humans.
    pub reason: String,
}

impl Message {
    /// A request.
    pub fn request(id: impl Into<Id>, method: impl Into<String>, params: Value) -> Self {
        Message::Request(Request { id: id.into(), method: method.into(), params })
    }

    /// A notification.
    pub fn notification(method: impl Into<String>, params: Value) -> Self {
        Message::Notification(Notification { method: method.into(), params })
    }

    /// A success response.
    pub fn success(id: Id, result: Value) -> Self {
        Message::Response(Response { id: Some(id), outcome: Ok(result) })
    }

    /// An error response; `id` is `None` when the offending frame had no readable id.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Message::Response(Response { id, outcome: Err(error) })
    }

    /// A stream chunk.
    pub fn chunk(id: Id, chunk: Value) -> Self {
        Message::Chunk(Chunk { id, chunk })
    }

    /// Classifies a decoded value. Unknown keys are ignored.
    pub fn from_value(value: Value) -> Result<Self, InvalidMessage> {
        let Value::Object(mut map) = value else {
            return Err(not_a_map());
        };
        let mut take = |key: &str| map.remove(key);
        Self::from_fields(Fields {
            id: take("id"),
            method: take("method"),
            params: take("params"),
            result: take("result"),
            error: take("error"),
            chunk: take("chunk"),
        })
    }

    /// Classifies the members of a message's map.
    pub(crate) fn from_fields(fields: Fields) -> Result<Self, InvalidMessage> {
        let Fields { id: raw_id, method, params, result, error, chunk } = fields;
        let id = match &raw_id {
            None | Some(Value::Null) => None,
            Some(v) => match Id::from_value(v) {
                Some(id) => Some(id),
                None => {
                    return Err(InvalidMessage {
                        id: None,
                        reason: "`id` must be an unsigned integer or a string".into(),
                    });
                }
            },
        };
        let invalid = |reason: &str| InvalidMessage { id: id.clone(), reason: reason.into() };
        if let Some(method) = method {
            let Value::String(method) = method else {
                return Err(invalid("`method` must be a string"));
            };
            if method.is_empty() {
                return Err(invalid("`method` must not be empty"));
            }
            let params = match params {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(p) => p,
            };
            return Ok(match id {
                Some(id) => Message::Request(Request { id, method, params }),
                None => Message::Notification(Notification { method, params }),
            });
        }
        if let Some(error) = error {
            let error: ErrorObject = serde_json::from_value(error)
                .map_err(|e| invalid(&format!("malformed `error`: {e}")))?;
            return Ok(Message::Response(Response { id, outcome: Err(error) }));
        }
        let Some(id) = id else {
            return Err(invalid("a message needs a `method` or an `id`"));
        };
        if let Some(result) = result {
            return Ok(Message::success(id, result));
        }
        if let Some(chunk) = chunk {
            return Ok(Message::chunk(id, chunk));
        }
        Err(InvalidMessage {
            id: Some(id),
            reason: "a message with an `id` needs `method`, `result`, `error` or `chunk`".into(),
        })
    }
}

/// The members of a message's map that classify it, each as it came; the others are
/// ignored.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) id: Option<Value>,
    pub(crate) method: Option<Value>,
    pub(crate) params: Option<Value>,
    pub(crate) result: Option<Value>,
    pub(crate) error: Option<Value>,
    pub(crate) chunk: Option<Value>,
}

pub(crate) fn not_a_map() -> InvalidMessage {
    InvalidMessage { id: None, reason: "a message must be a map".into() }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Request(r) => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("id", &r.id)?;
                m.serialize_entry("method", &r.method)?;
                m.serialize_entry("params", &r.params)?;
                m.end()
            }
            Message::Notification(n) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("method", &n.method)?;
                m.serialize_entry("params", &n.params)?;
                m.end()
            }
            Message::Response(r) => {
                let mut m = s.serialize_map(Some(1 + usize::from(r.id.is_some())))?;
                if let Some(id) = &r.id {
                    m.serialize_entry("id", id)?;
                }
                match &r.outcome {
                    Ok(result) => m.serialize_entry("result", result)?,
                    Err(error) => m.serialize_entry("error", error)?,
                }
                m.end()
            }
            Message::Chunk(c) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("id", &c.id)?;
                m.serialize_entry("chunk", &c.chunk)?;
                m.end()
            }
        }
    }
}
