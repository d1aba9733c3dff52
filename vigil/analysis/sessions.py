"""Session-level log anomaly detection: events grouped by an id (request, trace, job or block id).

A :class:`SessionModel` learns from normal sessions (a little contamination is tolerated) and scores new ones.
Events are raw messages or templates; both are mapped to template ids with a :class:`TemplateMiner` (a string
that already is a template, with ``<*>``, matches itself). A session's score adds up evidence, where 1.0 is
one clear sign of an anomaly:

1. **novelty**: each template never (or too rarely: fewer than ``min_support`` training sessions) seen in
   training counts 1.0; each unseen transition (bigram of consecutive templates, with start/end) 0.25;
2. **count invariants** (invariant mining): linear relations between template counts that hold in the normal
   sessions (``#received == #stored``, ``#receiving == #responders``, ...), found as the null space of the
   training count matrix (with a constant column), fitted twice: a first, tolerant fit finds the
   near-invariants, training sessions that break them (the contamination) are dropped, and an exact refit on
   the rest keeps the relations that hold; the residual of a session, relative to 0.1, is its score (capped);
3. **precedence invariants**: "the first A comes before the first B" for template pairs that co-occur in at
   least ``min_support`` sessions and are ordered so in at least 99% of them; 1.0 per violated pair;
4. **robust distance**: L1 distance of the count vector to the nearest count signature seen in at least two
   training sessions, divided by 8 (a signature seen twice scores 0; a single training session may be an
   anomaly);
5. **length outlier**: 1.0 when the session has fewer than half the events of the 1st percentile of the training
   sessions' lengths, or more than twice the 99th percentile (a block that stops after two events, a request
   that loops).

The threshold is learnt from the training data only: the larger of 1.0 and the 98th percentile of the
training sessions' scores (up to 2% contamination does not move it). No labels are used.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pydantic import BaseModel, Field

from vigil.analysis.masking import mask
from vigil.analysis.templates import TemplateMiner

_START = "^"
_END = "$"
_UNSEEN_BIGRAM = 0.25
_DISTANCE_SCALE = 8.0
_RESIDUAL_UNIT = 0.1
_CAP = 10.0


class SessionScore(BaseModel):
    """The anomaly score of one session; ``anomalous`` when ``score >= threshold``."""

    id: str
    score: float
    anomalous: bool
    reasons: list[str] = Field(default_factory=list, description="What contributed to the score, largest first.")


class SessionModel:
    """Learns normal sessions (lists of messages or templates), scores new ones. See the module docstring."""

    def __init__(self, miner: TemplateMiner | None = None, *, min_support: int | None = None) -> None:
        self.miner = miner if miner is not None else TemplateMiner()
        self._min_support_arg = min_support
        self.min_support = 3
        self.threshold = 1.0
        self._known: set[str] = set()
        self._bigrams: set[tuple[str, str]] = set()
        self._vocab: list[str] = []
        self._null = np.zeros((0, 1))
        self._before: list[tuple[str, str]] = []
        self._signatures = np.zeros((0, 0))
        self._length_range = (0.0, math.inf)

    # -- mapping ----------------------------------------------------------------------------------------------

    def keys(self, events: Iterable[str]) -> list[str]:
        """The template id of each event (``?`` + the masked text for events matching no known template)."""
        out = []
        for event in events:
            found = self.miner.match(event)
            out.append(self.miner.resolve(found.template_id) if found is not None else "?" + mask(event))
        return out

    def vocabulary(self) -> list[str]:
        """Template ids of the count vectors, in column order."""
        return list(self._vocab)

    # -- training ---------------------------------------------------------------------------------------------

    def fit(self, sessions: Sequence[Sequence[str]]) -> SessionModel:
        for events in sessions:
            for event in events:
                self.miner.add(event)
        keyed = [self.keys(events) for events in sessions]
        n = len(keyed)
        self.min_support = self._min_support_arg or max(3, math.ceil(0.002 * n))
        support: Counter[str] = Counter()
        bigram_support: Counter[tuple[str, str]] = Counter()
        for keys in keyed:
            support.update(set(keys))
            bigram_support.update(set(_bigrams(keys)))
        self._known = {k for k, c in support.items() if c >= self.min_support}
        self._bigrams = {b for b, c in bigram_support.items() if c >= self.min_support}
        self._vocab = sorted(self._known)
        x = self._counts(keyed)
        self._null = _invariants(x)
        self._before = self._precedence(keyed)
        sig, sig_counts = np.unique(x, axis=0, return_counts=True) if n else (np.zeros((0, len(self._vocab))), [])
        self._signatures = sig[np.asarray(sig_counts) >= 2] if n else sig
        if n:
            lengths = [len(keys) for keys in keyed]
            self._length_range = (float(np.quantile(lengths, 0.01)) / 2, float(np.quantile(lengths, 0.99)) * 2)
        scores = [self._score(keys, row)[0] for keys, row in zip(keyed, x, strict=True)]
        self.threshold = max(1.0, float(np.quantile(scores, 0.98))) if scores else 1.0
        return self

    def _counts(self, keyed: Sequence[Sequence[str]]) -> np.ndarray:
        index = {k: i for i, k in enumerate(self._vocab)}
        x = np.zeros((len(keyed), len(self._vocab)))
        for row, keys in enumerate(keyed):
            for key in keys:
                col = index.get(key)
                if col is not None:
                    x[row, col] += 1
        return x

    def _precedence(self, keyed: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
        together: Counter[tuple[str, str]] = Counter()
        for keys in keyed:
            first: dict[str, int] = {}
            for pos, key in enumerate(keys):
                if key in self._known:
                    first.setdefault(key, pos)
            for a, pa in first.items():
                for b, pb in first.items():
                    if pa < pb:
                        together[(a, b)] += 1
        out = []
        for (a, b), ab in together.items():
            ba = together.get((b, a), 0)
            if ab + ba >= self.min_support and ba <= 0.01 * (ab + ba):
                out.append((a, b))
        return sorted(out)

    # -- scoring ----------------------------------------------------------------------------------------------

    def score(self, session_id: str, events: Sequence[str]) -> SessionScore:
        keys = self.keys(events)
        total, reasons = self._score(keys, self._counts([keys])[0])
        return SessionScore(id=session_id, score=round(total, 4), anomalous=total >= self.threshold, reasons=reasons)

    def score_many(self, sessions: Iterable[tuple[str, Sequence[str]]]) -> list[SessionScore]:
        return [self.score(sid, events) for sid, events in sessions]

    def _score(self, keys: Sequence[str], row: np.ndarray) -> tuple[float, list[str]]:
        parts: list[tuple[float, str]] = []
        unseen = sorted({k for k in keys if k not in self._known})
        if unseen:
            parts.append((float(len(unseen)), f"unseen templates: {', '.join(unseen[:5])}"))
        new_bigrams = {b for b in _bigrams(keys) if b not in self._bigrams}
        if new_bigrams:
            parts.append((_UNSEEN_BIGRAM * len(new_bigrams), f"{len(new_bigrams)} unseen transitions"))
        if self._null.size:
            residual = float(np.linalg.norm(np.append(row, 1.0) @ self._null.T))
            if residual > 1e-6:
                parts.append(
                    (min(_CAP, residual / _RESIDUAL_UNIT), f"count invariants broken (residual {residual:.2f})")
                )
        first: dict[str, int] = {}
        for pos, key in enumerate(keys):
            first.setdefault(key, pos)
        broken = [(a, b) for a, b in self._before if a in first and b in first and first[a] > first[b]]
        if broken:
            parts.append((float(len(broken)), f"{len(broken)} order invariants broken"))
        if len(self._signatures):
            distance = float(np.abs(self._signatures - row).sum(axis=1).min())
            if distance > 0:
                parts.append((distance / _DISTANCE_SCALE, f"count signature {distance:g} from the nearest normal one"))
        low, high = self._length_range
        if not low <= len(keys) <= high:
            parts.append((1.0, f"session length {len(keys)} outside the normal range {low:g}-{high:g}"))
        parts.sort(key=lambda p: -p[0])
        return sum(p[0] for p in parts), [p[1] for p in parts]


def _bigrams(keys: Sequence[str]) -> list[tuple[str, str]]:
    seq = [_START, *keys, _END]
    return list(itertools.pairwise(seq))


def _invariants(x: np.ndarray) -> np.ndarray:
    """Unit vectors v with ``[counts, 1] @ v == 0`` for the normal training sessions (rows: invariants)."""
    if x.shape[0] < 2 or x.shape[1] == 0:
        return np.zeros((0, x.shape[1] + 1))
    xa = np.hstack([x, np.ones((x.shape[0], 1))])
    null = _null_space(xa, max_mean_square=0.05)
    if null.shape[0] == 0:
        return null
    residual = np.linalg.norm(xa @ null.T, axis=1)
    keep = xa[residual < 0.5]
    if keep.shape[0] < 2:
        return np.zeros((0, xa.shape[1]))
    return _null_space(keep, max_mean_square=1e-8)


def _null_space(xa: np.ndarray, *, max_mean_square: float) -> np.ndarray:
    _, s, vt = np.linalg.svd(xa, full_matrices=True)
    energy = np.zeros(vt.shape[0])
    energy[: len(s)] = s**2 / xa.shape[0]
    return vt[energy < max_mean_square]


# -- CLI ----------------------------------------------------------------------------------------------------------


def read_sessions(lines: Iterable[str]) -> list[tuple[str, list[str]]]:
    """``{"id": ..., "events": [...]}`` per line (blank lines skipped); a clear ValueError on bad input."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("events"), list):
            raise ValueError(f'line {number}: expected {{"id": ..., "events": [...]}}')
        out.append((str(obj.get("id", number)), [str(e) for e in obj["events"]]))
    return out


def run_sessions(train: str, score: str, out: TextIO | None = None) -> int:
    """``vigil logs sessions``: learn from ``train``; one ``{"id", "score", "anomalous"}`` per session of ``score``."""
    out = out or sys.stdout
    try:
        with Path(train).open(encoding="utf-8", errors="replace") as f:
            normal = read_sessions(f)
        if score == "-":
            test = read_sessions(sys.stdin)
        else:
            with Path(score).open(encoding="utf-8", errors="replace") as f:
                test = read_sessions(f)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = SessionModel().fit([events for _, events in normal])
    for sid, events in test:
        result = model.score(sid, events)
        out.write(json.dumps({"id": result.id, "score": result.score, "anomalous": result.anomalous}) + "\n")
    return 0
