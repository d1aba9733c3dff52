"""One `vigil up` shared by checks that only look at a running stack, then one that kills its PostgreSQL.

The tests run in file order; the last one breaks the stack on purpose and waits until it has healed.
"""

from __future__ import annotations

import os
import re
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import am_alert, am_webhook
from tests.vigil_up import VigilUp, poll, start_vigil_up, wait_until

pytestmark = pytest.mark.timeout(600)
URL = re.compile(r"https?://[^\s│]+")
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VigilUp]:
    def configure(env: dict[str, str]) -> None:
        env["VIGIL_TOYPROD_TRAFFIC_RPS"] = "1"
        env["VIGIL_RUNBOOKS_DIR"] = str(Path(__file__).parent / "fixtures" / "runbooks")  # a few: fast first index

    run = start_vigil_up(tmp_path_factory.mktemp("vigil-up"), configure)
    try:
        yield run
    finally:
        run.kill()


def printed_urls(run: VigilUp) -> dict[str, str]:
    """The summary table's rows that hold a URL: label -> URL."""
    start = max(i for i, line in enumerate(run.lines) if line.strip() == "Vigil")  # the table's title
    rows: dict[str, str] = {}
    for line in run.lines[start:]:
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        match = URL.search(line)
        if match and len(cells) == 2:
            rows[cells[0]] = match.group(0)
    return rows


def api_url(run: VigilUp) -> str:
    return f"http://127.0.0.1:{run.env['VIGIL_API_PORT']}"


def post_alert(http: httpx.Client, url: str, name: str) -> httpx.Response:
    """POST one firing alert in the format the webhook `url` takes."""
    if url.endswith(("/alertmanager", "/grafana")):  # Grafana's webhook body extends Alertmanager's
        return http.post(url, json=am_webhook([am_alert(name, service="checkout", instance="i1")]))
    return http.post(url, json={"name": name, "service": "checkout", "severity": "critical"})


def test_every_url_vigil_up_prints_answers(up: VigilUp) -> None:
    rows = printed_urls(up)
    expected = {"Temporal Web UI (incidents)", "API docs", "Console", "toyprod (demo shop)", "ml worker metrics"}
    assert expected <= rows.keys(), up.output
    if "prometheus is ready" in up.output:
        assert {"Prometheus alerts", "Alertmanager alerts (API)"} <= rows.keys(), up.output
    assert "WorkflowType%3D%22IncidentWorkflow%22" in rows["Temporal Web UI (incidents)"]
    with httpx.Client(timeout=30, trust_env=False) as http:
        for label, url in rows.items():
            response = post_alert(http, url, "PrintedUrlCheck") if "(POST" in label else http.get(url)
            assert response.status_code < 400, (label, url, response.status_code, response.text[:300])


def listening_addresses(run: VigilUp) -> dict[int, str]:
    """port -> address of every TCP socket a process of the stack listens on."""
    run.collect_descendants()
    found: dict[int, str] = {}
    for process in run.descendants.values():
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found.update((c.laddr.port, c.laddr.ip) for c in connections if c.status == psutil.CONN_LISTEN)
    return found


def test_unauthenticated_endpoints_listen_on_loopback_only(up: VigilUp) -> None:
    """The Temporal Web UI and the worker metrics have no authentication (see the README's security notes)."""
    listening = listening_addresses(up)
    for setting in (
        "TEMPORAL_UI_PORT",
        *(f"{role}_WORKER_METRICS_PORT" for role in ("INCIDENTS", "ML", "INTEGRATIONS")),
    ):
        assert listening.get(int(up.env[f"VIGIL_{setting}"])) == "127.0.0.1", (setting, listening)
    assert set(listening.values()) <= LOOPBACK, listening


def test_state_dir_and_logs_are_private(up: VigilUp) -> None:
    state = up.state_dir.stat()
    if os.geteuid() == 0:  # PostgreSQL runs as pgserver's `pgserver` user: only its group may pass through
        server_gid = psutil.Process(postmaster_pid(up)).gids().effective
        assert (stat.S_IMODE(state.st_mode), state.st_gid) == (0o710, server_gid)
    else:
        assert stat.S_IMODE(state.st_mode) == 0o700
    logs = sorted((up.state_dir / "logs").glob("*.log"))
    assert len(logs) >= 6, logs
    for log in logs:
        assert stat.S_IMODE(log.stat().st_mode) == 0o600, log


def with_status(response: httpx.Response, status: int) -> httpx.Response | None:
    return response if response.status_code == status else None


def postmaster_pid(run: VigilUp) -> int:
    return int((run.state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def supervised_children(run: VigilUp) -> dict[int, str]:
    return {p.pid: " ".join(p.cmdline()) for p in psutil.Process(run.proc.pid).children()}


def test_killed_postgres_is_restarted_while_the_rest_keeps_serving(up: VigilUp) -> None:
    children = supervised_children(up)
    killed = postmaster_pid(up)
    os.kill(killed, signal.SIGKILL)
    with httpx.Client(base_url=api_url(up), timeout=30, trust_env=False) as http:
        # The API is still there at once (no refused connection), and takes the alert as soon as it can.
        assert http.get("/healthz").status_code == 200
        accepted: httpx.Response = poll(
            lambda: with_status(post_alert(http, "/api/v1/alerts", "PostgresKilled"), 202),
            60,
            lambda: f"the webhook to answer 202:\n{up.report()}",
        )
        [incident] = accepted.json()["incidents"]
        wait_until(
            lambda: any("restarted the embedded PostgreSQL" in line for line in up.lines),
            60,
            f"PostgreSQL to be restarted:\n{up.report()}",
        )
        assert postmaster_pid(up) != killed
        wait_until(lambda: http.get("/readyz").status_code == 200, 60, f"/readyz to recover:\n{up.report()}")
        incident_url = f"/api/v1/incidents/{incident['incident_id']}"
        detail = poll(
            lambda: with_status(http.get(incident_url), 200),
            120,
            lambda: f"the incident in the store:\n{up.report()}",
        )
        assert detail.json()["incident_id"].startswith(incident["incident_id"])
    assert up.proc.poll() is None, up.report()
    assert supervised_children(up) == children, "no other process was restarted"
