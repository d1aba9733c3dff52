"""The console's live incident list (ui.console, ui.incident_feed, Store.incident_list/incident_changes) on real
PostgreSQL: the query with its filters and search, the change cursor that misses no late commit, the pure row
shaping and merging, and the page in NiceGUI's user simulation with the shared poller pushing changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from nicegui import ui
from nicegui.storage import Storage
from nicegui.testing import User

from tests.console_support import (
    add_user,
    alert,
    console_settings,
    diagnosis,
    incident,
    persist,
    services_for,
    sign_in,
    simulated_console,
)
from tests.support import eventually, free_port
from ui.console import (
    ListFilters,
    LiveList,
    RowLinks,
    TimeWindow,
    format_age,
    list_message,
    list_row,
    store_down_message,
    temporal_incident_search_url,
)
from vigil.analysis.models import Category
from vigil.auth.roles import Role
from vigil.models import IncidentStatus, Severity
from vigil.store.database import IncidentListQuery, IncidentListRow, Store, like_escape

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture(autouse=True)
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


def list_item(incident_id: str = "incident-a", **overrides: object) -> IncidentListRow:
    values: dict[str, object] = {
        "incident_id": incident_id,
        "title": "KubePodCrashLooping on checkout",
        "service": "checkout",
        "severity": "critical",
        "category": "database",
        "status": "awaiting_approval",
        "opened_at": NOW - timedelta(hours=2, minutes=5),
        "updated_at": NOW - timedelta(minutes=1),
        "alert_count": 7,
        "fingerprint_count": 3,
        "repeats": 12,
        "confidence": 0.834,
        "acknowledged_by": "alice",
    }
    values.update(overrides)
    return IncidentListRow.model_validate(values)


# --- pure functions ----------------------------------------------------------------------------------------


def test_row_shows_every_column_and_links(tmp_path: Path) -> None:
    settings = console_settings(tmp_path, temporal_namespace="vigil", temporal_ui_port=8299, api_port=8001)
    row = list_row(list_item(), RowLinks.of(settings), NOW)

    assert {key: row[key] for key in ("incident_id", "title", "status", "severity", "service", "category")} == {
        "incident_id": "incident-a",
        "title": "KubePodCrashLooping on checkout",
        "status": "awaiting approval",
        "severity": "critical",
        "service": "checkout",
        "category": "database",
    }
    assert (row["confidence"], row["age"], row["alerts"], row["distinct"], row["repeats"]) == (
        "83%",
        "2h 05m",
        7,
        3,
        12,
    )
    assert row["acknowledged_by"] == "alice"
    assert row["console_url"] == "/incidents/incident-a"
    assert row["api_url"] == "http://127.0.0.1:8001/api/v1/incidents/incident-a"
    assert row["temporal_url"] == (
        "http://127.0.0.1:8299/namespaces/vigil/workflows?query=VigilIncidentId%3D%22incident-a%22"
    )

    bare = list_row(
        list_item(category=None, confidence=None, acknowledged_by=None, service=None), RowLinks.of(settings), NOW
    )
    assert [bare[key] for key in ("category", "confidence", "acknowledged_by", "service")] == ["—"] * 4


def test_web_ui_link_escapes_the_id_and_is_absent_for_an_unknown_ui(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    url = temporal_incident_search_url(settings, 'incident-"x"')
    assert url is not None
    assert url.endswith("?query=VigilIncidentId%3D%22incident-%5C%22x%5C%22%22")
    assert temporal_incident_search_url(console_settings(tmp_path, TEMPORAL_ADDRESS="t.example:7233"), "i") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h 00m"), (7500, "2h 05m"), (90000, "1d 01h")],
)
def test_ages(seconds: int, text: str) -> None:
    assert format_age(NOW - timedelta(seconds=seconds), NOW) == text
    assert format_age(NOW + timedelta(seconds=5), NOW) == "0s"  # a clock ahead never shows a negative age


def test_filters_match_pushed_rows_as_the_query_does() -> None:
    row = list_item(title="Disk 50% full on db_1", service="db")

    assert ListFilters().matches(row, NOW)
    assert ListFilters(status=IncidentStatus.AWAITING_APPROVAL, severity=Severity.CRITICAL).matches(row, NOW)
    assert not ListFilters(status=IncidentStatus.OPEN).matches(row, NOW)
    assert not ListFilters(severity=Severity.WARNING).matches(row, NOW)
    assert not ListFilters(service="checkout").matches(row, NOW)
    assert not ListFilters(category="network").matches(row, NOW)
    assert ListFilters(window=TimeWindow.HOUR).matches(row, NOW)
    assert not ListFilters(window=TimeWindow.HOUR).matches(
        row.model_copy(update={"updated_at": NOW - timedelta(hours=2)}), NOW
    )
    assert ListFilters(text=" 50% FULL ").matches(row, NOW)
    assert ListFilters(text="INCIDENT-A").matches(row, NOW)
    assert not ListFilters(text="db%1").matches(row, NOW)

    query = ListFilters(status=IncidentStatus.OPEN, window=TimeWindow.DAY, text="  disk ").query(NOW)
    assert query == IncidentListQuery(status="open", since=NOW - timedelta(days=1), text="disk", limit=500)


def test_like_escape_leaves_no_wildcard() -> None:
    assert like_escape("50%_a\\b") == "50\\%\\_a\\\\b"


def test_live_list_keeps_one_row_per_incident_updates_in_place_and_drops_what_no_longer_matches(
    tmp_path: Path,
) -> None:
    live = LiveList(console_settings(tmp_path), ListFilters(status=IncidentStatus.OPEN), limit=3)
    a, b = list_item("incident-a", status="open"), list_item("incident-b", status="open")
    live.load([b, a, b], NOW)  # a duplicate id in the input shows once
    assert live.ids == ["incident-b", "incident-a"]

    changed_a = a.model_copy(update={"alert_count": 9, "updated_at": NOW})
    assert live.apply([changed_a], NOW)
    assert live.ids == ["incident-b", "incident-a"]  # in place
    assert live.table_rows()[1]["alerts"] == 9
    assert not live.apply([a], NOW)  # an older copy changes nothing
    assert not live.apply([changed_a], NOW)  # the same copy neither

    c, d = list_item("incident-c", status="open", updated_at=NOW), list_item("incident-d", status="open")
    assert live.apply([c, d, list_item("incident-x", status="closed")], NOW)
    assert live.ids[:2] == ["incident-c", "incident-d"]  # new rows on top, newest first
    assert len(live.ids) == 3  # the limit: the oldest went

    assert live.apply([c.model_copy(update={"status": "resolved", "updated_at": NOW + timedelta(seconds=1)})], NOW)
    assert "incident-c" not in live.ids
    assert len(set(live.ids)) == len(live.ids)


def test_messages() -> None:
    assert list_message(1, 500, NOW) == "1 incident · live, read 2026-03-01 12:00:00 UTC"
    assert list_message(500, 500, NOW).startswith("newest 500 incidents · ")
    assert store_down_message("ConnectionRefusedError", None) == (
        "Cannot read incidents from PostgreSQL: ConnectionRefusedError. Retrying by itself."
    )
    assert store_down_message("x", NOW).endswith("The table shows the list of 2026-03-01 12:00:00 UTC.")


# --- the store, on real PostgreSQL -------------------------------------------------------------------------


async def test_list_query_joins_diagnosis_repeats_and_acknowledgement(store: Store, unique: str) -> None:
    key = unique.lower()
    first = incident(f"incident-{key}-1", title=f"{unique} db down", alert_count=4, fingerprint_count=2)
    second = incident(
        f"incident-{key}-2",
        title=f"{unique} 50% disk",
        status=IncidentStatus.RESOLVED,
        severity=Severity.WARNING,
        service=f"svc-{key}",
        category="storage",
    )
    await persist(store, first, acknowledged_by="alice", alerts=[alert("fp-1", 3, 10), alert("fp-2", 1, 5)])
    await persist(store, second)
    await store.save_diagnosis(first.incident_id, diagnosis(0.71, Category.DATABASE))

    rows = {row.incident_id: row for row in await store.incident_list(IncidentListQuery(text=unique))}

    assert set(rows) == {first.incident_id, second.incident_id}
    one = rows[first.incident_id]
    assert (one.category, one.confidence, one.acknowledged_by) == ("database", 0.71, "alice")
    assert (one.alert_count, one.fingerprint_count, one.repeats) == (4, 2, 15)
    two = rows[second.incident_id]
    assert (two.category, two.confidence, two.acknowledged_by, two.status) == ("storage", None, None, "resolved")

    async def narrowed(**filters: object) -> set[str]:
        found = await store.incident_list(IncidentListQuery(text=unique, **filters))
        return {row.incident_id for row in found}

    assert await narrowed(status="resolved") == {second.incident_id}
    assert await narrowed(severity="critical") == {first.incident_id}
    assert await narrowed(service=f"svc-{key}") == {second.incident_id}
    assert await narrowed(category="database") == {first.incident_id}
    assert await narrowed(since=datetime.now(UTC) + timedelta(minutes=1)) == set()
    # The search is literal: '%' and '_' are no wildcards; the id and the service are searched too.
    assert {r.incident_id for r in await store.incident_list(IncidentListQuery(text=f"{unique} 50%"))} == {
        second.incident_id
    }
    assert await store.incident_list(IncidentListQuery(text=f"{unique}_50")) == []
    assert {r.incident_id for r in await store.incident_list(IncidentListQuery(text=f"svc-{key}"))} == {
        second.incident_id
    }
    assert f"svc-{key}" in await store.incident_services()


async def test_changes_miss_no_transaction_that_commits_late(store: Store, database_url: str, unique: str) -> None:
    key = unique.lower()
    row = incident(f"incident-{key}-late", title=f"{unique} late")
    await persist(store, row)
    start = await store.incident_changes(None)
    assert start.rows == []

    other = incident(f"incident-{key}-other", title=f"{unique} other")
    await persist(store, other)
    seen = await store.incident_changes(start.cursor)
    assert other.incident_id in {r.incident_id for r in seen.rows}
    assert row.incident_id not in {r.incident_id for r in seen.rows}

    conn = await asyncpg.connect(database_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(
            "UPDATE incidents SET title = $1 WHERE incident_id = $2", f"{unique} renamed", row.incident_id
        )
        during = await store.incident_changes(seen.cursor)  # the writer has not committed: not visible yet ...
        assert row.incident_id not in {r.incident_id for r in during.rows}
        await transaction.commit()
    finally:
        await conn.close()
    after = await store.incident_changes(during.cursor)  # ... and the cursor did not move past it
    assert {r.incident_id: r.title for r in after.rows}.get(row.incident_id) == f"{unique} renamed"

    # A diagnosis written alone also counts as a change of its incident.
    await store.save_diagnosis(other.incident_id, diagnosis(0.5))
    diagnosed = await store.incident_changes(after.cursor)
    assert {r.incident_id: r.confidence for r in diagnosed.rows}.get(other.incident_id) == 0.5


# --- the page ----------------------------------------------------------------------------------------------


def the_table(user: User) -> ui.table:
    return next(iter(user.find(ui.table).elements))


def listed(user: User) -> list[str]:
    return [row["incident_id"] for row in the_table(user).rows]


async def test_page_lists_filters_and_pushes_stored_incidents(tmp_path: Path, store: Store, unique: str) -> None:
    key = unique.lower()
    first = incident(
        f"incident-{key}-1",
        title=f"{unique} db down",
        alert_count=4,
        fingerprint_count=2,
        updated_at=datetime.now(UTC) - timedelta(seconds=30),
    )
    second = incident(f"incident-{key}-2", title=f"{unique} disk", severity=Severity.WARNING, category="storage")
    await persist(store, first, acknowledged_by="alice")
    await persist(store, second)
    await store.save_diagnosis(first.incident_id, diagnosis(0.71))
    settings = console_settings(tmp_path)
    password = add_user(settings, "vera", Role.VIEWER)
    services = services_for(settings, store)
    services.feed.start()
    try:
        async with simulated_console(services) as user:
            await sign_in(user, "vera", password)
            await user.should_see("vera (viewer)", retries=50)
            user.find(marker="incident-search").type(unique)
            await eventually(_async(lambda: listed(user)), lambda ids: len(ids) == 2, timeout=10)
            assert listed(user) == [second.incident_id, first.incident_id]  # newest change first
            table = the_table(user)
            shown = {row["incident_id"]: row for row in table.rows}[first.incident_id]
            assert (shown["category"], shown["confidence"], shown["alerts"], shown["distinct"]) == (
                "database",
                "71%",
                4,
                2,
            )
            assert shown["acknowledged_by"] == "alice"
            assert [column["label"] for column in table.columns][:8] == [
                "Incident",
                "Title",
                "Status",
                "Severity",
                "Service",
                "Category",
                "Confidence",
                "Age",
            ]
            assert table.props["data-testid"] == "incident-table"
            await user.should_see("2 incidents · live")

            severity = next(s for s in user.find(ui.select).elements if s.props["label"] == "Severity")
            severity.value = Severity.WARNING
            await eventually(_async(lambda: listed(user)), lambda ids: ids == [second.incident_id], timeout=10)
            severity.value = None
            await eventually(_async(lambda: listed(user)), lambda ids: len(ids) == 2, timeout=10)

            # Pushed: a new incident appears, a changed one changes in place, each id once.
            table_before = the_table(user)
            third = incident(f"incident-{key}-3", title=f"{unique} new one")
            await persist(store, third)
            await eventually(_async(lambda: listed(user)), lambda ids: ids[:1] == [third.incident_id], timeout=10)
            changed = first.model_copy(update={"alert_count": 9, "updated_at": datetime.now(UTC)})
            await persist(store, changed)

            def alerts_of_first() -> object:
                return {row["incident_id"]: row["alerts"] for row in the_table(user).rows}.get(first.incident_id)

            await eventually(_async(alerts_of_first), lambda alerts: alerts == 9, timeout=10)
            assert the_table(user) is table_before  # updated, not rebuilt
            assert listed(user) == [third.incident_id, second.incident_id, first.incident_id]  # in place
            assert len(set(listed(user))) == len(listed(user))
            # Not matching the tab's search: never shown.
            await persist(store, incident(f"incident-{key}-elsewhere", title="something else entirely"))
            await persist(store, changed.model_copy(update={"updated_at": datetime.now(UTC)}))
            await eventually(_async(alerts_of_first), lambda alerts: alerts == 9, timeout=10)
            assert f"incident-{key}-elsewhere" not in listed(user)
    finally:
        await services.feed.stop()


async def test_page_says_when_postgresql_is_down_and_recovers_by_itself(tmp_path: Path, store: Store) -> None:
    settings = console_settings(tmp_path)
    password = add_user(settings, "alice", Role.RESPONDER)
    down = await Store.open(f"postgresql://vigil@127.0.0.1:{free_port()}/vigil")
    services = services_for(settings, down)
    services.feed.start()
    try:
        async with simulated_console(services) as user:
            await sign_in(user, "alice", password)
            await user.should_see("Cannot read incidents from PostgreSQL", retries=100)
            await user.should_see("alice (responder)")
            services.context.store = store  # PostgreSQL is back (the pool would reconnect to the same URL alike)
            await user.should_see("· live, read", retries=100)
            assert the_table(user).rows
    finally:
        await services.feed.stop()
        await down.close()


def _async(probe: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`eventually` polls a coroutine: the page's state, read as it is now."""

    async def run() -> T:
        return probe()

    return run
