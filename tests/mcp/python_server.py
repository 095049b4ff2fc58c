"""An MCP server built on the Python `mcp` package, for tests/e2e/mcp.rs:
`python python_server.py PORT` serves streamable HTTP at http://127.0.0.1:PORT/mcp and
prints `listening` once it does (requests must carry `Authorization: Bearer
burrow-test`, the bridge's configured header); `python python_server.py --stdio` serves
on stdin/stdout.

Tools: `add`, `shout`, and `grow`, which adds the tool `extra` and says the tool list
changed: on 2.x to `subscriptions/listen` streams (2026-07-28), on 1.x with
`notifications/tools/list_changed` on the session.

It runs on either line of the package, the same tools on both:
- 2.x (target/venv, mcp 2.3): `MCPServer`. It answers `initialize` with the version the
  client asks for if it is one of the handshake revisions (up to 2025-11-25; the bridge
  asks for 2025-11-25), and speaks 2026-07-28, the revision without `initialize`, to
  clients that start with `server/discover` (as the bridge does).
- 1.x (target/venv-mcp1, mcp 1.30, the last 1.x): `FastMCP`. It answers `initialize`
  with the version asked for if it knows it (`mcp.shared.version.SUPPORTED_PROTOCOL_VERSIONS`:
  2024-11-05 to 2025-11-25), else its newest, `mcp.types.LATEST_PROTOCOL_VERSION`,
  2025-11-25; it does not know `server/discover`.
"""

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

try:  # the 2.x line
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
except ModuleNotFoundError:  # the 1.x line, where it is called FastMCP
    from mcp.server.fastmcp import Context
    from mcp.server.fastmcp import FastMCP as Server

server = Server("burrow-test-http")


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    return f"{a} + {b} = {a + b}"


@server.tool()
def shout(text: str) -> str:
    """Says it louder."""
    return text.upper() + "!"


def extra() -> str:
    """Added by `grow`."""
    return "extra"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool `extra`, and says the tool list changed."""
    server.add_tool(extra)
    if hasattr(ctx, "notify_tools_changed"):  # 2.x: the 2026-07-28 revision's listeners
        await ctx.notify_tools_changed()
    else:  # 1.x: the session
        await ctx.session.send_tool_list_changed()
    return "grown"


class RequireToken(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        if request.headers.get("authorization") != "Bearer burrow-test":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)


def main() -> None:
    if sys.argv[1] == "--stdio":
        server.run("stdio")
        return
    port = int(sys.argv[1])
    app = server.streamable_http_app()
    app.user_middleware.insert(0, Middleware(RequireToken))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    print("listening", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
