//! Comms between sessions of one kernel, without sockets ([`crate::service::testing`]).

use burrow_protocol::ErrorObject;
use burrow_protocol::methods::comms::{
    CommsKind, CommsPeersParams, CommsSendParams, SessionCreateParams,
};
use serde_json::json;

use super::*;
use crate::service::Caller;
use crate::service::sessions::{self, HistoryQuery};
use crate::service::testing::fixture;

async fn session(kernel: &Arc<Kernel>, name: Option<&str>) -> String {
    let p = SessionCreateParams {
        prompt: "start".into(),
        keep_alive: true,
        comms_name: name.map(str::to_owned),
        agent_id: None,
        wait: Some(false),
        timeout_ms: None,
    };
    sessions::create(kernel, &Caller::new("tester"), p).await.unwrap().session_id
}

fn send(from: &str, kind: CommsKind, to: Option<&str>, body: &str) -> CommsSendParams {
    CommsSendParams {
        session_id: from.into(),
        kind,
        to: to.map(str::to_owned),
        body: json!(body),
        handling_mode: None,
        in_reply_to: None,
    }
}

fn refusal(e: ServiceError) -> (String, String) {
    match e {
        ServiceError::Refused { reason, .. } => (reason, String::new()),
        ServiceError::InvalidParams { field, .. } => (String::new(), field),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn peers_see_each_other_and_a_message_lands_in_the_transcript() {
    let f = fixture().await;
    let k = &f.kernel;
    let (a, b) = (session(k, Some("alice")).await, session(k, Some("bob")).await);
    let loner = session(k, None).await;

    let seen = peers(k, CommsPeersParams { session_id: a.clone() }).await.unwrap();
    let names: Vec<&str> = seen.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["bob"], "a session's peers are the others with a comms name");

    let receipt = send_as(k, send(&a, CommsKind::PeerMessage, Some(&b), "hi bob")).await.unwrap();
    assert_eq!((receipt.status.as_str(), receipt.to.as_str()), ("delivered", b.as_str()));
    let page = sessions::history(k, &b, HistoryQuery::default()).await.unwrap();
    assert!(
        page.messages.iter().any(|m| m.id == receipt.message_id && m.content.contains("hi bob"))
    );

    let e = send_as(k, send(&loner, CommsKind::PeerMessage, Some(&b), "x")).await.unwrap_err();
    assert_eq!(refusal(e).0, "not_a_peer");
    let e = send_as(k, send(&a, CommsKind::PeerMessage, Some(&a), "x")).await.unwrap_err();
    assert_eq!(refusal(e).0, "self_addressed");
}

#[tokio::test]
async fn bad_commands_name_their_field() {
    let f = fixture().await;
    let k = &f.kernel;
    let (a, b) = (session(k, Some("alice")).await, session(k, Some("bob")).await);
    for (p, field) in [
        (send(&a, CommsKind::Input, Some(&b), "x"), "to"),
        (send(&a, CommsKind::Input, None, "  "), "body"),
        (send(&a, CommsKind::PeerMessage, None, "x"), "to"),
        (send(&a, CommsKind::PeerResponse, Some(&b), "x"), "in_reply_to"),
    ] {
        assert_eq!(refusal(send_as(k, p).await.unwrap_err()).1, field);
    }
    let mut answer = send(&a, CommsKind::PeerResponse, Some(&b), "x");
    answer.in_reply_to = Some("no-such-request".into());
    let e = ErrorObject::from(send_as(k, answer).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    let e = send_as(k, send("nobody", CommsKind::Input, None, "x")).await.unwrap_err();
    assert!(matches!(e, ServiceError::UnknownSession(_)));
}

async fn send_as(kernel: &Arc<Kernel>, p: CommsSendParams) -> Result<CommsReceipt, ServiceError> {
    super::send(kernel, "tester", p).await
}
