//! Helpers shared by the crate's unit tests.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::testing::{FakeConfig, FakeKernel};
use crate::{App, Result};

/// The bound of every wait in tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after [`WAIT`].
pub(crate) async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("timed out")
}

/// An app running on a fake kernel until `stop` fires.
pub(crate) struct Running {
    pub(crate) kernel: FakeKernel,
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) run: tokio::task::JoinHandle<Result<()>>,
}

/// Runs `app` on a fake kernel with `config`.
pub(crate) fn start_with(app: App, config: FakeConfig) -> Running {
    let (kernel, transport) = FakeKernel::with_config(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(app.run_on(transport, async move {
        let _ = stopped.await;
    }));
    Running { kernel, stop, run }
}

/// Runs `app` on a default fake kernel and waits until it is ready.
pub(crate) async fn start_ready(app: App) -> Running {
    let running = start_with(app, FakeConfig::default());
    within(running.kernel.wait_ready(WAIT)).await.unwrap();
    running
}

/// Adds an `on_ready` to `app` that hands out the app's client the first time it is ready.
pub(crate) fn with_client(app: App) -> (App, oneshot::Receiver<crate::Client>) {
    let (tx, rx) = oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let app = app.on_ready(move |client| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(client);
        }
        async {}
    });
    (app, rx)
}
