from dataclasses import dataclass, field
from typing import Any

from django.conf import settings


@dataclass
class DemoContext:
    """What the demo steps share. `summary` is printed as JSON at the end of bootstrap_demo."""

    upstream_base_url: str = field(default_factory=lambda: settings.DEMO_UPSTREAM_URL)
    org: Any = None
    admin: Any = None
    admin_password: str | None = None
    member: Any = None
    agent: Any = None
    agent_key: str | None = None
    objects: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
