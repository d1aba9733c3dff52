"""`vigil bench integrations`, small: one run, three concurrent presses, on its own private stack."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.integrations import IntegrationsParams, run_benchmark


@pytest.mark.timeout(150)
async def test_bench_integrations_reports_every_measure(tmp_path: Path) -> None:
    report = await run_benchmark(IntegrationsParams(repeats=1, concurrency=3), tmp=tmp_path)

    assert report.machine.cores >= 1
    assert report.machine.cpu
    assert report.repeats == 1
    assert report.concurrency == 3

    # 1. two incidents per run: each diagnosis reached Slack after its event, within seconds
    assert len(report.diagnosis_to_slack) == len(report.diagnosis_to_store) == 2
    assert all(0 < latency < 30 for latency in report.diagnosis_to_slack)
    assert all(-30 < latency < 30 for latency in report.diagnosis_to_store)
    # 2. the press is answered, then the workflow shows it; the REST approval answered
    assert len(report.press_answer) == len(report.press_to_state) == len(report.rest_approval) == 1
    assert 0 < report.press_answer[0] <= report.press_to_state[0] < 30
    assert 0 < report.rest_approval[0] < 30
    # 3. every press answered (within Slack's 3 s), every approval landed
    [burst] = report.bursts
    assert burst.presses == burst.answered == burst.approved == 3
    assert burst.within_slack_deadline == 3
    assert 0 < burst.answer_p50 <= burst.answer_max < 3
    assert burst.all_approved is not None
    assert 0 < burst.all_approved < 30
    assert 0 < burst.healthz_p50 <= burst.healthz_max
    assert report.complete

    data = json.loads(json.dumps(report.to_json()))
    medians = data["medians"]
    assert set(medians) >= {"diagnosis_to_slack", "diagnosis_to_store", "press_to_state", "rest_approval"}
    assert medians["press_to_state_over_rest"] > 0
    assert all(value is not None and math.isfinite(value) for value in medians.values())
    assert data["bursts"][0]["presses"] == 3
    assert data["complete"] is True
