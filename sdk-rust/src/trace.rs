//! Continuing the kernel's traces: `tool.invoke` and `provider.complete` carry the call's
//! span as a W3C `traceparent` when the kernel exports traces. The SDK runs tool and
//! provider handlers inside that span's OpenTelemetry context ([`context`]), so spans the
//! app makes there (with its own exporter installed as the global tracer provider) are
//! the kernel's span's children, in the same trace.

/// The context `traceparent` names (a remote parent), or the empty context when it is
/// absent or malformed (the protocol crate's reading, which the kernel shares).
pub use burrow_protocol::rules::traceparent::context;

/// `future`, run inside the context `traceparent` names; with none (the kernel exports
/// no traces), `future` itself: nothing is attached on each poll.
pub fn within<F: std::future::Future>(
    traceparent: Option<&str>,
    future: F,
) -> futures_util::future::Either<opentelemetry::context::WithContext<F>, F> {
    use futures_util::future::Either;
    match traceparent {
        Some(tp) => {
            Either::Left(opentelemetry::context::FutureExt::with_context(future, context(Some(tp))))
        }
        None => Either::Right(future),
    }
}
