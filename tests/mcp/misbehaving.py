"""A stdio MCP server that misbehaves on request, for tests/e2e/mcp.rs (raw JSON-RPC on
stdin/stdout, no SDK, so it can break the rules): its tools are
- `ok {}`: answers the text "fine";
- `malformed {}`: answers a result that is not a CallToolResult (`content` a string);
- `crash {}`: exits without answering (mid-call);
- `hang {}`: never answers;
- `grow {}`: adds the tool `extra`, announces `notifications/tools/list_changed`, and
  answers "grown".
It records each `notifications/cancelled` it gets in the file named by `MCP_LOG`."""

import json
import os
import sys

TOOLS = ["ok", "malformed", "crash", "hang", "grow"]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def tool(name):
    return {"name": name, "description": f"the {name} tool", "inputSchema": {"type": "object"}}


def main():
    for line in sys.stdin:
        message = json.loads(line)
        method, rid = message.get("method"), message.get("id")
        if method == "initialize":
            version = message["params"].get("protocolVersion", "2025-11-25")
            send({"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "misbehaving", "version": "1.0.0"}}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [tool(t) for t in TOOLS]}})
        elif method == "tools/call":
            name = message["params"]["name"]
            if name == "ok" or name == "extra":
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "fine"}]}})
            elif name == "malformed":
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": "not a list"}})
            elif name == "crash":
                os._exit(3)
            elif name == "hang":
                pass
            elif name == "grow":
                if "extra" not in TOOLS:
                    TOOLS.append("extra")
                send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "grown"}]}})
        elif method == "notifications/cancelled" and os.environ.get("MCP_LOG"):
            with open(os.environ["MCP_LOG"], "a") as log:
                log.write(json.dumps(message["params"]) + "\n")
        elif rid is not None and method is not None:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no {method}"}})


if __name__ == "__main__":
    main()
