//! Loopback tests: real listeners on 127.0.0.1, real sockets, two or three kernels.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::token::KernelKey;

const DEADLINE: Duration = Duration::from_secs(10);

/// Stores what it is given; the body steers it: `{"refuse": NAME}` refuses, `{"hang": true}`
/// never answers.
#[derive(Debug, Default)]
struct TestInbox(Mutex<Vec<Envelope>>);

impl Inbox for TestInbox {
    fn deliver(&self, envelope: Envelope) -> DeliverFuture<'_> {
        Box::pin(async move {
            if let Some(name) = envelope.body["refuse"].as_str() {
                return Err(Refusal::from_reason(name));
            }
            if envelope.body["hang"] == true {
                std::future::pending::<()>().await;
            }
            let id = envelope.id.clone();
            self.0.lock().unwrap().push(envelope);
            Ok(json!({ "stored": id }))
        })
    }
}

/// A kernel with a serving listener.
struct Kernel {
    _dir: tempfile::TempDir,
    node: Arc<KernelNode>,
    inbox: Arc<TestInbox>,
    binding: Binding,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl Kernel {
    async fn start(seed: u8, settings: KernelChannelSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = KernelKey::from_seed([seed; 32]);
        let trust =
            Arc::new(TrustStore::open(dir.path(), &kernel_id(key.verifying_key())).unwrap());
        let node = Arc::new(KernelNode::new(&key, trust, settings));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let binding =
            node.binding(&format!("k{seed}"), &listener.local_addr().unwrap().to_string());
        let inbox = Arc::new(TestInbox::default());
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, node.clone(), inbox.clone(), stop.clone()));
        Self { _dir: dir, node, inbox, binding, stop, server }
    }

    fn trusts(&self, other: &Kernel) {
        self.node.trust_store().trust(other.binding.clone()).unwrap();
    }

    async fn connect(&self) -> KernelConnection {
        KernelConnection::connect(&self.binding.address, DEADLINE, 64 * 1024).await.unwrap()
    }

    /// The reason of a raw ack line (or "accepted").
    fn reason(&self, raw: &str) -> String {
        let signed = SignedEnvelope::from_line(raw).unwrap();
        assert!(signed.verify(self.node.verifying_key()), "acks are signed");
        let ack: Ack = serde_json::from_str(&signed.payload).unwrap();
        ack.reason.unwrap_or_else(|| "accepted".into())
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.server).await.expect("serve stops").unwrap();
    }
}

async fn pair() -> (Kernel, Kernel) {
    let (a, b) = (
        Kernel::start(1, KernelChannelSettings::default()).await,
        Kernel::start(2, KernelChannelSettings::default()).await,
    );
    a.trusts(&b);
    b.trusts(&a);
    (a, b)
}

#[tokio::test]
async fn envelopes_go_both_ways_and_refusals_surface() {
    let (a, b) = pair().await;
    assert!(a.node.last_contacts().is_empty() && b.node.last_contacts().is_empty());
    let before = burrow_protocol::now_ms();
    let body = send(&a.node, &b.binding, "message", json!({"text": "hi"}), DEADLINE).await.unwrap();
    let got = b.inbox.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(body, json!({ "stored": got[0].id }));
    // Each heard from the other: b an envelope, a the ack.
    for (k, other) in [(&a, &b), (&b, &a)] {
        let at = k.node.last_contacts()[other.node.kernel_id()];
        assert!(at >= before && at <= burrow_protocol::now_ms(), "{at} vs {before}");
    }
    // A kernel no longer trusted is no longer listed.
    b.node.trust_store().revoke(a.node.kernel_id()).unwrap();
    assert!(b.node.last_contacts().is_empty());
    b.trusts(&a);
    assert_eq!((got[0].from.as_str(), got[0].kind.as_str()), (a.node.kernel_id(), "message"));
    assert_eq!(got[0].body, json!({"text": "hi"}));
    assert!(send(&b.node, &a.binding, "message", json!(2), DEADLINE).await.is_ok());
    assert_eq!(a.inbox.0.lock().unwrap().len(), 1);

    let refused =
        send(&a.node, &b.binding, "message", json!({"refuse": "unknown_recipient"}), DEADLINE)
            .await;
    assert!(matches!(refused, Err(SendError::Refused(Refusal::UnknownRecipient))), "{refused:?}");
    // A retry of an envelope the inbox refused is allowed; of an accepted one, not.
    let env = a.node.envelope(b.node.kernel_id(), "message", json!(3));
    assert!(send_envelope(&a.node, &b.binding, &env, DEADLINE).await.is_ok());
    let replay = send_envelope(&a.node, &b.binding, &env, DEADLINE).await;
    assert!(matches!(replay, Err(SendError::Refused(Refusal::Replayed))), "{replay:?}");
    assert_eq!(b.node.refusals(), [("replayed".into(), 1), ("unknown_recipient".into(), 1)].into());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn untrusted_misaddressed_wrong_key_and_unreachable() {
    let (a, b) = pair().await;
    let c = Kernel::start(3, KernelChannelSettings::default()).await;
    c.trusts(&b);
    let untrusted = send(&c.node, &b.binding, "message", json!(1), DEADLINE).await;
    assert!(
        matches!(untrusted, Err(SendError::Refused(Refusal::UntrustedSender))),
        "{untrusted:?}"
    );
    assert!(b.node.last_contacts().is_empty(), "an untrusted sender is not a contact");
    assert!(c.node.last_contacts().contains_key(b.node.kernel_id()), "its signed refusal is");

    // A binding naming c's key at b's address: b refuses the envelope as misaddressed, and
    // its ack, signed by b, is not c's: a bad ack.
    let impostor = Binding { address: b.binding.address.clone(), ..c.binding.clone() };
    let bad = send(&a.node, &impostor, "message", json!(1), DEADLINE).await;
    assert!(matches!(bad, Err(SendError::BadAck(_))), "{bad:?}");
    assert_eq!(b.node.refusals().get("misaddressed"), Some(&1));

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = Binding { address: closed.local_addr().unwrap().to_string(), ..b.binding.clone() };
    drop(closed);
    let unreachable = send(&a.node, &dead, "message", json!(1), DEADLINE).await;
    assert!(matches!(unreachable, Err(SendError::Unreachable(_))), "{unreachable:?}");
    for k in [a, b, c] {
        k.stop().await;
    }
}

#[tokio::test]
async fn crafted_lines_get_each_refusal_over_the_wire() {
    let settings =
        KernelChannelSettings { max_line_bytes: 4096, ..KernelChannelSettings::default() };
    let (a, b) = (
        Kernel::start(1, KernelChannelSettings::default()).await,
        Kernel::start(2, settings).await,
    );
    b.trusts(&a);
    let stranger = KernelKey::from_seed([3; 32]);
    let now = burrow_protocol::now_ms();
    let to_b = |from: &str, sent_at: u64| Envelope {
        sent_at,
        ..Envelope::new(from, b.node.kernel_id(), "m", json!(1))
    };
    let signed_by = |k: &KernelKey, e: &Envelope| sign_envelope(k.signing_key(), e).to_line();
    let a_key = KernelKey::from_seed([1; 32]);
    let a_id = a.node.kernel_id().to_owned();
    let stranger_id = kernel_id(stranger.verifying_key());

    let good = a.node.sign(&to_b(&a_id, now)).to_line();
    let cases: Vec<(String, &str)> = vec![
        (good.clone(), "accepted"),
        (good, "replayed"),
        (a.node.sign(&to_b(&a_id, now)).to_line(), "accepted"),
        ("{not json\n".into(), "malformed"),
        (signed_by(&stranger, &to_b(&stranger_id, now)), "untrusted_sender"),
        (signed_by(&stranger, &to_b(&a_id, now)), "invalid_signature"),
        (
            signed_by(&a_key, &Envelope { to: stranger_id.clone(), ..to_b(&a_id, now) }),
            "misaddressed",
        ),
        (signed_by(&a_key, &to_b(&a_id, now - 120_000)), "stale"),
        (signed_by(&a_key, &to_b(&a_id, now + 120_000)), "stale"),
        (a.node.sign(&to_b(&a_id, now)).to_line(), "accepted"),
    ];
    // All on one connection: many envelopes per connection, the connection survives refusals.
    let mut conn = b.connect().await;
    for (line, want) in &cases {
        let raw = conn.exchange(line, DEADLINE).await.unwrap();
        assert_eq!(b.reason(&raw), *want, "{line}");
    }
    // Oversize: answered, then the connection is closed.
    let raw = conn.exchange(&"x".repeat(10_000), DEADLINE).await.unwrap();
    assert_eq!(b.reason(&raw), "oversize");
    assert!(matches!(conn.read_line().await, Err(SendError::Lost(_))));
    // Not UTF-8: malformed, then closed.
    let raw = tokio::time::timeout(DEADLINE, async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&b.binding.address).await.unwrap();
        stream.write_all(b"\xff\xfe\n").await.unwrap();
        let mut text = String::new();
        tokio::io::BufReader::new(stream).read_line(&mut text).await.unwrap();
        text
    })
    .await
    .unwrap();
    assert_eq!(b.reason(raw.trim_end()), "malformed");

    let want = [
        ("invalid_signature", 1),
        ("malformed", 2),
        ("misaddressed", 1),
        ("oversize", 1),
        ("replayed", 1),
        ("stale", 2),
        ("untrusted_sender", 1),
    ];
    assert_eq!(b.node.refusals(), want.map(|(n, c)| (n.to_owned(), c)).into());
    assert_eq!(b.inbox.0.lock().unwrap().len(), 3);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn slow_inboxes_time_out_and_idle_connections_close() {
    let settings = KernelChannelSettings {
        delivery_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(200),
        ..KernelChannelSettings::default()
    };
    let (a, b) = (
        Kernel::start(1, KernelChannelSettings::default()).await,
        Kernel::start(2, settings).await,
    );
    b.trusts(&a);
    let hang = send(&a.node, &b.binding, "message", json!({"hang": true}), DEADLINE).await;
    assert!(matches!(hang, Err(SendError::Refused(Refusal::Timeout))), "{hang:?}");
    let mut idle = b.connect().await;
    let closed = tokio::time::timeout(DEADLINE, idle.read_line()).await.unwrap();
    assert!(matches!(closed, Err(SendError::Lost(_))), "{closed:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_busy() {
    let settings = KernelChannelSettings { max_connections: 1, ..KernelChannelSettings::default() };
    let (a, b) = (
        Kernel::start(1, KernelChannelSettings::default()).await,
        Kernel::start(2, settings).await,
    );
    b.trusts(&a);
    // The first connection is served and holds the only slot.
    let mut first = b.connect().await;
    let line = a.node.sign(&a.node.envelope(b.node.kernel_id(), "m", json!(1))).to_line();
    assert_eq!(b.reason(&first.exchange(&line, DEADLINE).await.unwrap()), "accepted");
    let mut second = b.connect().await;
    let raw = tokio::time::timeout(DEADLINE, second.read_line()).await.unwrap().unwrap();
    assert_eq!(b.reason(&raw), "busy");
    let busy = open_ack(&raw, &b.binding, a.node.kernel_id(), "some-id").unwrap();
    assert_eq!((busy.status, busy.reason.as_deref()), (AckStatus::Refused, Some("busy")));
    // Closing the first frees the slot (once the listener notices: poll).
    drop(first);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let body = loop {
        match send(&a.node, &b.binding, "message", json!(2), DEADLINE).await {
            Ok(body) => break body,
            Err(SendError::Refused(Refusal::Busy) | SendError::Lost(_)) => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(body["stored"].is_string());
    assert!(b.node.refusals().get("busy").is_some_and(|n| *n >= 1));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn stop_ends_serve_with_connections_open() {
    let (a, b) = pair().await;
    let _open = b.connect().await;
    let mut open = b.connect().await;
    assert!(send(&a.node, &b.binding, "m", Value::Null, DEADLINE).await.is_ok());
    b.stop().await;
    assert!(matches!(open.read_line().await, Err(SendError::Lost(_))));
    a.stop().await;
}
