"""Launchers for our own Python MCP peers: the demo upstream and the fault server."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.everything import StdioCommand
from tests.peers.fault_server import DEFAULT_TOOLS, TOOLS_FILE_ENV
from tests.peers.process import ChildProcess, start_on_free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def _python_env() -> dict[str, str]:
    # Unbuffered, so the child's output is in its log when a start-up fails.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}


class DemoUpstream(str):
    """The base URL of a running `python -m demo.servers` (this object *is* that string),
    with `/tickets/mcp` and `/chat/mcp` beneath it and the demo OAuth server at `/oauth`.
    `chat_auth` is "oauth" (the chat needs a token of that server, as in the trial) or "none"."""

    process: ChildProcess
    port: int
    chat_auth: str

    def __new__(cls, process: ChildProcess, port: int, chat_auth: str = "oauth") -> DemoUpstream:
        self = super().__new__(cls, f"http://127.0.0.1:{port}")
        self.process = process
        self.port = port
        self.chat_auth = chat_auth
        return self

    @property
    def oauth_issuer(self) -> str:
        return f"{self}/oauth"

    @property
    def base_url(self) -> str:
        return str(self)

    @property
    def tickets_url(self) -> str:
        return f"{self}/tickets/mcp"

    @property
    def chat_url(self) -> str:
        return f"{self}/chat/mcp"

    def changes(self) -> int | None:
        """Writes (ticket updates, posts, deletions) since it started; None if it is down."""
        try:
            with urllib.request.urlopen(f"{self}/healthz", timeout=2.0) as response:
                return int(json.load(response)["changes"])
        except (OSError, ValueError, KeyError):
            return None

    def restart(self) -> None:
        """Restart on the same port: the in-memory tickets and messages are seeded afresh."""
        self.process.stop()
        self.process = _launch_demo(self.port, chat_auth=self.chat_auth)

    def ensure_pristine(self) -> None:
        """Restart if it is down or any write happened since it started (about a second)."""
        if self.changes() != 0:
            self.restart()

    def stop(self) -> None:
        self.process.stop()


def _launch_demo(
    port: int, timeout: float = 20.0, *, chat_auth: str = "oauth", extra_args: Sequence[str] = ()
) -> ChildProcess:
    child = ChildProcess(
        [
            sys.executable,
            "-m",
            "demo.servers",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chat-auth",
            chat_auth,
            *extra_args,
        ],
        env=_python_env(),
        cwd=REPO_ROOT,
        name="demo-servers",
    )
    child.wait_ready(url=f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    return child


def start_demo_upstream(
    *, chat_auth: str = "oauth", extra_args: Sequence[str] = ()
) -> DemoUpstream:
    """`chat_auth="none"` serves an open chat (tests of the chat tools themselves)."""
    process, port = start_on_free_port(
        lambda p: _launch_demo(p, chat_auth=chat_auth, extra_args=extra_args)
    )
    return DemoUpstream(process, port, chat_auth)


def demo_stdio(name: str) -> StdioCommand:
    """The stdio command line for one demo server ("tickets" or "chat")."""
    return StdioCommand(
        command=sys.executable,
        args=["-m", f"demo.servers.{name}", "--stdio"],
        env={"PYTHONPATH": str(REPO_ROOT)},
    )


@dataclass
class FaultServer:
    """The fault-injection server over HTTP, with tool definitions a test can rewrite live."""

    process: ChildProcess
    port: int
    tools_file: Path
    _tmpdir: tempfile.TemporaryDirectory[str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def set_tools(self, tools: Sequence[dict[str, Any]]) -> None:
        """Replace the advertised tool definitions (MCP Tool JSON); seen on the next request."""
        # Write then rename: the server never reads a half-written file.
        scratch = self.tools_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(list(tools), indent=2))
        scratch.replace(self.tools_file)

    def reset_tools(self) -> None:
        self.set_tools(DEFAULT_TOOLS)

    def running(self) -> bool:
        return self.process.running()

    def restart(self) -> None:
        """Start it again on the same port and tools file (e.g. after `crash()`)."""
        self.process.stop()
        self.process = _launch_fault(self.port, self.tools_file)

    def stdio(self) -> StdioCommand:
        """A stdio launch of the same server, reading the same tools file."""
        return fault_stdio(self.tools_file)

    def stop(self) -> None:
        self.process.stop()
        self._tmpdir.cleanup()


def _launch_fault(port: int, tools_file: Path, timeout: float = 20.0) -> ChildProcess:
    child = ChildProcess(
        [
            sys.executable,
            "-m",
            "tests.peers.fault_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--tools-file",
            str(tools_file),
        ],
        env=_python_env(),
        cwd=REPO_ROOT,
        name="fault-server",
    )
    child.wait_ready(url=f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    return child


def fault_stdio(tools_file: Path | None = None) -> StdioCommand:
    env = {"PYTHONPATH": str(REPO_ROOT)}
    if tools_file is not None:
        env[TOOLS_FILE_ENV] = str(tools_file)
    return StdioCommand(
        command=sys.executable, args=["-m", "tests.peers.fault_server", "--stdio"], env=env
    )


def start_fault_server() -> FaultServer:
    tmpdir = tempfile.TemporaryDirectory(prefix="fault-server-")
    tools_file = Path(tmpdir.name) / "tools.json"
    tools_file.write_text(json.dumps(DEFAULT_TOOLS, indent=2))
    process, port = start_on_free_port(lambda port: _launch_fault(port, tools_file))
    return FaultServer(process=process, port=port, tools_file=tools_file, _tmpdir=tmpdir)
