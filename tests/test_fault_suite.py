"""The fault suite at a small size: worker, Temporal and PostgreSQL each SIGKILLed under an alert storm with
duplicate and out-of-order deliveries; nothing may be lost, counted twice or left in the wrong status."""

from __future__ import annotations

from eval.faults import FaultParams, run_faults


async def test_kills_under_a_storm_lose_and_duplicate_nothing() -> None:
    report = await run_faults(FaultParams(groups=4, alerts_per_group=6, concurrency=4, seed=11))

    assert len(report.faults) == 3, report.faults
    assert report.accepted == report.notifications > report.alerts == 24
    assert report.present == report.alerts
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.wrong_status == 0
    assert report.incidents == 4
    assert report.stored_alerts == report.alerts
    assert report.clean
