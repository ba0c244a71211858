"""Models of the gateway app (filled in by its issue)."""
