//! Why an envelope was refused: a typed reason with a stable snake_case name, and the
//! per-reason counters a [`super::KernelNode`] keeps.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Why an envelope (or a whole line or connection) was refused. The names from
/// [`Refusal::as_str`] are the wire contract (the ack's `reason`); the `Display` text is not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// The line is longer than the receiver's limit.
    #[error("line longer than the limit")]
    Oversize,
    /// Not a signed envelope, or its payload is not a version-1 envelope.
    #[error("malformed envelope")]
    Malformed,
    /// `from` is not a trusted kernel.
    #[error("sender is not trusted")]
    UntrustedSender,
    /// The signature is not the trusted key's over the payload.
    #[error("invalid signature")]
    InvalidSignature,
    /// `to` is not the receiver's kernel id.
    #[error("envelope addressed to another kernel")]
    Misaddressed,
    /// `sent_at` is outside the freshness window (too old or in the future).
    #[error("envelope outside the freshness window")]
    Stale,
    /// The envelope id was already accepted within the window.
    #[error("envelope already accepted")]
    Replayed,
    /// The receiver cannot take more now (its inbox or replay cache is full).
    #[error("inbox full")]
    InboxFull,
    /// The inbox did not answer within the delivery deadline; the envelope may have been
    /// stored, so its id stays marked as seen.
    #[error("delivery timed out")]
    Timeout,
    /// Too many connections; the connection was refused before reading.
    #[error("too many connections")]
    Busy,
    /// The inbox knows no recipient for the envelope's body.
    #[error("unknown recipient")]
    UnknownRecipient,
    /// Any other reason an inbox gives, by its snake_case name.
    #[error("refused: {0}")]
    Other(String),
}

impl Refusal {
    const NAMED: [Refusal; 11] = [
        Self::Oversize,
        Self::Malformed,
        Self::UntrustedSender,
        Self::InvalidSignature,
        Self::Misaddressed,
        Self::Stale,
        Self::Replayed,
        Self::InboxFull,
        Self::Timeout,
        Self::Busy,
        Self::UnknownRecipient,
    ];

    /// The stable snake_case name, as sent in an ack's `reason`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::UntrustedSender => "untrusted_sender",
            Self::InvalidSignature => "invalid_signature",
            Self::Misaddressed => "misaddressed",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::InboxFull => "inbox_full",
            Self::Timeout => "timeout",
            Self::Busy => "busy",
            Self::UnknownRecipient => "unknown_recipient",
            Self::Other(name) => name,
        }
    }

    /// The refusal named `name` (an unknown name becomes [`Refusal::Other`]).
    pub fn from_reason(name: &str) -> Self {
        Self::NAMED
            .iter()
            .find(|r| r.as_str() == name)
            .cloned()
            .unwrap_or_else(|| Self::Other(name.to_owned()))
    }
}

/// Refusals counted by name.
#[derive(Debug, Default)]
pub(crate) struct RefusalCounts(Mutex<BTreeMap<String, u64>>);

impl RefusalCounts {
    /// Counts one refusal; gives how many of its name there have been.
    pub(crate) fn add(&self, refusal: &Refusal) -> u64 {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the map against an inbox inventing names without end.
        let name = if counts.len() < 256 || counts.contains_key(refusal.as_str()) {
            refusal.as_str()
        } else {
            "other"
        };
        let count = counts.entry(name.to_owned()).or_default();
        *count += 1;
        *count
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Refusal::NAMED {
            assert_eq!(Refusal::from_reason(r.as_str()), r);
        }
        assert_eq!(Refusal::from_reason("quota"), Refusal::Other("quota".into()));
        assert_eq!(Refusal::Other("quota".into()).as_str(), "quota");
        let counts = RefusalCounts::default();
        assert_eq!(counts.add(&Refusal::Stale), 1);
        assert_eq!(counts.add(&Refusal::Stale), 2);
        assert_eq!(counts.add(&Refusal::Replayed), 1);
        assert_eq!(
            counts.snapshot(),
            BTreeMap::from([("replayed".into(), 1), ("stale".into(), 2)])
        );
    }
}
