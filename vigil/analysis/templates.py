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
   names, table names, bundle ids) are found later, with hindsight, by **consolidation**: templates of the same
   length that are identical except at one position form a sibling group, and the position becomes ``<*>``
   (the group merges into one template) when it behaves like a variable: at least ``merge_after`` (default 3)
   distinct words that are rarely repeated (distinct words >= 20% of the group's lines) or identifier-shaped
   (``system.call.count``, ``com.apple.x``), or at least 5 distinct plain words in a slot other than the first
   (groups that share a template merge together, so two variable slots become one template). A handful of words
   each seen many times (``VM Paused`` / ``VM Resumed``, ``boot`` / ``wait`` / ``halt``) is a constant and keeps
   its templates apart. That can only be told once enough lines are in, which is why merging waits:
   consolidation runs every 64 new templates and whenever an id is resolved or templates are read after new ones
   were learnt. ``add`` returns the template a line matched at the time; :meth:`TemplateMiner.resolve` gives the
   current, consolidated one. A template learnt before a more general one that covers it joins that one.

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
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from vigil.analysis.masking import WILDCARD, mask

STATE_VERSION = 1
DEFAULT_MERGE_AFTER = 3
DEFAULT_CACHE_SIZE = 200_000
VARIABLE_SHARE = 0.2
MANY_VALUES = 5
CONSOLIDATE_EVERY = 64
_POWERS = [pow(1_000_003, i, 1 << 61) for i in range(64)]
_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*(?:[.\-/:@#][\w$]+)+").fullmatch
_EDGE = "([{\"'<>)]}:,;.!?="


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

    constants: int = 0

    def __post_init__(self) -> None:
        if not self.template:
            self.template = " ".join(self.tokens)
        self.constants = sum(1 for t in self.tokens if t != WILDCARD)

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
        self._cache: dict[str, _Cluster] = {}
        self._seq = 0
        self._new_since_consolidation = 0
        self._fresh: list[_Cluster] = []

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
            if 0 < cluster.constants < len(toks):
                self._fresh.append(cluster)
            self._new_since_consolidation += 1
            if self._new_since_consolidation >= CONSOLIDATE_EVERY:
                self.consolidate()
                cluster = cluster.live()
        cluster.count += 1
        self._remember(masked, cluster)
        return TemplateMatch(cluster.template_id, cluster.template)

    def match(self, message: str) -> TemplateMatch | None:
        """The template ``message`` belongs to, or None; learns nothing."""
        self._settle()
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
        self._settle()
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
        self._settle()
        return sorted(
            (TemplateInfo(c.template_id, c.template, c.count) for c in self._clusters.values()),
            key=lambda info: (-info.count, info.template_id),
        )

    def __len__(self) -> int:
        self._settle()
        return len(self._clusters)

    def consolidate(self) -> None:
        """Merge the sibling groups that behave like a variable (see the module docstring); idempotent."""
        self._new_since_consolidation = 0
        fresh, self._fresh = self._fresh, []
        for general in fresh:
            if general.merged_into is None:
                self._absorb_instances(general)
        while self._consolidate_once():
            pass

    def save(self, path: str | Path) -> None:
        """Write the state as JSON, atomically (temporary file + rename)."""
        self._settle()
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

    def _unindex(self, cluster: _Cluster) -> None:
        del self._clusters[cluster.template_id]
        n = len(cluster.tokens)
        first = cluster.tokens[0] if cluster.tokens else ""
        self._buckets[(n, first)].remove(cluster)
        self._by_length[n].remove(cluster)

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

    def _settle(self) -> None:
        if self._new_since_consolidation:
            self.consolidate()

    def _consolidate_once(self) -> bool:
        """One pass over the sibling groups; True when something merged (a merge can form new groups).

        A template's sibling keys are its tokens with one position left out, hashed in O(length) (a polynomial
        hash minus the left-out token's term); a group is checked token by token before it merges."""
        groups: dict[tuple[int, int, int], list[_Cluster]] = {}
        for cluster in self._clusters.values():
            toks = cluster.tokens
            n = len(toks)
            if n < 2 or cluster.constants < 2:
                continue
            terms = [hash(tok) * _POWERS[i % len(_POWERS)] for i, tok in enumerate(toks)]
            total = sum(terms)
            for position, tok in enumerate(toks):
                if tok != WILDCARD:
                    groups.setdefault((n, position, total - terms[position]), []).append(cluster)
        # Groups that qualify and share a template are one merge (a template with two variable slots is in a
        # qualifying group for each): union-find over the members, then each component becomes one template with
        # <*> wherever its members differ.
        parent: dict[int, _Cluster] = {}

        def root(cluster: _Cluster) -> _Cluster:
            while parent.get(id(cluster), cluster) is not cluster:
                cluster = parent[id(cluster)]
            return cluster

        for (_, position, _), members in groups.items():
            if len(members) < self.merge_after:
                continue
            first = members[0].tokens
            if any(
                m.tokens[:position] != first[:position] or m.tokens[position + 1 :] != first[position + 1 :]
                for m in members
            ):
                continue  # a hash collision, not siblings
            if _variable_slot([m.tokens[position] for m in members], sum(m.count for m in members), position):
                keep = root(members[0])
                parent.setdefault(id(keep), keep)
                for other in members[1:]:
                    other_root = root(other)
                    if other_root is not keep:
                        parent[id(other_root)] = keep
        components: dict[int, list[_Cluster]] = {}
        for cluster in list(self._clusters.values()):
            if id(cluster) in parent:
                components.setdefault(id(root(cluster)), []).append(cluster)
        merged_any = False
        for component in components.values():
            members = [m for m in component if m.merged_into is None]  # an earlier merge may have absorbed some
            if len(members) < 2:
                continue
            columns = zip(*(m.tokens for m in members), strict=True)
            self._merge(members, tokens=[col[0] if len(set(col)) == 1 else WILDCARD for col in columns])
            merged_any = True
        return merged_any

    def _absorb_instances(self, general: _Cluster) -> None:
        """Older templates that are instances of a newer, more general one (``Registering class a.b for x.y``
        learnt before ``Registering class <*> for <*>``) join it: templates differing only at variables are one."""
        instances = [
            c
            for c in self._by_length.get(len(general.tokens), ())
            if c is not general and _fits(general.tokens, c.tokens)
        ]
        if instances:
            self._merge([general, *instances], tokens=general.tokens)

    def _merge(self, members: list[_Cluster], *, tokens: list[str]) -> None:
        """Merge ``members`` into the oldest one, which takes ``tokens``; templates that are now instances of it are
        absorbed too (templates differing only at variable positions are one)."""
        group = sorted(members, key=lambda c: c.seq)
        keeper = group[0]
        merged = list(tokens)
        self._unindex(keeper)
        keeper.tokens = merged
        keeper.template = " ".join(merged)
        keeper.constants = sum(1 for t in merged if t != WILDCARD)
        n = len(merged)
        absorbed = [c for c in self._by_length.get(n, ()) if c is not keeper and _fits(merged, c.tokens)]
        for other in {id(c): c for c in [*group[1:], *absorbed]}.values():
            self._unindex(other)
            other.merged_into = keeper
            keeper.count += other.count
            self._aliases[other.template_id] = keeper.template_id
        self._index(keeper)


def _variable_slot(values: list[str], lines: int, position: int) -> bool:
    """Whether the distinct words one position took (over ``lines`` lines) are the values of a variable.

    Rarely repeated words are values (user names in an attack). Otherwise: identifier-shaped words
    (``system.call.count``, ``com.apple.x``) are values, and so are at least ``MANY_VALUES`` distinct plain words
    in one slot, except in the first one: a message's first word is its verb or subject (the prior Drain's tree is
    built on), and the alternatives of a constant (``boot`` / ``wait`` / ``halt``, ``VM Paused`` / ``VM Resumed``,
    states, methods) are few."""
    if len(values) >= VARIABLE_SHARE * lines:
        return True
    if all(_IDENTIFIER(v.strip(_EDGE)) is not None for v in values):
        return True
    return position > 0 and len(values) >= MANY_VALUES


def _fits(template: list[str], toks: list[str]) -> bool:
    return all(a in (b, WILDCARD) for a, b in zip(template, toks, strict=True))


def _best(candidates: Iterable[_Cluster], toks: list[str]) -> _Cluster | None:
    """The most specific template among ``candidates`` that ``toks`` fits (equal or ``<*>`` everywhere)."""
    best: _Cluster | None = None
    best_same = -1
    for cluster in candidates:
        if not cluster.constants and any(t != WILDCARD for t in toks):
            continue  # a template of variables only would swallow every message of its length
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
