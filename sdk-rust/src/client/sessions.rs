//! [`Client`] helpers for sessions, messages and agent runs (PROTOCOL.md §8): thin typed
//! wrappers over the methods of [`burrow_protocol::methods::session`].

use std::time::Duration;

use burrow_protocol::Map;
use burrow_protocol::methods::Method;
use burrow_protocol::methods::session::{
    AgentCancel, AgentCancelParams, AgentQueue, AgentQueueParams, AgentQueueResult, AgentWait,
    AgentWaitParams, AgentWaitResult, DispatchParams, DispatchResult, MessageDispatch, SessionGet,
    SessionGetParams, SessionHistory, SessionHistoryParams, SessionHistoryResult, SessionInfo,
    SessionList, SessionListParams, SessionListResult,
};

use burrow_protocol::methods::operator::{SessionEvents, SessionEventsParams};

use super::{Client, SessionEventStream, WatchStream};
use crate::Result;

impl Client {
    /// `message.dispatch`: hands the kernel an inbound message of session `session_key`
    /// (as a channel does). It is stored before the answer and, when the session's agent
    /// replies automatically, starts a run whose reply comes back through the session's
    /// channel. `metadata` may name `agentId`, `channelId`, `accountId` for a new session.
    /// A message an interceptor blocked is `Ok` with `queued: false` and a `reason`.
    pub async fn dispatch(
        &self,
        session_key: &str,
        content: &str,
        metadata: Option<Map>,
    ) -> Result<DispatchResult> {
        let params = DispatchParams {
            session_key: session_key.to_owned(),
            content: content.to_owned(),
            metadata,
        };
        self.call::<MessageDispatch>(params).await
    }

    /// `agent.queue`: queues an agent run in session `session_key` with `text` as its
    /// input (stored as a `user` message). Wait for it with [`Client::agent_wait`].
    pub async fn agent_queue(
        &self,
        session_key: &str,
        text: &str,
        metadata: Option<Map>,
    ) -> Result<AgentQueueResult> {
        let params = AgentQueueParams {
            session_key: session_key.to_owned(),
            text: text.to_owned(),
            metadata,
        };
        self.call::<AgentQueue>(params).await
    }

    /// `agent.wait`: where run `run_id` stands once it has ended, or once `timeout` has
    /// passed (`timeoutMs`, rounded up to whole milliseconds; zero asks without waiting;
    /// `None` leaves the wait to the kernel). The call itself has no deadline of its own.
    pub async fn agent_wait(
        &self,
        run_id: &str,
        timeout: Option<Duration>,
    ) -> Result<AgentWaitResult> {
        let timeout_ms =
            timeout.map(|t| u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX));
        let params = AgentWaitParams { run_id: run_id.to_owned(), timeout_ms };
        self.call::<AgentWait>(params).await
    }

    /// `agent.cancel`: cancels run `run_id` (queued or running; a provider call in
    /// progress is sent `$/cancel`). A run that has ended already is `CONFLICT`, an
    /// unknown one `NOT_FOUND`.
    pub async fn agent_cancel(&self, run_id: &str) -> Result<()> {
        let params = AgentCancelParams { run_id: run_id.to_owned() };
        self.call::<AgentCancel>(params).await.map(drop)
    }

    /// `session.get`: the session keyed `key`, `None` when there is none.
    pub async fn session_get(&self, key: &str) -> Result<Option<SessionInfo>> {
        let params = SessionGetParams { key: key.to_owned() };
        Ok(self.call::<SessionGet>(params).await?.session)
    }

    /// `session.list`: a page of sessions, newest activity first, and how many match.
    pub async fn session_list(&self, params: SessionListParams) -> Result<SessionListResult> {
        self.call::<SessionList>(params).await
    }

    /// `session.history`: the transcript of session `key`, oldest first: the newest
    /// `limit` messages (the kernel's default 100 when `None`), from before the message id
    /// `before` when given.
    pub async fn session_history(
        &self,
        key: &str,
        limit: Option<u32>,
        before: Option<&str>,
    ) -> Result<SessionHistoryResult> {
        let params =
            SessionHistoryParams { key: key.to_owned(), limit, before: before.map(str::to_owned) };
        self.call::<SessionHistory>(params).await
    }

    /// `session.events`: session `key`'s events from now on ([`SessionEvent`]: stored
    /// messages, runs' changes of status, the pieces of answers as they are produced),
    /// until the stream is dropped (which sends `$/cancel`) or the kernel ends it: a
    /// follower that falls too far behind gets [`SessionEvent::Lagged`], then the end
    /// (`ended() == Some("lagged")`). A session that does not exist is `NOT_FOUND`, as the
    /// stream's first item.
    ///
    /// [`SessionEvent`]: burrow_protocol::methods::operator::SessionEvent
    /// [`SessionEvent::Lagged`]: burrow_protocol::methods::operator::SessionEvent::Lagged
    pub async fn session_events(&self, key: &str) -> Result<SessionEventStream> {
        let params = burrow_protocol::methods::to_value(&SessionEventsParams {
            session_id: key.to_owned(),
            allow_new: false,
        });
        let inner = self.request_stream(SessionEvents::NAME, params).await?;
        Ok(WatchStream::new(inner, SessionEvents::NAME))
    }
}
