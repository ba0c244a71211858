"""Models of the credentials app (filled in by its issue)."""
