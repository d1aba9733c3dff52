"""End to end on the real binaries: `vigil up` with Prometheus and Alertmanager, a fault injected into toyprod
under traffic, the alert travelling Prometheus -> Alertmanager -> Vigil's webhook -> an incident workflow, and
the resolved alert reaching the same workflow after the fault is reset. Nothing here posts an alert itself.

Timings are shortened through the renderer's overrides (VIGIL_MONITORING_*): 1s scrapes and evaluations,
`for: 5s`, 1s group wait; the rules themselves are the production ones.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.vigil_up import SHORT_MONITORING, VigilUp, person_env, poll
from vigil.stack.monitoring import INFRA_DIR, find_binaries

TOYPROD_LABELS = {"service": "toyprod", "namespace": "demo"}


def _rule_metrics() -> set[str]:
    """The toyprod and process metrics the canonical alert rules read."""
    exprs = [
        rule["expr"]
        for path in (INFRA_DIR / "prometheus" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    return {name for expr in exprs for name in re.findall(r"\b(toyprod_[a-z_]+)\b", expr)}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[VigilUp]:
    find_binaries()  # a missing prometheus or alertmanager fails the test (scripts/setup.sh installs them)
    env = person_env(tmp_path)
    env.update(
        {
            "VIGIL_API_TOKEN": secrets.token_urlsafe(16),  # Alertmanager must send it from its credentials file
            **SHORT_MONITORING,
            "VIGIL_RUNBOOKS_DIR": str(Path(__file__).parent / "fixtures" / "runbooks"),  # a fast first index
        }
    )
    run = VigilUp(env, cwd=tmp_path)
    try:
        yield run
    finally:
        run.kill()


def _incident(http: httpx.Client, alertname: str) -> dict[str, Any] | None:
    response = http.get("/api/v1/incidents", params={"service": "toyprod"})
    response.raise_for_status()
    for row in response.json():
        if alertname.lower() in " ".join(str(row.get(key)) for key in ("incident_id", "group_key", "title")).lower():
            assert row["service"] == "toyprod", row
            return dict(row)
    return None


def _alert_statuses(http: httpx.Client, incident_id: str) -> set[str]:
    response = http.get(f"/api/v1/incidents/{incident_id}")
    response.raise_for_status()
    state = response.json().get("state") or {}
    return {record["status"] for record in state.get("alerts", {}).values()}


@pytest.mark.timeout(420)
def test_a_toyprod_fault_becomes_an_incident_and_resolves(stack: VigilUp) -> None:
    started = time.monotonic()
    env = stack.env
    stack.wait_up(timeout=180)
    up_after = time.monotonic() - started
    prometheus = f"http://127.0.0.1:{env['VIGIL_PROMETHEUS_PORT']}"
    headers = {"Authorization": f"Bearer {env['VIGIL_API_TOKEN']}"}
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{env['VIGIL_API_PORT']}", headers=headers, timeout=30) as http,
        httpx.Client(base_url=prometheus, timeout=10, trust_env=False) as prom,
    ):
        # Prometheus scrapes toyprod, the API and the three workers.
        def targets_up() -> list[str] | None:
            active = prom.get("/api/v1/targets").json()["data"]["activeTargets"]
            healthy = sorted(t["labels"]["job"] for t in active if t["health"] == "up")
            return healthy if {"toyprod", "vigil-api", "vigil-workers"} <= set(healthy) else None

        poll(targets_up, 60, lambda: f"scrape targets up: {prom.get('/api/v1/targets').text[:2000]}")

        # Every toyprod metric the rules read is one toyprod really exports (names and labels agree).
        wanted = _rule_metrics()
        assert "toyprod_http_requests_total" in wanted

        def toyprod_series() -> set[str] | None:
            found = prom.get("/api/v1/series", params={"match[]": '{job="toyprod"}'}).json()["data"]
            names = {series["__name__"] for series in found}
            return names if wanted <= names else None

        poll(toyprod_series, 30, lambda: f"toyprod series {sorted(wanted)} in Prometheus")

        # Before any fault the error ratio is recorded (0, not absent, while nothing fails), with toyprod's labels.
        def error_ratio() -> list[dict[str, Any]] | None:
            query = {"query": "toyprod:http_request_errors:ratio_rate5m"}
            result: list[dict[str, Any]] = prom.get("/api/v1/query", params=query).json()["data"]["result"]
            return result or None

        [sample] = poll(error_ratio, 30, lambda: "the recorded toyprod error ratio")
        assert sample["metric"] == {"__name__": "toyprod:http_request_errors:ratio_rate5m", **TOYPROD_LABELS}
        assert float(sample["value"][1]) < 0.005  # healthy: inside the 99.5% SLO
        assert _incident(http, "ToyprodHigh5xxRate") is None

        fault_at = datetime.now(UTC) - timedelta(seconds=2)
        stack.vigil("chaos", "errors", "0.5")

        incident = poll(
            lambda: _incident(http, "ToyprodHigh5xxRate"),
            120,
            lambda: (
                "an incident for ToyprodHigh5xxRate; Prometheus alerts: "
                f"{prom.get('/api/v1/alerts').text[:2000]}\n{stack.report()}"
            ),
        )
        fired_after = time.monotonic() - started
        incident_id = incident["incident_id"]
        # The SLO page fires on the same fault (50% errors: 100x the budget).
        poll(lambda: _incident(http, "ToyprodAvailabilityBudgetBurn"), 60, lambda: "the availability burn page")

        # toyprod's log lines of the fault window reached Vigil.
        def fault_logs() -> list[dict[str, Any]] | None:
            end = datetime.now(UTC) + timedelta(seconds=5)
            params = {"service": "toyprod", "start": fault_at.isoformat(), "end": end.isoformat()}
            response = http.get("/api/v1/logs", params=params)
            response.raise_for_status()
            lines: list[dict[str, Any]] = response.json()
            return lines if any(line["service"] == "toyprod" for line in lines) else None

        lines = poll(fault_logs, 30, lambda: "toyprod log lines of the fault window")
        assert all(datetime.fromisoformat(line["ts"]) >= fault_at for line in lines)

        # Triage diagnosed it on the ml worker, with the alert rule's own series read back from Prometheus.
        def diagnosis() -> dict[str, Any] | None:
            found: dict[str, Any] | None = http.get(f"/api/v1/incidents/{incident_id}").json().get("diagnosis")
            return found

        rca = poll(diagnosis, 90, lambda: f"a diagnosis of {incident_id}")
        metric_ids = [e["id"] for e in rca["evidence"] if e["kind"] == "metric"]
        assert any(i.startswith("metric:ToyprodHigh5xxRate") for i in metric_ids), rca["evidence"]
        assert rca["source"] == "deterministic"

        stack.vigil("chaos", "reset")
        poll(
            lambda: True if "resolved" in _alert_statuses(http, incident_id) else None,
            150,
            lambda: f"the resolved alert in {incident_id}: {http.get(f'/api/v1/incidents/{incident_id}').text[:3000]}",
        )
        resolved_after = time.monotonic() - started

    chaos_token = (stack.state_dir / "chaos-token").read_text().strip()
    assert chaos_token
    assert chaos_token not in stack.report(), "the chaos token must not appear in output or logs"
    assert env["VIGIL_API_TOKEN"] not in stack.report(), "the API token must not appear in output or logs"
    stack.collect_descendants()
    names = {" ".join(p.cmdline()) for p in stack.descendants.values()}
    assert any("prometheus" in name and "alertmanager" not in name for name in names), names
    assert any("alertmanager" in name for name in names), names
    assert stack.interrupt(timeout=120) == 0, stack.report()
    assert stack.survivors() == []
    print(
        f"\ne2e: up after {up_after:.0f}s, incident after {fired_after:.0f}s, "
        f"resolved after {resolved_after:.0f}s, total {time.monotonic() - started:.0f}s"
    )
