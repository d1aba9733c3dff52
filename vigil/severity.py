"""Alert and incident severity, in its own module so that message modules on both sides of `vigil.models`
(the remediation messages it embeds) can share it without an import cycle."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)
