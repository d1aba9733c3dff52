"""The incident console (ui.console, ui.incident): its pure link functions, the Temporal source of the incident
page against real Temporal dev servers, the routes (an incident id reaches its page), the incident page in NiceGUI's
in-process user simulation on an incident diagnosed by the production workers, and `python -m vigil console` as a
real process. The live list and sign-in have their own files (test_console_list.py, test_console_login.py)."""

from __future__ import annotations

import os
import re
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
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ApiFactory
from tests.console_support import add_user, console_settings, services_for, sign_in, simulated_console
from tests.rca_support import outage_logs
from tests.support import VENV_BIN, am_alert, eventually, free_port
from tests.test_incident_flow import detail, open_incident
from ui.console import (
    TEMPORAL_ERRORS,
    IncidentSource,
    api_docs_url,
    enum_options,
    format_utc,
    temporal_ui_url,
)
from ui.context import ConsoleContext
from ui.incident import (
    CONFIDENCE_NOTE,
    chain_text,
    evidence_anchor,
    incident_page,
    percent,
    source_text,
    unknown_message,
)
from ui.knowledge import refused_doc_message
from ui.session import SignedInUser
from vigil.analysis.models import Category
from vigil.auth.roles import Role
from vigil.models import IncidentStatus, Severity
from vigil.rca.models import RCARootCause, RootCauseAnalysis
from vigil.settings import Settings
from vigil.store.database import Store
from vigil.temporal import SEARCH_ATTRIBUTES

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


# --- pure functions ----------------------------------------------------------------------------------------


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


def test_evidence_anchors_are_html_safe_and_distinct() -> None:
    ids = ["log:tpl-17", "log,tpl-17", "detector:db-connection-refused", "metric:{job=api,le=0.5}", ":::", "é"]
    anchors = [evidence_anchor(evidence_id) for evidence_id in ids]

    assert all(re.fullmatch(r"ev-[A-Za-z0-9_-]+", anchor) for anchor in anchors), anchors
    assert len(set(anchors)) == len(ids)
    assert anchors[2].startswith("ev-detector-db-connection-refused-")
    assert evidence_anchor("log:tpl-17") == anchors[0]  # stable


def test_diagnosis_source_and_confidence_texts() -> None:
    rca = RootCauseAnalysis(
        source="llm",
        model="qwen2.5-7b",
        category=Category.DATABASE,
        confidence=0.8349,
        severity="critical",
        code_related=False,
        root_cause=RCARootCause(summary="db down", component="checkout/database", evidence=["detector:x"]),
    )

    assert source_text(rca) == "LLM (qwen2.5-7b)"
    assert source_text(rca.model_copy(update={"model": None})) == "LLM"
    assert source_text(rca.model_copy(update={"source": "deterministic"})).startswith("deterministic")
    assert percent(rca.confidence) == "83%"


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


async def test_source_says_an_unknown_incident_is_unknown_on_real_temporal(empty_temporal: WorkflowEnvironment) -> None:
    source = IncidentSource(settings_for(empty_temporal))

    assert (await source.incident("incident-nobody-knows")).summary is None
    assert (await source.incident("not an incident id")).summary is None


async def test_source_recovers_once_temporal_comes_up() -> None:
    port = free_port()
    source = IncidentSource(make_settings(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    with pytest.raises(TEMPORAL_ERRORS):
        await source.incident("incident-nobody-knows")

    env = await start_temporal(port)
    try:
        assert (await source.incident("incident-nobody-knows")).summary is None
    finally:
        await env.shutdown()


@pytest.fixture
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep NiceGUI's storage out of the working directory (the repo) during in-process simulations."""
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


@pytest.mark.usefixtures("nicegui_storage")
async def test_the_incident_route_opens_the_incident_page_of_its_id(
    empty_temporal: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = console_settings(tmp_path, TEMPORAL_ADDRESS=empty_temporal.client.service_client.config.target_host)
    password = add_user(settings, "alice", Role.VIEWER)
    services = services_for(settings, None)

    async with simulated_console(services) as user:
        await sign_in(user, "alice", password, path="/incidents/incident-nobody-knows")
        await user.should_see(unknown_message("incident-nobody-knows"), retries=100)
        await user.should_see("alice (viewer)")
        await user.should_not_see("500")


@pytest.mark.usefixtures("nicegui_storage")
async def test_the_knowledge_route_hands_its_query_to_the_page(tmp_path: Path) -> None:
    settings = console_settings(tmp_path, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    password = add_user(settings, "alice", Role.VIEWER)
    services = services_for(settings, None)

    async with simulated_console(services) as user:
        await sign_in(user, "alice", password, path="/knowledge?doc=..%2F..%2Fetc%2Fpasswd")
        await user.should_see(refused_doc_message("../../etc/passwd"), retries=100)


RESPONDER = SignedInUser("alice", Role.RESPONDER)


def session_console(temporal_client: Client, store: Store) -> ConsoleContext:
    """The console on the session's Temporal server, where the session's production workers run incidents."""
    settings = make_settings(TEMPORAL_ADDRESS=temporal_client.service_client.config.target_host)
    return ConsoleContext(settings=settings, source=IncidentSource(settings), store=store)


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_incident_page_says_the_diagnosis_is_pending(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    client = api(debounce_seconds=3600)  # the alert storm is still being collected: no diagnosis for an hour
    incident_id = await open_incident(client, [am_alert(unique, service=f"svc-{unique.lower()}", instance="i1")])
    context = session_console(temporal_client, store)

    async with user_simulation(root=lambda: incident_page(context, incident_id, RESPONDER)) as user:
        await user.open("/")
        await user.should_see("Diagnosis pending", retries=100)
        await user.should_see("Status: open")
        await user.should_see(unique)  # the title names the alert
        await user.should_see("Timeline (newest first")
        await user.should_not_see("Root cause")
        user.find("Reload").click()
        await user.should_see("Diagnosis pending", retries=100)


SCRIPT = "<script>alert(1)</script>"
HTML_LINE = f'GET /api/cart failed: {SCRIPT} <a href="http://evil.example/login">sign in again</a>'


async def diagnosed_incident(api: ApiFactory, unique: str) -> tuple[str, RootCauseAnalysis]:
    """A database outage in the stored logs, with log lines carrying HTML, diagnosed by the session's ml worker."""
    client = api(quiet_period_seconds=3600)
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    logs = outage_logs(service, start=start) + [
        {
            "ts": (start + timedelta(seconds=15 * i)).isoformat(),
            "service": service,
            "level": "error",
            "message": HTML_LINE,
        }
        for i in range(20, 30)
    ]
    pushed = await client.post("/api/v1/logs", json=logs)
    assert pushed.status_code == 202, pushed.text
    incident_id = await open_incident(client, [am_alert(unique, service=service, instance="i1")])
    diagnosed = await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and d.state.diagnosis is not None,
        timeout=90,
    )
    assert diagnosed.state is not None
    assert diagnosed.state.diagnosis is not None
    return incident_id, diagnosed.state.diagnosis


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_incident_page_shows_the_diagnosis_with_links_to_its_evidence(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    incident_id, rca = await diagnosed_incident(api, unique)
    assert rca.runbooks, "retrieval found no runbook"
    assert any(SCRIPT in item.detail for item in rca.evidence), "the HTML log line is not in the evidence"
    context = session_console(temporal_client, store)

    async with user_simulation(root=lambda: incident_page(context, incident_id, RESPONDER)) as user:
        await user.open("/")
        await user.should_see(rca.root_cause.summary, retries=100)
        await user.should_see(f"Component: {rca.root_cause.component}")
        assert rca.root_cause.chain, "the diagnosis names no path from the alerting service to the component"
        await user.should_see(chain_text(rca))
        await user.should_see(f"Confidence {percent(rca.confidence)}")
        await user.should_see(CONFIDENCE_NOTE)
        await user.should_see("Source: deterministic")
        await user.should_see(f"LLM answer not used: {rca.llm_error}")
        await user.should_see("Dropped by the verifier")
        for item in rca.evidence:
            await user.should_see(item.title)
        await user.should_see(rca.runbooks[0].title)
        await user.should_see(rca.runbooks[0].source)

        targets = {str(element.props["id"]) for element in user.find(ui.element).elements if "id" in element.props}
        anchors = {target for target in targets if target.startswith("ev-")}  # the evidence items' own
        chips = [link for link in user.find(ui.link).elements if link.props["href"].startswith("#")]
        # Every root-cause citation is a chip linking to its evidence item on the page ...
        for evidence_id in rca.root_cause.evidence:
            anchor = evidence_anchor(evidence_id)
            assert any(link.text == evidence_id and link.props["href"] == f"#{anchor}" for link in chips)
            assert anchor in anchors
        # ... and so is every other chip: none points to nothing.
        assert {link.props["href"][1:] for link in chips} <= targets
        assert len(anchors) == len(rca.evidence)

        # The log line with HTML is shown as text, in plain labels; nothing on the page renders HTML or markdown.
        shown = user.find(content=SCRIPT).elements
        assert shown
        assert all(type(element) is ui.label for element in shown)
        await user.should_not_see(ui.html)
        await user.should_not_see(ui.markdown)
        assert not [link for link in user.find(ui.link).elements if "evil.example" in link.props["href"]]


# --- `python -m vigil console` ----------------------------------------------------------------------------


@pytest.fixture
def console_process(tmp_path: Path, repo_root: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The console as an operator runs it, against a Temporal and a PostgreSQL address where nothing listens.

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
        "DATABASE_URL": f"postgresql://vigil@127.0.0.1:{free_port()}/vigil",
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


async def test_console_serves_sign_in_while_temporal_and_postgresql_are_down_and_stops_cleanly(
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

        page = await eventually(index, lambda response: response is not None and response.status_code == 303)
        assert page is not None
        assert page.headers["location"] == "/login?next=%2F"
        cookie = page.headers["set-cookie"].lower()  # the session cookie: signed, not readable by scripts
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        incident = await http.get("/incidents/incident-anything")
        assert incident.status_code == 303
        assert incident.headers["location"] == "/login?next=%2Fincidents%2Fincident-anything"
        login = await http.get("/login")
        assert login.status_code == 200
        assert "Vigil" in login.text
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "vigil_console_signins_total" in metrics.text

    async def logged() -> str:
        return log.read_text()

    await eventually(logged, lambda text: "cannot connect to Temporal" in text, timeout=15.0)
    await eventually(logged, lambda text: "PostgreSQL not available" in text, timeout=15.0)
    assert "postgresql://" not in log.read_text()  # the database URL (it may hold a password) is never logged

    process.terminate()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status tells why it stopped.
    assert process.wait(timeout=20) == -signal.SIGTERM, log.read_text()
    assert list((tmp_path / "cwd").iterdir()) == []
