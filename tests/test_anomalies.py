"""Window-level log anomalies: new templates and frequency spikes against a baseline window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.analysis.anomalies import AnomalyKind, evidence_id, log_anomalies, window_anomalies
from vigil.analysis.models import LogEvent
from vigil.analysis.templates import TemplateMiner

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_new_template_and_spike_ordered_by_score() -> None:
    baseline = [(_at(i), "ok", "GET /x 200") for i in range(600)] + [(_at(5), "slow", "slow query 120ms")] * 2
    window = (
        [(_at(900 + i), "ok", "GET /x 200") for i in range(60)]
        + [(_at(900 + i), "slow", "slow query 900ms") for i in range(20)]
        + [(_at(910 + i), "oom", "Out of memory: Killed process 42") for i in range(4)]
        + [(_at(901), "once", "a single new line")]
    )
    found = window_anomalies(window, baseline, window_seconds=60, baseline_seconds=600)
    assert [a.id for a in found] == ["log:tpl-slow", "log:tpl-oom"]  # steady 'ok' and a single new line are quiet
    slow, oom = found
    assert slow.kind is AnomalyKind.SPIKE
    assert slow.count == 20
    assert slow.baseline_count == 2
    assert oom.kind is AnomalyKind.NEW
    assert oom.baseline_count == 0
    assert oom.first_seen == _at(910)
    assert oom.example.startswith("Out of memory")
    assert slow.score > oom.score > 0


def test_no_anomaly_when_rates_match() -> None:
    baseline = [(_at(i), "a", "x") for i in range(0, 600, 2)]
    window = [(_at(900 + i), "a", "x") for i in range(0, 60, 2)]
    assert window_anomalies(window, baseline, window_seconds=60, baseline_seconds=600) == []


def test_log_events_with_miner_give_stable_ids() -> None:
    def events(messages: list[str], start: float) -> list[LogEvent]:
        return [LogEvent(line=i + 1, ts=_at(start + i), message=m) for i, m in enumerate(messages)]

    baseline = events([f"request {i} served in {i % 7} ms" for i in range(300)], 0)
    window = events([f"connection to db-{i % 3} refused" for i in range(10)] + ["request 1 served in 2 ms"], 900)
    miner = TemplateMiner()
    found = log_anomalies(window, baseline, window_seconds=60, baseline_seconds=600, miner=miner)
    assert len(found) == 1
    tid = miner.match("connection to db-9 refused")
    assert tid is not None
    assert found[0].id == evidence_id(tid.template_id) == f"log:tpl-{tid.template_id}"
    again = log_anomalies(window, baseline, window_seconds=60, baseline_seconds=600)
    assert [a.id for a in again] == [a.id for a in found]  # same id in a fresh miner
    assert found[0].template == "connection to <*> refused"
