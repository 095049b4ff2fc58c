//! [`KernelNode`]: this kernel's side of the kernel channel (key, id, trust store, limits,
//! replay cache, refusal counters, when each trusted kernel was last heard from) and the
//! checks every incoming line passes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::Value;

use super::binding::{Binding, kernel_id};
use super::envelope::{
    Ack, AckStatus, ENVELOPE_VERSION, Envelope, SignedEnvelope, sign_ack, sign_envelope,
};
use super::refusal::RefusalCounts;
use super::replay::ReplayCache;
use super::{Refusal, TrustStore};
use crate::token::KernelKey;

/// Longest envelope id accepted (UUIDs are 36).
const MAX_ID_BYTES: usize = 128;

/// Limits of the kernel channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelChannelSettings {
    /// Longest line read, in bytes, without its newline (default 64 KiB).
    pub max_line_bytes: usize,
    /// How far `sent_at` may be from now, either way (default 60 s).
    pub freshness: Duration,
    /// How many envelope ids the replay cache holds (default 100 000).
    pub replay_capacity: usize,
    /// Concurrent incoming connections; more are refused `busy` (default 64).
    pub max_connections: usize,
    /// A connection that sends no complete line for this long is closed (default 30 s).
    pub idle_timeout: Duration,
    /// How long the inbox may take to deliver one envelope; past it the envelope is
    /// refused `timeout` (default 10 s).
    pub delivery_timeout: Duration,
    /// How long writing one ack may take before the connection is closed (default 10 s).
    pub write_timeout: Duration,
}

impl Default for KernelChannelSettings {
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024,
            freshness: Duration::from_secs(60),
            replay_capacity: 100_000,
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A line that failed a check, with what is known of its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub refusal: Refusal,
    /// The envelope's id, when the payload could be read (else empty).
    pub envelope_id: String,
    /// The claimed sender, when the payload could be read (else empty).
    pub from: String,
}

impl Rejected {
    /// A refusal of a line whose envelope could not be read.
    pub(crate) fn bare(refusal: Refusal) -> Self {
        Self { refusal, envelope_id: String::new(), from: String::new() }
    }
}

/// This kernel on the kernel channel; shared behind an `Arc` by the listener and senders.
pub struct KernelNode {
    signing: SigningKey,
    verifying: VerifyingKey,
    id: String,
    trust: Arc<TrustStore>,
    settings: KernelChannelSettings,
    replay: Mutex<ReplayCache>,
    refusals: RefusalCounts,
    /// When (ms since the epoch) each trusted kernel was last heard from: an envelope of
    /// its that passed every check, or a signed ack of its. Only trusted kernels are kept,
    /// so it is bounded by the trust store.
    contacts: Mutex<HashMap<String, u64>>,
    /// Envelopes signed before this (ms) are `stale`: the replay cache does not survive
    /// a restart, so nothing from before it can be told from a replay.
    started_at: u64,
}

impl std::fmt::Debug for KernelNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelNode")
            .field("kernel_id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KernelNode {
    /// A node signing with the kernel's key and trusting what `trust` holds.
    pub fn new(key: &KernelKey, trust: Arc<TrustStore>, settings: KernelChannelSettings) -> Self {
        let signing = key.signing_key().clone();
        let verifying = signing.verifying_key();
        Self {
            id: kernel_id(&verifying),
            replay: Mutex::new(ReplayCache::new(settings.replay_capacity)),
            signing,
            verifying,
            trust,
            settings,
            refusals: RefusalCounts::default(),
            contacts: Mutex::new(HashMap::new()),
            started_at: burrow_protocol::now_ms(),
        }
    }

    /// This kernel's id: the lowercase hex of its public key.
    pub fn kernel_id(&self) -> &str {
        &self.id
    }

    /// This kernel's public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The trust store.
    pub fn trust_store(&self) -> &Arc<TrustStore> {
        &self.trust
    }

    /// The limits in force.
    pub fn settings(&self) -> &KernelChannelSettings {
        &self.settings
    }

    /// This kernel's binding, to hand to other kernels (`--comms-binding-out`).
    pub fn binding(&self, name: &str, address: &str) -> Binding {
        Binding::new(&self.verifying, name, address)
    }

    /// A new envelope from this kernel to `to`.
    pub fn envelope(&self, to: &str, kind: &str, body: Value) -> Envelope {
        Envelope::new(&self.id, to, kind, body)
    }

    /// Signs an envelope with this kernel's key.
    pub fn sign(&self, envelope: &Envelope) -> SignedEnvelope {
        sign_envelope(&self.signing, envelope)
    }

    /// Refusals so far, by name.
    pub fn refusals(&self) -> BTreeMap<String, u64> {
        self.refusals.snapshot()
    }

    /// Records that trusted kernel `kernel_id` was heard from now (a kernel no longer
    /// trusted is not recorded).
    pub fn heard_from(&self, kernel_id: &str) {
        if self.trust.key_of(kernel_id).is_none() {
            return;
        }
        let mut contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        contacts.insert(kernel_id.to_owned(), burrow_protocol::now_ms());
    }

    /// When each trusted kernel was last heard from (ms since the epoch), since this
    /// kernel started; a kernel not heard from is absent.
    pub fn last_contacts(&self) -> BTreeMap<String, u64> {
        let mut contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        contacts.retain(|id, _| self.trust.key_of(id).is_some());
        contacts.iter().map(|(id, at)| (id.clone(), *at)).collect()
    }

    /// Runs every check on one line (without its newline) at `now_ms`, in order:
    /// `malformed`, `untrusted_sender`, `invalid_signature`, `misaddressed`, `stale`,
    /// `replayed` (or `inbox_full` when the replay cache is full). On success the id is
    /// marked as seen; hand the delivery's outcome to [`KernelNode::settle`].
    pub fn check_line(&self, line: &str, now_ms: u64) -> Result<Envelope, Rejected> {
        if line.len() > self.settings.max_line_bytes {
            return Err(Rejected::bare(Refusal::Oversize));
        }
        let signed = SignedEnvelope::from_line(line).ok_or(Rejected::bare(Refusal::Malformed))?;
        // Read strictly (docs/protocol.md §2, a reserved key), then typed.
        let envelope: Envelope = burrow_protocol::strict::from_json(&signed.payload)
            .and_then(serde_json::from_value)
            .map_err(|_| Rejected::bare(Refusal::Malformed))?;
        let reject = |refusal| Rejected {
            refusal,
            envelope_id: envelope.id.clone(),
            from: envelope.from.clone(),
        };
        if envelope.v != ENVELOPE_VERSION
            || envelope.id.is_empty()
            || envelope.id.len() > MAX_ID_BYTES
        {
            return Err(reject(Refusal::Malformed));
        }
        let key =
            self.trust.key_of(&envelope.from).ok_or_else(|| reject(Refusal::UntrustedSender))?;
        if !signed.verify(&key) {
            return Err(reject(Refusal::InvalidSignature));
        }
        if envelope.to != self.id {
            return Err(reject(Refusal::Misaddressed));
        }
        let window = u64::try_from(self.settings.freshness.as_millis()).unwrap_or(u64::MAX);
        if now_ms.abs_diff(envelope.sent_at) > window || envelope.sent_at < self.started_at {
            return Err(reject(Refusal::Stale));
        }
        self.replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(
                &replay_key(&envelope.from, &envelope.id),
                envelope.sent_at.saturating_add(window),
                now_ms,
            )
            .map_err(reject)?;
        self.heard_from(&envelope.from);
        Ok(envelope)
    }

    /// Records the outcome of delivering the envelope `id` from `from`: a refusal by the
    /// inbox (other than `timeout`, after which the envelope may have been stored) frees
    /// the id so the sender may retry.
    pub fn settle(&self, from: &str, id: &str, outcome: &Result<Value, Refusal>) {
        if matches!(outcome, Err(r) if *r != Refusal::Timeout) {
            self.replay.lock().unwrap_or_else(|e| e.into_inner()).release(&replay_key(from, id));
        }
    }

    /// Counts and logs a refusal: the first ten of each reason, then the 16th, 32nd,
    /// 64th... so a flood of bad envelopes cannot flood the log (the counts stay exact).
    pub(crate) fn record(&self, rejected: &Rejected, addr: Option<SocketAddr>) {
        let count = self.refusals.add(&rejected.refusal);
        if count > 10 && !count.is_power_of_two() {
            return;
        }
        tracing::warn!(
            reason = rejected.refusal.as_str(),
            count,
            from = %rejected.from,
            envelope_id = %rejected.envelope_id,
            peer = ?addr,
            "kernel channel: envelope refused"
        );
    }

    /// The signed ack line (with its newline) answering `ack_of` from `to`.
    pub(crate) fn ack_line(
        &self,
        ack_of: &str,
        to: &str,
        outcome: Result<Value, &Refusal>,
    ) -> String {
        let (status, reason, body) = match outcome {
            Ok(body) => (AckStatus::Accepted, None, body),
            Err(r) => (AckStatus::Refused, Some(r.as_str().to_owned()), Value::Null),
        };
        let ack = Ack {
            v: ENVELOPE_VERSION,
            ack_of: ack_of.to_owned(),
            from: self.id.clone(),
            to: to.to_owned(),
            sent_at: burrow_protocol::now_ms(),
            status,
            reason,
            body,
        };
        sign_ack(&self.signing, &ack).to_line()
    }
}

/// Ids are unique per sender.
fn replay_key(from: &str, id: &str) -> String {
    format!("{from}/{id}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A node with key `seed` in its own state dir.
    fn node(seed: u8, settings: KernelChannelSettings) -> (tempfile::TempDir, KernelNode) {
        let dir = tempfile::tempdir().unwrap();
        let key = KernelKey::from_seed([seed; 32]);
        let trust =
            Arc::new(TrustStore::open(dir.path(), &kernel_id(key.verifying_key())).unwrap());
        (dir, KernelNode::new(&key, trust, settings))
    }

    fn line(key_seed: u8, envelope: &Envelope) -> String {
        let signed = sign_envelope(KernelKey::from_seed([key_seed; 32]).signing_key(), envelope);
        signed.to_line().trim_end().to_owned()
    }

    /// `me` (seed 1) trusting seed 2; seed 3 is a stranger.
    fn setup(settings: KernelChannelSettings) -> (tempfile::TempDir, KernelNode, String, String) {
        let (dir, me) = node(1, settings);
        let friend = kernel_id(KernelKey::from_seed([2; 32]).verifying_key());
        let stranger = kernel_id(KernelKey::from_seed([3; 32]).verifying_key());
        me.trust_store().trust(binding_of(2)).unwrap();
        (dir, me, friend, stranger)
    }

    fn binding_of(seed: u8) -> Binding {
        Binding::new(KernelKey::from_seed([seed; 32]).verifying_key(), "friend", "127.0.0.1:9")
    }

    #[test]
    fn every_check_refuses_its_crafted_line() {
        let (_dir, me, friend, stranger) = setup(KernelChannelSettings::default());
        // Checked as if two minutes after the node started.
        let now = burrow_protocol::now_ms() + 120_000;
        let to_me = |from: &str| Envelope {
            sent_at: now,
            ..Envelope::new(from, me.kernel_id(), "m", json!(1))
        };
        let refusal = |l: &str| me.check_line(l, now).map(|_| ()).map_err(|r| r.refusal);

        let good = to_me(&friend);
        assert_eq!(refusal(&line(2, &good)), Ok(()));
        assert_eq!(refusal(&line(2, &good)), Err(Refusal::Replayed));

        let long = "x".repeat(me.settings().max_line_bytes + 1);
        assert_eq!(refusal(&long), Err(Refusal::Oversize));
        for bad in ["", "not json", "{}", r#"{"payload":"{}","sig":""}"#] {
            assert_eq!(refusal(bad), Err(Refusal::Malformed), "{bad}");
        }
        let v2 = Envelope { v: 2, ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &v2)), Err(Refusal::Malformed));
        let no_id = Envelope { id: String::new(), ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &no_id)), Err(Refusal::Malformed));
        // The reserved key, where serde_json alone would take it as a plain key: not a
        // map's first (keys are written sorted, and `!` sorts before `$`).
        let body = json!({"metadata": {"!a": 1, "$serde_json::private::RawValue": 5}});
        let reserved = Envelope { body, ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &reserved)), Err(Refusal::Malformed));
        // A number out of a double's range, signed as it is: refused, not read as an
        // infinity or as null (docs/protocol.md §2).
        let text = serde_json::to_string(&Envelope { body: json!({"v": 7}), ..to_me(&friend) });
        let text = text.unwrap();
        for number in ["1e400", "-1e400"] {
            let payload = text.replace(r#"{"v":7}"#, &format!(r#"{{"v":{number}}}"#));
            assert_ne!(payload, text);
            let key = KernelKey::from_seed([2; 32]);
            let signed = SignedEnvelope::sign_payload(key.signing_key(), payload);
            assert_eq!(refusal(signed.to_line().trim_end()), Err(Refusal::Malformed), "{number}");
        }

        assert_eq!(refusal(&line(3, &to_me(&stranger))), Err(Refusal::UntrustedSender));
        // Signed by the stranger but claiming to be the friend.
        let forged = to_me(&friend);
        assert_eq!(refusal(&line(3, &forged)), Err(Refusal::InvalidSignature));
        // A forgery does not poison the replay cache: the genuine envelope still passes.
        assert_eq!(refusal(&line(2, &forged)), Ok(()));
        // A payload changed after signing.
        let signed = sign_envelope(KernelKey::from_seed([2; 32]).signing_key(), &to_me(&friend));
        let tampered =
            SignedEnvelope { payload: signed.payload.replace(":1}", ":2}"), ..signed.clone() };
        assert_eq!(refusal(tampered.to_line().trim_end()), Err(Refusal::InvalidSignature));

        let elsewhere = Envelope { to: stranger.clone(), ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &elsewhere)), Err(Refusal::Misaddressed));
        let old = Envelope { sent_at: now - 60_001, ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &old)), Err(Refusal::Stale));
        let future = Envelope { sent_at: now + 60_001, ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &future)), Err(Refusal::Stale));
        let edge = Envelope { sent_at: now - 60_000, ..to_me(&friend) };
        assert_eq!(refusal(&line(2, &edge)), Ok(()));
        // Signed before the node started: a replay could not be told from it.
        let before = Envelope { sent_at: me.started_at - 1, ..to_me(&friend) };
        assert_eq!(
            me.check_line(&line(2, &before), me.started_at).map(|_| ()).map_err(|r| r.refusal),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn settling_frees_ids_refused_by_the_inbox_and_a_full_cache_refuses() {
        let settings =
            KernelChannelSettings { replay_capacity: 2, ..KernelChannelSettings::default() };
        let (_dir, me, friend, _) = setup(settings);
        let now = burrow_protocol::now_ms();
        let env =
            |sent_at| Envelope { sent_at, ..Envelope::new(&friend, me.kernel_id(), "m", json!(1)) };
        let a = env(now);
        let accepted = me.check_line(&line(2, &a), now).unwrap();
        me.settle(&accepted.from, &accepted.id, &Err(Refusal::InboxFull));
        assert!(me.check_line(&line(2, &a), now).is_ok(), "refused by the inbox: retry allowed");
        me.settle(&a.from, &a.id, &Err(Refusal::Timeout));
        let again = me.check_line(&line(2, &a), now).unwrap_err();
        assert_eq!(again.refusal, Refusal::Replayed, "after a timeout it may be stored");
        assert_eq!((again.envelope_id, again.from), (a.id.clone(), friend.clone()));

        let b = env(now);
        assert!(me.check_line(&line(2, &b), now).is_ok());
        let c = env(now);
        assert_eq!(me.check_line(&line(2, &c), now).unwrap_err().refusal, Refusal::InboxFull);
        // Once the window has passed for the ids held, there is room again.
        let later = now + 60_001;
        assert!(me.check_line(&line(2, &env(later)), later).is_ok());
    }

    #[test]
    fn acks_are_signed_by_the_node() {
        let (_dir, me, friend, _) = setup(KernelChannelSettings::default());
        let line = me.ack_line("id1", &friend, Err(&Refusal::Stale));
        let signed = SignedEnvelope::from_line(line.trim_end()).unwrap();
        assert!(signed.verify(me.verifying_key()));
        let ack: Ack = serde_json::from_str(&signed.payload).unwrap();
        assert_eq!(ack.status, AckStatus::Refused);
        assert_eq!(ack.reason.as_deref(), Some("stale"));
        assert_eq!((ack.ack_of.as_str(), ack.to.as_str()), ("id1", friend.as_str()));
        assert!(format!("{me:?}").contains(me.kernel_id()));
    }
}
