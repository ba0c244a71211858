"""catalog.upstream against real peers: server-everything (HTTP and stdio under bubblewrap),
mcp-server-time (stdio), the fault server; and the bad upstreams the catalog must survive."""

import shutil
import sys
from pathlib import Path

import pytest

from catalog.errors import UpstreamError
from catalog.upstream import ServerConnectionConfig, list_tools_sync, open_client, stdio_launch

EVERYTHING_TOOLS = {"echo", "get-sum", "get-env", "get-tiny-image", "get-structured-content"}
VENV_BIN = Path(sys.executable).parent


def http(url: str, hosts: tuple[str, ...] = ("127.0.0.1",)) -> ServerConnectionConfig:
    return ServerConnectionConfig(
        org_id=1, server_id=1, server_slug="t", transport="http", url=url, egress_hosts=hosts
    )


def stdio(command: str, *args: str, **kwargs: object) -> ServerConnectionConfig:
    return ServerConnectionConfig(
        org_id=1,
        server_id=1,
        server_slug="t",
        transport="stdio",
        command=command,
        args=args,
        **kwargs,
    )


@pytest.mark.e2e
def test_server_everything_over_http(everything_http) -> None:
    listing = list_tools_sync(http(everything_http))
    assert {t.name for t in listing.tools} >= EVERYTHING_TOOLS
    assert all(len(t.definition_hash) == 64 for t in listing.tools)
    # The same definitions hash the same on a second fetch (the pin is stable).
    again = list_tools_sync(http(everything_http))
    assert {t.name: t.definition_hash for t in listing.tools} == {
        t.name: t.definition_hash for t in again.tools
    }


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_server_everything_over_stdio_in_the_sandbox(everything_stdio) -> None:
    config = stdio(everything_stdio.command, *everything_stdio.args)
    argv, _env, _cwd, sandboxed = stdio_launch(config)
    assert (
        sandboxed
        and argv[0].endswith("bwrap")
        and "--unshare-all" in argv
        and "--share-net" not in argv
    )
    listing = list_tools_sync(config)
    assert {t.name for t in listing.tools} >= EVERYTHING_TOOLS


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_sandboxed_stdio_server_gets_only_the_env_we_give_it(everything_stdio) -> None:
    """get-env of server-everything returns its environment: only what we set reaches it."""
    import anyio

    config = stdio(
        everything_stdio.command, *everything_stdio.args, env={"SERVER_TOKEN": "s3cret-value"}
    )

    async def call() -> str:
        async with open_client(config, connect_timeout=20) as client:
            result = await client.call_tool("get-env", {})
            return result.content[0].text

    text = anyio.run(call)
    assert "s3cret-value" in text
    assert "DJANGO_SETTINGS_MODULE" not in text and "VIRTUAL_ENV" not in text


@pytest.mark.e2e
def test_mcp_server_time_over_stdio() -> None:
    listing = list_tools_sync(stdio(str(VENV_BIN / "mcp-server-time"), "--local-timezone", "UTC"))
    assert {t.name for t in listing.tools} == {"get_current_time", "convert_time"}


def test_fault_server_over_stdio(fault_server) -> None:
    cmd = fault_server.stdio()
    listing = list_tools_sync(stdio(cmd.command, *cmd.args, env=cmd.env))
    assert "echo" in {t.name for t in listing.tools}


@pytest.mark.parametrize(
    ("script", "code", "message"),
    [
        ("import sys; sys.exit(3)", "exited", "exited (status 3)"),
        ("import sys; print('boom', file=sys.stderr); sys.exit(1)", "exited", "boom"),
        ("import sys\nwhile True: print('not json')", "too_large", "not MCP messages"),
        ("import sys\nwhile True: sys.stdout.write('x' * 65536)", "too_large", "longer than"),
        ("import time; time.sleep(60)", "timeout", "too long"),
    ],
)
def test_bad_stdio_commands_fail_clearly(settings, script: str, code: str, message: str) -> None:
    settings.CATALOG_CONNECT_TIMEOUT = 2.0
    with pytest.raises(UpstreamError) as excinfo:
        list_tools_sync(stdio(sys.executable, "-c", script))
    assert excinfo.value.code == code
    assert message in excinfo.value.message


def test_stdio_secret_env_is_redacted_from_stderr_tail() -> None:
    script = (
        "import os, sys; print('token is', os.environ['API_TOKEN'], file=sys.stderr); sys.exit(2)"
    )
    with pytest.raises(UpstreamError) as excinfo:
        list_tools_sync(stdio(sys.executable, "-c", script, env={"API_TOKEN": "tok-very-secret"}))
    assert "tok-very-secret" not in excinfo.value.message
    assert "token is ***" in excinfo.value.message


def test_missing_sandbox_refuses_stdio_when_required(settings) -> None:
    settings.CATALOG_SANDBOX_BWRAP = "/nonexistent/bwrap"
    settings.CATALOG_REQUIRE_SANDBOX = True
    with pytest.raises(UpstreamError) as excinfo:
        list_tools_sync(stdio(sys.executable, "-c", "pass"))
    assert excinfo.value.code == "sandbox_unavailable"


@pytest.mark.parametrize(
    ("tools", "code"),
    [
        (
            [{"name": f"t{i}", "inputSchema": {"type": "object"}} for i in range(10_000)],
            "too_many_tools",
        ),
        (
            [{"name": "big", "description": "x" * 50_000_000, "inputSchema": {"type": "object"}}],
            "too_large",
        ),
        (
            [{"name": "bad", "inputSchema": {"type": "object", "properties": {"a": {"type": 5}}}}],
            "invalid_definitions",
        ),
        ([{"name": "has space", "inputSchema": {"type": "object"}}], "invalid_definitions"),
    ],
    ids=["10k-tools", "50MB-description", "invalid-schema", "invalid-name"],
)
def test_hostile_listings_are_refused(fault_server, tools, code) -> None:
    fault_server.set_tools(tools)
    with pytest.raises(UpstreamError) as excinfo:
        list_tools_sync(http(fault_server.url))
    assert excinfo.value.code == code


@pytest.mark.parametrize(
    ("url", "hosts", "allow_loopback", "code"),
    [
        ("http://127.0.0.1:9/mcp", ("127.0.0.1",), True, "unreachable"),
        ("http://127.0.0.1:9/mcp", ("127.0.0.1",), False, "egress_refused"),
        ("http://169.254.169.254/mcp", ("169.254.169.254",), True, "egress_refused"),
        ("http://10.0.0.1/mcp", ("10.0.0.1",), True, "egress_refused"),
        ("http://example.com/mcp", ("other.example",), True, "egress_refused"),
    ],
)
def test_egress_rules(settings, url, hosts, allow_loopback, code) -> None:
    settings.CATALOG_ALLOW_LOOPBACK = allow_loopback
    with pytest.raises(UpstreamError) as excinfo:
        list_tools_sync(http(url, hosts))
    assert excinfo.value.code == code


def test_not_mcp_urls(fault_server) -> None:
    for path, code in (("/nope", "not_mcp"), ("/healthz", "not_mcp")):
        with pytest.raises(UpstreamError) as excinfo:
            list_tools_sync(http(fault_server.url.replace("/mcp", path)))
        assert excinfo.value.code == code, excinfo.value.message


def test_slow_upstream_times_out(settings) -> None:
    """A TCP server that accepts and never answers."""
    import socket

    settings.CATALOG_CONNECT_TIMEOUT = 1.0
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(UpstreamError) as excinfo:
            list_tools_sync(http(f"http://127.0.0.1:{port}/mcp"), total_timeout=1.5)
    assert excinfo.value.code == "timeout"
