"""Models of the catalog app (filled in by its issue)."""
