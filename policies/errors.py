"""Errors of the policies domain (pure Python: no Django; `tenants.errors` is plain Python too).

One exception type per domain (CONVENTIONS.md): `PolicyError`, with two subclasses that carry a
list of `ValidationError` items so that a UI, an API or a CLI can show every problem at once,
each with its location in the document (`policies[0].deny.tools[1]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tenants.errors import DomainError

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class ValidationError:
    """One problem found in a policy document or a set of policy specs.

    `location` is a path into the document (`policies[0].arguments["chat.post_message"].channel`),
    `line` the 1-based line in the YAML text when it came from text. Warnings do not block an
    import (e.g. a pattern that matches no tool yet); errors do.
    """

    location: str
    message: str
    severity: Severity = "error"
    line: int | None = None

    def __str__(self) -> str:
        where = self.location or "(document)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        prefix = "" if self.severity == "error" else "warning: "
        return f"{prefix}{where}: {self.message}"


class PolicyError(DomainError):
    """Base class of every error raised by the policies domain (a DomainError, so the API and
    the UI map it once, like every other app's error)."""


class _ProblemsError(PolicyError):
    def __init__(self, errors: list[ValidationError]) -> None:
        self.errors = list(errors)
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} problem(s): {shown}{more}")


class PolicyDocumentError(_ProblemsError):
    """The YAML text is not a well-formed policy document (nothing was imported)."""


class PolicyCompileError(_ProblemsError):
    """The policies cannot be compiled safely (invalid spec, conflicting pins, clashing overrides)."""
