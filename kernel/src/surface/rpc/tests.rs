use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;
use crate::surface::auth::TokenStore;
use crate::surface::fake::FakeHost;

const DEADLINE: Duration = Duration::from_secs(5);

struct Peer {
    write: WriteHalf<DuplexStream>,
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    served: JoinHandle<()>,
}

fn start(host: Arc<FakeHost>, limits: RpcLimits) -> Peer {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (reader, writer) = tokio::io::split(server);
    let served = tokio::spawn(serve_connection(reader, writer, host, limits));
    let (read, write) = tokio::io::split(client);
    Peer { write, lines: BufReader::new(read).lines(), served }
}

impl Peer {
    async fn send(&mut self, text: &str) {
        self.write.write_all(text.as_bytes()).await.unwrap();
        self.write.write_all(b"\n").await.unwrap();
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line()).await;
        let line =
            line.expect("an answer within the deadline").unwrap().expect("an answer, not EOF");
        serde_json::from_str(&line).unwrap()
    }

    /// Ends input; returns every answer still written, then checks the connection closed.
    async fn finish(mut self) -> Vec<Value> {
        self.write.shutdown().await.unwrap();
        let mut answers = Vec::new();
        loop {
            let line = tokio::time::timeout(DEADLINE, self.lines.next_line()).await.unwrap();
            match line.unwrap() {
                Some(line) => answers.push(serde_json::from_str(&line).unwrap()),
                None => break,
            }
        }
        tokio::time::timeout(DEADLINE, self.served).await.unwrap().unwrap();
        answers
    }
}

fn request(id: Value, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

#[tokio::test]
async fn parse_errors_and_invalid_requests_are_answered_and_reading_goes_on() {
    let mut peer = start(Arc::new(FakeHost::new()), RpcLimits::default());
    peer.send("this is not json").await;
    let answer = peer.next().await;
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(answer["error"]["code"], -32700);
    assert_eq!(answer["error"]["data"]["code"], "INVALID_REQUEST");
    // The reserved key, where serde_json would take it as a plain key (not a map's first).
    peer.send(r#"{"jsonrpc":"2.0","id":9,"method":"echo","params":{"a":{"b":1,"$serde_json::private::RawValue":5}}}"#).await;
    let answer = peer.next().await;
    assert_eq!(answer["error"]["code"], -32700);
    assert!(answer["error"]["message"].as_str().unwrap().contains("reserved"), "{answer}");
    // A number out of a double's range, and NaN, which JSON has not: refused, not read as
    // null or an infinity (docs/protocol.md §2).
    for params in [r#"{"v":1e400}"#, r#"{"v":[-1e400]}"#, r#"{"v":NaN}"#] {
        peer.send(&format!(r#"{{"jsonrpc":"2.0","id":9,"method":"echo","params":{params}}}"#))
            .await;
        let answer = peer.next().await;
        assert_eq!(answer["error"]["code"], -32700, "{params}: {answer}");
        assert_eq!(answer["error"]["data"]["code"], "INVALID_REQUEST", "{params}: {answer}");
    }

    let cases = [
        (r#"{"jsonrpc":"1.0","id":1,"method":"echo"}"#, json!(1), -32600, "bad_version"),
        (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, json!(2), -32600, "bad_method"),
        (r#"{"jsonrpc":"2.0","id":{"x":1},"method":"echo"}"#, Value::Null, -32600, "bad_id"),
        (r#"5"#, Value::Null, -32600, "not_an_object"),
        (r#"[]"#, Value::Null, -32600, "empty_batch"),
        (
            r#"{"jsonrpc":"2.0","id":"p","method":"echo","params":"x"}"#,
            json!("p"),
            -32600,
            "bad_params",
        ),
    ];
    for (line, id, code, reason) in cases {
        peer.send(line).await;
        let answer = peer.next().await;
        assert_eq!(answer["jsonrpc"], "2.0", "{line}");
        assert_eq!(answer["id"], id, "{line}");
        assert_eq!(answer["error"]["code"], code, "{line}");
        assert_eq!(answer["error"]["data"]["reason"], reason, "{line}");
    }
    peer.send(r#"{"jsonrpc":"2.0","id":3,"method":"echo","params":[1,2]}"#).await;
    let answer = peer.next().await;
    assert_eq!(answer["error"]["code"], -32602);
    assert_eq!(answer["error"]["data"], json!({"code": "INVALID_PARAMS", "field": "params"}));

    // Omitted params are {}; the connection still serves.
    peer.send(r#"{"jsonrpc":"2.0","id":7,"method":"echo"}"#).await;
    assert_eq!(peer.next().await, json!({"jsonrpc": "2.0", "id": 7, "result": {}}));
    assert!(peer.finish().await.is_empty());
}

#[tokio::test]
async fn host_errors_keep_their_burrow_code_in_data() {
    let mut peer = start(Arc::new(FakeHost::new()), RpcLimits::default());
    peer.send(&request(json!(1), "fail", json!({}))).await;
    let answer = peer.next().await;
    assert_eq!(answer["id"], 1);
    assert_eq!(
        answer["error"],
        json!({"code": -32044, "message": "no such session",
               "data": {"code": "NOT_FOUND", "session_id": "s0"}})
    );
    peer.send(&request(json!(2), "fail_text", json!({}))).await;
    let answer = peer.next().await;
    assert_eq!(answer["error"]["code"], -32009);
    assert_eq!(answer["error"]["data"], json!({"code": "CONFLICT", "detail": "already there"}));

    peer.send(&request(json!(3), "no/such", json!({}))).await;
    let answer = peer.next().await;
    assert_eq!(answer["error"]["code"], -32601);
    assert_eq!(answer["error"]["data"]["code"], "METHOD_NOT_FOUND");

    peer.send(&request(json!(4), "panic", json!({}))).await;
    let answer = peer.next().await;
    assert_eq!(answer["error"]["code"], -32603);
    peer.send(&request(json!(5), "echo", json!({"still": "here"}))).await;
    assert_eq!(peer.next().await["result"], json!({"still": "here"}));
}

#[tokio::test]
async fn requests_are_answered_as_they_finish() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone(), RpcLimits::default());
    peer.send(&request(json!("slow-1"), "slow", json!({}))).await;
    peer.send(&request(json!(2), "echo", json!({"n": 2}))).await;
    assert_eq!(peer.next().await, json!({"jsonrpc": "2.0", "id": 2, "result": {"n": 2}}));
    host.release();
    assert_eq!(peer.next().await, json!({"jsonrpc": "2.0", "id": "slow-1", "result": "slow done"}));
}

#[tokio::test]
async fn the_peers_answers_to_the_kernels_requests_reach_them_and_are_never_answered() {
    let mut peer = start(Arc::new(FakeHost::new()), RpcLimits::default());
    for (n, reply) in
        [json!({"result": {"yes": 1}}), json!({"error": {"code": -1, "message": "no"}})]
            .into_iter()
            .enumerate()
    {
        peer.send(&request(json!(n), "ask", json!({"q": n}))).await;
        let asked = peer.next().await;
        assert_eq!(
            (asked["method"].clone(), asked["params"].clone()),
            (json!("peer/question"), json!({"q": n}))
        );
        let mut answer = json!({"jsonrpc": "2.0", "id": asked["id"]});
        answer.as_object_mut().unwrap().extend(reply.as_object().unwrap().clone());
        peer.send(&answer.to_string()).await;
        let done = peer.next().await;
        assert_eq!(done["id"], json!(n));
        match n {
            0 => assert_eq!(done["result"], json!({"yes": 1})),
            _ => {
                assert_eq!(done["error"]["message"], "no", "{done}");
                assert_eq!(done["error"]["data"]["code"], "UNKNOWN_ERROR", "{done}");
            }
        }
    }
    // An answer to nothing the kernel asked is dropped, in a batch too; a message with
    // neither a method nor an outcome is still an invalid request.
    peer.send(r#"{"jsonrpc":"2.0","id":"srv-99","result":{}}"#).await;
    peer.send(r#"[{"jsonrpc":"2.0","id":"srv-98","error":{"code":1,"message":"x"}}]"#).await;
    peer.send(r#"{"jsonrpc":"2.0","id":5}"#).await;
    let answer = peer.next().await;
    assert_eq!(
        (answer["id"].clone(), answer["error"]["data"]["reason"].clone()),
        (json!(5), json!("bad_method"))
    );
    assert!(peer.finish().await.is_empty(), "nothing else was answered");
}

#[tokio::test]
async fn notifications_run_without_an_answer() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone(), RpcLimits::default());
    peer.send(r#"{"jsonrpc":"2.0","method":"note","params":{"n":1}}"#).await;
    peer.send(r#"{"jsonrpc":"2.0","method":"fail"}"#).await;
    peer.send("").await;
    peer.send(&request(Value::Null, "echo", json!({"id": "null"}))).await;
    // `"id": null` is a request, not a notification.
    assert_eq!(peer.next().await, json!({"jsonrpc": "2.0", "id": null, "result": {"id": "null"}}));
    let calls = host.wait_calls(3).await;
    assert!(calls.contains(&("note".to_owned(), json!({"n": 1}))));
    assert!(peer.finish().await.is_empty());
}

#[tokio::test]
async fn batches_are_answered_with_one_array() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone(), RpcLimits::default());
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"a": 1}},
        {"jsonrpc": "2.0", "method": "note"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        1,
    ]);
    peer.send(&batch.to_string()).await;
    let answer = peer.next().await;
    let answers = answer.as_array().expect("an array");
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}));
    assert_eq!(answers[1]["error"]["code"], -32600);
    assert_eq!(answers[2]["id"], 3);
    assert_eq!(answers[2]["error"]["code"], -32601);
    assert_eq!(answers[3]["error"]["code"], -32600);

    // A batch of notifications is not answered at all.
    let notes = json!([{"jsonrpc": "2.0", "method": "note"}, {"jsonrpc": "2.0", "method": "note"}]);
    peer.send(&notes.to_string()).await;
    host.wait_calls(5).await;
    assert!(peer.finish().await.is_empty());
}

#[tokio::test]
async fn an_oversize_line_is_answered_and_the_next_line_served() {
    let limits = RpcLimits { max_line_bytes: 1024, ..RpcLimits::default() };
    let mut peer = start(Arc::new(FakeHost::new()), limits);
    let huge = request(json!(1), "echo", json!({"pad": "x".repeat(100_000)}));
    peer.send(&huge).await;
    peer.send(&request(json!(2), "echo", json!({"small": true}))).await;
    let answer = peer.next().await;
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(answer["error"]["code"], -32600);
    assert_eq!(answer["error"]["data"]["reason"], "oversize");
    assert_eq!(answer["error"]["data"]["max_bytes"], 1024);
    assert_eq!(peer.next().await["result"], json!({"small": true}));

    // Not UTF-8: a parse error, and reading goes on.
    peer.write.write_all(b"{\"a\": \"\xff\xfe\"}\n").await.unwrap();
    assert_eq!(peer.next().await["error"]["code"], -32700);
    peer.send(&request(json!(3), "echo", json!({}))).await;
    assert_eq!(peer.next().await["id"], 3);
}

#[tokio::test]
async fn in_flight_calls_are_bounded_by_not_reading() {
    let host = Arc::new(FakeHost::new());
    let limits = RpcLimits { max_in_flight: 2, ..RpcLimits::default() };
    let mut peer = start(host.clone(), limits);
    peer.send(&request(json!(1), "slow", json!({}))).await;
    peer.send(&request(json!(2), "slow", json!({}))).await;
    peer.send(&request(json!(3), "echo", json!({}))).await;
    host.wait_calls(2).await;
    // The third waits for a free slot: no answer, no call, no error.
    let early = tokio::time::timeout(Duration::from_millis(200), peer.lines.next_line()).await;
    assert!(early.is_err(), "answered early: {early:?}");
    assert_eq!(host.calls().len(), 2);
    host.release();
    let mut ids: Vec<i64> = Vec::new();
    for _ in 0..3 {
        ids.push(peer.next().await["id"].as_i64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, [1, 2, 3]);
}

#[tokio::test]
async fn end_of_input_waits_for_the_answers_owed() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone(), RpcLimits::default());
    peer.send(&request(json!(1), "slow", json!({}))).await;
    host.wait_calls(1).await;
    peer.write.shutdown().await.unwrap();
    host.release();
    let answers = peer.finish().await;
    assert_eq!(answers, [json!({"jsonrpc": "2.0", "id": 1, "result": "slow done"})]);
}

#[tokio::test]
async fn an_http_request_closes_the_connection() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone(), RpcLimits::default());
    peer.send("POST / HTTP/1.1").await;
    peer.send("Host: 127.0.0.1:4000").await;
    peer.send(&request(json!(1), "echo", json!({}))).await;
    let end = tokio::time::timeout(DEADLINE, peer.lines.next_line()).await.unwrap();
    assert!(end.unwrap().is_none(), "closed without an answer");
    assert!(host.calls().is_empty());
}

struct TcpPeer {
    write: tokio::net::tcp::OwnedWriteHalf,
    lines: Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
}

impl TcpPeer {
    async fn connect(addr: std::net::SocketAddr) -> TcpPeer {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        TcpPeer { write, lines: BufReader::new(read).lines() }
    }

    async fn send(&mut self, text: &str) {
        self.write.write_all(format!("{text}\n").as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(DEADLINE, self.lines.next_line()).await.unwrap().unwrap();
        line.map(|l| serde_json::from_str(&l).unwrap())
    }
}

#[tokio::test]
async fn tcp_requires_rpc_authenticate_first_when_a_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let token = TokenStore::create(dir.path()).unwrap().token;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = Arc::new(Auth::new(&addr, true, TokenStore::open(dir.path()).unwrap()));
    let host = Arc::new(FakeHost::new());
    let stop = CancellationToken::new();
    let server =
        tokio::spawn(serve_tcp(listener, host.clone(), auth, RpcLimits::default(), stop.clone()));

    let mut peer = TcpPeer::connect(addr).await;
    peer.send(r#"{"jsonrpc":"2.0","method":"note"}"#).await;
    peer.send(&request(json!(1), "echo", json!({}))).await;
    let answer = peer.next().await.unwrap();
    assert_eq!(answer["error"]["code"], -32040);
    assert_eq!(
        answer["error"]["data"],
        json!({"code": "UNAUTHORIZED", "reason": "token_required"})
    );

    peer.send(&request(json!(2), AUTHENTICATE, json!({"token": "brw_wrong"}))).await;
    let answer = peer.next().await.unwrap();
    assert_eq!(answer["error"]["code"], -32040);
    assert_eq!(answer["error"]["data"]["reason"], "invalid_token");

    // Pipelined right behind the authentication, in one write.
    let both = format!(
        "{}\n{}",
        request(json!(3), AUTHENTICATE, json!({"token": token})),
        request(json!(4), "echo", json!({"in": true}))
    );
    peer.send(&both).await;
    assert_eq!(
        peer.next().await.unwrap(),
        json!({"jsonrpc": "2.0", "id": 3, "result": {"ok": true}})
    );
    assert_eq!(peer.next().await.unwrap()["result"], json!({"in": true}));
    assert_eq!(host.calls().len(), 1, "nothing ran before authenticating: {:?}", host.calls());

    // Another connection starts unauthenticated.
    let mut other = TcpPeer::connect(addr).await;
    other.send(&request(json!(1), "echo", json!({}))).await;
    assert_eq!(other.next().await.unwrap()["error"]["code"], -32040);

    stop.cancel();
    tokio::time::timeout(DEADLINE, server).await.expect("serve_tcp ends on stop").unwrap();
    assert_eq!(peer.next().await, None);
}

#[tokio::test]
async fn a_connection_that_does_not_authenticate_in_time_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    TokenStore::create(dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = Arc::new(Auth::new(&addr, true, TokenStore::open(dir.path()).unwrap()));
    let limits = RpcLimits { auth_deadline: Duration::from_millis(200), ..RpcLimits::default() };
    let stop = CancellationToken::new();
    let server =
        tokio::spawn(serve_tcp(listener, Arc::new(FakeHost::new()), auth, limits, stop.clone()));
    let mut silent = TcpPeer::connect(addr).await;
    assert_eq!(silent.next().await, None, "the silent connection was not closed");
    stop.cancel();
    tokio::time::timeout(DEADLINE, server).await.expect("serve_tcp ends on stop").unwrap();
}

#[tokio::test]
async fn tcp_on_loopback_needs_no_token_and_stop_waits_for_answers() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = Arc::new(Auth::new(&addr, false, TokenStore::open(dir.path()).unwrap()));
    let host = Arc::new(FakeHost::new());
    let stop = CancellationToken::new();
    let server =
        tokio::spawn(serve_tcp(listener, host.clone(), auth, RpcLimits::default(), stop.clone()));

    let mut peer = TcpPeer::connect(addr).await;
    peer.send(&request(json!(1), "echo", json!({"open": true}))).await;
    assert_eq!(peer.next().await.unwrap()["result"], json!({"open": true}));
    peer.send(&request(json!(2), "slow", json!({}))).await;
    host.wait_calls(2).await;
    stop.cancel();
    host.release();
    assert_eq!(peer.next().await.unwrap()["result"], "slow done");
    assert_eq!(peer.next().await, None);
    tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_batch_is_bounded_in_items_and_its_answer_in_bytes() {
    let host = Arc::new(FakeHost::new());
    let mut peer = start(host.clone(), RpcLimits::default());
    // Too many items: one error, nothing run.
    let items = vec![json!(1); message::MAX_BATCH_ITEMS + 1];
    peer.send(&Value::Array(items).to_string()).await;
    let answer = peer.next().await;
    assert_eq!(answer["error"]["data"]["reason"], "batch_too_large", "{answer}");
    assert!(host.calls().is_empty());
    // Once the answer has reached its bound, the calls not yet run are refused, small
    // ones too (one at a time here, so the count is exact).
    let pad = "x".repeat(1024);
    let calls: Vec<Value> = (0..20)
        .map(|n| json!({"jsonrpc": "2.0", "id": n, "method": "echo", "params": {"pad": pad}}))
        .collect();
    let triaged = triage(&Value::Array(calls).to_string(), &mut Gate::trusted());
    let answer = complete(&*host, triaged, 1, 8 * 1024, &crate::surface::Link::none())
        .await
        .expect("an answer");
    let answers = answer.as_array().expect("an array");
    assert_eq!(answers.len(), 20);
    let refused = answers.iter().filter(|a| a["error"]["data"]["reason"] == "batch_too_large");
    let answered = answers.iter().filter(|a| a["result"].is_object()).count();
    // Each answer takes a little over 1 KiB: the eighth reaches 8 KiB.
    assert_eq!((answered, refused.count()), (8, 12), "{answer}");
}
