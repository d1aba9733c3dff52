"""Metric anomalies: change points, anomalous points, onsets, and which series moved first.

For each series ``[(unix_ts, value), ...]`` (NaN/inf dropped, sorted, duplicate timestamps keep the last):

- **noise scale**: ``sigma = 1.4826 * MAD(first differences) / sqrt(2)``, robust to steps and spikes (of the
  nonzero differences when most are zero: a series pinned at a limit for a while);
- **change points** by binary segmentation with a two-sample mean statistic: for every split with at least
  ``min_segment`` points each side, ``t = |mean(left) - mean(right)| / (sigma * sqrt(1/nl + 1/nr))`` (cumulative
  sums, O(n) per segment); the best split is kept when ``t >= threshold`` and both sides are searched again, up
  to ``max_changes``. A change's onset is the time of the first point after the split;
- **anomalous points**: robust z-score ``(x - median) / (1.4826 * MAD)`` of the baseline (the points before
  ``baseline_end``, else before the first change, else all), ``|z| >= z_threshold``;
- the onset of a series is its first change (or first anomalous point); :func:`metric_anomalies` returns the
  series that moved, first movers first. Evidence ids: ``metric:<name>``, with a short hash of the labels when
  there are labels (``metric:http_5xx_rate:1f2e3d4c``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field


class MetricSeries(BaseModel):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    points: list[tuple[float, float]] = Field(default_factory=list, description="(unix ts, value) pairs.")


class ChangePoint(BaseModel):
    ts: float = Field(description="Onset: time of the first point after the change.")
    before: float = Field(description="Mean of the segment before.")
    after: float = Field(description="Mean of the segment after.")
    score: float = Field(description="Two-sample statistic in noise sigmas.")
    direction: str = Field(description="'up' or 'down'.")


class AnomalousPoint(BaseModel):
    ts: float
    value: float
    z: float


class MetricAnomaly(BaseModel):
    id: str = Field(description="Stable evidence id, 'metric:<name>[:<labels hash>]'.")
    name: str
    labels: dict[str, str]
    onset: float | None
    score: float
    change_points: list[ChangePoint]
    anomalous_points: list[AnomalousPoint]


def evidence_id(name: str, labels: dict[str, str] | None = None) -> str:
    if not labels:
        return f"metric:{name}"
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"metric:{name}:{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


def clean(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values, finite only, sorted by time, one value per timestamp (the last given)."""
    by_ts: dict[float, float] = {}
    for ts, value in points:
        try:
            t, v = float(ts), float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            by_ts[t] = v
    ts_sorted = sorted(by_ts)
    return np.array(ts_sorted, dtype=float), np.array([by_ts[t] for t in ts_sorted], dtype=float)


def _mad_sigma(d: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def noise_sigma(values: np.ndarray) -> float:
    """The noise scale from first differences; where most of them are zero (a gauge pinned at a limit, a
    counter rate at zero) the MAD is zero, so the differences that move give the scale instead: otherwise
    every wobble of the moving part would count as a change."""
    if len(values) < 3:
        return 0.0
    d = np.diff(values)
    sigma = _mad_sigma(d)
    if sigma == 0:
        moving = d[d != 0]
        if len(moving) >= 3:
            sigma = _mad_sigma(moving) or float(np.mean(np.abs(moving))) / math.sqrt(2)
    return sigma


def change_points(
    ts: np.ndarray,
    values: np.ndarray,
    *,
    threshold: float = 8.0,
    min_segment: int = 5,
    max_changes: int = 5,
) -> list[ChangePoint]:
    """Binary segmentation (see the module docstring), onsets in time order."""
    n = len(values)
    if n < 2 * min_segment:
        return []
    sigma = noise_sigma(values)
    sigma = max(sigma, 1e-9, 1e-6 * float(np.median(np.abs(values))))
    found: list[ChangePoint] = []
    stack = [(0, n)]
    while stack and len(found) < max_changes:
        lo, hi = stack.pop()
        seg = values[lo:hi]
        m = len(seg)
        if m < 2 * min_segment:
            continue
        csum = np.cumsum(seg)
        total = csum[-1]
        k = np.arange(min_segment, m - min_segment + 1)  # left sizes
        left = csum[k - 1] / k
        right = (total - csum[k - 1]) / (m - k)
        stat = np.abs(left - right) / (sigma * np.sqrt(1.0 / k + 1.0 / (m - k)))
        best = int(np.argmax(stat))
        if stat[best] < threshold:
            continue
        split = lo + int(k[best])
        found.append(
            ChangePoint(
                ts=float(ts[split]),
                before=round(float(left[best]), 6),
                after=round(float(right[best]), 6),
                score=round(float(stat[best]), 3),
                direction="up" if right[best] > left[best] else "down",
            )
        )
        stack += [(lo, split), (split, hi)]
    found.sort(key=lambda c: c.ts)
    return found


def anomalous_points(
    ts: np.ndarray, values: np.ndarray, baseline: np.ndarray, *, z_threshold: float = 5.0, fallback_sigma: float = 0.0
) -> list[AnomalousPoint]:
    if len(values) == 0 or len(baseline) < 3:
        return []
    med = float(np.median(baseline))
    scale = 1.4826 * float(np.median(np.abs(baseline - med)))
    if scale <= 0:
        scale = max(fallback_sigma, 1e-9, 1e-6 * abs(med))
    z = (values - med) / scale
    hits = np.nonzero(np.abs(z) >= z_threshold)[0]
    return [AnomalousPoint(ts=float(ts[i]), value=float(values[i]), z=round(float(z[i]), 3)) for i in hits]


def analyse_series(
    series: MetricSeries,
    *,
    baseline_end: float | None = None,
    threshold: float = 8.0,
    z_threshold: float = 5.0,
    min_segment: int = 5,
) -> MetricAnomaly | None:
    """Change points and anomalous points of one series; None when nothing moved."""
    ts, values = clean(series.points)
    if len(values) == 0:
        return None
    changes = change_points(ts, values, threshold=threshold, min_segment=min_segment)
    if baseline_end is not None:
        base = values[ts < baseline_end]
    elif changes:
        base = values[ts < changes[0].ts]
    else:
        base = values
    points = anomalous_points(ts, values, base, z_threshold=z_threshold, fallback_sigma=noise_sigma(values))
    if not changes and not points:
        return None
    onsets = [c.ts for c in changes] + [p.ts for p in points]
    score = max([c.score for c in changes] + [abs(p.z) for p in points])
    return MetricAnomaly(
        id=evidence_id(series.name, series.labels),
        name=series.name,
        labels=dict(series.labels),
        onset=min(onsets) if onsets else None,
        score=round(score, 3),
        change_points=changes,
        anomalous_points=points[:50],
    )


def metric_anomalies(
    series: Sequence[MetricSeries], *, baseline_end: float | None = None, **options: float
) -> list[MetricAnomaly]:
    """The series that moved, ordered by onset (first movers first), ties by score."""
    out = []
    for s in series:
        found = analyse_series(
            s,
            baseline_end=baseline_end,
            threshold=options.get("threshold", 8.0),
            z_threshold=options.get("z_threshold", 5.0),
            min_segment=int(options.get("min_segment", 5)),
        )
        if found is not None:
            out.append(found)
    out.sort(key=lambda a: (a.onset if a.onset is not None else math.inf, -a.score, a.id))
    return out


MAX_SHIFT = 1000.0


def robust_shift(points: Sequence[tuple[float, float]], onset: float, *, quantile: float = 0.9) -> float:
    """How far a series moved after `onset` against its own behaviour before it (BARO-style robust z-score).

    ``z = |x - median(before)| / scale(before)`` for the points from the onset on, summarised by their
    `quantile` (a high quantile rather than the maximum: one outlier is not a shift). The scale is the
    interquartile range of the points before (as a sigma, IQR / 1.349), else the noise of the first differences,
    else a millionth of the level; z is capped at `MAX_SHIFT`. 0 when either side has fewer than 3 points.
    """
    ts, values = clean(points)
    before, after = values[ts < onset], values[ts >= onset]
    if len(before) < 3 or len(after) < 3:
        return 0.0
    med = float(np.median(before))
    q1, q3 = np.percentile(before, [25, 75])
    scale = float(q3 - q1) / 1.349
    if scale <= 0:
        scale = noise_sigma(values)
    scale = max(scale, 1e-9, 1e-6 * abs(med))
    z = np.abs(after - med) / scale
    return round(min(float(np.quantile(z, quantile)), MAX_SHIFT), 3)
