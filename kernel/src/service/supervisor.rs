//! Managed apps, for operators: start, stop or restart one (the supervisor actor does
//! it and says how it went), and its captured log — the last lines, then new ones
//! (`supervisor.logs`; REST's `GET /logs/{app_id}` as [`LogEvent`]s), or the last lines
//! at once (`supervisor.tail`).

use std::time::Duration;

use burrow_protocol::methods::Ack;
use burrow_protocol::methods::operator::{AppIdParams, LogsParams, TailParams, TailResult};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
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

/// One step of a followed log ([`Log::events`]), as `{type, ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogEvent {
    /// The last lines, oldest first: always first, once.
    Tail {
        /// The lines.
        lines: Vec<String>,
    },
    /// A line written after the tail was read.
    Line {
        /// The line.
        line: String,
    },
    /// The follower fell behind the feed (it holds
    /// [`new_feed`](crate::supervisor::new_feed)'s lines): `missed` lines were skipped,
    /// the lines after them follow.
    Lagged {
        /// How many.
        missed: u64,
    },
}

impl Log {
    /// The log as events: [`LogEvent::Tail`], then a [`LogEvent::Line`] per new line
    /// (a [`LogEvent::Lagged`] where lines were skipped), until the feed closes; with no
    /// feed, the tail alone. Nothing is buffered beyond the feed's own bound: lines are
    /// taken from it as the stream is read.
    pub fn events(self) -> impl Stream<Item = LogEvent> + Send + 'static {
        let Log { tail, feed } = self;
        let lines = futures_util::stream::unfold(feed, |feed| async move {
            let mut feed = feed?;
            let event = match feed.recv().await {
                Ok(line) => LogEvent::Line { line },
                Err(RecvError::Lagged(missed)) => LogEvent::Lagged { missed },
                Err(RecvError::Closed) => return None,
            };
            Some((event, Some(feed)))
        });
        futures_util::stream::once(async move { LogEvent::Tail { lines: tail } }).chain(lines)
    }
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

    #[tokio::test]
    async fn a_followed_log_is_its_tail_then_new_lines_saying_where_it_lagged() {
        use LogEvent::{Lagged, Line, Tail};
        let line = |s: &str| Line { line: s.to_owned() };
        let (tx, rx) = broadcast::channel(2);
        let log = Log { tail: vec!["old".into()], feed: Some(rx) };
        for l in ["one", "two", "three"] {
            tx.send(l.to_owned()).unwrap();
        }
        drop(tx);
        // The feed holds two: the first line is skipped, and said to be; the stream ends
        // with the feed.
        let events = tokio::time::timeout(Duration::from_secs(5), log.events().collect::<Vec<_>>());
        assert_eq!(
            events.await.unwrap(),
            [Tail { lines: vec!["old".into()] }, Lagged { missed: 1 }, line("two"), line("three")]
        );
        // No feed: the tail alone.
        let once = Log { tail: vec![], feed: None }.events().collect::<Vec<_>>().await;
        assert_eq!(once, [Tail { lines: vec![] }]);
        // The wire's shapes.
        let shapes = [Tail { lines: vec!["a".into()] }, line("b"), Lagged { missed: 3 }]
            .map(|e| serde_json::to_value(e).unwrap());
        assert_eq!(
            shapes,
            [
                serde_json::json!({"type": "tail", "lines": ["a"]}),
                serde_json::json!({"type": "line", "line": "b"}),
                serde_json::json!({"type": "lagged", "missed": 3}),
            ]
        );
    }

    #[tokio::test]
    async fn following_subscribes_to_the_apps_feed_before_its_tail_is_read() {
        let f = fixture().await;
        let feed = f.kernel.log_feed("left");
        let path = logs::log_path(&f.kernel.paths.state_dir, "left");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "one\n").unwrap();
        let p = LogsParams { app_id: "left".into(), lines: 10, follow: true };
        let mut events = Box::pin(log(&f.kernel, &p).await.unwrap().events());
        // Written after the tail was read, before the stream is: not lost.
        feed.send("two".into()).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap();
        assert_eq!(first, Some(LogEvent::Tail { lines: vec!["one".into()] }));
        let then = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap();
        assert_eq!(then, Some(LogEvent::Line { line: "two".into() }));
    }
}
