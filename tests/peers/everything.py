"""The reference MCP server `@modelcontextprotocol/server-everything`, over HTTP or stdio."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mcp import StdioServerParameters

from tests.peers.npm import node_bin, node_executable
from tests.peers.process import ChildProcess, start_on_free_port

LOOPBACK_SHIM = Path(__file__).resolve().parent / "node" / "loopback.cjs"
BIN = "mcp-server-everything"


@dataclass(frozen=True)
class StdioCommand:
    """How to launch a stdio MCP server: pass `command`/`args` to any client."""

    command: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def params(self) -> StdioServerParameters:
        """The same command as the official SDK client's `StdioServerParameters`."""
        return StdioServerParameters(command=self.command, args=self.args, env=self.env or None)


@dataclass
class EverythingServer:
    """A running `mcp-server-everything streamableHttp` bound to 127.0.0.1 only."""

    process: ChildProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        self.process.stop()


def everything_stdio_command() -> StdioCommand:
    """The stdio command line for server-everything (node run directly: no npx, no orphans)."""
    return StdioCommand(command=node_executable(), args=[str(node_bin(BIN)), "stdio"])


def start_everything_http(*, timeout: float = 30.0) -> EverythingServer:
    """Start server-everything over Streamable HTTP on a free loopback port; wait until it listens.

    The server binds every interface by itself; the `--require` shim pins it to 127.0.0.1.
    Its responses are always SSE-framed: clients must accept text/event-stream.
    """
    script = str(node_bin(BIN))
    node = node_executable()

    def launch(port: int) -> ChildProcess:
        child = ChildProcess(
            [node, "--require", str(LOOPBACK_SHIM), script, "streamableHttp"],
            env={**os.environ, "PORT": str(port)},
            name="server-everything",
        )
        child.wait_ready(line=r"listening on port \d+", timeout=timeout)
        return child

    process, port = start_on_free_port(launch)
    return EverythingServer(process=process, port=port)
