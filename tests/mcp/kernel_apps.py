"""Helpers the Python suites that drive Burrow's MCP server share (tests/python with the
`mcp` package's 2.x client, tests/python-mcp1 with its 1.x client): the kernel's
binaries, example apps run against the kernel, and a bounded wait. The Rust driver
(tests/e2e/meerkat.rs) sets `BURROW_SOCKET`, `BURROW_HTTP` and `BURROW_BIN_DIR`."""

import asyncio
import os
import subprocess
from contextlib import asynccontextmanager

from mcp import StdioServerParameters

# Seconds any one wait may take.
WAIT = 30

# Burrow's MCP server's transports: `burrow mcp serve`, and the kernel's `/mcp`.
TRANSPORTS = ["stdio", "http"]


def binary(name):
    path = os.path.join(os.environ["BURROW_BIN_DIR"], name)
    assert os.path.exists(path), f"no {path}"
    return path


def mcp_url():
    """The kernel's `/mcp`."""
    return os.environ["BURROW_HTTP"] + "/mcp"


def mcp_serve():
    """How to start `burrow mcp serve` against the kernel."""
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


async def until(predicate):
    """Waits (up to WAIT seconds) until `await predicate()` is true."""
    for _ in range(WAIT * 20):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not in time")
