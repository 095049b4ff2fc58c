"""Sessions and turns through Meerkat's SDK against Burrow, with the bundled offline
echo provider (its answer is `echo: <the prompt>`, streamed word by word)."""

import asyncio

from meerkat import TextDelta

WAIT = 30


async def test_handshake_reports_the_contract_and_the_capabilities(client):
    assert client.has_capability("sessions")
    assert client.has_capability("streaming")
    assert client.has_capability("comms")
    assert not client.has_capability("skills")
    ids = {c.id for c in client.capabilities}
    assert {"sessions", "streaming", "comms"} <= ids


async def test_a_session_runs_turns_and_reports_what_they_took(client):
    session = await asyncio.wait_for(client.create_session("hello there"), WAIT)
    assert session.text == "echo: hello there"
    assert session.turns == 1
    assert session.tool_calls == 0
    assert session.usage.output_tokens > 0
    result = await asyncio.wait_for(session.turn("and again"), WAIT)
    assert result.text == "echo: and again"
    assert result.session_id == session.id


async def test_a_streamed_turn_delivers_text_deltas_before_its_result(client):
    session = await asyncio.wait_for(client.create_session("first"), WAIT)
    deltas = []
    types = []

    async def consume():
        async with session.stream("stream these words please") as events:
            async for event in events:
                types.append(type(event).__name__)
                if isinstance(event, TextDelta):
                    deltas.append(event.delta)
            return events.result

    result = await asyncio.wait_for(consume(), WAIT)
    assert result.text == "echo: stream these words please"
    assert "".join(deltas) == result.text
    assert len(deltas) > 1, "the echo provider streams word by word"
    assert types[0] == "RunStarted", types
    assert types[-1] == "RunCompleted", types


async def test_a_streaming_create_delivers_the_first_turns_events(client):
    deltas = []

    async def consume():
        async with client.create_session_streaming("stream from the start") as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    deltas.append(event.delta)
            return events.result

    result = await asyncio.wait_for(consume(), WAIT)
    assert "".join(deltas) == "echo: stream from the start"
    assert result.text == "echo: stream from the start"


async def test_interrupting_a_streamed_turn_ends_it_as_cancelled(client):
    from meerkat import MeerkatError

    session = await asyncio.wait_for(client.create_session("first"), WAIT)
    long_prompt = " ".join(f"w{n}" for n in range(400))
    deltas = []

    async def consume():
        async with session.stream(long_prompt) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    deltas.append(event.delta)
                    if len(deltas) == 1:
                        await session.interrupt()

    try:
        await asyncio.wait_for(consume(), WAIT)
        raise AssertionError("an interrupted turn must not complete")
    except MeerkatError as e:
        assert e.code == "REQUEST_CANCELLED", e
    assert 0 < len(deltas) < 401, len(deltas)
    # The session goes on: the next turn is answered.
    result = await asyncio.wait_for(session.turn("after"), WAIT)
    assert result.text == "echo: after"


async def test_errors_carry_the_contracts_codes(client):
    from meerkat import MeerkatError

    try:
        await asyncio.wait_for(client.read_session("0193a1b2-0000-7000-8000-000000000009"), WAIT)
        raise AssertionError("reading an unknown session must fail")
    except MeerkatError as e:
        assert e.code == "SESSION_NOT_FOUND", e


async def test_a_deferred_session_runs_nothing_until_its_first_turn(client):
    deferred = await asyncio.wait_for(client.create_deferred_session("not yet"), WAIT)
    assert deferred.id
    result = await asyncio.wait_for(deferred.start_turn("now"), WAIT)
    assert result.session_id == deferred.id
    assert result.text == "echo: now"


async def test_a_subscription_follows_every_turn_until_it_is_closed(client):
    from meerkat import RunCompleted

    session = await asyncio.wait_for(client.create_session("first"), WAIT)
    subscription = await asyncio.wait_for(session.subscribe_events(), WAIT)
    runs = []
    deltas = []

    async def consume():
        async for envelope in subscription:
            payload = envelope.payload
            if isinstance(payload, TextDelta):
                deltas.append(payload.delta)
            if isinstance(payload, RunCompleted):
                runs.append(payload.result)
                if len(runs) == 2:
                    return

    watching = asyncio.create_task(consume())
    await asyncio.wait_for(session.turn("one two"), WAIT)
    await asyncio.wait_for(session.turn("three four"), WAIT)
    await asyncio.wait_for(watching, WAIT)
    assert runs == ["echo: one two", "echo: three four"]
    assert "".join(deltas) == "".join(runs)
    await asyncio.wait_for(subscription.close(), WAIT)
    assert subscription.terminal_outcome is not None
    assert subscription.terminal_outcome["outcome"] == "explicit_close"


async def test_sessions_are_found_by_label_read_paged_and_archived(client):
    import uuid

    tag = str(uuid.uuid4())
    session = await asyncio.wait_for(
        client.create_session("hello there", labels={"suite": tag}, keep_alive=True, comms_name="labelled"),
        WAIT,
    )
    await asyncio.wait_for(session.turn("and more"), WAIT)

    listed = await asyncio.wait_for(client.list_sessions(labels={"suite": tag}), WAIT)
    assert [s.session_id for s in listed] == [session.id]
    (summary,) = listed
    assert summary.labels == {"suite": tag}
    assert summary.message_count == 4
    assert summary.total_tokens > 0, "the echo provider reports its tokens"
    assert summary.created_at <= summary.updated_at < 10_000_000_000, "Unix seconds"
    other = await asyncio.wait_for(client.list_sessions(labels={"suite": "nobody"}), WAIT)
    assert other == []

    details = await asyncio.wait_for(client.read_session(session.id), WAIT)
    assert details.is_active
    assert details.model and details.provider
    assert details.last_assistant_text == "echo: and more", "the last answer's text"

    page = await asyncio.wait_for(client.read_session_history(session.id, offset=1, limit=2), WAIT)
    assert (page.message_count, page.offset, page.has_more) == (4, 1, True)
    assert [m.role for m in page.messages] == ["block_assistant", "user"]
    rest = await asyncio.wait_for(client.read_session_history(session.id, offset=3), WAIT)
    assert [m.role for m in rest.messages] == ["block_assistant"]
    assert not rest.has_more

    await asyncio.wait_for(session.archive(), WAIT)
    assert await asyncio.wait_for(client.list_sessions(labels={"suite": tag}), WAIT) == []


async def _assistant_text(client, session_id, needle):
    """Polls the session's history until an assistant row's text holds `needle`."""
    for _ in range(300):
        page = await client.read_session_history(session_id, limit=1000)
        for message in page.messages:
            raw = getattr(message, "raw", None) or {}
            blocks = raw.get("blocks") or []
            texts = [b.get("data", {}).get("text", "") for b in blocks]
            if message.role == "block_assistant" and any(needle in t for t in texts):
                return texts
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer holding {needle!r}")


async def test_sessions_message_and_answer_each_other_and_take_external_events(client):
    a = await asyncio.wait_for(client.create_session("coordinate", keep_alive=True, comms_name="alpha"), WAIT)
    b = await asyncio.wait_for(client.create_session("review", keep_alive=True, comms_name="beta"), WAIT)
    peers = await asyncio.wait_for(a.peers(), WAIT)
    beta = [p for p in peers if p["peer_id"] == b.id]
    assert beta and beta[0]["name"] == "beta", peers

    sent = await asyncio.wait_for(a.send(kind="peer_message", to=b.id, body="the build is red"), WAIT)
    assert sent["kind"] == "peer_message_sent"
    assert sent["delivery"] == {"durably_resolved": {"outcome": "accepted"}}
    await asyncio.wait_for(_assistant_text(client, b.id, "the build is red"), WAIT)

    asked = await asyncio.wait_for(
        a.send(kind="peer_request", to=b.id, intent="review", params={"pr": 7}), WAIT
    )
    assert asked["kind"] == "peer_request_sent" and asked["request_id"] == asked["interaction_id"]
    answered = await asyncio.wait_for(
        b.send(kind="peer_response", to=a.id, in_reply_to=asked["request_id"], status="completed", result="LGTM"),
        WAIT,
    )
    assert answered["kind"] == "peer_response_sent" and answered["in_reply_to"] == asked["request_id"]
    await asyncio.wait_for(_assistant_text(client, a.id, "LGTM"), WAIT)

    outcome = await asyncio.wait_for(
        a.send_external_event("deploy_complete", {"env": "prod"}, idempotency_key="deploy-1"), WAIT
    )
    assert outcome["outcome_type"] == "accepted" and outcome["input_id"]
    await asyncio.wait_for(_assistant_text(client, a.id, "[external event deploy_complete]"), WAIT)


async def test_comms_errors_carry_the_contracts_error_data(client):
    from meerkat import MeerkatError, comms_send_error

    a = await asyncio.wait_for(client.create_session("hello", keep_alive=True, comms_name="gamma"), WAIT)
    try:
        await asyncio.wait_for(a.send(kind="peer_message", to="nobody-here", body="hi"), WAIT)
        raise AssertionError("a message to no peer must be refused")
    except MeerkatError as e:
        data = comms_send_error(e)
        assert data is not None, e
        assert data["code"] == "peer_not_found_or_not_trusted", data
        assert data["peer"] == "nobody-here" and data["message"], data
    try:
        await asyncio.wait_for(a.send(kind="peer_message", to=a.id, body="me"), WAIT)
        raise AssertionError("a message to oneself must be refused")
    except MeerkatError as e:
        data = comms_send_error(e)
        assert data is not None and data["code"] == "invalid_command", (e, data)


async def test_an_external_event_with_an_idempotency_key_is_taken_once(client):
    from meerkat import MeerkatError

    session = await asyncio.wait_for(client.create_session("hello", keep_alive=True), WAIT)
    first = await client.send_external_event(
        session.id, "ci", {"build": 7, "ok": True}, idempotency_key="build-7"
    )
    assert first["outcome_type"] == "accepted", first
    # A retry, its payload's keys in another order: taken once.
    again = await client.send_external_event(
        session.id, "ci", {"ok": True, "build": 7}, idempotency_key="build-7"
    )
    assert again["outcome_type"] == "deduplicated", again
    assert again["existing_id"] == first["input_id"]
    try:
        await client.send_external_event(
            session.id, "ci", {"build": 8}, idempotency_key="build-7"
        )
        raise AssertionError("the same key for another event must be refused")
    except MeerkatError as e:
        assert e.code == "INPUT_IDEMPOTENCY_CONFLICT", e
