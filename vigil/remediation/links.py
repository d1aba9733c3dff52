"""Runbooks link catalogue actions: a line `Vigil action: `toyprod-rollback-deploy`` (or `**Vigil action:**`) in
a runbook names an action of `runbooks/actions/*.yml` that fixes what the runbook is about.

Only runbook files in the runbooks folder can link an action: the text of logs, alerts, past incidents or a model
never does. `runbook_links` maps a runbook's source (as the knowledge base names its hits, `display_source`) to
the actions it links; `runbook_for_url` resolves an alert's `runbook_url` annotation to one of those sources,
without any network, by the longest path suffix that is a runbook file inside the folder.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from vigil.knowledge.base import SUFFIXES, display_source, expand_paths

LINK = re.compile(
    r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?(?:\*\*)?vigil\s+action:(?:\*\*)?\s*`([a-z0-9][a-z0-9-]{0,62})`",
    re.IGNORECASE,
)
"""A link line, optionally a list item, the label optionally bold; the name is an action slug."""
_FENCE = re.compile(r"^\s*(```|~~~)")

_cache: dict[Path, tuple[int, int, list[str]]] = {}
_cache_lock = threading.Lock()


def parse_links(text: str) -> list[str]:
    """The action names a runbook text links, in order, each once; lines inside fenced code blocks are examples,
    not links."""
    names: dict[str, None] = {}
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        match = LINK.match(line)
        if match:
            names[match.group(1)] = None
    return list(names)


def _file_links(file: Path) -> list[str]:
    """`parse_links` of a file, cached by its modification time and size."""
    try:
        stat = file.stat()
    except OSError:
        return []
    with _cache_lock:
        cached = _cache.get(file)
        if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
    try:
        links = parse_links(file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []
    with _cache_lock:
        _cache[file] = (stat.st_mtime_ns, stat.st_size, links)
    return links


def runbook_links(folder: Path) -> dict[str, list[str]]:
    """Runbook source → the action names it links, for the runbooks below `folder` that link any."""
    if not folder.is_dir():
        return {}
    out: dict[str, list[str]] = {}
    for file in expand_paths([folder]):
        links = _file_links(file)
        if links:
            out[display_source(file)] = links
    return out


def runbook_for_url(url: str, folder: Path) -> str | None:
    """The source of the runbook in `folder` that `url` names (`https://host/runbooks/toyprod/bad-deploy.md` →
    `runbooks/toyprod/bad-deploy.md` when the folder holds `toyprod/bad-deploy.md`): the longest suffix of the
    URL's path that is a runbook file inside the folder. None when there is none, or when the path climbs (`..`)."""
    try:
        path = unquote(urlsplit(url.strip()).path)
    except ValueError:
        return None
    if "\\" in path or "\0" in path:
        return None
    parts = [p for p in PurePosixPath(path).parts if p != "/"]
    if not parts or any(p in ("..", ".") for p in parts) or PurePosixPath(parts[-1]).suffix.lower() not in SUFFIXES:
        return None
    try:
        root = folder.resolve()
    except OSError:
        return None
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved.is_relative_to(root) and resolved.is_file():
            return display_source(resolved)
    return None
