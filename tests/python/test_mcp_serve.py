"""Burrow's MCP server driven by the Python `mcp` package's client (2.3), on both of its
transports (each test runs on each): `burrow mcp serve` (stdio) and the kernel's `/mcp`
(streamable HTTP, at `$BURROW_HTTP/mcp`). The handshake of 2025-11-25
(`mode="legacy"`: the `initialize` the 1.x line speaks) and the 2026-07-28 revision
(`mode="auto"`: `server/discover`) both connect; a tool appearing and leaving is
announced with `notifications/tools/list_changed` (on the session; on a
`subscriptions/listen` stream in the 2026 revision); a call goes through the kernel's
interceptors (the `redactor` example blanks a `password` argument); its session tools
make a session and talk to its agent (the bundled echo provider)."""

import asyncio

import pytest
from kernel_apps import TRANSPORTS, WAIT, app, mcp_serve, mcp_url, until
from mcp import Client


def server(transport):
    """What the client connects to: `burrow mcp serve`, or the kernel's `/mcp`."""
    return mcp_url() if transport == "http" else mcp_serve()


async def tool_names(client):
    return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_mcp_client_sees_tools_come_and_go_and_calls_them_through_interceptors(transport):
    changes = []

    async def on_message(message):
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changes.append(message)

    async with Client(server(transport), mode="legacy", message_handler=on_message) as client:
        assert "echo" not in await tool_names(client)
        async with app("redactor"), app("clock-tool"):
            async def announced():
                return bool(changes)

            await until(announced)
            names = await tool_names(client)
            assert {"echo", "clock_now"} <= names, names
            # The driver's `[mcp] expose` leaves this one out.
            assert "slow_echo" not in names, names
            hidden = await asyncio.wait_for(client.call_tool("slow_echo", {}), WAIT)
            assert hidden.is_error and "expose" in hidden.content[0].text, hidden
            result = await asyncio.wait_for(
                client.call_tool("echo", {"password": "hunter2", "note": "hi"}), WAIT
            )
            assert not result.is_error, result
            text = result.content[0].text
            assert "[redacted]" in text and "hunter2" not in text, text
            assert result.structured_content == {"password": "[redacted]", "note": "hi"}
            failed = await asyncio.wait_for(client.call_tool("fail", {"message": "no"}), WAIT)
            assert failed.is_error, failed
        seen = len(changes)

        async def gone():
            return len(changes) > seen and "echo" not in await tool_names(client)

        await until(gone)
        missing = await asyncio.wait_for(client.call_tool("echo", {}), WAIT)
        assert missing.is_error, missing


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_2026_revision_connects_and_listens_for_tool_changes(transport):
    async with Client(server(transport), mode="auto") as client:
        assert client.session.protocol_version == "2026-07-28"
        async with client.listen(tools_list_changed=True) as changes:
            assert changes.honored.tools_list_changed
            async with app("clock-tool"):
                # Each look after the first waits for a change to be announced.
                async def announced():
                    while "clock_now" not in await tool_names(client):
                        await anext(changes)

                await asyncio.wait_for(announced(), WAIT)
                result = await asyncio.wait_for(client.call_tool("echo", {"n": 1}), WAIT)
                assert result.structured_content == {"n": 1}, result


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_mcp_client_talks_to_burrows_agents(transport):
    async with Client(server(transport), mode="legacy") as client:
        assert {"session_send", "session_history", "session_list"} <= await tool_names(client)
        first = await asyncio.wait_for(client.call_tool("session_send", {"message": "hello"}), WAIT)
        assert not first.is_error, first
        assert first.content[0].text == "echo: hello"
        session = first.structured_content["session_id"]
        again = await asyncio.wait_for(
            client.call_tool("session_send", {"session_id": session, "message": "and again"}), WAIT
        )
        assert again.content[0].text == "echo: and again"
        page = await asyncio.wait_for(
            client.call_tool("session_history", {"session_id": session, "limit": 10}), WAIT
        )
        roles = [m["role"] for m in page.structured_content["messages"]]
        assert roles == ["user", "block_assistant", "user", "block_assistant"], roles
        listed = await asyncio.wait_for(client.call_tool("session_list", {}), WAIT)
        assert any(s["session_id"] == session for s in listed.structured_content["sessions"])
        unknown = await asyncio.wait_for(
            client.call_tool("session_send", {"session_id": "nope", "message": "x"}), WAIT
        )
        assert unknown.is_error, unknown
