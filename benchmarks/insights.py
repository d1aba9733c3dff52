"""`vigil bench insights`: how long the console's Insights reports take on N incidents.

Seeds N incidents (default 2,000, ten minutes apart) into a throwaway store with the console benchmark's
seeding (the store's own `persist_incident`, two alerts each, a diagnosis on four in five), plus stored timings on
every other incident and a verdict on every third, then times, as medians over repeats:

* each report of the 30-day range (vigil.insights: one grouped SQL statement each) and the whole page's seven;
* a baseline in the same process and database: the incidents-by-service and noise figures computed the naive
  way, fetching every incident and alert row of the range and grouping them in Python.

Uses DATABASE_URL when set, else a private embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from functools import partial

from benchmarks.console import _median_ms, seed
from benchmarks.logs import throwaway_database
from ui.insights import CHARTS
from vigil import insights
from vigil.feedback import DiagnosisFeedback, FeedbackVerdict
from vigil.insights import Dimension, TimeRange
from vigil.mttx import IncidentTimings
from vigil.store.database import Store, migrate_database


async def _extras(store: Store, n: int, tag: str) -> None:
    """Timings on every other incident, a verdict on every third (those with a diagnosis)."""
    for number in range(n):
        incident_id = f"incident-{tag}-{number:05d}"
        row = await store.get_incident(incident_id)
        if row is None:
            continue
        if number % 2 == 0:
            await store.save_timings(
                IncidentTimings(
                    incident_id=incident_id,
                    impact_started_at=row.opened_at,
                    opened_at=row.opened_at,
                    acknowledged_at=None,
                    diagnosed_at=None,
                    mitigated_at=None,
                    resolved_at=None,
                    time_to_detect_seconds=0.0,
                    time_to_acknowledge_seconds=float(60 + number % 600),
                    time_to_diagnose_seconds=None,
                    time_to_mitigate_seconds=None,
                    time_to_resolve_seconds=float(600 + number % 3600),
                )
            )
        if number % 3 == 0 and number % 5:
            verdict = FeedbackVerdict.RIGHT if number % 2 else FeedbackVerdict.WRONG
            await store.record_feedback(DiagnosisFeedback(incident_id=incident_id, verdict=verdict, actor="bench"))


async def _naive(store: Store, since: datetime) -> tuple[Counter[tuple[str, str]], dict[str, list[int]]]:
    """The baseline: every row of the range fetched, grouped in Python (by day and service; alerts per day)."""
    pool = store._pool  # the baseline runs on the same pool and connections
    incidents = await pool.fetch("SELECT incident_id, service, opened_at FROM incidents WHERE opened_at >= $1", since)
    alerts = await pool.fetch(
        "SELECT a.incident_id, a.count, a.repeats FROM incident_alerts a JOIN incidents i USING (incident_id) "
        "WHERE i.opened_at >= $1",
        since,
    )
    by_service: Counter[tuple[str, str]] = Counter()
    day_of: dict[str, str] = {}
    for row in incidents:
        day = row["opened_at"].astimezone(UTC).date().isoformat()
        day_of[row["incident_id"]] = day
        by_service[(day, row["service"] or "unknown")] += 1
    noise: dict[str, list[int]] = {}
    for row in alerts:
        noise.setdefault(day_of[row["incident_id"]], [0, 0])[0] += row["count"] + row["repeats"]
    for day, count in Counter(day_of.values()).items():
        noise.setdefault(day, [0, 0])[1] = count
    return by_service, noise


async def bench(n: int, repeats: int) -> dict[str, float]:
    async with throwaway_database("vigil-bench-insights-") as url:
        await migrate_database(url)
        async with await Store.open(url) as store:
            tag = uuid.uuid4().hex[:8]
            started = time.perf_counter()
            await seed(store, n, tag)  # ten minutes apart: 2,000 span two weeks
            await _extras(store, n, tag)
            seeded_s = time.perf_counter() - started
            month = TimeRange.MONTH
            since = insights.since(month)

            async def page() -> None:
                for chart in CHARTS.values():
                    await chart.load(store, month)

            await page()  # warm the connections and the plans
            results: dict[str, float] = {"seed_s": round(seeded_s, 1)}
            results["baseline: naive by-service + noise in Python (ms)"] = await _median_ms(
                lambda: _naive(store, since), repeats
            )

            async def grouped() -> None:
                await insights.incidents_by(store, Dimension.SERVICE, month)
                await insights.noise(store, month)

            results["incidents by service + noise, SQL (ms)"] = await _median_ms(grouped, repeats)
            for slug, chart in CHARTS.items():
                results[f"{slug} (ms)"] = await _median_ms(partial(chart.load, store, month), repeats)
            results["whole page, 7 reports (ms)"] = await _median_ms(page, repeats)
            pool = store._pool
            for table in (
                "incidents",
                "incident_alerts",
                "incident_diagnoses",
                "incident_timings",
                "diagnosis_feedback",
            ):
                await pool.execute(f"DELETE FROM {table} WHERE incident_id LIKE $1", f"incident-{tag}-%")
            return {key: round(value, 2) for key, value in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=2000, help="incidents seeded")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args.incidents, args.repeats))
    naive = results["baseline: naive by-service + noise in Python (ms)"]
    grouped = results["incidents by service + noise, SQL (ms)"]
    results["ratio naive / SQL"] = round(naive / grouped, 2) if grouped else 0.0
    print(json.dumps({"incidents": args.incidents, "repeats": args.repeats, **results}, indent=2))
    return 0
