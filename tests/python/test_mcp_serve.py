"""`burrow mcp serve` driven by the Python `mcp` package's client (2.3): the kernel's tools
as an MCP server on stdio. The handshake of 2025-11-25 (`mode="legacy"`: the
`initialize` the 1.x line speaks) and the 2026-07-28 revision (`mode="auto"`:
`server/discover`) both connect; a tool appearing and leaving is announced with
`notifications/tools/list_changed`; a call goes through the kernel's interceptors (the
`redactor` example blanks a `password` argument)."""

import asyncio
import os
import subprocess
from contextlib import asynccontextmanager

from mcp import Client
from mcp.client.stdio import StdioServerParameters

WAIT = 30


def binary(name):
    path = os.path.join(os.environ["BURROW_BIN_DIR"], name)
    assert os.path.exists(path), f"no {path}"
    return path


def server():
    env = {"BURROW_SOCKET": os.environ["BURROW_SOCKET"]}
    return StdioServerParameters(command=binary("burrow"), args=["mcp", "serve"], env=env)


@asynccontextmanager
async def app(name, *args):
    """An example app of the repository, running against the kernel until the block ends."""
    process = subprocess.Popen(
        [binary(name), *args],
        env={**os.environ, "RUST_LOG": "warn"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), WAIT)
        assert "ready as" in line, line
        yield process
    finally:
        process.terminate()
        process.wait(timeout=WAIT)


async def tool_names(client):
    return {tool.name for tool in (await client.list_tools()).tools}


async def until(predicate):
    for _ in range(WAIT * 20):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not in time")


async def test_an_mcp_client_sees_tools_come_and_go_and_calls_them_through_interceptors():
    changes = []

    async def on_message(message):
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changes.append(message)

    async with Client(server(), mode="legacy", message_handler=on_message) as client:
        assert "echo" not in await tool_names(client)
        async with app("redactor"), app("clock-tool"):
            async def announced():
                return bool(changes)

            await until(announced)
            assert {"echo", "clock_now"} <= await tool_names(client)
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


async def test_the_2026_revision_connects_too():
    async with app("clock-tool"):
        async with Client(server(), mode="auto") as client:
            assert "clock_now" in await tool_names(client)
            result = await asyncio.wait_for(client.call_tool("echo", {"n": 1}), WAIT)
            assert result.structured_content == {"n": 1}, result
