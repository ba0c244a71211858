from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The trial-mode demo: its MCP servers (demo/servers) and the `bootstrap_demo` command.
    Not part of the product's apps; it may use all of them."""

    name = "demo"
