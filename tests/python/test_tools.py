"""Host-provided tools through Meerkat's SDK: `@client.tool` handlers registered on the
connection (`tools/register`) and called back by the agent (`tool/execute`). The echo
provider calls a tool for each `/tool NAME {json}` line of a prompt and answers with
what the tool returned."""

import asyncio

from meerkat import MeerkatClient, MeerkatError

WAIT = 30


async def connected(setup):
    client = MeerkatClient()
    setup(client)
    await client.connect()
    return client


async def test_the_agent_calls_a_tool_the_host_registered():
    calls = []
    keys = []

    def setup(client):
        @client.tool("lookup", description="Looks a word up", input_schema={"type": "object"})
        async def lookup(arguments, dedupe_key=None):
            calls.append(arguments)
            keys.append(dedupe_key)
            return f"{arguments['q']} is a hole in the ground"

        @client.tool("broken")
        async def broken(arguments):
            raise RuntimeError("out of order")

    client = await connected(setup)
    try:
        session = await asyncio.wait_for(
            client.create_session('/tool lookup {"q": "burrow"}'), WAIT
        )
        assert session.text == "tool lookup returned: burrow is a hole in the ground"
        assert session.tool_calls == 1
        assert calls == [{"q": "burrow"}]
        # The call came from the run's first round: its key names the run, the round,
        # the model's call id and a digest of the call.
        [key] = keys
        assert key is not None, "no dedupe_key"
        assert key.run_id and key.call_id, key
        assert key.round == 0, key
        assert len(key.call_digest) == 64, key
        # A handler that raises is a failed call the agent reads, not a failed turn.
        result = await asyncio.wait_for(session.turn("/tool broken"), WAIT)
        assert result.text == "tool broken returned: Tool error: out of order"

        # A tool decorated after connecting is registered then.
        @client.tool("late")
        async def late(arguments):
            return "here after all"

        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            result = await asyncio.wait_for(session.turn("/tool late"), WAIT)
            if result.text == "tool late returned: here after all":
                break
            assert result.text == "echo: no tool named late", result.text
            assert asyncio.get_running_loop().time() < deadline, "late was never registered"
            await asyncio.sleep(0.05)
    finally:
        await client.close()


async def test_interrupt_ends_a_turn_waiting_on_a_hosts_tool():
    started = asyncio.Event()
    release = asyncio.Event()

    def setup(client):
        @client.tool("slow")
        async def slow(arguments):
            started.set()
            await release.wait()
            return "too late"

    client = await connected(setup)
    try:
        session = await asyncio.wait_for(client.create_session("hello"), WAIT)
        turn = asyncio.ensure_future(session.turn("/tool slow"))
        await asyncio.wait_for(started.wait(), WAIT)
        await asyncio.wait_for(session.interrupt(), WAIT)
        try:
            await asyncio.wait_for(turn, WAIT)
            raise AssertionError("an interrupted turn must not complete")
        except MeerkatError as e:
            assert e.code == "REQUEST_CANCELLED", e
        # The handler's late answer goes nowhere; the session goes on.
        release.set()
        result = await asyncio.wait_for(session.turn("after"), WAIT)
        assert result.text == "echo: after"
    finally:
        await client.close()


async def test_a_hosts_tools_are_its_own(client):
    # The shared client registered no tools: its sessions are not offered another
    # connection's.
    def setup(other):
        @other.tool("private")
        async def private(arguments):
            return "secret"

    other = await connected(setup)
    try:
        session = await asyncio.wait_for(client.create_session("/tool private"), WAIT)
        assert session.text == "echo: no tool named private"
    finally:
        await other.close()
