//! Hooks (PROTOCOL.md §6): `hook.subscribe`, `hook.unsubscribe`, `hook.event`, `hook.result`.

use serde::{Deserialize, Serialize};

use super::{Ack, methods};
use crate::{Map, Value};

methods! {
    /// Observe events (trailing-`*` patterns allowed).
    HookSubscribe = "hook.subscribe": SubscribeParams => SubscribeResult;
    /// Stop observing events.
    HookUnsubscribe = "hook.unsubscribe": UnsubscribeParams => UnsubscribeResult;
    /// Kernel → app: an event, observed (notification) or to intercept.
    HookEvent = "hook.event": HookEventParams => Ack;
    /// App → kernel: the interceptor's verdict.
    HookResult = "hook.result": HookResultParams => Ack;
}

/// Params of `hook.subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeParams {
    /// Event names or trailing-`*` patterns.
    pub events: Vec<String>,
}

/// Result of `hook.subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeResult {
    /// Granted subscriptions.
    pub subscribed: Vec<String>,
    /// Refused by manifest or policy.
    pub denied: Vec<String>,
}

/// Params of `hook.unsubscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribeParams {
    /// Event names or patterns, as subscribed.
    pub events: Vec<String>,
}

/// Result of `hook.unsubscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribeResult {
    /// Those that were subscribed and now are not.
    pub unsubscribed: Vec<String>,
}

/// Params of `hook.event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookEventParams {
    /// Unique per event delivery; echoed by `hook.result`.
    pub event_id: String,
    /// The event name.
    pub event: String,
    /// What happened (see PROTOCOL.md §6 for interceptable payloads).
    pub payload: Value,
    /// Where it happened (session, run, app).
    #[serde(default)]
    pub context: Map,
    /// True when the kernel waits for `hook.result`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intercept: bool,
    /// The deadline for `hook.result`, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// Params of `hook.result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookResultParams {
    /// The `eventId` of the intercepted event.
    pub event_id: String,
    /// The verdict.
    pub result: HookVerdict,
}

/// An interceptor's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HookVerdict {
    /// Go on unchanged.
    Continue,
    /// Go on with this payload (only the event's modifiable fields are taken).
    Modify {
        /// The replacement payload.
        payload: Value,
    },
    /// Stop the action.
    Block {
        /// Why, passed on to the caller.
        #[serde(default)]
        reason: String,
    },
}
