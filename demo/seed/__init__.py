"""The trial-mode demo, built step by step. Each app that lands a feature adds a step module here
(`def seed(ctx: DemoContext) -> None`, idempotent) and one line to STEPS, so `bootstrap_demo`
shows a newcomer every feature working in the first minute."""

from demo.seed.context import DemoContext

# Order matters: later steps use what earlier ones created (ctx carries it).
STEPS: list[str] = [
    "demo.seed.tenants",
    "demo.seed.credentials",
    "demo.seed.catalog",
    "demo.seed.policies",
    "demo.seed.audit",
]

__all__ = ["STEPS", "DemoContext"]
