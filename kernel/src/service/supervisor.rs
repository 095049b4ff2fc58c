//! Managed apps, for operators: start, stop or restart one (the supervisor actor does
//! it and says how it went), and its captured log — the last lines, then new ones
//! (`supervisor.logs`), or the last lines at once (`supervisor.tail`).

use std::time::Duration;

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::operator::{AppIdParams, LogsParams, TailParams, TailResult};
use tokio::sync::{broadcast, oneshot};

use super::ServiceError;
use crate::kernel::Kernel;
use crate::supervisor::{Control, SupervisorMsg, logs};

/// How long the supervisor may take to say how a start, stop or restart went: a start
/// is answered once the app runs (has registered) or has failed.
const CONTROL_DEADLINE: Duration = Duration::from_secs(30);

/// The most lines of a log's tail.
pub const MAX_TAIL_LINES: usize = 10_000;

/// Starts, stops or restarts managed app `p.app_id`.
pub async fn control(
    kernel: &Kernel,
    control: Control,
    p: AppIdParams,
) -> Result<Ack, ServiceError> {
    let supervisor = kernel
        .supervisor()
        .ok_or_else(|| ServiceError::NotFound("no supervisor is running".into()))?;
    let (tx, rx) = oneshot::channel();
    let id = p.app_id.clone();
    let _ = supervisor.cast(SupervisorMsg::Control(p.app_id, control, tx));
    match tokio::time::timeout(CONTROL_DEADLINE, rx).await {
        Ok(Ok(result)) => result.map(|()| Ack::OK).map_err(ServiceError::Passed),
        Ok(Err(_)) => {
            Err(ServiceError::Internal("the supervisor stopped (the kernel is stopping)".into()))
        }
        Err(_) => Err(ServiceError::Timeout(format!(
            "the {} of {id} has not taken effect after {} s; `burrow apps` and `burrow logs {id}` \
             show how it goes",
            format!("{control:?}").to_lowercase(),
            CONTROL_DEADLINE.as_secs()
        ))),
    }
}

/// An app's captured log: its last lines, and (when following) the lines that come
/// after them.
#[derive(Debug)]
pub struct Log {
    /// The last lines, oldest first.
    pub tail: Vec<String>,
    /// New lines, when following (subscribed before the tail was read, so none falls
    /// between the two).
    pub feed: Option<broadcast::Receiver<String>>,
}

/// App `p.app_id`'s captured log (`NOT_FOUND` if it is not managed and left none).
pub async fn log(kernel: &Kernel, p: &LogsParams) -> Result<Log, ServiceError> {
    if !burrow_protocol::manifest::is_valid_app_id(&p.app_id) {
        return Err(ServiceError::invalid("appId", "not a valid app id"));
    }
    let path = logs::log_path(&kernel.paths.state_dir, &p.app_id);
    let known = kernel.managed().iter().any(|m| m.app_id == p.app_id);
    if !known && !path.exists() {
        return Err(ServiceError::NotFound(format!("no captured log for {:?}", p.app_id)));
    }
    let feed =
        p.follow.then(|| kernel.existing_log_feed(&p.app_id)).flatten().map(|f| f.subscribe());
    let (lines, keep) = (p.lines.min(MAX_TAIL_LINES), kernel.config().supervisor.log_files);
    let tail = tokio::task::spawn_blocking(move || logs::tail(&path, lines, keep))
        .await
        .unwrap_or_default();
    Ok(Log { tail, feed })
}

/// `supervisor.tail`: app `p.app_id`'s last log lines, at once (as [`log`], not
/// following).
pub async fn tail(kernel: &Kernel, p: TailParams) -> Result<TailResult, ServiceError> {
    let p = LogsParams { app_id: p.app_id, lines: p.lines, follow: false };
    Ok(TailResult { lines: log(kernel, &p).await?.tail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::fixture;

    #[tokio::test]
    async fn logs_are_found_only_for_valid_known_apps_and_control_needs_a_supervisor() {
        let f = fixture().await;
        let p = |app: &str| LogsParams { app_id: app.into(), lines: 5, follow: false };
        let e = log(&f.kernel, &p("Not Valid")).await.unwrap_err();
        assert!(
            matches!(e, ServiceError::InvalidParams { ref field, .. } if field == "appId"),
            "{e:?}"
        );
        let e = log(&f.kernel, &p("ghost")).await.unwrap_err();
        assert!(matches!(e, ServiceError::NotFound(_)), "{e:?}");

        let path = logs::log_path(&f.kernel.paths.state_dir, "left");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let found = log(&f.kernel, &LogsParams { lines: 2, ..p("left") }).await.unwrap();
        assert_eq!(found.tail, ["two", "three"]);
        assert!(found.feed.is_none());
        let tailed = tail(&f.kernel, TailParams { app_id: "left".into(), lines: 1 }).await;
        assert_eq!(tailed.unwrap().lines, ["three"]);
        let e = tail(&f.kernel, TailParams { app_id: "ghost".into(), lines: 1 }).await;
        assert!(matches!(e, Err(ServiceError::NotFound(_))), "{e:?}");

        let e = control(&f.kernel, Control::Start, AppIdParams { app_id: "x".into() }).await;
        assert!(matches!(e, Err(ServiceError::NotFound(_))), "{e:?}");
    }
}
