"""Insights (vigil.insights, ui.insights): the report queries on seeded incidents in real PostgreSQL (counts per
bucket, MTTA/MTTR medians, noise reduction, accuracy from feedback, recurring root causes), their CSV, the CSV
route, and the page in NiceGUI's user simulation, also with PostgreSQL down."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from nicegui import ui
from nicegui.storage import Storage
from nicegui.testing import user_simulation

from tests.insights_support import Seed, fresh_store, seed
from tests.support import eventually, free_port
from ui.console import IncidentSource
from ui.context import ConsoleContext
from ui.insights import CHARTS, chart_option, csv_path, insights_page, register_routes
from ui.session import SignedInUser
from vigil import insights
from vigil.analysis.models import Category
from vigil.auth.roles import Role
from vigil.feedback import DiagnosisFeedback, FeedbackVerdict
from vigil.insights import CountRow, Dimension, TimeRange, to_csv
from vigil.models import Severity
from vigil.settings import Settings
from vigil.store.database import Store

NOW = datetime.now(UTC)
YESTERDAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
TODAY = YESTERDAY + timedelta(days=1)
VIEWER = SignedInUser("vera", Role.VIEWER)


def feedback(incident_id: str, verdict: FeedbackVerdict, **extra: object) -> DiagnosisFeedback:
    return DiagnosisFeedback(incident_id=incident_id, verdict=verdict, actor="alice", **extra)


@pytest.fixture(scope="module")
async def seeded(database_url: str) -> AsyncIterator[tuple[str, Store]]:
    """Five incidents: three yesterday, one today, one three weeks ago; diagnoses, timings and verdicts."""
    async with fresh_store(database_url) as (url, store):
        database = (Category.DATABASE, "orders-db")
        await seed(
            store,
            Seed(
                "inc-1",
                YESTERDAY + timedelta(hours=10),
                alerts=(("HighErrorRate", 3, 2), ("SlowCheckout", 1, 0)),
                diagnosis=database,
                acknowledge_after=60,
                resolve_after=600,
            ),
        )
        await seed(
            store,
            Seed(
                "inc-2",
                YESTERDAY + timedelta(hours=15),
                service="payments",
                severity=Severity.WARNING,
                alerts=(("PaymentsDown", 1, 4),),
                diagnosis=(Category.NETWORK, "edge-proxy"),
                acknowledge_after=120,
                resolve_after=1200,
            ),
        )
        await seed(
            store,
            Seed(
                "inc-3",
                YESTERDAY + timedelta(hours=18),
                alerts=(("HighErrorRate", 1, 0),),
                diagnosis=database,
                acknowledge_after=300,
            ),
        )
        await seed(
            store, Seed("inc-4", TODAY, severity=Severity.WARNING, alerts=(("DiskFilling", 2, 0),), category=None)
        )
        await seed(
            store, Seed("inc-old", NOW - timedelta(days=21), diagnosis=(Category.MEMORY, "cache"), resolve_after=5)
        )
        await store.record_feedback(feedback("inc-1", FeedbackVerdict.RIGHT))
        await store.record_feedback(
            feedback("inc-2", FeedbackVerdict.WRONG, category=Category.DATABASE, component="orders-db")
        )
        await store.record_feedback(feedback("inc-3", FeedbackVerdict.WRONG))
        await store.record_feedback(feedback("inc-3", FeedbackVerdict.RIGHT))  # the latest counts
        yield url, store


@pytest.fixture
def store(seeded: tuple[str, Store]) -> Store:
    return seeded[1]


WEEK = TimeRange.WEEK


# --- queries ------------------------------------------------------------------------------------------------


async def test_incidents_per_day_by_category_service_and_severity(store: Store) -> None:
    def table(rows: list[CountRow]) -> set[tuple[datetime, str, int]]:
        return {(r.bucket, r.key, r.incidents) for r in rows}

    by_category = await insights.incidents_by(store, Dimension.CATEGORY, WEEK, now=NOW)
    assert table(by_category) == {(YESTERDAY, "database", 2), (YESTERDAY, "network", 1), (TODAY, "unknown", 1)}
    by_service = await insights.incidents_by(store, Dimension.SERVICE, WEEK, now=NOW)
    assert table(by_service) == {(YESTERDAY, "checkout", 2), (YESTERDAY, "payments", 1), (TODAY, "checkout", 1)}
    by_severity = await insights.incidents_by(store, Dimension.SEVERITY, WEEK, now=NOW)
    assert table(by_severity) == {(YESTERDAY, "critical", 2), (YESTERDAY, "warning", 1), (TODAY, "warning", 1)}
    # 90 days: weekly buckets, and the incident of three weeks ago is in.
    quarter = await insights.incidents_by(store, Dimension.SEVERITY, TimeRange.QUARTER, now=NOW)
    assert sum(r.incidents for r in quarter) == 5
    assert all(r.bucket.weekday() == 0 and r.bucket.hour == 0 for r in quarter)


async def test_mtta_and_mttr_are_medians_per_bucket(store: Store) -> None:
    rows = await insights.timings(store, WEEK, now=NOW)

    assert len(rows) == 1
    row = rows[0]
    assert (row.bucket, row.incidents, row.acknowledged, row.resolved) == (YESTERDAY, 3, 3, 2)
    assert row.mtta_median_seconds == pytest.approx(120.0)  # of 60, 120, 300
    assert row.mttr_median_seconds == pytest.approx(900.0)  # of 600, 1200


async def test_noise_reduction_counts_notifications_per_incident(store: Store) -> None:
    rows = {r.bucket: r for r in await insights.noise(store, WEEK, now=NOW)}

    assert (rows[YESTERDAY].alerts, rows[YESTERDAY].fingerprints, rows[YESTERDAY].incidents) == (12, 4, 3)
    assert rows[YESTERDAY].reduction == pytest.approx(0.75)
    assert (rows[TODAY].alerts, rows[TODAY].incidents, rows[TODAY].reduction) == (2, 1, 0.5)


async def test_accuracy_counts_each_incidents_latest_verdict(store: Store) -> None:
    rows = {r.category: r for r in await insights.accuracy(store, WEEK, now=NOW)}

    assert set(rows) == {"database", "network", "all"}
    assert (rows["database"].right, rows["database"].wrong, rows["database"].accuracy) == (2, 0, 1.0)
    assert (rows["network"].right, rows["network"].wrong) == (0, 1)
    assert rows["all"].accuracy == pytest.approx(2 / 3, abs=1e-4)


async def test_recurring_root_causes_apply_corrections(store: Store) -> None:
    rows = await insights.root_causes(store, WEEK, now=NOW)

    assert [(r.category, r.component, r.incidents, r.corrected) for r in rows] == [("database", "orders-db", 3, 1)]
    assert rows[0].example_incident_id == "inc-3"
    assert rows[0].last_opened_at == YESTERDAY + timedelta(hours=18)


async def test_an_empty_range_has_no_rows(database_url: str) -> None:
    async with fresh_store(database_url) as (_, empty):
        assert await insights.accuracy(empty, WEEK) == []
        assert await insights.timings(empty, WEEK) == []
        assert await insights.root_causes(empty, WEEK) == []


# --- CSV ----------------------------------------------------------------------------------------------------


def test_csv_has_a_header_iso_times_and_escaped_fields() -> None:
    at = datetime(2030, 3, 9, tzinfo=UTC)
    rows = [
        CountRow(bucket=at, key='shop, "eu"\nwest', incidents=2),
        CountRow(bucket=at, key="=HYPERLINK(1)", incidents=1),
    ]

    text = to_csv(rows, CountRow)

    assert text.startswith("bucket,key,incidents\r\n")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed == [
        ["bucket", "key", "incidents"],
        ["2030-03-09T00:00:00Z", 'shop, "eu"\nwest', "2"],
        ["2030-03-09T00:00:00Z", "'=HYPERLINK(1)", "1"],
    ]


def test_chart_options_put_every_bucket_on_the_axis() -> None:
    axis = insights.buckets(WEEK, NOW)
    rows = [CountRow(bucket=YESTERDAY, key="db", incidents=2), CountRow(bucket=TODAY, key="net", incidents=1)]

    option = chart_option("incidents-by-category", rows, axis, WEEK)

    assert len(option["xAxis"]["data"]) == len(axis) == 8  # seven days back, today included
    series = {s["name"]: s["data"] for s in option["series"]}
    assert series["db"][axis.index(YESTERDAY)] == 2
    assert series["net"][-1] == 1
    assert sum(series["db"]) + sum(series["net"]) == 3


def context_with(store: Store | None) -> ConsoleContext:
    settings = Settings.model_validate({"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    return ConsoleContext(settings=settings, source=IncidentSource(settings), store=store)


async def test_csv_route_needs_a_user_and_answers_each_chart(store: Store) -> None:
    app = FastAPI()
    signed_in: list[SignedInUser] = []
    register_routes(app, context_with(store), lambda: signed_in[0] if signed_in else None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        refused = await client.get(csv_path("noise", WEEK))
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login?next=%2Finsights%2Fnoise.csv%3Frange%3D7d"

        signed_in.append(VIEWER)
        for slug in CHARTS:
            response = await client.get(csv_path(slug, TimeRange.QUARTER))
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/csv")
            assert f'filename="vigil-{slug}-90d.csv"' in response.headers["content-disposition"]
            header = next(csv.reader(io.StringIO(response.text)))
            assert header == list(CHARTS[slug].model.model_fields)
        noise = list(csv.DictReader(io.StringIO((await client.get(csv_path("noise", WEEK))).text)))
        assert [(row["alerts"], row["incidents"], row["reduction"]) for row in noise] == [
            ("12", "3", "0.75"),
            ("2", "1", "0.5"),
        ]
        assert noise[0]["bucket"] == YESTERDAY.isoformat().replace("+00:00", "Z")

        assert (await client.get("/insights/nothing.csv")).status_code == 404
        assert (await client.get("/insights/noise.csv?range=1y")).status_code == 400


async def test_csv_route_says_503_when_postgresql_is_down() -> None:
    dead = await Store.open(f"postgresql://nobody@127.0.0.1:{free_port()}/vigil")
    try:
        app = FastAPI()
        register_routes(app, context_with(dead), lambda: VIEWER)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
            response = await client.get(csv_path("accuracy", WEEK))
        assert response.status_code == 503
        assert "PostgreSQL is not reachable" in response.json()["detail"]
    finally:
        await dead.close()


# --- page ---------------------------------------------------------------------------------------------------


@pytest.fixture
def nicegui_storage(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.setattr(Storage, "path", Path(str(tmp_path)) / "nicegui")


@pytest.mark.usefixtures("nicegui_storage")
async def test_page_draws_every_chart_with_its_csv_link(store: Store) -> None:
    context = context_with(store)

    async with user_simulation(root=lambda: insights_page(context, VIEWER)) as user:
        await user.open("/")
        await user.should_see("Insights")
        await user.should_see("Top recurring root causes", retries=50)
        await user.should_see("67% of 3 judged diagnoses were right (2 right, 1 wrong).")
        charts = [element.options for element in user.find(ui.echart).elements]
        assert len(charts) == len(CHARTS)
        by_title = {str(option["series"][0]["name"]): option for option in charts}
        # 30 days by default: the incident of three weeks ago is in; the most frequent cause is drawn on top.
        assert by_title["incidents"]["yAxis"]["data"] == ["memory / cache", "database / orders-db"]
        links = {link.props["href"] for link in user.find(ui.link).elements}
        assert {csv_path(slug, TimeRange.MONTH) for slug in CHARTS} <= links

        # 7 days (whatever the time of day): the incident of three weeks ago drops out of the charts.
        select = next(iter(user.find(ui.select).elements))
        select.value = TimeRange.WEEK.value

        async def root_causes() -> list[str]:
            options = [element.options for element in user.find(ui.echart).elements]
            return next(o["yAxis"]["data"] for o in options if str(o["series"][0]["name"]) == "incidents")

        assert await eventually(root_causes, lambda causes: causes == ["database / orders-db"], timeout=10)
        links = {link.props["href"] for link in user.find(ui.link).elements}
        assert csv_path("noise", TimeRange.WEEK) in links


@pytest.mark.usefixtures("nicegui_storage")
async def test_page_says_so_when_postgresql_is_down() -> None:
    dead = await Store.open(f"postgresql://nobody@127.0.0.1:{free_port()}/vigil")
    try:
        async with user_simulation(root=lambda: insights_page(context_with(dead), VIEWER)) as user:
            await user.open("/")
            await user.should_see("PostgreSQL is not reachable, so there are no insights to show", retries=50)
            await user.should_not_see(kind=ui.echart)
        async with user_simulation(root=lambda: insights_page(context_with(None), VIEWER)) as user:
            await user.open("/")
            await user.should_see("the console has not reached it yet", retries=50)
    finally:
        await dead.close()
