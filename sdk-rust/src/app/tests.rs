use std::sync::atomic::{AtomicUsize, Ordering};

use burrow_protocol::methods::app::KernelInfo;
use burrow_protocol::methods::config::{ConfigGet, ConfigGetResult};
use serde_json::json;
use tokio::sync::oneshot;

use super::*;
use crate::testing::{FakeConfig, FakeKernel};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("timed out")
}

fn app() -> App {
    App::new(Manifest::new("tester", "0.1.0"))
        .on_request("tester.echo", |params, _cx| async move { Ok(params) })
        .on_request("tester.whoami", |_params, cx| async move {
            let info = cx.client().call::<KernelInfo>(Default::default()).await?;
            Ok(json!({ "appId": cx.app_id(), "method": cx.method(), "kernel": info.version }))
        })
        .on_request("tester.panic", |_params, _cx| async move { panic!("handler bug") })
        .on::<ConfigGet, _, _>(|params, _cx| async move {
            Ok(ConfigGetResult { value: json!(params.path), origins: None })
        })
}

/// Runs `app` on a fake kernel until the returned sender fires.
fn start(app: App) -> (FakeKernel, oneshot::Sender<()>, tokio::task::JoinHandle<Result<()>>) {
    let (kernel, transport) = FakeKernel::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(app.run_on(transport, async move {
        let _ = stopped.await;
    }));
    (kernel, stop, run)
}

#[tokio::test]
async fn registers_becomes_ready_and_heartbeats() {
    let (kernel, _stop, _run) = start(app());
    within(kernel.wait_ready(WAIT)).await.unwrap();
    let registrations = kernel.registrations();
    assert_eq!(registrations.len(), 1);
    assert_eq!(registrations[0].protocol_version, PROTOCOL_VERSION);
    assert_eq!(registrations[0].token, None);
    assert_eq!(kernel.manifest().unwrap().id, "tester");
    within(kernel.wait_heartbeats(3, WAIT)).await.unwrap();
}

#[tokio::test]
async fn a_plain_client_keeps_itself_alive_at_the_pace_kernel_info_reports() {
    let config = FakeConfig { heartbeat_interval: Duration::from_millis(20), ..Default::default() };
    let (kernel, transport) = FakeKernel::with_config(config);
    let client = Client::from_transport(transport);
    client.keep_alive();
    // Unregistered, and heartbeating: several within a few intervals.
    within(kernel.wait_heartbeats(3, WAIT)).await.unwrap();
    assert!(kernel.manifest().is_none());
    // The last clone gone, the heartbeats end with the connection.
    drop(client);
    let seen = kernel.heartbeats();
    within(kernel.wait_heartbeats(seen + 5, Duration::from_millis(400))).await.unwrap_err();
}

#[tokio::test]
async fn handlers_answer_the_kernel_and_can_call_it() {
    let (kernel, _stop, _run) = start(app());
    within(kernel.wait_ready(WAIT)).await.unwrap();
    let echo = kernel.request("tester.echo", json!({"x": 1})).await.unwrap();
    assert_eq!(echo, json!({"x": 1}));
    let who = kernel.request("tester.whoami", json!({})).await.unwrap();
    assert_eq!(who, json!({"appId": "tester", "method": "tester.whoami", "kernel": "fake"}));
    let typed = kernel.request("config.get", json!({"path": "a.b"})).await.unwrap();
    assert_eq!(typed, json!({"value": "a.b"}));
    let bad = kernel.request("config.get", json!({"path": 5})).await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::InvalidParams));
}

#[tokio::test]
async fn unknown_methods_and_panics_are_errors_and_the_app_keeps_serving() {
    let (kernel, _stop, run) = start(app());
    within(kernel.wait_ready(WAIT)).await.unwrap();
    let missing = kernel.request("tester.nope", json!({})).await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::MethodNotFound));
    let panicked = kernel.request("tester.panic", json!({})).await.unwrap_err();
    assert_eq!(panicked.code(), Some(ErrorCode::InternalError));
    let echo = kernel.request("tester.echo", json!(1)).await.unwrap();
    assert_eq!(echo, json!(1));
    assert!(!run.is_finished());
}

#[tokio::test]
async fn the_kernels_shutdown_ends_the_run_with_ok() {
    let (kernel, _stop, run) = start(app());
    within(kernel.wait_ready(WAIT)).await.unwrap();
    kernel.shutdown_app().await.unwrap();
    within(run).await.unwrap().unwrap();
    within(kernel.wait_disconnected(WAIT)).await.unwrap();
}

#[tokio::test]
async fn our_shutdown_tells_the_kernel() {
    let (kernel, stop, run) = start(app());
    within(kernel.wait_ready(WAIT)).await.unwrap();
    stop.send(()).unwrap();
    let params = within(kernel.wait_app_shutdown(WAIT)).await.unwrap();
    assert!(params.reason.is_some());
    within(run).await.unwrap().unwrap();
    assert!(!kernel.is_ready());
}

#[tokio::test]
async fn on_ready_gets_a_client_that_knows_the_app_id() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let seen_tx = std::sync::Mutex::new(Some(seen_tx));
    let app = app().on_ready(move |client| {
        let tx = seen_tx.lock().unwrap().take();
        async move {
            if let Some(tx) = tx {
                let _ = tx.send(client.app_id().map(str::to_owned));
            }
        }
    });
    let (_kernel, _stop, _run) = start(app);
    assert_eq!(within(seen_rx).await.unwrap().as_deref(), Some("tester"));
}

#[tokio::test]
async fn a_refused_registration_is_a_startup_error() {
    let config = FakeConfig {
        refuse_registration: Some(ErrorObject::new(ErrorCode::Conflict, "taken")),
        ..FakeConfig::default()
    };
    let (_kernel, transport) = FakeKernel::with_config(config);
    let err = within(app().run_on(transport, std::future::pending())).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict));
}

#[tokio::test]
async fn losing_the_kernel_ends_run_on_with_an_error() {
    let (kernel, _stop, run) = start(app());
    within(kernel.wait_ready(WAIT)).await.unwrap();
    kernel.disconnect().await;
    let err = within(run).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}

#[tokio::test]
async fn mistakes_fail_before_connecting() {
    let (_kernel, transport) = FakeKernel::new();
    let bad_manifest = App::new(Manifest::new("Bad Id", "0.1.0"));
    let err = bad_manifest.run_on(transport, std::future::pending()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidManifest(_)), "{err:?}");

    let (_kernel, transport) = FakeKernel::new();
    let twice = app().on_request("tester.echo", |p, _| async move { Ok(p) });
    let err = twice.run_on(transport, std::future::pending()).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");

    let nowhere = app().socket("/nonexistent/burrow/kernel.sock");
    let err = within(nowhere.run_until(std::future::pending())).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
}

#[cfg(unix)]
mod reconnect {
    use interprocess::local_socket::tokio::prelude::*;
    use interprocess::local_socket::{GenericFilePath, ListenerOptions};

    use super::*;

    fn listen(path: &std::path::Path) -> LocalSocketListener {
        let name = path.to_fs_name::<GenericFilePath>().unwrap();
        ListenerOptions::new().name(name).create_tokio().unwrap()
    }

    async fn accept(listener: &LocalSocketListener, config: FakeConfig) -> FakeKernel {
        let stream = within(listener.accept()).await.unwrap();
        let (r, w) = tokio::io::split(stream);
        let transport = Transport::new(r, w, burrow_protocol::codec::MAX_FRAME_BYTES);
        FakeKernel::serve(transport, config)
    }

    fn fast() -> ReconnectPolicy {
        ReconnectPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn reconnects_with_the_token_and_falls_back_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel.sock");
        let listener = listen(&path);
        let readies = Arc::new(AtomicUsize::new(0));
        let counter = readies.clone();
        let app = app().socket(&path).reconnect(fast()).on_ready(move |_client| {
            counter.fetch_add(1, Ordering::AcqRel);
            async {}
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));

        let first = accept(&listener, FakeConfig::default()).await;
        within(first.wait_ready(WAIT)).await.unwrap();
        first.disconnect().await;

        // The second kernel has a new key: it refuses the old token.
        let config = FakeConfig { reject_tokens: true, ..FakeConfig::default() };
        let second = accept(&listener, config).await;
        within(second.wait_ready(WAIT)).await.unwrap();
        let tokens: Vec<_> = second.registrations().into_iter().map(|r| r.token).collect();
        assert_eq!(tokens, [Some("fake-token-tester-1".to_owned()), None]);
        second.disconnect().await;

        // The third kernel accepts the token the second one gave.
        let third = accept(&listener, FakeConfig::default()).await;
        within(third.wait_ready(WAIT)).await.unwrap();
        let token = third.registrations()[0].token.clone();
        assert_eq!(token.as_deref(), Some("fake-token-tester-2"));

        stop.send(()).unwrap();
        within(third.wait_app_shutdown(WAIT)).await.unwrap();
        within(run).await.unwrap().unwrap();
        let count = readies.load(Ordering::Acquire);
        assert!(count >= 2, "on_ready ran {count} times");
    }

    #[tokio::test]
    async fn declares_everything_again_after_reconnecting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel.sock");
        let listener = listen(&path);
        let app = app()
            .socket(&path)
            .reconnect(fast())
            .tool("t", "a tool", json!({}), |args, _cx| async move {
                Ok(burrow_protocol::methods::invoke::ToolResult { content: args, is_error: None })
            })
            .intercept("before_tool_call", 0, |_event| async {
                burrow_protocol::methods::hook::HookVerdict::Continue
            });
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let first = accept(&listener, FakeConfig::default()).await;
        within(first.wait_ready(WAIT)).await.unwrap();
        first.disconnect().await;

        let second = accept(&listener, FakeConfig::default()).await;
        within(second.wait_ready(WAIT)).await.unwrap();
        let register = "capability.register";
        let expected = ["app.register", "hook.subscribe", register, register, "app.ready"];
        assert_eq!(second.calls(), expected);
        assert_eq!(second.subscriptions(), ["before_tool_call"]);
        assert!(second.capabilities().iter().all(|c| c.result.granted));
        let echoed = second.invoke_tool("t", json!(7)).await.unwrap();
        assert_eq!(echoed.content, json!(7));

        stop.send(()).unwrap();
        within(run).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn gives_up_when_the_kernel_stays_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel.sock");
        let listener = listen(&path);
        let policy = ReconnectPolicy { max_elapsed: Duration::from_millis(200), ..fast() };
        let run =
            tokio::spawn(app().socket(&path).reconnect(policy).run_until(std::future::pending()));
        let kernel = accept(&listener, FakeConfig::default()).await;
        within(kernel.wait_ready(WAIT)).await.unwrap();
        drop(listener);
        kernel.disconnect().await;
        let err = within(run).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ReconnectFailed { .. }), "{err:?}");
    }
}
