"""The console in a real browser, through the whole stack: headless chromium (selenium, Debian chromedriver) on
`python -m vigil console` as a real process, reading the session's Temporal dev server and PostgreSQL, written to
by the production workers, with a real Prometheus for the charts; incidents arrive through the real API.

One console process and one browser serve the whole module. Each test saves a screenshot of every page it visits
(test-artifacts/screenshots/<test>-<page>.png) and fails on any JavaScript error the page logged. Nothing here
times a page: the list's time to first paint is `vigil bench console-paint` (benchmarks/console_paint.py).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from temporalio.client import Client

from tests.browser_support import (
    Browser,
    ConsoleProcess,
    ConsoleUser,
    JavaScriptErrors,
    chromium_on,
    make_users,
    marked,
    poll_until,
    running_console,
)
from tests.conftest import ApiFactory
from tests.rca_support import outage_logs
from tests.support import am_alert, eventually, free_port
from tests.test_incident_flow import detail, open_incident, status_of
from ui.login import WRONG_CREDENTIALS
from vigil.auth.roles import Role
from vigil.models import Decision, IncidentDetail, IncidentStatus, TimelineKind
from vigil.store.database import Store

RESPONDER = "rita-responder"
VIEWER = "victor-viewer"
ACTION = "toyprod-restart"
"""A shipped catalogue action. Its `service` parameter binds only for toyprod, so for the services of these tests'
incidents the approved action reaches nothing."""
RELOAD_MARK = "__vigilNotReloaded"
"""Set on `window` before a change is made elsewhere: still there afterwards means the page showed the change
without a reload."""
ACTION_TESTIDS = ("approve", "reject", "ack", "propose", "resolve")
"""Everything on the incident page that changes an incident."""

Users = dict[str, ConsoleUser]


# --- the stack, once per module ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-users") / "users.json"


@pytest.fixture(scope="module")
def users(users_file: Path) -> Users:
    """A responder and a viewer, with passwords, in the console's users file (argon2, by the auth module)."""
    return make_users(users_file, {RESPONDER: Role.RESPONDER, VIEWER: Role.VIEWER})


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (Debian package, installed by scripts/setup.sh) scraping itself every second, handed out
    once it holds a sample of `up`, so the first chart already has a series."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed (scripts/setup.sh installs it)"
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: self, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n"
    )
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address={url[7:]}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=url, timeout=2.0) as http:

            def has_samples() -> bool:
                assert process.poll() is None, f"prometheus exited with {process.returncode}"
                try:
                    return bool(http.get("/api/v1/query", params={"query": "up"}).json()["data"]["result"])
                except (httpx.TransportError, ValueError, KeyError):
                    return False  # not serving yet

            poll_until(has_samples, f"sample of `up` in the Prometheus at {url}", 60.0)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def console(
    temporal_client: Client,
    database_url: str,
    store: Store,
    users_file: Path,
    users: Users,
    prometheus: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ConsoleProcess]:
    """`python -m vigil console` on the session's Temporal and PostgreSQL (migrated by `store`), with this module's
    users and Prometheus."""
    process = ConsoleProcess(
        folder=tmp_path_factory.mktemp("console"),
        temporal_address=temporal_client.service_client.config.target_host,
        database_url=database_url,
        users_file=users_file,
        extra_env={"VIGIL_PROMETHEUS_URL": prometheus},
    )
    with running_console(process):
        yield process


@pytest.fixture(scope="module")
def browser(console: ConsoleProcess) -> Iterator[Browser]:
    with chromium_on(console.base_url) as opened:
        yield opened


@pytest.fixture
def test_name(request: pytest.FixtureRequest, browser: Browser) -> Iterator[str]:
    """The test's name, for its screenshots; a test that failed leaves one of where the browser was, too."""
    name: str = request.node.name
    failed = request.session.testsfailed
    yield name
    if request.session.testsfailed > failed:
        browser.screenshot(name, "at-failure")


def _mark_page(browser: Browser) -> None:
    browser.driver.execute_script(f"window.{RELOAD_MARK} = true;")


def _not_reloaded(browser: Browser) -> bool:
    return browser.driver.execute_script(f"return window.{RELOAD_MARK} === true;") is True


def _list_row(browser: Browser, group_id: str, timeout: float) -> WebElement:
    """The list's row of the incident of group `group_id` (its occurrence id starts with the group id)."""
    selector = f'{marked("incident-row")}[data-incident-id^="{group_id}"]'

    def row(driver: WebDriver) -> WebElement | None:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0] if found else None

    return browser.wait(row, f"no list row of {group_id}", timeout)


# --- sign-in ------------------------------------------------------------------------------------------------------


def test_wrong_password_is_refused_and_the_right_one_opens_the_list(
    browser: Browser, users: Users, test_name: str
) -> None:
    responder = users[RESPONDER]
    browser.forget_session()
    browser.open("/")
    browser.wait(lambda _: browser.path().startswith("/login"), "signed out, / does not lead to the sign-in page")
    browser.submit_sign_in(responder.name, responder.password + "-wrong")
    assert browser.wait_text("login-message", WRONG_CREDENTIALS) == WRONG_CREDENTIALS
    assert browser.path().startswith("/login")
    assert not browser.present(marked("signed-in-user"))
    browser.snapshot(test_name, "login-refused")

    browser.submit_sign_in(responder.name, responder.password)
    assert browser.wait_text("signed-in-user", responder.label) == responder.label
    browser.signed_in = responder
    assert browser.path() == "/"
    browser.element("incident-table")
    browser.wait_text("incident-list-message", "live, read")  # the list was read from PostgreSQL
    assert browser.visible("nav-simulate")  # a responder's header offers every page
    browser.snapshot(test_name, "list")


# --- a responder approves from the incident page ------------------------------------------------------------------


def _open_from_the_list(browser: Browser, group_id: str) -> str:
    """Follow the incident's link in the list; returns its occurrence id."""
    row = _list_row(browser, group_id, 10.0)
    incident_id = str(row.get_attribute("data-incident-id"))
    row.find_element(By.CSS_SELECTOR, f'a[href="/incidents/{quote(incident_id, safe="")}"]').click()
    browser.wait(lambda _: browser.path() == f"/incidents/{quote(incident_id, safe='')}", "not on the incident page")
    browser.element("incident-head")
    return incident_id


def _chart_drawn(browser: Browser) -> tuple[int, int]:
    """The size of what ECharts drew the first metric chart on (a canvas, or an svg with the SVG renderer)."""

    def canvas(driver: WebDriver) -> tuple[int, int] | None:
        chart = marked("metric-chart")
        for element in driver.find_elements(By.CSS_SELECTOR, f"{chart} canvas, {chart} svg"):
            if element.size["width"] > 0 and element.size["height"] > 0:
                return element.size["width"], element.size["height"]
        return None

    return browser.wait(canvas, "no metric chart drawn", 60.0)


async def _diagnosed(client: httpx.AsyncClient, incident_id: str) -> IncidentDetail:
    return await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and d.state.diagnosis is not None and status_of(d) is IncidentStatus.MONITORING,
        timeout=90,
    )


@pytest.mark.usefixtures("workers")
async def test_responder_sees_the_incident_arrive_its_chart_and_approves_its_proposal(
    browser: Browser, users: Users, api: ApiFactory, prometheus: str, unique: str, test_name: str
) -> None:
    responder = users[RESPONDER]
    await asyncio.to_thread(browser.sign_in, responder)
    await asyncio.to_thread(browser.open, "/")
    await asyncio.to_thread(browser.wait_text, "incident-list-message", "live, read")
    await asyncio.to_thread(_mark_page, browser)

    # An incident arrives the way production makes one: its logs, then Alertmanager's webhook.
    client = api(quiet_period_seconds=3600, escalation_seconds=3600)
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    pushed = await client.post("/api/v1/logs", json=outage_logs(service, start=start))
    assert pushed.status_code == 202, pushed.text
    alert = am_alert(unique, service=service, instance="i1")
    alert["generatorURL"] = f"{prometheus}/graph?g0.expr={quote('up == 1')}&g0.tab=1"
    group_id = await open_incident(client, [alert])

    # The list shows it without a reload; its link opens its page.
    row = await asyncio.to_thread(_list_row, browser, group_id, 60.0)
    assert unique in row.text
    assert await asyncio.to_thread(_not_reloaded, browser)
    await asyncio.to_thread(browser.snapshot, test_name, "list-new-incident")
    incident_id = await asyncio.to_thread(_open_from_the_list, browser, group_id)
    assert incident_id.startswith(group_id)

    # Its metric chart: the alert rule's series from Prometheus, drawn by ECharts.
    width, height = await asyncio.to_thread(_chart_drawn, browser)
    assert width > 100
    assert height > 100
    diagnosed = await _diagnosed(client, group_id)
    assert diagnosed.incident_id == incident_id
    assert diagnosed.state is not None
    assert diagnosed.state.diagnosis is not None
    await asyncio.to_thread(browser.wait_text, "diagnosis", diagnosed.state.diagnosis.root_cause.summary[:40])
    await asyncio.to_thread(browser.snapshot, test_name, "incident-diagnosed")

    # A proposal made elsewhere (the REST API) shows up on the open page with Approve beside it.
    await asyncio.to_thread(_mark_page, browser)
    proposed = await client.post(
        f"/api/v1/incidents/{group_id}/remediation",
        json={"action": ACTION, "proposed_by": "api-bot", "reason": "browser test"},
    )
    assert proposed.status_code == 200, proposed.text
    proposal_id = proposed.json()["proposal_id"]
    await asyncio.to_thread(
        browser.wait_text, "pending-proposal", f"Awaiting approval: {ACTION} (proposal {proposal_id})"
    )
    await asyncio.to_thread(browser.element, "approve")
    await asyncio.to_thread(browser.snapshot, test_name, "incident-proposal")

    # Approve: the workflow records the decision as the signed-in user's.
    await asyncio.to_thread(browser.click, "approve")
    approved = await eventually(
        lambda: detail(client, group_id),
        lambda d: d.state is not None and any(o.decision is Decision.APPROVE for o in d.state.decisions),
        timeout=30,
    )
    assert approved.state is not None
    (decision,) = approved.state.decisions
    assert (decision.by, decision.action, decision.proposal_id) == (responder.name, ACTION, proposal_id)
    (event,) = [e for e in approved.state.timeline if e.kind is TimelineKind.APPROVED]
    assert event.actor == responder.name
    assert approved.state.pending_approval is None or approved.state.pending_approval.proposal_id != proposal_id

    # The page shows it without a reload: the Update's answer, the proposal gone, the timeline naming who approved.
    await asyncio.to_thread(
        browser.wait,
        lambda driver: f"Approve {ACTION}: done" in driver.find_element(By.TAG_NAME, "body").text,
        "no notification that the approval was done",
    )
    await asyncio.to_thread(browser.wait, lambda _: not browser.visible("approve"), "Approve still shown")
    await asyncio.to_thread(browser.click, "tab-timeline")
    shown = await asyncio.to_thread(browser.wait_text, f"timeline-{event.seq}", f"{responder.name} approved '{ACTION}'")
    assert "approved" in shown
    assert await asyncio.to_thread(_not_reloaded, browser)
    await asyncio.to_thread(browser.snapshot, test_name, "incident-timeline")


# --- a viewer reads, and cannot act -------------------------------------------------------------------------------


@pytest.mark.usefixtures("workers")
async def test_viewer_sees_the_proposal_but_nothing_to_act_with_and_no_simulations(
    browser: Browser, users: Users, api: ApiFactory, unique: str, test_name: str
) -> None:
    client = api(debounce_seconds=3600)  # collecting its alert storm for an hour: no diagnosis, no proposal of Vigil's
    group_id = await open_incident(client, [am_alert(unique, service=f"svc-{unique.lower()}", instance="i1")])
    proposed = await client.post(
        f"/api/v1/incidents/{group_id}/remediation", json={"action": ACTION, "proposed_by": "api-bot"}
    )
    assert proposed.status_code == 200, proposed.text
    viewer = users[VIEWER]

    def viewer_page() -> None:
        browser.sign_in(viewer)
        assert not browser.present(marked("nav-simulate"))
        browser.open(f"/incidents/{quote(group_id, safe='')}")
        # The proposal is shown whole (a responder's card has Approve and Reject in it from the first render)...
        browser.wait_text("pending-proposal", f"Awaiting approval: {ACTION}")
        browser.wait_text("incident-actions", "Signed in as a viewer")
        browser.snapshot(test_name, "incident")
        # ... and nothing on the page changes the incident: the only buttons are Reload and Sign out.
        assert [name for name in ACTION_TESTIDS if browser.present(marked(name))] == []
        buttons = {button.text.casefold() for button in browser.present("button") if button.is_displayed()}
        assert buttons == {"reload", "sign out"}

        browser.open("/simulate")
        browser.wait_text("signed-in-user", viewer.label)
        browser.wait(
            lambda driver: "Simulations are for responders and admins" in driver.find_element(By.TAG_NAME, "body").text,
            "/simulate not refused to a viewer",
        )
        browser.snapshot(test_name, "simulate-refused")

    await asyncio.to_thread(viewer_page)
    state = (await detail(client, group_id)).state
    assert state is not None
    assert state.pending_approval is not None
    assert state.decisions == []


# --- every other page ---------------------------------------------------------------------------------------------


PAGES = {"insights": "insights-range", "knowledge": "knowledge-search-button", "simulate": "simulate-status"}
"""Each page the header links, by an element of its own that shows it was built for the user."""


def test_other_pages_open_from_the_header_without_javascript_errors(
    browser: Browser, users: Users, test_name: str
) -> None:
    browser.sign_in(users[RESPONDER])
    browser.open("/")
    browser.element("incident-table")
    for page, own_element in PAGES.items():
        browser.click(f"nav-{page}")
        browser.wait(lambda _: browser.path() == f"/{page}", f"the header link did not open /{page}")  # noqa: B023
        browser.element(own_element)
        browser.wait_text("signed-in-user", users[RESPONDER].label)
        browser.snapshot(test_name, page)


def test_a_javascript_error_fails_the_snapshot_of_its_page(browser: Browser, test_name: str) -> None:
    """The guard every page above passes can fail: an uncaught exception and a console.error are both caught."""
    browser.driver.get(
        "data:text/html,<p>broken</p><script>console.error('logged'); throw new Error('uncaught');</script>"
    )
    with pytest.raises(JavaScriptErrors) as caught:
        browser.snapshot(test_name, "broken-page")
    assert "uncaught" in str(caught.value)
    assert "logged" in str(caught.value)
    assert browser.js_errors() == []  # each error is reported once, to the page that logged it
