"""Window-level log anomalies: templates new in the incident window, and template-frequency spikes.

Input: the events of the incident window and of a baseline window before the alert, either as
``(ts, template_id, message)`` tuples or as :class:`LogEvent` s with a :class:`TemplateMiner` (learning from
both windows). Output: one :class:`LogAnomaly` per template, id ``log:tpl-<template_id>``, ordered by score:

- **new**: the template never occurs in the baseline and at least ``min_count`` times in the window; its score
  is the Poisson surprise ``-log10 P(X >= k)`` of seeing ``k`` events at the smoothed baseline rate
  (``0.5`` event over the baseline window), so a burst of a new template outranks a single line;
- **spike**: the window rate is at least ``min_ratio`` times the smoothed baseline rate
  (``(baseline + 0.5) / baseline duration``), ``k >= min_count``, scored by the same Poisson surprise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from vigil.analysis.fingerprints import truncate
from vigil.analysis.models import LogEvent
from vigil.analysis.templates import TemplateMiner

Keyed = tuple[datetime | None, str, str]  # (ts, template id, example message)


class AnomalyKind(StrEnum):
    NEW = "new"
    SPIKE = "spike"


class LogAnomaly(BaseModel):
    id: str = Field(description="Stable evidence id, 'log:tpl-<template_id>'.")
    kind: AnomalyKind
    template_id: str
    template: str | None = None
    score: float = Field(description="Poisson surprise -log10 P(X >= count | baseline rate), higher is stranger.")
    count: int = Field(description="Events of the template in the window.")
    baseline_count: int
    window_rate: float = Field(description="Events per minute in the window.")
    baseline_rate: float = Field(description="Events per minute in the baseline (smoothed when 0).")
    ratio: float
    first_seen: datetime | None
    example: str


def evidence_id(template_id: str) -> str:
    return f"log:tpl-{template_id}"


def keyed_events(events: Iterable[LogEvent], miner: TemplateMiner) -> list[Keyed]:
    """``(ts, template id, message)`` of each event (the miner learns from them)."""
    return [(e.ts, miner.add(e.message).template_id, e.message) for e in events]


def _poisson_surprise(k: int, mu: float) -> float:
    """-log10 P(X >= k) for X ~ Poisson(mu)."""
    if k <= 0:
        return 0.0
    term = math.exp(-mu)
    below = 0.0
    for i in range(k):
        below += term
        term *= mu / (i + 1)
    tail = max(1.0 - below, 0.0)
    if tail <= 1e-300:  # series underflow: use the first term of the tail, log-space
        log_tail = -mu + k * math.log(mu) - math.lgamma(k + 1)
        return round(-log_tail / math.log(10), 3)
    return round(-math.log10(tail), 3)


def window_anomalies(
    window: Sequence[Keyed],
    baseline: Sequence[Keyed],
    *,
    window_seconds: float,
    baseline_seconds: float,
    miner: TemplateMiner | None = None,
    min_count: int = 3,
    min_ratio: float = 3.0,
    min_score: float = 2.0,
    limit: int = 50,
) -> list[LogAnomaly]:
    """New templates and frequency spikes of ``window`` against ``baseline`` (see the module docstring)."""
    if window_seconds <= 0 or baseline_seconds <= 0:
        raise ValueError("window_seconds and baseline_seconds must be positive")
    resolve = miner.resolve if miner is not None else (lambda t: t)
    base: dict[str, int] = {}
    for _, tid, _ in baseline:
        key = resolve(tid)
        base[key] = base.get(key, 0) + 1
    count: dict[str, int] = {}
    first: dict[str, datetime | None] = {}
    example: dict[str, str] = {}
    for ts, tid, message in window:
        key = resolve(tid)
        count[key] = count.get(key, 0) + 1
        if key not in example:
            example[key] = message
            first[key] = ts
        elif ts is not None and (first[key] is None or ts < first[key]):  # type: ignore[operator]
            first[key] = ts
    out = []
    for key, k in count.items():
        b = base.get(key, 0)
        if k < min_count:
            continue
        base_rate = (b + 0.5) / baseline_seconds  # per second, smoothed
        mu = base_rate * window_seconds
        ratio = (k / window_seconds) / base_rate
        kind = AnomalyKind.NEW if b == 0 else AnomalyKind.SPIKE
        if kind is AnomalyKind.SPIKE and ratio < min_ratio:
            continue
        score = _poisson_surprise(k, mu)
        if score < min_score:
            continue
        out.append(
            LogAnomaly(
                id=evidence_id(key),
                kind=kind,
                template_id=key,
                template=miner.template(key) if miner is not None else None,
                score=score,
                count=k,
                baseline_count=b,
                window_rate=round(60 * k / window_seconds, 4),
                baseline_rate=round(60 * (b / baseline_seconds if b else base_rate), 4),
                ratio=round(ratio, 3),
                first_seen=first[key],
                example=truncate(example[key]),
            )
        )
    out.sort(key=lambda a: (-a.score, a.id))
    return out[:limit]


def log_anomalies(
    window: Iterable[LogEvent],
    baseline: Iterable[LogEvent],
    *,
    window_seconds: float,
    baseline_seconds: float,
    miner: TemplateMiner | None = None,
    **options: float,
) -> list[LogAnomaly]:
    """:func:`window_anomalies` on :class:`LogEvent` s mined with ``miner`` (a new one by default)."""
    miner = miner if miner is not None else TemplateMiner()
    base = keyed_events(baseline, miner)
    win = keyed_events(window, miner)
    return window_anomalies(
        win,
        base,
        window_seconds=window_seconds,
        baseline_seconds=baseline_seconds,
        miner=miner,
        min_count=int(options.get("min_count", 3)),
        min_ratio=options.get("min_ratio", 3.0),
        min_score=options.get("min_score", 2.0),
    )
