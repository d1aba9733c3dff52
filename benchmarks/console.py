"""`vigil bench console`: how fast the console's incident list is read and shaped, for a page of hundreds.

Seeds N incidents (default 1,000) into a throwaway store with the store's own `persist_incident` (two alerts each
with repeats, an acknowledgement on every third, a diagnosis on four in five), then times, as medians over repeats:

* the list query of one page (`Store.incident_list`, default 500 newest) and of all N, against a baseline in the
  same process and database: the plain incidents rows of the same page (`SELECT * ... ORDER BY updated_at LIMIT`),
  so the ratio is the cost of the joins (diagnosis, repeats, acknowledgement);
* a text search and a status filter;
* shaping the rows for the table (`LiveList.load`, pure Python);
* the shared poller's per-second look when nothing changed (`Store.incident_changes`).

Uses DATABASE_URL when set, else a private embedded PostgreSQL in a temporary folder. The browser's time to first
paint is measured apart (a browser test), on the table marked `data-testid=incident-table`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.logs import throwaway_database
from ui.console import LIST_LIMIT, ListFilters, LiveList
from vigil.analysis.models import Category
from vigil.models import (
    AlertRecord,
    AlertSource,
    AlertStatus,
    IncidentRow,
    IncidentStatus,
    PersistIncidentInput,
    Severity,
    TimelineEvent,
    TimelineKind,
)
from vigil.rca.models import RCARootCause, RootCauseAnalysis
from vigil.settings import Settings
from vigil.store.database import IncidentListQuery, Store, migrate_database

SERVICES = ("checkout", "payments", "cart", "search", "auth", "inventory", "shipping", "email")
STATUSES = (IncidentStatus.OPEN, IncidentStatus.MONITORING, IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
SEVERITIES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)


def _alert(fingerprint: str, at: datetime, number: int) -> AlertRecord:
    return AlertRecord(
        fingerprint=fingerprint,
        status=AlertStatus.FIRING,
        labels={"alertname": f"Alert{number % 17}", "instance": f"i-{number % 5}"},
        severity=Severity.CRITICAL,
        summary=f"alert {number}",
        count=1 + number % 3,
        repeats=number % 11,
        first_seen=at,
        last_seen=at,
        starts_at=at,
        source=AlertSource.ALERTMANAGER,
    )


def _diagnosis(number: int) -> RootCauseAnalysis:
    categories = list(Category)
    return RootCauseAnalysis(
        source="deterministic",
        category=categories[number % len(categories)],
        confidence=(number % 100) / 100,
        severity="critical",
        code_related=False,
        root_cause=RCARootCause(summary=f"cause {number}", component="db", evidence=[f"detector:{number}"]),
    )


async def seed(store: Store, n: int, tag: str) -> None:
    """N incidents written as the incident workflow writes them, spread over the last week."""
    now = datetime.now(UTC)
    for number in range(n):
        at = now - timedelta(minutes=10 * (n - number))
        incident_id = f"incident-{tag}-{number:05d}"
        row = IncidentRow(
            incident_id=incident_id,
            group_key=f"alertname=Alert{number % 17},service={SERVICES[number % len(SERVICES)]}",
            title=f"Alert{number % 17} on {SERVICES[number % len(SERVICES)]} ({tag} {number})",
            service=SERVICES[number % len(SERVICES)],
            severity=SEVERITIES[number % len(SEVERITIES)],
            category=None,
            status=STATUSES[number % len(STATUSES)],
            opened_at=at - timedelta(minutes=5),
            updated_at=at,
            resolved_at=None,
            closed_at=None,
            alert_count=2 + number % 4,
            fingerprint_count=2,
        )
        events = [
            TimelineEvent(seq=1, at=at, kind=TimelineKind.OPENED, message="opened"),
        ]
        if number % 3 == 0:
            events.append(
                TimelineEvent(seq=2, at=at, kind=TimelineKind.ACKNOWLEDGED, message="acked", actor=f"user{number % 7}")
            )
        await store.persist_incident(
            PersistIncidentInput(
                incident=row,
                alerts=[_alert(f"fp-{number}-a", at, number), _alert(f"fp-{number}-b", at, number + 1)],
                events=events,
                generation="g1",
            )
        )
        if number % 5:
            await store.save_diagnosis(incident_id, _diagnosis(number))


async def _median_ms(run: Callable[[], Awaitable[Any]], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def bench(n: int, page: int, repeats: int) -> dict[str, float]:
    async with throwaway_database("vigil-bench-console-") as url:
        await migrate_database(url)
        async with await Store.open(url) as store:
            tag = uuid.uuid4().hex[:8]
            started = time.perf_counter()
            await seed(store, n, tag)
            seeded_s = time.perf_counter() - started
            pool = store._pool  # the baseline runs on the same pool and connections
            settings = Settings.model_validate({"TEMPORAL_ADDRESS": None, "DATABASE_URL": None})
            await store.incident_list(IncidentListQuery(limit=page))  # warm the connection and the plans
            rows = await store.incident_list(IncidentListQuery(limit=page))
            all_rows = await store.incident_list(IncidentListQuery(limit=n))
            cursor = (await store.incident_changes(None)).cursor
            now = datetime.now(UTC)

            async def shape(selected: list[Any]) -> None:
                LiveList(settings, ListFilters(), limit=len(selected)).load(selected, now)

            async def page_and_shape() -> None:
                await shape(await store.incident_list(IncidentListQuery(limit=page)))

            results = {
                "seed_s": seeded_s,
                f"baseline: plain incidents rows, {page} (ms)": await _median_ms(
                    lambda: pool.fetch("SELECT * FROM incidents ORDER BY updated_at DESC LIMIT $1", page), repeats
                ),
                f"list query, {page} rows (ms)": await _median_ms(
                    lambda: store.incident_list(IncidentListQuery(limit=page)), repeats
                ),
                f"list query, all {n} rows (ms)": await _median_ms(
                    lambda: store.incident_list(IncidentListQuery(limit=n)), repeats
                ),
                "search 'payments' (ms)": await _median_ms(
                    lambda: store.incident_list(IncidentListQuery(text="payments", limit=page)), repeats
                ),
                "status=open (ms)": await _median_ms(
                    lambda: store.incident_list(IncidentListQuery(status="open", limit=page)), repeats
                ),
                f"row shaping, {len(rows)} rows (ms)": await _median_ms(lambda: shape(rows), repeats),
                f"row shaping, {len(all_rows)} rows (ms)": await _median_ms(lambda: shape(all_rows), repeats),
                f"list query + shaping, {page} rows (ms)": await _median_ms(page_and_shape, repeats),
                "poll, nothing changed (ms)": await _median_ms(lambda: store.incident_changes(cursor), repeats),
            }
            await pool.execute("DELETE FROM incidents WHERE incident_id LIKE $1", f"incident-{tag}-%")
            await pool.execute("DELETE FROM incident_diagnoses WHERE incident_id LIKE $1", f"incident-{tag}-%")
            return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1000, help="incidents seeded")
    parser.add_argument("--page", type=int, default=LIST_LIMIT, help="rows of one list page")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args.incidents, args.page, args.repeats))
    print(f"{args.incidents} incidents seeded in {results.pop('seed_s'):.1f} s; medians of {args.repeats} runs")
    baseline_key = next(key for key in results if key.startswith("baseline"))
    baseline = results[baseline_key]
    for name, ms in results.items():
        ratio = f"  x{ms / baseline:.1f} of the baseline" if "query" in name or name == baseline_key else ""
        print(f"  {name:<44} {ms:>8.2f}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
