"""A real MCP upstream that, like a SaaS MCP server, accepts only its own OAuth tokens: the fault
server's tools behind a resource-server check that asks the real oidc-provider (RFC 7662
introspection) whether each request's bearer token is active. It answers 401 otherwise and
remembers the fingerprint of every Authorization header it received."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from demo.servers.common import authorization_fingerprint
from tests.peers.fault_server import build_server
from tests.peers.oidc import OidcProvider


@dataclass
class BearerUpstream:
    oidc: OidcProvider
    seen: list[str] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _active(self, authorization: str) -> bool:
        if not authorization.startswith("Bearer "):
            return False
        return self.oidc.introspect(authorization.removeprefix("Bearer ")).get("active") is True

    def app(self) -> Any:
        hosts = ["127.0.0.1", f"127.0.0.1:{self.port}"]
        inner = build_server(None).streamable_http_app(
            stateless_http=True,
            transport_security=TransportSecuritySettings(
                allowed_hosts=hosts, allowed_origins=[f"http://{h}" for h in hosts]
            ),
            host="127.0.0.1",
        )

        async def guarded(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                authorization = headers.get(b"authorization", b"").decode()
                self.seen.append(authorization_fingerprint(authorization or None))
                if not await anyio.to_thread.run_sync(self._active, authorization):
                    body = json.dumps({"error": "invalid_token"}).encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 401,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"www-authenticate", b'Bearer error="invalid_token"'),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            await inner(scope, receive, send)

        return guarded

    def start(self) -> BearerUpstream:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the bearer upstream did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
