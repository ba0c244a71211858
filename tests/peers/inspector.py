"""Run the real MCP Inspector CLI (`@modelcontextprotocol/inspector-cli` 0.16.8) as a client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from tests.peers.npm import node_command

BIN = "mcp-inspector-cli"


class InspectorError(RuntimeError):
    """The inspector exited non-zero or printed something that is not JSON."""


def _tool_arg(key: str, value: Any) -> str:
    """`--tool-arg key=value`: the CLI JSON-parses each value, so strings that would parse
    as JSON (e.g. "42", "true") are sent JSON-quoted to stay strings."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return f"{key}={value}"
    return f"{key}={json.dumps(value)}"


def inspector_argv(
    url: str,
    method: str,
    *,
    headers: Mapping[str, str] | None = None,
    tool_name: str | None = None,
    tool_args: Mapping[str, Any] | None = None,
    transport: str = "http",
) -> list[str]:
    argv = node_command(BIN, "--cli", url, "--transport", transport, "--method", method)
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    if tool_name is not None:
        argv += ["--tool-name", tool_name]
    for key, value in (tool_args or {}).items():
        argv += ["--tool-arg", _tool_arg(key, value)]
    return argv


def run_inspector(
    url: str,
    method: str = "tools/list",
    *,
    headers: Mapping[str, str] | None = None,
    tool_name: str | None = None,
    tool_args: Mapping[str, Any] | None = None,
    transport: str = "http",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Run `inspector-cli --cli URL --transport http --method METHOD ...`; return its JSON.

    `--transport http` is always passed, as paths that do not end in /mcp would otherwise be
    taken for SSE. Raises InspectorError with the command's stderr when it fails.
    """
    argv = inspector_argv(
        url, method, headers=headers, tool_name=tool_name, tool_args=tool_args, transport=transport
    )
    # Own process group: the CLI spawns a second node process, and a timeout must kill both.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise InspectorError(
            f"inspector-cli {method} {url} timed out after {timeout:.0f}s\nstderr:\n{stderr[-3000:]}"
        ) from None
    if proc.returncode != 0:
        raise InspectorError(
            f"inspector-cli {method} {url} failed with status {proc.returncode}\n"
            f"stderr:\n{stderr[-3000:]}\nstdout:\n{stdout[-1000:]}"
        )
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise InspectorError(
            f"inspector-cli {method} {url} printed no JSON:\n{stdout[-2000:]}\nstderr:\n{stderr[-2000:]}"
        ) from exc
