"""Online, persistent log template mining with one default configuration for every source.

How a message finds its template:

1. **Masking** (:mod:`vigil.analysis.masking`): quoted values, ``key=value`` values, URLs, paths, e-mails and
   every token holding a digit become ``<*>``.
2. **Exact cache**: the masked message is looked up in a dict of masked message -> template. Most lines of a
   real log hit it, so the common path is a few C-level regex passes and one dict lookup.
3. **Template search**: otherwise the masked tokens are routed by (token count, first token) to a short list of
   templates (plus those of the same length whose first token is ``<*>``); a template matches when every
   position is equal or ``<*>`` in the template; the most specific match wins. Unlike Drain there is no
   similarity threshold to tune: constant words must agree.
4. **Learning** (``add`` only): with no match a new template is created. Variables that are plain words (user
   names, table names, states) are found by **sibling merging**: when ``merge_after`` (default 3) templates of
   the same length are identical except for one position where each has a different word, that position is a
   variable and they are merged into one template with ``<*>`` there. Two alternatives
   (``cupsd startup succeeded`` / ``cupsd shutdown succeeded``) stay two templates; three or more distinct
   words in the same slot (``Invalid user admin/oracle/test from <*>``) become a variable.

**Template ids** are ``t`` + the first 10 hex digits of the BLAKE2b hash of the *first* masked message that
created the template. They never change when a template generalises, do not depend on the order in which
other templates were learnt, survive ``save``/``load``, and the same first line gives the same id in any
process. When templates merge, the oldest one's id survives and the others become aliases of it:
:meth:`TemplateMiner.resolve` maps any id ever returned to the current one, so ids stored earlier stay
meaningful. (A collision of two first lines' hashes - practically impossible - gets a ``-2`` suffix.)

State is plain JSON (``save`` / ``TemplateMiner.load``): templates, counts, aliases and the exact cache, so a
restarted miner maps every line it has seen to the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from vigil.analysis.masking import WILDCARD, mask

STATE_VERSION = 1
DEFAULT_MERGE_AFTER = 3
DEFAULT_CACHE_SIZE = 200_000


class TemplateMatch(NamedTuple):
    template_id: str
    template: str


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    template_id: str
    template: str
    count: int


@dataclass(slots=True, eq=False)
class _Cluster:
    template_id: str
    tokens: list[str]
    seq: int
    count: int = 0
    template: str = field(default="")
    merged_into: _Cluster | None = None

    def __post_init__(self) -> None:
        if not self.template:
            self.template = " ".join(self.tokens)

    def live(self) -> _Cluster:
        cluster = self
        while cluster.merged_into is not None:
            cluster = cluster.merged_into
        return cluster


def template_id_for(first_masked: str) -> str:
    """The stable id of a template first created from the masked message ``first_masked``."""
    return "t" + hashlib.blake2b(first_masked.encode("utf-8", "replace"), digest_size=8).hexdigest()[:10]


class TemplateMiner:
    """Mines templates from messages online. ``add`` learns, ``match`` only looks up."""

    def __init__(self, *, merge_after: int = DEFAULT_MERGE_AFTER, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if merge_after < 2:
            raise ValueError("merge_after must be at least 2")
        self.merge_after = merge_after
        self.cache_size = cache_size
        self._clusters: dict[str, _Cluster] = {}
        self._aliases: dict[str, str] = {}
        self._buckets: dict[tuple[int, str], list[_Cluster]] = {}
        self._by_length: dict[int, list[_Cluster]] = {}
        self._by_second: dict[tuple[int, str], list[_Cluster]] = {}
        self._cache: dict[str, _Cluster] = {}
        self._seq = 0

    # -- public API ---------------------------------------------------------------------------------------------

    def add(self, message: str) -> TemplateMatch:
        """The template of ``message``, learning from it (a new template, or a more general one)."""
        masked = mask(message)
        cluster = self._cache.get(masked)
        if cluster is not None:
            if cluster.merged_into is not None:
                cluster = cluster.live()
                self._cache[masked] = cluster
            cluster.count += 1
            return TemplateMatch(cluster.template_id, cluster.template)
        toks = masked.split()
        cluster = self._search(toks)
        if cluster is None:
            cluster = self._create(masked, toks)
            cluster = self._merge_siblings(cluster)
        cluster.count += 1
        self._remember(masked, cluster)
        return TemplateMatch(cluster.template_id, cluster.template)

    def match(self, message: str) -> TemplateMatch | None:
        """The template ``message`` belongs to, or None; learns nothing."""
        masked = mask(message)
        cluster = self._cache.get(masked)
        if cluster is None:
            cluster = self._search(masked.split())
            if cluster is None:
                return None
        cluster = cluster.live()
        return TemplateMatch(cluster.template_id, cluster.template)

    def resolve(self, template_id: str) -> str:
        """The current id of a template id this miner ever returned (ids of merged templates are aliases)."""
        seen = 0
        while template_id in self._aliases and seen < 1000:
            template_id = self._aliases[template_id]
            seen += 1
        return template_id

    def template(self, template_id: str) -> str | None:
        """The current template text of an id (or alias), or None when unknown."""
        cluster = self._clusters.get(self.resolve(template_id))
        return None if cluster is None else cluster.template

    def templates(self) -> list[TemplateInfo]:
        """Every template learnt so far, most frequent first."""
        return sorted(
            (TemplateInfo(c.template_id, c.template, c.count) for c in self._clusters.values()),
            key=lambda info: (-info.count, info.template_id),
        )

    def __len__(self) -> int:
        return len(self._clusters)

    def save(self, path: str | Path) -> None:
        """Write the state as JSON, atomically (temporary file + rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "merge_after": self.merge_after,
            "cache_size": self.cache_size,
            "templates": [
                {"id": c.template_id, "tokens": c.tokens, "count": c.count, "seq": c.seq}
                for c in sorted(self._clusters.values(), key=lambda c: c.seq)
            ],
            "aliases": self._aliases,
            "cache": {masked: c.live().template_id for masked, c in self._cache.items()},
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(state, out, separators=(",", ":"))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> TemplateMiner:
        """A miner with the state ``save`` wrote."""
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                raise ValueError("unknown version")
            miner = cls(merge_after=int(state["merge_after"]), cache_size=int(state["cache_size"]))
            for item in state["templates"]:
                seq = int(item["seq"])
                cluster = _Cluster(str(item["id"]), [str(t) for t in item["tokens"]], seq, int(item["count"]))
                miner._index(cluster)
                miner._seq = max(miner._seq, seq + 1)
            miner._aliases = {str(k): str(v) for k, v in state["aliases"].items()}
            for masked, template_id in state["cache"].items():
                known = miner._clusters.get(miner.resolve(str(template_id)))
                if known is not None:
                    miner._cache[str(masked)] = known
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a template miner state of version {STATE_VERSION}: {exc}") from exc
        return miner

    # -- internals ----------------------------------------------------------------------------------------------

    def _remember(self, masked: str, cluster: _Cluster) -> None:
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[masked] = cluster

    def _index(self, cluster: _Cluster) -> None:
        self._clusters[cluster.template_id] = cluster
        n = len(cluster.tokens)
        first = cluster.tokens[0] if cluster.tokens else ""
        self._buckets.setdefault((n, first), []).append(cluster)
        self._by_length.setdefault(n, []).append(cluster)
        if n > 1:
            self._by_second.setdefault((n, cluster.tokens[1]), []).append(cluster)

    def _unindex(self, cluster: _Cluster) -> None:
        del self._clusters[cluster.template_id]
        n = len(cluster.tokens)
        first = cluster.tokens[0] if cluster.tokens else ""
        self._buckets[(n, first)].remove(cluster)
        self._by_length[n].remove(cluster)
        if n > 1:
            self._by_second[(n, cluster.tokens[1])].remove(cluster)

    def _create(self, masked: str, toks: list[str]) -> _Cluster:
        base = template_id_for(masked)
        template_id = base
        suffix = 2
        while template_id in self._clusters or template_id in self._aliases:
            template_id = f"{base}-{suffix}"
            suffix += 1
        cluster = _Cluster(template_id, list(toks), self._seq)
        self._seq += 1
        self._index(cluster)
        return cluster

    def _search(self, toks: list[str]) -> _Cluster | None:
        n = len(toks)
        first = toks[0] if toks else ""
        best = _best(self._buckets.get((n, first), ()), toks)
        if best is None and first != WILDCARD:
            best = _best(self._buckets.get((n, WILDCARD), ()), toks)
        return best

    def _related(self, n: int, toks: list[str]) -> list[_Cluster]:
        """Templates of length ``n`` that can differ from ``toks`` at one position or only where ``toks`` has
        ``<*>``: they share its first token, or its second one, or start with ``<*>`` (indexed, so that learning
        stays fast with many thousands of templates)."""
        first, second = toks[0], toks[1]
        if first == WILDCARD and second == WILDCARD:
            return list(self._by_length.get(n, ()))
        seen: dict[int, _Cluster] = {}
        groups = [self._buckets.get((n, WILDCARD), [])]
        if first != WILDCARD:
            groups.append(self._buckets.get((n, first), []))
        if second != WILDCARD:
            groups.append(self._by_second.get((n, second), []))
            groups.append(self._by_second.get((n, WILDCARD), []))
        else:
            groups.append(self._by_second.get((n, WILDCARD), []))
        for group in groups:
            for cluster in group:
                seen[id(cluster)] = cluster
        return sorted(seen.values(), key=lambda c: c.seq)

    def _merge_siblings(self, new: _Cluster) -> _Cluster:
        """Merge ``new`` with the templates that differ from it at one word position, once there are enough."""
        toks = new.tokens
        n = len(toks)
        if n < 2:
            return new
        by_position: dict[int, list[_Cluster]] = {}
        for cluster in self._related(n, toks):
            if cluster is new:
                continue
            position = -1
            for i, (a, b) in enumerate(zip(cluster.tokens, toks, strict=True)):
                if a != b and a != WILDCARD:
                    if position >= 0:
                        position = -2
                        break
                    position = i
            if position >= 0:
                by_position.setdefault(position, []).append(cluster)
        best_position = -1
        for position, siblings in by_position.items():
            if len(siblings) + 1 >= self.merge_after and (
                best_position < 0 or len(siblings) > len(by_position[best_position])
            ):
                best_position = position
        if best_position < 0:
            return new
        group = sorted([*by_position[best_position], new], key=lambda c: c.seq)
        keeper = group[0]
        merged = list(keeper.tokens)
        for other in group[1:]:
            merged = [a if a == b else WILDCARD for a, b in zip(merged, other.tokens, strict=True)]
        self._unindex(keeper)
        keeper.tokens = merged
        keeper.template = " ".join(merged)
        # Templates learnt before this generalisation that are now instances of it (their other variable words
        # had no siblings yet) are absorbed too: templates that differ only at variable positions are one.
        absorbed = [c for c in self._related(n, merged) if c is not keeper and _fits(merged, c.tokens)]
        for other in {id(c): c for c in [*group[1:], *absorbed]}.values():
            self._unindex(other)
            other.merged_into = keeper
            keeper.count += other.count
            self._aliases[other.template_id] = keeper.template_id
        self._index(keeper)
        return keeper


def _fits(template: list[str], toks: list[str]) -> bool:
    return all(a in (b, WILDCARD) for a, b in zip(template, toks, strict=True))


def _best(candidates: Iterable[_Cluster], toks: list[str]) -> _Cluster | None:
    """The most specific template among ``candidates`` that ``toks`` fits (equal or ``<*>`` everywhere)."""
    best: _Cluster | None = None
    best_same = -1
    for cluster in candidates:
        same = 0
        for a, b in zip(cluster.tokens, toks, strict=True):
            if a == b:
                same += 1
            elif a != WILDCARD:
                same = -1
                break
        if same > best_same:
            best, best_same = cluster, same
    return best


__all__ = ["TemplateInfo", "TemplateMatch", "TemplateMiner", "template_id_for"]
