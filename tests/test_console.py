"""The incident console (ui.console): its pure row/link/message functions, the page in NiceGUI's in-process user
simulation against real Temporal dev servers, and `python -m vigil console` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from nicegui import ui
from nicegui.storage import Storage
from nicegui.testing import user_simulation
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from tests.support import VENV_BIN, eventually, free_port
from ui.console import (
    LIST_LIMIT,
    TEMPORAL_ERRORS,
    IncidentSource,
    api_docs_url,
    enum_options,
    format_utc,
    incident_row,
    index_page,
    listed_message,
    temporal_ui_url,
    unavailable_message,
)
from vigil.models import IncidentStatus, IncidentSummary, Severity
from vigil.settings import Settings
from vigil.temporal import SEARCH_ATTRIBUTES, SERVICE_ATTR, SEVERITY_ATTR, STATUS_ATTR

STARTED = datetime(2024, 5, 1, 11, 52, 31, 123456, tzinfo=UTC)


def make_settings(**overrides: Any) -> Settings:
    """Settings independent of the environment running the tests: explicit values win over VIGIL_* and .env."""
    values: dict[str, Any] = {
        "TEMPORAL_ADDRESS": None,
        "temporal_namespace": "default",
        "temporal_ui_port": 8233,
        "api_host": "127.0.0.1",
        "api_port": 8000,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def summary(**overrides: Any) -> IncidentSummary:
    values: dict[str, Any] = {
        "incident_id": "incident-checkout-prod-5f1a3c2b9e",
        "run_id": "run-1",
        "title": "KubePodCrashLooping on checkout",
        "group_key": "alertname=KubePodCrashLooping,service=checkout,namespace=prod",
        "status": IncidentStatus.AWAITING_APPROVAL,
        "severity": Severity.CRITICAL,
        "service": "checkout",
        "category": "crash_loop",
        "started_at": STARTED,
        "closed_at": None,
    }
    values.update(overrides)
    return IncidentSummary.model_validate(values)


# --- pure functions ----------------------------------------------------------------------------------------


def test_row_links_the_embedded_web_ui_and_the_api() -> None:
    row = incident_row(summary(), make_settings(temporal_namespace="vigil", temporal_ui_port=8299, api_port=8001))

    assert row == {
        "incident_id": "incident-checkout-prod-5f1a3c2b9e",
        "title": "KubePodCrashLooping on checkout",
        "status": "awaiting approval",
        "severity": "critical",
        "service": "checkout",
        "started": "2024-05-01 11:52:31",
        "temporal_url": "http://127.0.0.1:8299/namespaces/vigil/workflows/incident-checkout-prod-5f1a3c2b9e",
        "api_url": "http://127.0.0.1:8001/api/v1/incidents/incident-checkout-prod-5f1a3c2b9e",
    }


def test_row_of_an_external_temporal_links_only_the_api_and_dashes_what_is_missing() -> None:
    settings = make_settings(TEMPORAL_ADDRESS="temporal.prod.example:7233")
    row = incident_row(
        summary(title=None, status=None, severity=None, service=None, started_at=None, incident_id="incident-a/b"),
        settings,
    )

    assert row["temporal_url"] is None
    assert temporal_ui_url(settings) is None
    assert row["api_url"] == "http://127.0.0.1:8000/api/v1/incidents/incident-a%2Fb"
    assert [row[key] for key in ("title", "status", "severity", "service", "started")] == ["—"] * 5


@pytest.mark.parametrize(
    ("api_host", "docs"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000/docs"),
        ("::", "http://127.0.0.1:8000/docs"),
        ("::1", "http://[::1]:8000/docs"),
        ("vigil.internal", "http://vigil.internal:8000/docs"),
    ],
)
def test_api_links_are_addresses_a_browser_can_open(api_host: str, docs: str) -> None:
    assert api_docs_url(make_settings(api_host=api_host)) == docs


def test_web_ui_link_of_the_embedded_server() -> None:
    assert temporal_ui_url(make_settings()) == "http://127.0.0.1:8233/namespaces/default/workflows"


def test_times_show_in_utc() -> None:
    assert format_utc(datetime(2024, 5, 1, 14, 52, 31, tzinfo=timezone(timedelta(hours=3)))) == "2024-05-01 11:52:31"
    assert format_utc(datetime(2024, 5, 1, 11, 52, 31)) == "2024-05-01 11:52:31"  # naive: already UTC
    assert format_utc(None) == "—"


def test_filter_options_are_the_enum_members_with_readable_labels() -> None:
    options = enum_options(IncidentStatus)

    assert list(options) == list(IncidentStatus)
    assert options[IncidentStatus.AWAITING_APPROVAL] == "awaiting approval"
    assert enum_options(Severity)[Severity.CRITICAL] == "critical"


def test_messages() -> None:
    assert listed_message(1, STARTED) == "1 incident · updated 2024-05-01 11:52:31 UTC · refreshes every 5 s"
    assert listed_message(0, STARTED).startswith("0 incidents · ")
    assert listed_message(LIST_LIMIT, STARTED).startswith(f"newest {LIST_LIMIT} incidents · ")

    down = unavailable_message("127.0.0.1:7233", RuntimeError("Failed client connect"), None)
    assert down == "Cannot list incidents from Temporal at 127.0.0.1:7233: Failed client connect. Retrying every 5 s."
    stale = unavailable_message("127.0.0.1:7233", TimeoutError(), STARTED)
    assert stale.endswith(
        ": no answer within 5 s. Retrying every 5 s. The table shows the list of 2024-05-01 11:52:31 UTC."
    )


# --- against real Temporal dev servers ---------------------------------------------------------------------


async def start_temporal(port: int | None = None) -> WorkflowEnvironment:
    """A private dev server: the console tests need an incident list no other test writes to."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(VENV_BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        port=port,
        dev_server_extra_args=["--headless"],
    )


@pytest.fixture(scope="module")
async def empty_temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_temporal()
    try:
        yield env
    finally:
        await env.shutdown()


def settings_for(env: WorkflowEnvironment) -> Settings:
    return make_settings(TEMPORAL_ADDRESS=env.client.service_client.config.target_host)


async def test_source_lists_with_every_filter_on_real_temporal(empty_temporal: WorkflowEnvironment) -> None:
    source = IncidentSource(settings_for(empty_temporal))

    assert await source.incidents(status=None, severity=None) == []
    assert await source.incidents(status=IncidentStatus.OPEN, severity=Severity.CRITICAL) == []


async def test_source_recovers_once_temporal_comes_up() -> None:
    port = free_port()
    source = IncidentSource(make_settings(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    with pytest.raises(TEMPORAL_ERRORS):
        await source.incidents(status=None, severity=None)

    env = await start_temporal(port)
    try:
        assert await source.incidents(status=None, severity=None) == []
    finally:
        await env.shutdown()


@pytest.fixture
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep NiceGUI's storage out of the working directory (the repo) during in-process simulations."""
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


@pytest.mark.usefixtures("nicegui_storage")
async def test_page_shows_an_empty_list_from_real_temporal(empty_temporal: WorkflowEnvironment) -> None:
    settings = settings_for(empty_temporal)
    source = IncidentSource(settings)

    async with user_simulation(root=lambda: index_page(settings, source)) as user:
        await user.open("/")
        await user.should_see("Vigil — incidents")
        await user.should_see("API docs")
        await user.should_see("0 incidents · updated", retries=50)
        table = next(iter(user.find(ui.table).elements))
        assert table.rows == []
        assert [column["label"] for column in table.columns] == [
            "Incident",
            "Title",
            "Status",
            "Severity",
            "Service",
            "Started (UTC)",
        ]


@pytest.mark.usefixtures("nicegui_storage")
async def test_page_lists_and_filters_incidents_from_real_temporal() -> None:
    env = await start_temporal()
    try:
        # Incident workflows as visibility sees them; no worker needed, which is the point of listing from it.
        for number, (status, severity) in enumerate(
            [(IncidentStatus.OPEN, Severity.CRITICAL), (IncidentStatus.MONITORING, Severity.WARNING)]
        ):
            await env.client.start_workflow(
                "IncidentWorkflow",
                id=f"incident-console-{number}",
                task_queue="console-test-no-worker",
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(STATUS_ATTR, status.value),
                        SearchAttributePair(SEVERITY_ATTR, severity.value),
                        SearchAttributePair(SERVICE_ATTR, "checkout"),
                    ]
                ),
                memo={"title": f"Incident {number}"},
            )
        settings = settings_for(env)
        source = IncidentSource(settings)
        await eventually(lambda: source.incidents(status=None, severity=None), lambda rows: len(rows) == 2)

        async with user_simulation(root=lambda: index_page(settings, source)) as user:
            await user.open("/")
            await user.should_see("2 incidents · updated", retries=50)
            table = next(iter(user.find(ui.table).elements))
            assert [(row["incident_id"], row["title"], row["status"], row["severity"]) for row in table.rows] == [
                ("incident-console-1", "Incident 1", "monitoring", "warning"),
                ("incident-console-0", "Incident 0", "open", "critical"),
            ]

            status_filter = next(
                select for select in user.find(ui.select).elements if select.props["label"] == "Status"
            )
            status_filter.value = IncidentStatus.OPEN
            await user.should_see("1 incident · updated", retries=50)
            assert [row["incident_id"] for row in table.rows] == ["incident-console-0"]
    finally:
        await env.shutdown()


@pytest.mark.usefixtures("nicegui_storage")
async def test_page_says_so_when_temporal_is_unreachable() -> None:
    settings = make_settings(TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    source = IncidentSource(settings)

    async with user_simulation(root=lambda: index_page(settings, source)) as user:
        await user.open("/")
        await user.should_see(f"Cannot list incidents from Temporal at {settings.temporal_target}", retries=50)
        await user.should_see(f"Temporal: {settings.temporal_target}")  # no Web UI link for an external server


# --- `python -m vigil console` ----------------------------------------------------------------------------


@pytest.fixture
def console_process(tmp_path: Path, repo_root: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The console as an operator runs it, against a Temporal address where nothing listens.

    It runs in an empty working directory, so the test can check it writes nothing there.
    """
    port = free_port()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    log = tmp_path / "console.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")])),
        "VIGIL_CONSOLE_PORT": str(port),
        "VIGIL_STATE_DIR": str(tmp_path / "state"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    # NiceGUI takes this variable to mean "inside pytest" and then serves on NICEGUI_SCREEN_TEST_PORT instead.
    env.pop("PYTEST_CURRENT_TEST", None)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "vigil", "console"], cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_console_serves_its_page_while_temporal_is_down_and_stops_cleanly(
    console_process: tuple[subprocess.Popen[bytes], int, Path], tmp_path: Path
) -> None:
    process, port, log = console_process

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:

        async def index() -> httpx.Response | None:
            if process.poll() is not None:
                raise AssertionError(f"console exited with {process.returncode}:\n{log.read_text()}")
            try:
                return await http.get("/")
            except httpx.TransportError:
                return None  # not listening yet

        page = await eventually(index, lambda response: response is not None and response.status_code == 200)
        assert page is not None
        assert "Vigil" in page.text

    async def logged() -> str:
        return log.read_text()

    await eventually(logged, lambda text: "Cannot list incidents from Temporal" in text, timeout=15.0)

    process.terminate()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status tells why it stopped.
    assert process.wait(timeout=20) == -signal.SIGTERM, log.read_text()
    assert list((tmp_path / "cwd").iterdir()) == []
