//! Traces: opt-in OpenTelemetry export over OTLP/HTTP (protobuf), to the collector
//! `[telemetry] otlp_endpoint` names (read at start). Spans follow the OpenTelemetry
//! GenAI semantic conventions where they apply:
//!
//! | span | kind | attributes |
//! |---|---|---|
//! | `invoke_agent <agent>`: an agent run | internal | `gen_ai.operation.name = invoke_agent`, `gen_ai.agent.name`, `gen_ai.conversation.id` (the session), `burrow.run.id`, `burrow.run.status` |
//! | `chat <model>`: a provider call | client | `gen_ai.operation.name = chat`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens` / `output_tokens` |
//! | `execute_tool <tool>`: a tool call | internal | `gen_ai.operation.name = execute_tool`, `gen_ai.tool.name`, `gen_ai.tool.call.id`, `burrow.app` |
//! | `intercept <event>`: an interceptor's decision | internal | `burrow.hook.event`, `burrow.app`, `burrow.hook.decision` |
//!
//! A span's context goes to the app that does its work as W3C `traceparent`
//! (`provider.complete`'s and `tool.invoke`'s `traceparent`), so the app's spans join the
//! run's trace. Spans find their parent in the current OpenTelemetry context, which the
//! run's future carries ([`opentelemetry::context::FutureExt::with_context`]). Without an
//! endpoint nothing is made: every function here is a cheap no-op.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde::{Deserialize, Serialize};

/// `[telemetry]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP collector's base URL (`http://127.0.0.1:4318`; `/v1/traces` is
    /// added unless given). None: no traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the kernel's spans; default `burrow`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl TelemetrySettings {
    /// Checks the endpoint is an http(s) URL.
    pub fn validate(&self) -> Result<(), String> {
        match &self.otlp_endpoint {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                Err(format!("[telemetry] otlp_endpoint: {url:?} is not an http(s) URL"))
            }
            _ => Ok(()),
        }
    }
}

/// The kernel's tracer, once [`init`] has made one.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Exporting spans; flushes what is buffered when dropped (the kernel's stop).
#[derive(Debug)]
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "traces: could not flush at stop");
        }
    }
}

/// Starts exporting when `settings` names an endpoint (the first kernel of the process
/// that does). `Err` when the exporter cannot be made.
pub fn init(settings: &TelemetrySettings) -> Result<Option<Exporting>, String> {
    let Some(endpoint) = &settings.otlp_endpoint else { return Ok(None) };
    let endpoint = endpoint.trim_end_matches('/');
    let url = match endpoint.ends_with("/v1/traces") {
        true => endpoint.to_owned(),
        false => format!("{endpoint}/v1/traces"),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("[telemetry] otlp_endpoint {url}: {e}"))?;
    let name = settings.service_name.clone().unwrap_or_else(|| "burrow".to_owned());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    let provider =
        SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    if TRACER.set(provider.tracer("burrow")).is_err() {
        tracing::warn!("traces: another kernel of this process exports already");
        return Ok(None);
    }
    tracing::info!(%url, "exporting traces over OTLP");
    Ok(Some(Exporting(provider)))
}

/// Whether spans are made.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The current context, when spans are made and it holds one (a host's, a run's).
pub fn current() -> Option<Context> {
    enabled().then(Context::current).filter(|cx| cx.span().span_context().is_valid())
}

/// A new span `name` of `kind`, a child of the current context's span, as a context
/// holding it; `None` when traces are off. The span ends when the last clone of the
/// context is dropped, or with [`end`].
pub fn start(name: String, kind: SpanKind, attributes: Vec<KeyValue>) -> Option<Context> {
    let tracer = TRACER.get()?;
    let parent = Context::current();
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    Some(parent.with_span(span))
}

/// Sets attributes on `cx`'s span.
pub fn annotate(cx: Option<&Context>, attributes: impl IntoIterator<Item = KeyValue>) {
    if let Some(cx) = cx {
        let span = cx.span();
        for attribute in attributes {
            span.set_attribute(attribute);
        }
    }
}

/// Ends `cx`'s span, failed with `error` when given.
pub fn end(cx: Option<&Context>, error: Option<&str>) {
    if let Some(cx) = cx {
        let span = cx.span();
        if let Some(why) = error {
            span.set_status(Status::error(why.to_owned()));
        }
        span.end();
    }
}

/// An agent run's span: `invoke_agent <agent>`, a root (or a host's span's child, when
/// the current context holds one).
pub fn run_span(agent: &str, session: &str, run_id: &str) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let attributes = vec![
        KeyValue::new("gen_ai.operation.name", "invoke_agent"),
        KeyValue::new("gen_ai.agent.name", agent.to_owned()),
        KeyValue::new("gen_ai.conversation.id", session.to_owned()),
        KeyValue::new("burrow.run.id", run_id.to_owned()),
    ];
    start(format!("invoke_agent {agent}"), SpanKind::Internal, attributes)
}

/// A provider call's span: `chat <model>`.
pub fn chat_span(provider: &str, model: &str) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let attributes = vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.provider.name", provider.to_owned()),
        KeyValue::new("gen_ai.request.model", model.to_owned()),
    ];
    start(format!("chat {model}"), SpanKind::Client, attributes)
}

/// Ends a provider call's span with its token usage (`input_tokens` / `promptTokens`,
/// `output_tokens` / `completionTokens`), or its failure.
pub fn chat_done(
    cx: Option<&Context>,
    usage: Option<&serde_json::Map<String, serde_json::Value>>,
    error: Option<&str>,
) {
    let tokens = |names: [&str; 2]| {
        names.iter().find_map(|n| usage.and_then(|u| u.get(*n)).and_then(serde_json::Value::as_i64))
    };
    let counts = [
        ("gen_ai.usage.input_tokens", tokens(["input_tokens", "promptTokens"])),
        ("gen_ai.usage.output_tokens", tokens(["output_tokens", "completionTokens"])),
    ];
    annotate(cx, counts.into_iter().filter_map(|(k, v)| Some(KeyValue::new(k, v?))));
    end(cx, error);
}

/// An interceptor's span: `intercept <event>`, ended by [`end`] after
/// [`annotate`] gives its decision.
pub fn intercept_span(event: &str, app: &str) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let attributes = vec![
        KeyValue::new("burrow.hook.event", event.to_owned()),
        KeyValue::new("burrow.app", app.to_owned()),
    ];
    start(format!("intercept {event}"), SpanKind::Internal, attributes)
}

/// `cx`'s span as a W3C `traceparent` header value (`00-<trace>-<span>-<flags>`).
pub fn traceparent(cx: Option<&Context>) -> Option<String> {
    let cx = cx?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The context a W3C `traceparent` names (a host's, to parent a run), or the empty
/// context when it is absent or malformed: the protocol crate's reading, which the SDK
/// shares.
pub use burrow_protocol::rules::traceparent::context as from_traceparent;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_or_ignored() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = from_traceparent(Some(value));
        assert_eq!(traceparent(Some(&cx)).as_deref(), Some(value));
        for bad in ["", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-zz-00-01"] {
            let cx = from_traceparent(Some(bad));
            assert_eq!(traceparent(Some(&cx)), None, "{bad:?}");
        }
        assert_eq!(traceparent(None), None);
        let bad = TelemetrySettings { otlp_endpoint: Some("ftp://x".into()), service_name: None };
        assert!(bad.validate().is_err());
    }
}
