//! The service layer: what every surface asks of the kernel, as plain functions of the
//! shape `(&Kernel, &Caller, Params) -> Result<R, ServiceError>`, one module per area.
//! They know no connection, no responder and no surface's shapes beyond the protocol's
//! params and results; the adapters (`methods/` for the IPC socket, [`crate::host`] for
//! JSON-RPC and REST) parse a request, call one function and map its outcome. The agent
//! loop and comms call services too, never an adapter.
//!
//! Errors are one enum, [`ServiceError`], turned into the wire's [`ErrorObject`] in one
//! place (`From<ServiceError> for ErrorObject`); the host surfaces map that object's code
//! to a JSON-RPC error or an HTTP status, each in one place of its own.
//!
//! - [`apps`]: what runs — the kernel, registered and managed apps, capabilities, hooks;
//! - [`capabilities`], [`hooks`], [`config`]: what an app registers, observes,
//!   intercepts and reads, judged by its manifest ([`App`]);
//! - [`comms`]: comms between peers (sessions here and on trusted kernels): local
//!   delivery, request/response correlation, delivery over the kernel channel;
//! - [`routing`]: calls routed to the app that provides them: tools, gateway methods,
//!   HTTP routes;
//! - [`host_tools`]: the tools hosts provide on their connections (`tools/register`),
//!   and the sessions offered them;
//! - [`sessions`]: sessions, their messages and runs, in either view (the IPC's and the
//!   host's, projections of one [`sessions::SessionView`]);
//! - [`supervisor`]: managed apps — start, stop, restart, captured logs;
//! - [`trust`]: the trusted kernels (the IPC methods `peers.*`);
//! - [`contract`]: the handshake of the host contract (`initialize`, `capabilities/get`).

use burrow_protocol::{ErrorCode, ErrorObject, Value};
use serde_json::json;

use burrow_protocol::Manifest;

use crate::connection::Connection;
use crate::store::StoreError;

pub mod apps;
pub mod capabilities;
pub mod comms;
pub mod config;
pub mod contract;
pub mod hooks;
pub mod host_tools;
pub mod routing;
pub mod sessions;
pub mod supervisor;
#[cfg(test)]
pub(crate) mod testing;
pub mod timeline;
pub mod trust;

/// Who asks: an app's id, or a host surface (`host:rpc`, `host:http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(String);

impl Caller {
    /// `name` asks.
    pub fn new(name: impl Into<String>) -> Self {
        Caller(name.into())
    }

    /// Its name, as events and stored messages give it.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// A registered app asking over its connection: the per-app services (capabilities,
/// hooks, configuration) act on its manifest's grants, and what they grant is reached
/// through its connection.
#[derive(Debug, Clone, Copy)]
pub struct App<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its manifest.
    pub manifest: &'a Manifest,
    /// Its connection.
    pub conn: &'a Connection,
}

/// Why a service refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A param is wrong; `field` names it.
    #[error("{message}")]
    InvalidParams {
        /// The param, as the caller's surface spells it.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No session has this id.
    #[error("no session {0:?}")]
    UnknownSession(String),
    /// No run has this id.
    #[error("no run {0:?}")]
    UnknownRun(String),
    /// Something else named is not there (a captured log, a trusted kernel), or a part
    /// of the kernel that is off (the supervisor, the kernel channel).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this; `data` says what it touched.
    #[error("{message}")]
    Forbidden {
        /// Why not.
        message: String,
        /// Details (an object), or null.
        data: Value,
    },
    /// A hook operation for an event the app does not hold (not subscribed, or no
    /// interception waiting for it); `data` names it.
    #[error("{message}")]
    NotSubscribed {
        /// What is missing.
        message: String,
        /// Details (an object).
        data: Value,
    },
    /// A part of the kernel did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// No tool has this name.
    #[error("no tool named {0:?}")]
    NoTool(String),
    /// What is asked for is registered, but the app holding it is not ready.
    #[error("{what} {name:?} is unavailable: app {app:?} is not ready")]
    Unready {
        /// What kind of thing (`tool`, `gateway method`, `http route`).
        what: &'static str,
        /// Its name.
        name: String,
        /// The app holding it.
        app: String,
    },
    /// No HTTP route matches the request.
    #[error("no route {method} {path}")]
    NoRoute {
        /// The request's method.
        method: String,
        /// Its path.
        path: String,
    },
    /// A request path not in normal form ([`burrow_protocol::rules::route_path`]).
    #[error("the path {path:?} is not in normal form: {why}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A refusal with a stable reason word for `data.reason` (comms' refusals), and
    /// details for `data`.
    #[error("{message}")]
    Refused {
        /// The wire code.
        code: ErrorCode,
        /// A stable snake_case word.
        reason: String,
        /// What happened.
        message: String,
        /// More of `data` (an object), or null.
        extra: Value,
    },
    /// The thing asked for is in a state that forbids it.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The kernel could not do it (a part of it is stopping or stopped).
    #[error("{0}")]
    Internal(String),
    /// Another party's error (an app's answer, a session actor's refusal, a
    /// trusted kernel's), passed on as it is.
    #[error("{}", .0.message)]
    Passed(ErrorObject),
}

impl ServiceError {
    /// [`ServiceError::InvalidParams`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::InvalidParams { field: field.into(), message: message.into() }
    }
}

impl From<ServiceError> for ErrorObject {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::InvalidParams { field, .. } => {
                ErrorObject::invalid_params(field, message)
            }
            ServiceError::UnknownSession(id) => ErrorObject::new(ErrorCode::NotFound, message)
                .with_data(json!({ "reason": "unknown_session", "session_id": id })),
            ServiceError::Forbidden { data, .. } => {
                with_data(ErrorObject::new(ErrorCode::Forbidden, message), data)
            }
            ServiceError::NotSubscribed { data, .. } => {
                with_data(ErrorObject::new(ErrorCode::HookNotSubscribed, message), data)
            }
            ServiceError::Timeout(_) => ErrorObject::new(ErrorCode::Timeout, message),
            ServiceError::UnknownRun(_)
            | ServiceError::NotFound(_)
            | ServiceError::Unready { .. } => ErrorObject::new(ErrorCode::NotFound, message),
            ServiceError::NoTool(name) => {
                ErrorObject::new(ErrorCode::NotFound, message).with_data(json!({ "name": name }))
            }
            ServiceError::NoRoute { .. } => ErrorObject::new(ErrorCode::NotFound, message)
                .with_data(json!({ "reason": "no_route" })),
            ServiceError::BadPath { path, .. } => {
                ErrorObject::new(ErrorCode::InvalidRequest, message)
                    .with_data(json!({ "reason": "bad_path", "path": path }))
            }
            ServiceError::Conflict(_) => ErrorObject::new(ErrorCode::Conflict, message),
            ServiceError::Store(_) | ServiceError::Internal(_) => {
                ErrorObject::new(ErrorCode::InternalError, message)
            }
            ServiceError::Refused { code, reason, extra, .. } => {
                let mut data = json!({ "reason": reason });
                if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
                    d.extend(extra);
                }
                ErrorObject::new(code, message).with_data(data)
            }
            ServiceError::Passed(e) => e,
        }
    }
}

fn with_data(e: ErrorObject, data: Value) -> ErrorObject {
    if data.is_null() { e } else { e.with_data(data) }
}

impl From<ErrorObject> for ServiceError {
    fn from(e: ErrorObject) -> Self {
        ServiceError::Passed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_wire_form() {
        let e: ErrorObject = ServiceError::invalid("limit", "limit is 1 to 50").into();
        assert_eq!(
            (e.code, e.data.unwrap()["field"].clone()),
            (ErrorCode::InvalidParams, json!("limit"))
        );
        let e: ErrorObject = ServiceError::UnknownSession("s".into()).into();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.data.unwrap()["reason"], "unknown_session");
        assert_eq!(e.message, "no session \"s\"");
        let e: ErrorObject = ServiceError::UnknownRun("r".into()).into();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::NotFound, "no run \"r\""));
        let e: ErrorObject = ServiceError::Store(StoreError::Closed).into();
        assert_eq!(e.code, ErrorCode::InternalError);
        let theirs = ErrorObject::new(ErrorCode::Timeout, "slow");
        assert_eq!(ErrorObject::from(ServiceError::from(theirs.clone())), theirs);
    }
}
