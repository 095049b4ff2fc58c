//! What an app declares to the kernel on each connection, between `app.register` and
//! `app.ready`: one `hook.subscribe` for every observed pattern and intercepted event,
//! then one `capability.register` per tool, gateway method, provider, channel and
//! interceptor (in that order, each in declaration order). Also the manifest grants those need, and
//! [`Grants`], the record of what the kernel said.

use std::time::Duration;

use burrow_protocol::Manifest;
use burrow_protocol::Value;
use burrow_protocol::manifest::pattern_matches;
use burrow_protocol::methods::capability::{
    CapabilityRegister, CapabilityType, RegisterCapabilityParams,
};
use burrow_protocol::methods::hook::{HookSubscribe, SubscribeParams};

use super::Handlers;
use crate::{Client, Error, Result};

/// Deadline of each `hook.subscribe` and `capability.register` of the setup.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the kernel granted an app on its current connection: the answers to the
/// `hook.subscribe` and `capability.register` requests the SDK sent before `app.ready`.
/// Read it with [`Client::grants`] (e.g. in [`crate::App::on_ready`]).
///
/// Nothing denied stops the app: each refusal is logged (`tracing::warn!`, with the
/// kernel's reason) and the rest of the app keeps working.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Events and patterns the kernel subscribed the app to.
    pub subscribed: Vec<String>,
    /// Events and patterns it refused.
    pub denied_events: Vec<String>,
    /// One entry per `capability.register`, in the order sent.
    pub capabilities: Vec<CapabilityGrant>,
}

/// The answer to one `capability.register`.
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilityGrant {
    /// What was asked for.
    pub kind: CapabilityType,
    /// Its name: the tool name, the full gateway method, the provider or channel id, the
    /// intercepted event.
    pub name: String,
    /// Whether it was granted.
    pub granted: bool,
    /// The kernel's id for it, when granted.
    pub capability_id: Option<String>,
    /// Why not, when denied (the kernel's reason, or its error answer).
    pub reason: Option<String>,
}

impl Grants {
    /// Whether the capability of this type and name was granted.
    pub fn is_granted(&self, kind: CapabilityType, name: &str) -> bool {
        self.capabilities.iter().any(|c| c.kind == kind && c.name == name && c.granted)
    }

    /// The capabilities that were denied.
    pub fn denied(&self) -> impl Iterator<Item = &CapabilityGrant> {
        self.capabilities.iter().filter(|c| !c.granted)
    }

    /// Whether everything asked for was granted.
    pub fn all_granted(&self) -> bool {
        self.denied_events.is_empty() && self.capabilities.iter().all(|c| c.granted)
    }
}

/// Every capability the app asks for on a connection: `(type, name, config)`.
fn capabilities(handlers: &Handlers) -> impl Iterator<Item = (CapabilityType, String, Value)> {
    let tools = handlers.tools.capabilities();
    tools.chain(handlers.agents.capabilities()).chain(handlers.hooks.capabilities())
}

/// Adds to `list` each name no pattern in it covers yet.
fn grant<'a>(list: &mut Vec<String>, names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        if !list.iter().any(|pattern| pattern_matches(pattern, name)) {
            list.push(name.to_owned());
        }
    }
}

/// Adds what the declared tools, gateway methods, providers, channels and hooks need to the manifest's
/// `capabilities`, unless a pattern there already covers it. Gateway methods must be
/// resolved first.
pub(super) fn grant_in_manifest(manifest: &mut Manifest, handlers: &Handlers) {
    let caps = &mut manifest.capabilities;
    grant(&mut caps.tools, handlers.tools.tool_names());
    grant(&mut caps.gateway_methods, handlers.tools.gateway_methods());
    grant(&mut caps.providers, handlers.agents.provider_ids());
    grant(&mut caps.channels, handlers.agents.channel_ids());
    let subscriptions = handlers.hooks.subscriptions();
    grant(&mut caps.hooks.subscribe, subscriptions.iter().map(String::as_str));
    grant(&mut caps.hooks.intercept, handlers.hooks.intercepted());
}

/// Subscribes and registers everything the app declared. Refusals are recorded and
/// logged; only a failing connection (closed, no answer) is an `Err`.
pub(super) async fn announce(client: &Client, handlers: &Handlers) -> Result<Grants> {
    let mut grants = Grants::default();
    let events = handlers.hooks.subscriptions();
    if !events.is_empty() {
        let params = SubscribeParams { events: events.clone() };
        match client.call_with_timeout::<HookSubscribe>(params, SETUP_TIMEOUT).await {
            Ok(result) => {
                if !result.denied.is_empty() {
                    tracing::warn!(denied = ?result.denied, "the kernel refused some event subscriptions");
                }
                grants.subscribed = result.subscribed;
                grants.denied_events = result.denied;
            }
            Err(Error::Remote(e)) => {
                tracing::warn!(error = %e, ?events, "hook.subscribe failed; no events will be observed");
                grants.denied_events = events;
            }
            Err(other) => return Err(other),
        }
    }
    for (kind, name, config) in capabilities(handlers) {
        let params = RegisterCapabilityParams { kind, config };
        let answer = client.call_with_timeout::<CapabilityRegister>(params, SETUP_TIMEOUT).await;
        let entry = match answer {
            Ok(result) if result.granted => {
                tracing::debug!(?kind, %name, id = %result.capability_id, "capability granted");
                CapabilityGrant {
                    kind,
                    name,
                    granted: true,
                    capability_id: Some(result.capability_id),
                    reason: None,
                }
            }
            Ok(result) => {
                let reason = result.reason.unwrap_or_else(|| "no reason given".to_owned());
                tracing::warn!(?kind, %name, %reason, "the kernel denied a capability");
                CapabilityGrant {
                    kind,
                    name,
                    granted: false,
                    capability_id: None,
                    reason: Some(reason),
                }
            }
            Err(Error::Remote(e)) => {
                tracing::warn!(?kind, %name, error = %e, "capability.register failed");
                CapabilityGrant {
                    kind,
                    name,
                    granted: false,
                    capability_id: None,
                    reason: Some(e.to_string()),
                }
            }
            Err(other) => return Err(other),
        };
        grants.capabilities.push(entry);
    }
    Ok(grants)
}

#[cfg(test)]
mod tests;
