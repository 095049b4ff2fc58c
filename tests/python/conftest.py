"""Shared fixtures: a `MeerkatClient` (Meerkat's own SDK, unmodified) connected to the
Burrow kernel the Rust driver (tests/e2e/meerkat.rs) started. The driver sets
`MEERKAT_BIN_PATH` to `burrow-rpc` and `BURROW_SOCKET` to the kernel's socket; the SDK
spawns `burrow-rpc`, which pipes its JSON-RPC to the kernel."""

import os

import pytest_asyncio
from meerkat import MeerkatClient


@pytest_asyncio.fixture
async def client():
    assert os.environ.get("MEERKAT_BIN_PATH"), "run through tests/e2e/meerkat.rs"
    c = MeerkatClient()
    await c.connect()
    try:
        yield c
    finally:
        await c.close()
