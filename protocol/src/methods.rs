//! Typed params and results for every method of PROTOCOL.md §4–8, one module per family.
//!
//! Each method is a marker type implementing [`Method`], which ties its wire name to its
//! params and result types, so both ends (kernel and SDK) share one definition.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ErrorObject, Value};

pub mod app;
pub mod capability;
pub mod comms;
pub mod config;
pub mod contract;
pub mod hook;
pub mod host;
pub mod invoke;
pub mod operator;
pub mod session;
pub mod table;

/// A protocol method: its wire name and the types of its params and result.
pub trait Method {
    /// The wire name, e.g. `app.register`.
    const NAME: &'static str;
    /// The `params` of the request.
    type Params: Serialize + DeserializeOwned + Send + 'static;
    /// The `result` of a success response (for streams: the final result).
    type Result: Serialize + DeserializeOwned + Send + 'static;
}

/// Declares method marker types.
macro_rules! methods {
    ($($(#[$doc:meta])* $marker:ident = $name:literal : $params:ty => $result:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $marker;
            impl $crate::methods::Method for $marker {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
            }
        )*
    };
}
pub(crate) use methods;

/// Deserializes params, naming the offending field in `INVALID_PARAMS` (`data.field`).
/// Params must be a map; `params` is the field named when they are not.
pub fn parse_params<T: DeserializeOwned>(params: Value) -> Result<T, ErrorObject> {
    if !params.is_object() {
        return Err(ErrorObject::invalid_params("params", "params must be a map"));
    }
    // The path is tracked only to explain a failure: tracking it costs more than the
    // deserializing itself, so it is done again only when the plain pass fails.
    if let Ok(parsed) = T::deserialize(&params) {
        return Ok(parsed);
    }
    serde_path_to_error::deserialize::<_, T>(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = match missing_field(&inner) {
            Some(name) if path == "." => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None if path == "." => "params".to_owned(),
            None => path,
        };
        ErrorObject::invalid_params(field, format!("invalid params: {inner}"))
    })
}

/// Extracts `x` from serde's "missing field `x`" message.
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// Serializes a value that is known to be representable (our own result types).
pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| {
        // Our own types always serialize; keep the kernel alive regardless.
        serde_json::json!({ "serializationError": e.to_string() })
    })
}

/// `{}`: the params or result of methods that carry nothing.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Empty {}

/// `{ok}`: the result of methods that only acknowledge.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    /// Always true on success.
    pub ok: bool,
}

impl Ack {
    /// `{ok: true}`.
    pub const OK: Ack = Ack { ok: true };
}

methods! {
    /// `$/cancel {id}` (notification): stop a request or stream.
    Cancel = "$/cancel": CancelParams => Empty;
}

/// Params of `$/cancel`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CancelParams {
    /// The id of the request to cancel (in the sender's id space).
    pub id: crate::Id,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
        name: String,
    }

    fn field(r: Result<Outer, ErrorObject>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        e.data.unwrap()["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn invalid_params_name_the_field() {
        assert_eq!(field(parse_params(json!({}))), "inner");
        assert_eq!(field(parse_params(json!({"inner": {"count": 1}}))), "inner.name");
        assert_eq!(
            field(parse_params(json!({"inner": {"count": "x", "name": "n"}}))),
            "inner.count"
        );
        assert_eq!(field(parse_params(json!([1, 2]))), "params");
        assert!(
            parse_params::<Outer>(json!({"inner": {"count": 1, "name": "n"}, "extra": 1})).is_ok()
        );
    }
}
