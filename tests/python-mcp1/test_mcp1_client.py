"""Burrow's MCP server driven by the client of the Python `mcp` package's 1.x line (1.30,
its last; target/venv-mcp1), which speaks the `initialize` handshake of 2025-11-25, on
both transports (each test runs on each): `burrow mcp serve` (stdio) and the kernel's
`/mcp` (streamable HTTP, with an MCP session). It lists the kernel's tools and hears
`notifications/tools/list_changed` when one appears; a call goes through the kernel's
interceptors (the `redactor` example blanks a `password` argument); the session tools
make a session and talk to its agent (the bundled echo provider)."""

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from kernel_apps import TRANSPORTS, WAIT, app, mcp_serve, mcp_url, until
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def connected(transport, message_handler=None):
    """An initialized session with Burrow's MCP server, and the `initialize` result."""
    if transport == "http":
        streams = streamable_http_client(mcp_url())
    else:
        streams = stdio_client(mcp_serve())
    async with streams as (read, write, *_):
        async with ClientSession(read, write, message_handler=message_handler) as session:
            result = await asyncio.wait_for(session.initialize(), WAIT)
            yield session, result


async def tool_names(session):
    return {tool.name for tool in (await session.list_tools()).tools}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_1x_client_lists_hears_and_calls_tools(transport):
    changes = []

    async def on_message(message):
        if getattr(getattr(message, "root", None), "method", None) == "notifications/tools/list_changed":
            changes.append(message)

    # The apps stop after the session has closed: the 1.x client's stdio transport fails
    # on a notification that arrives while it closes.
    async with AsyncExitStack() as apps:
        async with connected(transport, on_message) as (session, result):
            assert result.protocolVersion == "2025-11-25"
            assert result.serverInfo.name == "burrow"
            assert result.capabilities.tools.listChanged
            assert "echo" not in await tool_names(session)
            await apps.enter_async_context(app("redactor"))
            await apps.enter_async_context(app("clock-tool"))

            async def announced():
                return bool(changes) and "echo" in await tool_names(session)

            await until(announced)
            called = session.call_tool("echo", {"password": "hunter2", "note": "hi"})
            result = await asyncio.wait_for(called, WAIT)
            assert not result.isError, result
            assert result.structuredContent == {"password": "[redacted]", "note": "hi"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_1x_client_talks_to_burrows_agents(transport):
    async with connected(transport) as (session, _):
        sent = session.call_tool("session_send", {"message": "hello"})
        first = await asyncio.wait_for(sent, WAIT)
        assert not first.isError, first
        assert first.content[0].text == "echo: hello"
        session_id = first.structuredContent["session_id"]
        page = await asyncio.wait_for(
            session.call_tool("session_history", {"session_id": session_id}), WAIT
        )
        roles = [m["role"] for m in page.structuredContent["messages"]]
        assert roles == ["user", "block_assistant"], roles
