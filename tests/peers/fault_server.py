"""A small MCP server for fault injection (low-level SDK `Server`), over Streamable HTTP or stdio.

Tools: `echo(message)`, `slow(seconds)`, `crash()` (the process exits mid-call), `fail()`
(an is_error result) and `whoami()` (fingerprint of the Authorization header received).

The advertised definitions come from a JSON file (a list of MCP Tool objects, camelCase)
named by `--tools-file` or $FAULT_TOOLS_FILE, re-read on every tools/list and tools/call,
so a test can change them while the server runs (drift, poisoned descriptions, new tools).
Without the file the defaults below apply. A listed tool with no behaviour of its own
answers with its name and arguments.

    python -m tests.peers.fault_server --host 127.0.0.1 --port 8766 --tools-file tools.json
    python -m tests.peers.fault_server --stdio --tools-file tools.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from demo.servers.common import authorization_fingerprint

TOOLS_FILE_ENV = "FAULT_TOOLS_FILE"
CRASH_EXIT_STATUS = 70
MAX_SLOW_SECONDS = 300

_OBJECT = "object"
DEFAULT_TOOLS: list[dict[str, Any]] = [
    {
        "name": "echo",
        "title": "Echo",
        "description": "Return the message unchanged.",
        "inputSchema": {
            "type": _OBJECT,
            "properties": {"message": {"type": "string", "description": "Text to echo."}},
            "required": ["message"],
        },
        "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
    },
    {
        "name": "slow",
        "title": "Slow",
        "description": "Sleep for the given number of seconds, then answer.",
        "inputSchema": {
            "type": _OBJECT,
            "properties": {
                "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLOW_SECONDS}
            },
            "required": ["seconds"],
        },
        "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
    },
    {
        "name": "crash",
        "title": "Crash",
        "description": "Terminate the server process in the middle of the call.",
        "inputSchema": {"type": _OBJECT, "properties": {}},
        "annotations": {"readOnlyHint": False, "destructiveHint": True, "openWorldHint": False},
    },
    {
        "name": "fail",
        "title": "Fail",
        "description": "Return a tool error (isError: true).",
        "inputSchema": {"type": _OBJECT, "properties": {}},
        "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
    },
    {
        "name": "whoami",
        "title": "Who am I",
        "description": "Fingerprint (sha256 prefix) of the Authorization header received, or 'none'.",
        "inputSchema": {"type": _OBJECT, "properties": {}},
        "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
    },
]


def load_tools(path: Path | None) -> list[Tool]:
    """The current definitions: the JSON file if it exists, else the defaults."""
    raw = DEFAULT_TOOLS
    if path is not None and path.exists():
        raw = json.loads(path.read_text())
    return [Tool.model_validate(tool) for tool in raw]


def _text(text: str, *, is_error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=is_error)


Behaviour = Callable[[ServerRequestContext[Any], Mapping[str, Any]], Awaitable[CallToolResult]]


async def _echo(_ctx: ServerRequestContext[Any], args: Mapping[str, Any]) -> CallToolResult:
    return _text(str(args.get("message", "")))


async def _slow(_ctx: ServerRequestContext[Any], args: Mapping[str, Any]) -> CallToolResult:
    try:
        seconds = float(args.get("seconds", 1))
    except (TypeError, ValueError):
        return _text("seconds must be a number", is_error=True)
    seconds = min(max(seconds, 0.0), MAX_SLOW_SECONDS)
    await anyio.sleep(seconds)
    return _text(f"slept {seconds:g}s")


async def _crash(_ctx: ServerRequestContext[Any], _args: Mapping[str, Any]) -> CallToolResult:
    # Flush what we can so the test log shows why the peer vanished, then die without cleanup,
    # as a real upstream that segfaults or is OOM-killed would.
    print("fault_server: crash() called, exiting now", file=sys.stderr, flush=True)
    os._exit(CRASH_EXIT_STATUS)


async def _fail(_ctx: ServerRequestContext[Any], _args: Mapping[str, Any]) -> CallToolResult:
    return _text("fail() always fails: this is an injected tool error", is_error=True)


async def _whoami(ctx: ServerRequestContext[Any], _args: Mapping[str, Any]) -> CallToolResult:
    headers = getattr(ctx.request, "headers", None)
    return _text(authorization_fingerprint(headers.get("authorization") if headers else None))


async def _structured(_ctx: ServerRequestContext[Any], args: Mapping[str, Any]) -> CallToolResult:
    # Answers with `value` as its structured content, conforming to the tool's output schema
    # or not: the test chooses.
    value = args.get("value")
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(value))], structured_content=value
    )


BEHAVIOURS: dict[str, Behaviour] = {
    "echo": _echo,
    "slow": _slow,
    "crash": _crash,
    "fail": _fail,
    "whoami": _whoami,
    "structured": _structured,
}


def build_server(tools_file: Path | None) -> Server[Any]:
    """The fault server; `tools_file` is re-read on every request (None: defaults only)."""

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=load_tools(tools_file))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        if params.name not in {t.name for t in load_tools(tools_file)}:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        args = params.arguments or {}
        behaviour = BEHAVIOURS.get(params.name)
        if behaviour is None:
            return _text(json.dumps({"tool": params.name, "arguments": args}, sort_keys=True))
        return await behaviour(ctx, args)

    def input_schema(name: str) -> Mapping[str, Any] | None:
        tool = next((t for t in load_tools(tools_file) if t.name == name), None)
        return tool.input_schema if tool else None

    return Server(
        "fault-server",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.fault_server")
    parser.add_argument("--stdio", action="store_true", help="serve over stdio instead of HTTP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--tools-file", type=Path, default=os.environ.get(TOOLS_FILE_ENV) or None)
    args = parser.parse_args(argv)
    server = build_server(args.tools_file)
    logging.basicConfig(level=logging.WARNING)
    if args.stdio:
        from mcp.server.stdio import stdio_server

        async def serve_stdio() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(serve_stdio)
        return 0

    import uvicorn

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    hosts = [args.host, f"{args.host}:{args.port}"]
    app = server.streamable_http_app(
        stateless_http=True,
        transport_security=TransportSecuritySettings(
            allowed_hosts=hosts, allowed_origins=[f"http://{h}" for h in hosts]
        ),
        host=args.host,
        custom_starlette_routes=[Route("/healthz", healthz, methods=["GET"])],
    )
    print(f"fault_server: serving http://{args.host}:{args.port}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
