"""Metric anomalies: change points, onsets, first movers, robust handling of bad input."""

from __future__ import annotations

import math
import random

from vigil.analysis.metric_anomalies import MetricSeries, analyse_series, evidence_id, metric_anomalies

STEP = 15.0


def _series(name: str, *, level: float, noise: float, step_at: int | None, jump: float, seed: int) -> MetricSeries:
    rng = random.Random(seed)
    points = [
        (1000 + i * STEP, level + rng.gauss(0, noise) + (jump if step_at is not None and i >= step_at else 0.0))
        for i in range(160)
    ]
    return MetricSeries(name=name, points=points)


def test_step_change_onset_within_tolerance() -> None:
    found = analyse_series(_series("latency", level=100, noise=5, step_at=90, jump=40, seed=1))
    assert found is not None
    assert found.change_points
    change = found.change_points[0]
    assert abs(change.ts - (1000 + 90 * STEP)) <= 3 * STEP
    assert change.direction == "up"
    assert found.onset == change.ts


def test_noise_only_has_no_change() -> None:
    for seed in range(5):
        assert analyse_series(_series("cpu", level=50, noise=3, step_at=None, jump=0, seed=seed)) is None


def test_first_movers_ordered_by_onset() -> None:
    late = _series("http_5xx_rate", level=1, noise=0.2, step_at=100, jump=5, seed=2)
    early = _series("db_connections", level=20, noise=1, step_at=70, jump=-15, seed=3)
    quiet = _series("memory", level=500, noise=10, step_at=None, jump=0, seed=4)
    found = metric_anomalies([late, quiet, early])
    assert [a.id for a in found] == ["metric:db_connections", "metric:http_5xx_rate"]
    assert found[0].change_points[0].direction == "down"


def test_spike_point_is_flagged() -> None:
    series = _series("queue", level=10, noise=1, step_at=None, jump=0, seed=5)
    series.points[80] = (series.points[80][0], 60.0)
    found = analyse_series(series)
    assert found is not None
    assert [p.ts for p in found.anomalous_points] == [series.points[80][0]]


def test_nan_empty_and_unsorted_input() -> None:
    assert analyse_series(MetricSeries(name="empty")) is None
    assert analyse_series(MetricSeries(name="nan", points=[(1, math.nan), (2, math.inf), (math.nan, 3)])) is None
    s = _series("latency", level=100, noise=5, step_at=90, jump=40, seed=1)
    shuffled = [*list(s.points), (1000 + 5 * STEP, math.nan)]
    random.Random(0).shuffle(shuffled)
    a = analyse_series(s)
    b = analyse_series(MetricSeries(name="latency", points=shuffled))
    assert a is not None
    assert b is not None
    assert a.change_points == b.change_points


def test_evidence_ids_are_stable_and_short() -> None:
    assert evidence_id("up") == "metric:up"
    one = evidence_id("http_5xx_rate", {"service": "api", "env": "prod"})
    assert one == evidence_id("http_5xx_rate", {"env": "prod", "service": "api"})
    assert one.startswith("metric:http_5xx_rate:")
    assert len(one) == len("metric:http_5xx_rate:") + 8


def test_series_pinned_at_a_limit_has_one_change() -> None:
    # A pool that saturates stays exactly at its limit: most differences are zero, so the noise scale must
    # come from the part that moves, or every wobble before the step would count as a change.
    rng = random.Random(7)
    points = [(1000 + i * STEP, float(max(0, round(rng.gauss(4, 1)))) if i < 60 else 20.0) for i in range(160)]
    found = analyse_series(MetricSeries(name="db_pool_in_use", points=points))
    assert found is not None
    assert [c.ts for c in found.change_points] == [1000 + 60 * STEP]
    assert found.onset == 1000 + 60 * STEP
