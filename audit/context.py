"""Per-request context (request id, source IP) that audit records and log lines pick up.

A contextvar works for both sync views and the async gateway: each request or task sees its own.
"""

import contextvars
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    source_ip: str | None = None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "request_context", default=None
)


def new_request_id() -> str:
    """32 random hex digits (128 bits from the OS), as `uuid4().hex` gave before without
    building a UUID object: one is made for every gateway request."""
    return os.urandom(16).hex()


def set_context(ctx: RequestContext | None) -> contextvars.Token:
    return _current.set(ctx)


def reset_context(token: contextvars.Token) -> None:
    _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()
