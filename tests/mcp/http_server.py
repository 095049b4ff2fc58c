"""An MCP server over streamable HTTP, built on the Python `mcp` package (MCPServer, the
2.x line's FastMCP), for tests/e2e/mcp.rs: `python http_server.py PORT` serves
http://127.0.0.1:PORT/mcp and prints `listening` once it does. Requests must carry
`Authorization: Bearer burrow-test` (the bridge's configured header)."""

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

from mcp.server.mcpserver import MCPServer

server = MCPServer("burrow-test-http")


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    return f"{a} + {b} = {a + b}"


@server.tool()
def shout(text: str) -> str:
    """Says it louder."""
    return text.upper() + "!"


class RequireToken(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        if request.headers.get("authorization") != "Bearer burrow-test":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)


def main() -> None:
    port = int(sys.argv[1])
    app = server.streamable_http_app()
    app.user_middleware.insert(0, Middleware(RequireToken))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    print("listening", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
