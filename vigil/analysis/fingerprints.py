"""Error fingerprints: errors grouped by normalised exception type + innermost frame + message template.

An error is an event at level error/critical, or any event carrying an exception. Two errors that differ only
in variable values (ids, numbers, hosts, quoted names) or in the service that logged them share a fingerprint;
a different exception type or a different innermost frame makes a different one. The fingerprint id is a hash
of the three parts, so the same error gets the same evidence id in every incident.

Log text is untrusted: it is only matched and truncated, never interpreted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from vigil.analysis.models import ErrorFingerprint, Level, LogEvent

TemplateOf = Callable[[str], str]
"""Turns a message into its template (variable parts masked), e.g. a TemplateMiner's `add(m).template`."""

SAMPLE_CHARS = 300
WILDCARD = "<*>"
_ERROR_LEVELS = frozenset({Level.ERROR, Level.CRITICAL})

# Order matters: the most specific shapes first, numbers last. Each is linear (no nested quantifiers).
_MASKS = re.compile(
    r"""
      "[^"\n]{0,200}"                                        # double-quoted strings
    | '[^'\n]{0,200}'                                        # single-quoted strings
    | \b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b   # uuids
    | \b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b               # IPv4 (with port)
    | \b(?:[0-9a-f]{1,4}:){4,7}[0-9a-f]{1,4}\b               # IPv6 (full forms)
    | \b0x[0-9a-f]+\b                                        # hex literals
    | \b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b                        # hex ids, hashes
    | (?<![A-Za-z])[-+]?\d+(?:[.,:]\d+)*(?:[a-z]{1,3}\b)?    # numbers, with units (12ms, 3.5s, 10MiB)
    """,
    re.IGNORECASE | re.VERBOSE,
)
_SPACES = re.compile(r"\s+")


def default_template_of(message: str) -> str:
    """A small standalone template: the first line with numbers, hex, uuids, IPs and quoted strings masked."""
    first = message.strip().split("\n", 1)[0][:2000]
    return _SPACES.sub(" ", _MASKS.sub(WILDCARD, first)).strip()


def as_utc(ts: datetime) -> datetime:
    """Naive timestamps are taken as UTC, so naive and aware ones can be compared without an error."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def is_error(event: LogEvent) -> bool:
    return event.level in _ERROR_LEVELS or bool(event.exception_type)


def normalise_exception_type(exception_type: str | None) -> str | None:
    """'builtins.KeyError' and 'KeyError' are one type; generic arguments and anonymous class numbers are dropped."""
    if not exception_type:
        return None
    name = exception_type.strip().rstrip(":")
    name = re.sub(r"<[^<>]{0,200}>|\$\d+", "", name)
    for prefix in ("builtins.", "exceptions."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name or None


def normalise_frame(frame: str | None) -> str | None:
    """'/srv/app/.venv/lib/python3.12/site-packages/x/y.py:fn' -> 'x/y.py:fn': install paths and lines vary."""
    if not frame:
        return None
    file, sep, func = frame.strip().rpartition(":")
    if not sep:
        file, func = func, ""
    if func.isdigit():  # 'file:func:line' or 'file:line'
        head, sep, func = file.rpartition(":")
        file, func = (head, func) if sep else (file, "")
    file = file.replace("\\", "/")
    parts = [p for p in file.split("/") if p]
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) :]
            break
    short = "/".join(parts[-2:])
    return f"{short}:{func}" if func else short or None


def error_key(event: LogEvent, template_of: TemplateOf = default_template_of) -> tuple[str | None, str | None, str]:
    """The three parts an error is grouped by."""
    text = event.exception_message if event.exception_type and event.exception_message else event.message
    frame = normalise_frame(event.frames[-1]) if event.frames else None
    return normalise_exception_type(event.exception_type), frame, template_of(text)


def fingerprint_id(key: tuple[str | None, str | None, str]) -> str:
    raw = "\x1f".join(part or "" for part in key)
    return "error:" + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:8]


def truncate(text: str, limit: int = SAMPLE_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sample_of(event: LogEvent) -> str:
    first = event.message.strip().split("\n", 1)[0]
    if event.exception_type and event.exception_type not in first:
        detail = event.exception_type
        if event.exception_message:
            detail = f"{detail}: {event.exception_message}"
        first = f"{first} | {detail}" if first else detail
    return truncate(first)


def _sort_ts(ts: datetime | None) -> tuple[bool, float]:
    return (ts is None, ts.timestamp() if ts is not None else 0.0)


class _Group:
    __slots__ = ("count", "first_seen", "key", "last_seen", "order", "sample", "services")

    def __init__(self, key: tuple[str | None, str | None, str], event: LogEvent, order: int) -> None:
        self.key = key
        self.order = order
        self.count = 0
        self.first_seen: datetime | None = None
        self.last_seen: datetime | None = None
        self.services: set[str] = set()
        self.sample = sample_of(event)

    def add(self, event: LogEvent) -> None:
        self.count += 1
        if event.service:
            self.services.add(event.service)
        if event.ts is not None:
            ts = as_utc(event.ts)
            if self.first_seen is None or ts < self.first_seen:
                self.first_seen = ts
            if self.last_seen is None or ts > self.last_seen:
                self.last_seen = ts


def fingerprint_errors(
    events: Iterable[LogEvent], *, template_of: TemplateOf = default_template_of
) -> list[ErrorFingerprint]:
    """Group the errors among `events`; most frequent first, then earliest first."""
    groups: dict[str, _Group] = {}
    for event in events:
        if not is_error(event):
            continue
        key = error_key(event, template_of)
        fid = fingerprint_id(key)
        group = groups.get(fid)
        if group is None:
            group = groups[fid] = _Group(key, event, len(groups))
        group.add(event)
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].count, _sort_ts(kv[1].first_seen), kv[1].order))
    return [
        ErrorFingerprint(
            id=fid,
            exception_type=g.key[0],
            frame=g.key[1],
            template=truncate(g.key[2], 1000),
            count=g.count,
            first_seen=g.first_seen,
            last_seen=g.last_seen,
            services=sorted(g.services),
            sample=g.sample,
        )
        for fid, g in ordered
    ]


def fingerprint_ids_of(
    events: Iterable[LogEvent],
    fingerprints: Sequence[ErrorFingerprint],
    *,
    template_of: TemplateOf = default_template_of,
) -> list[str]:
    """Ids of the given fingerprints that the errors among `events` belong to, in the fingerprints' order."""
    known = {fp.id: i for i, fp in enumerate(fingerprints)}
    if not known:
        return []
    found: set[str] = set()
    seen: set[tuple[str | None, ...]] = set()
    for event in events:
        if not is_error(event):
            continue
        frame = event.frames[-1] if event.frames else None
        raw = (event.exception_type, frame, event.exception_message, event.message)
        if raw in seen:  # the same text needs no second (possibly costly) template_of
            continue
        seen.add(raw)
        found.add(fingerprint_id(error_key(event, template_of)))
    return sorted((fid for fid in found if fid in known), key=known.__getitem__)
