//! The messages kernels exchange and how they are signed.
//!
//! An [`Envelope`] (or its [`Ack`]) is serialized to JSON once; that exact text travels as
//! the `payload` of a [`SignedEnvelope`] next to a hex ed25519 signature over its bytes,
//! so no canonical JSON is needed. One signed object per line. An ack's payload never
//! parses as an envelope (it lacks `id` and `kind`) nor the reverse (no `ack_of`).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The envelope and ack format version.
pub const ENVELOPE_VERSION: u32 = 1;

/// A message from one kernel to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`ENVELOPE_VERSION`].
    pub v: u32,
    /// A unique id (UUID v7); the receiver refuses it a second time.
    pub id: String,
    /// The sender's kernel id.
    pub from: String,
    /// The receiver's kernel id.
    pub to: String,
    /// When it was sent, ms since the Unix epoch.
    pub sent_at: u64,
    /// What the body is, e.g. `message`.
    pub kind: String,
    /// The content.
    pub body: Value,
}

impl Envelope {
    /// A new envelope from `from` to `to`, with a fresh id, sent now.
    pub fn new(from: &str, to: &str, kind: &str, body: Value) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            from: from.to_owned(),
            to: to.to_owned(),
            sent_at: burrow_protocol::now_ms(),
            kind: kind.to_owned(),
            body,
        }
    }
}

/// Whether an envelope was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Delivered (stored by the receiver's inbox).
    Accepted,
    /// Not delivered; `reason` says why.
    Refused,
}

/// The receiver's answer to one envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Always [`ENVELOPE_VERSION`].
    pub v: u32,
    /// The envelope's id; empty when the line could not be read as an envelope
    /// (`oversize`, `malformed`, `busy`).
    pub ack_of: String,
    /// The receiver's kernel id.
    pub from: String,
    /// The sender's kernel id, when known (else empty).
    pub to: String,
    /// When the ack was made, ms since the Unix epoch.
    pub sent_at: u64,
    /// Accepted or refused.
    pub status: AckStatus,
    /// Why it was refused: a [`super::Refusal`] name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The receiver's answer when accepted (null otherwise).
    #[serde(default)]
    pub body: Value,
}

/// The wire form of an [`Envelope`] or [`Ack`]: the exact JSON text and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// The JSON text of the envelope or ack, exactly as signed.
    pub payload: String,
    /// The hex ed25519 signature over the payload's bytes.
    pub sig: String,
}

impl SignedEnvelope {
    /// Signs `payload` as it is.
    pub fn sign_payload(key: &SigningKey, payload: String) -> Self {
        let sig = hex::encode(key.sign(payload.as_bytes()).to_bytes());
        Self { payload, sig }
    }

    /// Whether `sig` is `key`'s signature over `payload` (strict verification).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let mut sig = [0u8; 64];
        if self.sig.len() != 128 || hex::decode_to_slice(&self.sig, &mut sig).is_err() {
            return false;
        }
        key.verify_strict(self.payload.as_bytes(), &Signature::from_bytes(&sig)).is_ok()
    }

    /// The line to send: compact JSON and a newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Parses a line (without its newline).
    pub fn from_line(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

/// Signs an envelope: its JSON text as the payload.
pub fn sign_envelope(key: &SigningKey, envelope: &Envelope) -> SignedEnvelope {
    SignedEnvelope::sign_payload(key, serde_json::to_string(envelope).unwrap_or_default())
}

/// Signs an ack: its JSON text as the payload.
pub fn sign_ack(key: &SigningKey, ack: &Ack) -> SignedEnvelope {
    SignedEnvelope::sign_payload(key, serde_json::to_string(ack).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::KernelKey;
    use serde_json::json;

    #[test]
    fn signatures_cover_the_exact_payload() {
        let key = KernelKey::from_seed([5; 32]);
        let other = KernelKey::from_seed([6; 32]);
        let env = Envelope::new("a", "b", "message", json!({"text": "hi"}));
        let signed = sign_envelope(key.signing_key(), &env);
        assert!(signed.verify(key.verifying_key()));
        assert!(!signed.verify(other.verifying_key()));
        let back = SignedEnvelope::from_line(signed.to_line().trim_end()).unwrap();
        assert_eq!(back, signed);
        assert_eq!(serde_json::from_str::<Envelope>(&back.payload).unwrap(), env);
        let tampered = SignedEnvelope { payload: back.payload.replace("hi", "ho"), ..back };
        assert!(!tampered.verify(key.verifying_key()));
        for sig in ["", "zz", &"0".repeat(128), &"0".repeat(130)] {
            let s = SignedEnvelope { sig: sig.to_owned(), ..signed.clone() };
            assert!(!s.verify(key.verifying_key()), "{sig}");
        }
    }

    #[test]
    fn acks_and_envelopes_do_not_parse_as_each_other() {
        let env = Envelope::new("a", "b", "message", json!(1));
        let ack = Ack {
            v: 1,
            ack_of: env.id.clone(),
            from: "b".into(),
            to: "a".into(),
            sent_at: 0,
            status: AckStatus::Refused,
            reason: Some("stale".into()),
            body: Value::Null,
        };
        let ack_text = serde_json::to_string(&ack).unwrap();
        assert!(ack_text.contains(r#""status":"refused""#));
        assert_eq!(serde_json::from_str::<Ack>(&ack_text).unwrap(), ack);
        assert!(serde_json::from_str::<Envelope>(&ack_text).is_err());
        assert!(serde_json::from_str::<Ack>(&serde_json::to_string(&env).unwrap()).is_err());
    }
}
