"""The benchmark's bare proxy: the floor under the gateway's added latency.

The gateway's server stack (uvicorn with httptools and uvloop, one process) and its upstream
HTTP client (gateway.http1) forwarding each POST to the upstream and its answer back, and
nothing else: no authentication, policy, validation, credential, limits or audit. Its added
latency is what the extra HTTP hop costs on the machine of the run; the gateway's minus this
one is the cost of what it enforces.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT/mcp uvicorn bench.floor_proxy:app --loop uvloop \\
        --http httptools

Not part of the product: it forwards anything to the one upstream it is given.
"""

from __future__ import annotations

import os
from typing import Any

from gateway.http1 import Http1Client

# The request headers the upstream needs to answer an MCP request (both protocol eras).
_FORWARDED = frozenset(
    (
        b"content-type",
        b"accept",
        b"mcp-protocol-version",
        b"mcp-session-id",
        b"mcp-method",
        b"mcp-name",
    )
)
_RETURNED = frozenset(("content-type", "mcp-session-id"))

_client: Http1Client | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _client
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http" or scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if _client is None:
        _client = Http1Client(os.environ["FLOOR_UPSTREAM"])
    headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in _FORWARDED}
    response = await _client.post(_client.url, content=body, headers=headers)
    returned = [(k.encode(), v.encode()) for k, v in response.headers.items() if k in _RETURNED]
    await send({"type": "http.response.start", "status": response.status_code, "headers": returned})
    await send({"type": "http.response.body", "body": response.content})
