//! W3C trace context's `traceparent` (version `00`): `00-<trace id: 32 hex>-<parent span
//! id: 16 hex>-<flags: 2 hex>`, as the kernel sends it in `tool.invoke` and
//! `provider.complete` and takes it from hosts. Both ends read it alike.

/// A `traceparent`'s parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id.
    pub trace_id: [u8; 16],
    /// The parent span's id.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Reads `value`; `None` when it is not version `00` in lowercase hex, or an id is all
/// zeros.
pub fn parse(value: &str) -> Option<TraceParent> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let trace_id: [u8; 16] = hex(trace)?.try_into().ok()?;
    let span_id: [u8; 8] = hex(span)?.try_into().ok()?;
    let flags = *hex(flags)?.first().filter(|_| flags.len() == 2)?;
    let zero = trace_id.iter().all(|b| *b == 0) || span_id.iter().all(|b| *b == 0);
    (!zero).then_some(TraceParent { trace_id, span_id, flags })
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }
}

/// The OpenTelemetry context `traceparent` names (a remote parent), or the empty context
/// when it is absent or malformed (feature `otel`).
#[cfg(feature = "otel")]
pub fn context(traceparent: Option<&str>) -> opentelemetry::Context {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    match traceparent.and_then(parse) {
        Some(tp) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(tp.trace_id),
            SpanId::from_bytes(tp.span_id),
            TraceFlags::new(tp.flags),
            true,
            TraceState::default(),
        )),
        None => opentelemetry::Context::new(),
    }
}

/// Lowercase hex as bytes.
fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2)
        || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_read_and_print_alike() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse(value).unwrap();
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_string(), value);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[cfg(feature = "otel")]
    #[test]
    fn a_traceparent_is_a_remote_parent_context() {
        use opentelemetry::trace::TraceContextExt;
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context(Some(value));
        let span = cx.span().span_context().clone();
        let tp = parse(value).unwrap();
        assert!(span.is_remote() && span.is_sampled() && span.is_valid());
        assert_eq!(span.trace_id().to_bytes(), tp.trace_id);
        assert_eq!(span.span_id().to_bytes(), tp.span_id);
        for none in [None, Some("00-zz-00-01")] {
            assert!(!context(none).span().span_context().is_valid(), "{none:?}");
        }
    }
}
