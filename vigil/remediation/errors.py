"""Errors of the remediation configuration: every problem names its file, the field path and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    source: str
    """The file (or `<catalogue>` for problems across files)."""
    location: str
    """Dotted field path inside the file, e.g. `[1].executor.url`; empty for the whole file."""
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.location}" if self.location else self.source
        return f"{where}: {self.message}"


class RemediationConfigError(Exception):
    """Invalid action or policy files; `problems` holds all of them, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the remediation configuration:\n{lines}")


class BindingError(ValueError):
    """A parameter could not be bound: missing, or its value is outside the parameter's schema."""
