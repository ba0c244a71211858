"""pytest fixtures for the real test peers (load with `pytest_plugins = ["tests.peers.fixtures"]`).

Peers start once per session where that is safe and reset per test where state matters:

- `everything_http`: URL of server-everything over Streamable HTTP (session).
- `everything_stdio`: `StdioCommand` (command, args; `.params()`) for server-everything.
- `demo_upstream`: base URL (a str) of `python -m demo.servers`; `.tickets_url`,
  `.chat_url`, `.restart()`. Each test gets freshly seeded data: the session's server is
  restarted before a test only if an earlier test wrote to it. Its chat is open
  (`--chat-auth none`), for tests of the tools themselves.
- `demo_upstream_secured`: the same as the trial runs it: the chat needs an access token of
  the demo OAuth server at `.oauth_issuer` (started per test: its tokens live in memory).
- `fault_server`: `FaultServer` (`.url`, `.set_tools(...)`, `.reset_tools()`, `.restart()`,
  `.stdio()`); each test starts with the default tools and a live process.
- `oidc_provider`: `OidcProvider` in auto-approve mode with the default redirect URI (session).
- `oidc_provider_factory`: `(**options) -> OidcProvider` for other redirect URIs, short token
  lifetimes or the login/consent pages; everything it starts stops at session end.
- `inspector`: `run_inspector(url, method="tools/list", headers=..., tool_name=..., tool_args=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.peers.everything import StdioCommand, everything_stdio_command, start_everything_http
from tests.peers.inspector import run_inspector
from tests.peers.npm import ensure_node_modules
from tests.peers.oidc import OidcProvider, start_oidc_provider
from tests.peers.servers import DemoUpstream, FaultServer, start_demo_upstream, start_fault_server


@pytest.fixture(scope="session")
def node_modules() -> None:
    """Install the pinned npm peers once (a no-op when tests/node_modules is current)."""
    ensure_node_modules()


@pytest.fixture(scope="session")
def everything_http(node_modules: None) -> Iterator[str]:
    server = start_everything_http()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def everything_stdio(node_modules: None) -> StdioCommand:
    return everything_stdio_command()


@pytest.fixture(scope="session")
def _demo_upstream_session() -> Iterator[DemoUpstream]:
    upstream = start_demo_upstream(chat_auth="none")
    yield upstream
    upstream.stop()


@pytest.fixture
def demo_upstream_secured() -> Iterator[DemoUpstream]:
    upstream = start_demo_upstream(chat_auth="oauth", extra_args=["--oauth-access-token-ttl", "2"])
    yield upstream
    upstream.stop()


@pytest.fixture
def demo_upstream(_demo_upstream_session: DemoUpstream) -> DemoUpstream:
    _demo_upstream_session.ensure_pristine()
    return _demo_upstream_session


@pytest.fixture(scope="session")
def _fault_server_session() -> Iterator[FaultServer]:
    server = start_fault_server()
    yield server
    server.stop()


@pytest.fixture
def fault_server(_fault_server_session: FaultServer) -> FaultServer:
    if not _fault_server_session.running():  # an earlier test called crash()
        _fault_server_session.restart()
    _fault_server_session.reset_tools()
    return _fault_server_session


@pytest.fixture(scope="session")
def oidc_provider_factory(node_modules: None) -> Iterator[Callable[..., OidcProvider]]:
    started: list[OidcProvider] = []

    def start(**options: Any) -> OidcProvider:
        provider = start_oidc_provider(**options)
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()


@pytest.fixture(scope="session")
def oidc_provider(oidc_provider_factory: Callable[..., OidcProvider]) -> OidcProvider:
    return oidc_provider_factory()


@pytest.fixture(scope="session")
def inspector(node_modules: None) -> Callable[..., dict[str, Any]]:
    return run_inspector
