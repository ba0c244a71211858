"""Tool references and `*` patterns: `chat.post_message`, `chat/post_message`, `tickets/list_*`.

A reference is split into a server part and a tool part: on the first `/` when there is one,
otherwise on the first `.` (server slugs have no dots; MCP tool names may contain dots). Only
`*` is special (any run of characters); there is no `?` or `[...]`, so a reference can never be
a regex in disguise.

Specificity ranks decide which pinned value wins when several rules pin the same argument:
an exact tool beats a pattern inside one server, which beats a whole server (`chat/*`), which
beats a pattern across servers (`*/delete_*`). Overrides' own pins rank above all of these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

MAX_REF_LENGTH = 200

# Server slugs: no dots (the exposed name is split on the first dot).
SERVER_SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# MCP tool names: 1-128 of letters, digits, `_`, `-`, `.`.
TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Slugs of agents, teams, tool groups; policy names may also contain dots.
SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
POLICY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")

_SERVER_GLOB_RE = re.compile(r"[A-Za-z0-9_*-]{1,64}")
_TOOL_GLOB_RE = re.compile(r"[A-Za-z0-9_.*-]{1,128}")

RANK_CROSS_SERVER = 0
RANK_SERVER = 1
RANK_PATTERN = 2
RANK_TOOL = 3
RANK_OVERRIDE = 4

RANK_NAMES = {
    RANK_CROSS_SERVER: "a pattern across servers",
    RANK_SERVER: "a whole server",
    RANK_PATTERN: "a pattern within one server",
    RANK_TOOL: "one tool",
    RANK_OVERRIDE: "an override",
}


class ToolRefError(ValueError):
    """A tool reference or pattern is malformed; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class ToolPattern:
    """A parsed tool reference: exact (`chat.post_message`) or a `*` pattern."""

    text: str
    server: str
    tool: str

    @property
    def is_exact(self) -> bool:
        return "*" not in self.server and "*" not in self.tool

    @property
    def exposed_name(self) -> str:
        """`server.tool` (meaningful for exact references)."""
        return f"{self.server}.{self.tool}"

    @property
    def rank(self) -> int:
        if "*" in self.server:
            return RANK_CROSS_SERVER
        if self.tool == "*":
            return RANK_SERVER
        if "*" in self.tool:
            return RANK_PATTERN
        return RANK_TOOL

    def matches(self, server: str, tool: str) -> bool:
        if self.is_exact:
            return server == self.server and tool == self.tool
        return _glob(self.server).fullmatch(server) is not None and (
            _glob(self.tool).fullmatch(tool) is not None
        )


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    # Only `*` is special; everything else is literal.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def split_exposed_name(name: str) -> tuple[str, str] | None:
    """`chat.post_message` -> (`chat`, `post_message`); None when there is no dot."""
    server, dot, tool = name.partition(".")
    if not dot or not server or not tool:
        return None
    return server, tool


@lru_cache(maxsize=8192)
def parse_tool_ref(text: str) -> ToolPattern:
    """Parse `server.tool`, `server/tool` or a `*` pattern; raise ToolRefError when malformed."""
    if not isinstance(text, str) or not text:
        raise ToolRefError("must be a tool reference like 'server.tool' or 'server/tool_*'")
    if len(text) > MAX_REF_LENGTH:
        raise ToolRefError(f"is longer than {MAX_REF_LENGTH} characters")
    separator = "/" if "/" in text else "."
    server, found, tool = text.partition(separator)
    if not found:
        raise ToolRefError(
            f"'{text}' names no tool: write 'server.tool' or 'server/tool' "
            "(for a whole server use allow.servers or 'server/*')"
        )
    if not _SERVER_GLOB_RE.fullmatch(server):
        raise ToolRefError(
            f"'{text}': the server part '{server}' may only contain letters, digits, "
            "'_', '-' and '*'"
        )
    if not _TOOL_GLOB_RE.fullmatch(tool):
        raise ToolRefError(
            f"'{text}': the tool part '{tool}' may only contain letters, digits, "
            "'_', '-', '.' and '*'"
        )
    if "**" in server or "**" in tool:
        raise ToolRefError(f"'{text}': write a single '*' (it already matches any characters)")
    return ToolPattern(text=text, server=server, tool=tool)
