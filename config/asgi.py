"""The ASGI entry point: a thin router that owns the lifespan.

`/mcp/...` goes to the gateway's MCP endpoint (an SDK app whose session manager must be started
by the lifespan: if Django received the lifespan events instead, the first MCP call would fail
with "Task group is not initialized"), everything else to Django. The gateway registers its app
through `gateway.asgi.build_mcp_app()` when that module exists.
"""

import contextlib
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

django_app = get_asgi_application()


def _load_mcp() -> tuple[
    ASGIApp | None, Callable[[], contextlib.AbstractAsyncContextManager] | None
]:
    try:
        from gateway.asgi import build_mcp_app  # the gateway issue provides it
    except ImportError:
        return None, None
    return build_mcp_app()


mcp_app, mcp_lifespan = _load_mcp()


class Router:
    def __init__(self) -> None:
        self._stack: contextlib.AsyncExitStack | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if (
            mcp_app is not None
            and scope["type"] == "http"
            and (path == "/mcp" or path.startswith("/mcp/"))
        ):
            await mcp_app(scope, receive, send)
            return
        await django_app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._stack = contextlib.AsyncExitStack()
                    if mcp_lifespan is not None:
                        await self._stack.enter_async_context(mcp_lifespan())
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._stack is not None:
                    await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


application = Router()
