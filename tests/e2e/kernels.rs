//! Trusted kernels and the kernel channel: `burrow kernels` (and its old name `burrow
//! peers`) manages trust; two kernels on loopback trust each other's binding files and a
//! session on one messages a keep-alive session on the other; forged, untrusted,
//! misaddressed, stale, replayed and oversize envelopes are refused with typed reasons.

use std::time::Duration;

use burrow_kernel::remote::{Binding, Envelope, KernelConnection, SignedEnvelope, sign_envelope};
use burrow_kernel::token::KernelKey;
use burrow_tests::{DEADLINE, Kernel, Rpc};
use serde_json::{Value, json};

const CONFIG: &str = "[ipc]\nheartbeat_timeout_ms = 60000\n";

/// A kernel listening for other kernels on loopback, its binding written to its directory.
async fn listening_kernel(name: &str) -> (Kernel, std::path::PathBuf) {
    let config = format!("{CONFIG}\n[comms]\nkernel_name = \"{name}\"\n");
    let binding = format!("{{dir}}/{name}.binding.json");
    let kernel = Kernel::start_with(
        &config,
        &[
            "--rpc-tcp",
            "127.0.0.1:0",
            "--comms-listen-tcp",
            "127.0.0.1:0",
            "--comms-advertise-tcp",
            "localhost:0",
            "--comms-binding-out",
            &binding,
        ],
    )
    .await;
    let binding = kernel.dir().join(format!("{name}.binding.json"));
    (kernel, binding)
}

async fn trust(kernel: &Kernel, binding: &std::path::Path) {
    let out = kernel.cli(&["kernels", "trust", binding.to_str().unwrap()]).await;
    assert!(out.status.success(), "kernels trust: {}", String::from_utf8_lossy(&out.stderr));
}

/// A binding of a kernel played by the test (its own key in `dir`), written to
/// `dir/me.json`.
fn test_binding(dir: &std::path::Path) -> (KernelKey, Binding, std::path::PathBuf) {
    let key = KernelKey::load_or_create(dir).unwrap();
    let me = Binding::new(key.verifying_key(), "tester", "127.0.0.1:9");
    let path = dir.join("me.json");
    std::fs::write(&path, serde_json::to_string(&me).unwrap()).unwrap();
    (key, me, path)
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn burrow_kernels_and_its_old_name_peers_manage_the_trusted_kernels() {
    let (k, _) = listening_kernel("alpha").await;
    let dir = tempfile::tempdir().unwrap();
    let (_key, me, me_file) = test_binding(dir.path());
    let short = &me.kernel_id[..12];

    let help = stdout(&k.cli(&["--help"]).await);
    assert!(help.contains("kernels") && help.contains("Manage the kernels this one trusts"));
    assert!(!help.contains("peers"), "the old name is a hidden alias: {help}");

    let listed = stdout(&k.cli(&["kernels"]).await);
    assert!(listed.contains("this kernel:") && listed.contains("no trusted kernels"), "{listed}");
    assert_eq!(stdout(&k.cli(&["peers"]).await), listed, "the alias lists the same");

    let trusted = stdout(&k.cli(&["peers", "trust", me_file.to_str().unwrap()]).await);
    assert_eq!(trusted.trim(), format!("trusted: tester ({short})"));
    let again = stdout(&k.cli(&["kernels", "trust", me_file.to_str().unwrap()]).await);
    assert_eq!(again.trim(), format!("updated: tester ({short})"));
    for name in ["kernels", "peers"] {
        let listed: Value =
            serde_json::from_str(&stdout(&k.cli(&[name, "list", "--json"]).await)).unwrap();
        assert_eq!(listed["trusted"][0]["kernel_id"], json!(me.kernel_id), "{name}: {listed}");
        let table = stdout(&k.cli(&[name, "list"]).await);
        assert!(table.contains(&format!("{short}  tester")), "{name}: {table}");
    }

    let revoked = stdout(&k.cli(&["kernels", "revoke", &me.kernel_id]).await);
    assert_eq!(revoked.trim(), format!("revoked: {}", me.kernel_id));
    let out = k.cli(&["peers", "revoke", &me.kernel_id]).await;
    assert!(!out.status.success(), "no longer trusted: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stdout(&k.cli(&["peers", "list"]).await).contains("no trusted kernels"));
}

#[tokio::test]
async fn a_session_messages_a_keep_alive_session_on_another_kernel() {
    let (a, a_binding) = listening_kernel("alpha").await;
    let (b, b_binding) = listening_kernel("beta").await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a_binding).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the binding file is owner-only");
    }
    let beta = Binding::read(&b_binding).unwrap();
    assert!(beta.address.starts_with("localhost:") && !beta.address.ends_with(":0"), "{beta:?}");
    trust(&a, &b_binding).await;
    trust(&b, &a_binding).await;
    let listed = a.cli(&["kernels", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["trusted"][0]["kernel_id"], json!(beta.kernel_id), "{listed}");
    assert_eq!(listed["last_contact"], json!({}), "not heard from yet: {listed}");

    let (_echo_a, _echo_b) = (a.echo_provider().await, b.echo_provider().await);
    let mut rpc_a = Rpc::connect(a.endpoint("rpc_tcp").await).await;
    let mut rpc_b = Rpc::connect(b.endpoint("rpc_tcp").await).await;
    let reviewer = rpc_b
        .ok(
            "session/create",
            json!({"prompt": "You review work.", "keep_alive": true, "comms_name": "reviewer"}),
        )
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let coordinator = rpc_a
        .ok(
            "session/create",
            json!({"prompt": "You coordinate.", "keep_alive": true, "comms_name": "coordinator"}),
        )
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let peers = rpc_a.ok("comms/peers", json!({"session_id": coordinator})).await;
    let remote =
        peers["peers"].as_array().unwrap().iter().find(|p| p["peer_id"] == json!(reviewer));
    let remote = remote.unwrap_or_else(|| panic!("the remote peer is not listed: {peers}"));
    assert_eq!(
        (remote["source"].clone(), remote["meta"]["kernel_id"].clone()),
        (json!("trusted"), json!(beta.kernel_id))
    );

    let receipt = rpc_a
        .ok("comms/send", json!({"session_id": coordinator, "kind": "peer_request", "to": reviewer, "body": "Please review PR 7."}))
        .await;
    // Acknowledged by the other kernel.
    assert_eq!(
        (receipt["kind"].clone(), receipt["delivery"].clone()),
        (json!("peer_request_sent"), json!("acked")),
        "{receipt}"
    );
    let request_id = receipt["request_id"].clone();
    rpc_b.assistant_text(&reviewer, "[peer_request from coordinator").await;

    // The answer travels back, correlated to the request.
    let answer = rpc_b
        .ok("comms/send", json!({"session_id": reviewer, "kind": "peer_response", "to": coordinator, "in_reply_to": request_id, "body": "LGTM"}))
        .await;
    assert_eq!(
        (answer["kind"].clone(), answer["delivery"].clone()),
        (json!("peer_response_sent"), json!("acked")),
        "{answer}"
    );
    let history = rpc_a.ok("session/history", json!({"session_id": coordinator})).await;
    let got = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["content"] == "LGTM" && m["metadata"]["comms"]["in_reply_to"] == request_id);
    assert!(got, "the response is not in the coordinator's transcript: {history}");

    // Each kernel recorded when it last heard from the other (its envelope, or its ack).
    for (k, other) in [(&a, &beta), (&b, &Binding::read(&a_binding).unwrap())] {
        let listed = k.cli(&["kernels", "list", "--json"]).await;
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        let at = listed["last_contact"][&other.kernel_id].as_u64();
        let now = burrow_protocol::now_ms();
        assert!(at.is_some_and(|at| at <= now && now - at < 120_000), "{listed}");
        let table = stdout(&k.cli(&["kernels", "list"]).await);
        assert!(table.contains("LAST CONTACT") && table.contains(" ago"), "{table}");
    }

    // Once beta stops trusting alpha, alpha's envelopes are refused.
    let alpha = Binding::read(&a_binding).unwrap();
    let out = b.cli(&["kernels", "revoke", &alpha.kernel_id]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = rpc_a
        .call("comms/send", json!({"session_id": coordinator, "kind": "peer_message", "to": reviewer, "body": "still there?"}))
        .await;
    assert_eq!(refused["error"]["data"]["reason"], "untrusted_sender", "{refused}");
}

/// Sends one raw line to `to` and returns the reason of the (signed) refusal, or
/// `"accepted"`.
async fn exchange(to: &Binding, line: &str) -> String {
    let mut conn = KernelConnection::connect(&to.address, DEADLINE, 1 << 20).await.unwrap();
    let raw = conn.exchange(line, DEADLINE).await.unwrap();
    let signed = SignedEnvelope::from_line(&raw).expect("a signed ack");
    assert!(signed.verify(&to.verifying_key().unwrap()), "the ack is signed by the receiver");
    let ack: Value = serde_json::from_str(&signed.payload).unwrap();
    match ack["status"].as_str() {
        Some("accepted") => "accepted".into(),
        _ => ack["reason"].as_str().unwrap_or("?").to_owned(),
    }
}

#[tokio::test]
async fn forged_untrusted_misaddressed_stale_replayed_and_oversize_envelopes_are_refused() {
    let (b, b_binding) = listening_kernel("beta").await;
    let beta = Binding::read(&b_binding).unwrap();
    let _echo = b.echo_provider().await;
    let mut rpc = Rpc::connect(b.endpoint("rpc_tcp").await).await;
    let target = rpc
        .ok("session/create", json!({"prompt": "hi", "keep_alive": true, "comms_name": "target"}))
        .await["session_id"]
        .clone();

    // A sender kernel played by the test: its own key, trusted by beta.
    let dir = tempfile::tempdir().unwrap();
    let (key, me, me_file) = test_binding(dir.path());
    trust(&b, &me_file).await;
    let letter = |body: &str| json!({"from": "tester-session", "from_name": "tester", "to": target, "kind": "peer_message", "body": body, "handling_mode": "queue"});
    let envelope =
        Envelope::new(&me.kernel_id, &beta.kernel_id, "comms", letter("signed and fresh"));
    let line = sign_envelope(key.signing_key(), &envelope).to_line();
    assert_eq!(exchange(&beta, &line).await, "accepted");
    assert_eq!(exchange(&beta, &line).await, "replayed");

    // A trusted kernel cannot speak for a session of the receiving kernel.
    let mut impostor = letter("I am you");
    impostor["from"] = target.clone();
    let impostor = Envelope::new(&me.kernel_id, &beta.kernel_id, "comms", impostor);
    assert_eq!(
        exchange(&beta, &sign_envelope(key.signing_key(), &impostor).to_line()).await,
        "forged_sender"
    );

    let mut forged = sign_envelope(
        key.signing_key(),
        &Envelope::new(&me.kernel_id, &beta.kernel_id, "comms", letter("original")),
    );
    forged.payload = forged.payload.replace("original", "tampered");
    assert_eq!(exchange(&beta, &forged.to_line()).await, "invalid_signature");

    let stranger = KernelKey::from_seed([7; 32]);
    let stranger_id = burrow_kernel::remote::kernel_id(stranger.verifying_key());
    let untrusted = Envelope::new(&stranger_id, &beta.kernel_id, "comms", letter("who am i"));
    assert_eq!(
        exchange(&beta, &sign_envelope(stranger.signing_key(), &untrusted).to_line()).await,
        "untrusted_sender"
    );

    let elsewhere = Envelope::new(&me.kernel_id, &stranger_id, "comms", letter("wrong kernel"));
    assert_eq!(
        exchange(&beta, &sign_envelope(key.signing_key(), &elsewhere).to_line()).await,
        "misaddressed"
    );

    let mut old = Envelope::new(&me.kernel_id, &beta.kernel_id, "comms", letter("from the past"));
    old.sent_at -= Duration::from_secs(600).as_millis() as u64;
    assert_eq!(exchange(&beta, &sign_envelope(key.signing_key(), &old).to_line()).await, "stale");

    let huge = Envelope::new(&me.kernel_id, &beta.kernel_id, "comms", letter(&"x".repeat(100_000)));
    assert_eq!(
        exchange(&beta, &sign_envelope(key.signing_key(), &huge).to_line()).await,
        "oversize"
    );

    // Only the good envelope reached the session; every refusal is counted.
    let history = rpc.ok("session/history", json!({"session_id": target})).await;
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metadata"]["comms"].is_object())
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["signed and fresh"], "{history}");
    let out = b.cli(&["kernels", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    for reason in
        ["replayed", "invalid_signature", "untrusted_sender", "misaddressed", "stale", "oversize"]
    {
        assert!(listed["refusals"][reason].as_u64() >= Some(1), "{reason} not counted: {listed}");
    }
}
