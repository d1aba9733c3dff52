"""Templates in action files: `{param}` placeholders for bound parameters, `${NAME}` references to settings.

References resolve from `Settings` only, through the allowlist below; secret ones may only appear in HTTP
headers, so that they never end up in a URL, an argument list or a log line."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from toyprod.config import resolve_chaos_token
from vigil.settings import Settings

PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
REFERENCE_START = re.compile(r"\$\{")
TEMPLATE = re.compile(f"{REFERENCE.pattern}|{PLACEHOLDER.pattern}")
"""Either, in one pass: group 1 a reference's name, group 2 a placeholder's."""


@dataclass(frozen=True)
class Reference:
    secret: bool
    resolve: Callable[[Settings], str | None]


def _chaos_token(settings: Settings) -> str | None:
    explicit = settings.chaos_token.get_secret_value() if settings.chaos_token else None
    return resolve_chaos_token(explicit, settings.state_dir)


REFERENCES: dict[str, Reference] = {
    "TOYPROD_URL": Reference(secret=False, resolve=lambda settings: f"http://127.0.0.1:{settings.toyprod_port}"),
    "CHAOS_TOKEN": Reference(secret=True, resolve=_chaos_token),
}


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def references(template: str) -> list[str]:
    return REFERENCE.findall(template)


def reference_problems(template: str, *, secrets_allowed: bool) -> list[str]:
    """Why the `${...}` references of a template are refused: unknown, malformed, or a secret out of place."""
    problems = []
    if len(REFERENCE_START.findall(template)) != len(references(template)):
        problems.append("malformed ${...} reference (expected ${UPPER_CASE_NAME})")
    for name in references(template):
        reference = REFERENCES.get(name)
        if reference is None:
            problems.append(f"unknown reference ${{{name}}} (known: {', '.join(sorted(REFERENCES))})")
        elif reference.secret and not secrets_allowed:
            problems.append(f"secret ${{{name}}} is allowed in headers only")
    return problems


def resolve_reference(name: str, settings: Settings) -> str:
    """The value of an allowlisted reference; ValueError when unknown or not configured."""
    reference = REFERENCES.get(name)
    if reference is None:
        raise ValueError(f"unknown reference ${{{name}}}")
    value = reference.resolve(settings)
    if value is None:
        raise ValueError(f"${{{name}}} is not configured")
    return value
