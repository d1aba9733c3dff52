"""Reading YAML files and turning pydantic's errors into `Problem`s with dotted field paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from vigil.remediation.errors import Problem


def read_yaml(path: Path) -> tuple[object, list[Problem]]:
    """The parsed document, or None and the problem (unreadable file, bad YAML with its line)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), []
    except OSError as exc:
        return None, [Problem(str(path), "", f"cannot read: {exc.strerror or exc}")]
    except UnicodeDecodeError:
        return None, [Problem(str(path), "", "not UTF-8 text")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(str(path), "", f"invalid YAML{where}: {reason}")]


def join_location(prefix: str, loc: Sequence[int | str]) -> str:
    """`("executor", "url")` under `[1]` → `[1].executor.url`."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_problems(source: str, prefix: str, error: ValidationError) -> list[Problem]:
    problems = []
    for detail in error.errors(include_url=False):
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(Problem(source, join_location(prefix, detail["loc"]), message))
    return problems
