"""Dashboard panels. The org dashboard lives in tenants (the lowest app), so higher apps add their
panels by registering them at start-up (AppConfig.ready) instead of tenants importing them."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest


@dataclass(frozen=True)
class Panel:
    key: str
    template: str
    order: int
    # context(request) -> dict for the template, or None to hide the panel (e.g. no permission)
    context: Callable[[HttpRequest], dict[str, Any] | None]


_panels: dict[str, Panel] = {}


def register_panel(panel: Panel) -> None:
    _panels[panel.key] = panel


def panels_for(request: HttpRequest) -> list[tuple[Panel, dict[str, Any]]]:
    out = []
    for panel in sorted(_panels.values(), key=lambda p: p.order):
        ctx = panel.context(request)
        if ctx is not None:
            out.append((panel, ctx))
    return out
