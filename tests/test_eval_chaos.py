"""`vigil eval chaos` without a stack: the expected answers against toyprod's own chaos API, what one incident
says about a fault (opening, alerts, diagnosis, clearing), the report's arithmetic and its table."""

from __future__ import annotations

import inspect
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from rich.console import Console
from typer.testing import CliRunner

from eval.chaos import (
    EXPECTED,
    FAULT_ORDER,
    ChaosParams,
    ChaosReport,
    FaultResult,
    IncidentAnswer,
    alert_name,
    alerts_cleared,
    fault_alerts,
    fill_result,
    first_incident,
    incident_answer,
    last_resolved,
    parse_faults,
    print_report,
    record_incidents,
)
from toyprod import chaos_api
from toyprod import cli as toyprod_cli
from vigil.analysis.models import Category
from vigil.cli import app
from vigil.models import (
    AlertRecord,
    AlertSource,
    AlertStatus,
    IncidentDetail,
    IncidentState,
    IncidentStatus,
    TimelineEvent,
    TimelineKind,
)
from vigil.severity import Severity

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
K = TimelineKind


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(seq: int, seconds: float, kind: TimelineKind, **data: Any) -> TimelineEvent:
    return TimelineEvent(seq=seq, at=at(seconds), kind=kind, message=kind.value, data=data)


def record(name: str, starts: float, *, resolved_at: float | None = None, **labels: str) -> tuple[str, AlertRecord]:
    fingerprint = f"{name}-{starts}-{sorted(labels.items())}"
    return fingerprint, AlertRecord(
        fingerprint=fingerprint,
        status=AlertStatus.RESOLVED if resolved_at is not None else AlertStatus.FIRING,
        labels={"alertname": name, "service": "toyprod", "namespace": "demo", "severity": "critical", **labels},
        severity=Severity.CRITICAL,
        summary=name,
        first_seen=at(starts),
        last_seen=at(starts),
        starts_at=at(starts),
        ends_at=at(resolved_at) if resolved_at is not None else None,
        source=AlertSource.ALERTMANAGER,
    )


def detail(incident_id: str, timeline: list[TimelineEvent], alerts: list[tuple[str, AlertRecord]]) -> IncidentDetail:
    state = IncidentState(
        incident_id=incident_id,
        group_key="k",
        group_labels={},
        title="t",
        service="toyprod",
        status=IncidentStatus.MONITORING,
        opened_at=at(-3600),
        updated_at=at(0),
        alerts=dict(alerts),
        timeline=timeline,
    )
    return IncidentDetail(incident_id=incident_id, live=True, state=state, record=None, timeline=[])


DIAGNOSED_DB = {"category": "database", "component": "database", "confidence": 0.82, "source": "deterministic"}


# ---- the faults ----------------------------------------------------------------------------------------------


def test_every_toyprod_fault_has_an_expected_answer_and_runs_once() -> None:
    routes = {getattr(route, "path", "") for route in chaos_api.router.routes}
    faults = {path.removeprefix("/chaos/") for path in routes if path.startswith("/chaos/")} - {"reset"}
    assert set(EXPECTED) == faults
    assert sorted(FAULT_ORDER) == sorted(faults)
    assert len(FAULT_ORDER) == 11
    assert {name: EXPECTED[name].category for name in FAULT_ORDER} == {
        "db-down": Category.DATABASE,
        "db-pool-exhaustion": Category.DATABASE,
        "payments-failing": Category.DEPENDENCY,
        "payments-ratelimit": Category.DEPENDENCY,
        "bad-deploy": Category.DEPLOYMENT,
        "disk-fill": Category.STORAGE,
        "cert-expiry": Category.SECURITY,
        "memory-leak": Category.MEMORY,
        "cpu-burn": Category.COMPUTE,
        "errors": Category.DATABASE,
        "latency": Category.NETWORK,
    }
    assert all(expected.why for expected in EXPECTED.values())


def test_every_fault_has_defaults_and_the_cli_uses_the_same() -> None:
    """The eval posts no body, so toyprod's API defaults are what runs; `vigil chaos <fault>` sends the same."""
    models: dict[str, type[BaseModel]] = {
        "latency": chaos_api.LatencyParams,
        "errors": chaos_api.ErrorsParams,
        "memory-leak": chaos_api.RateParams,
        "cpu-burn": chaos_api.CpuParams,
        "cert-expiry": chaos_api.CertParams,
    }
    for fault, model in models.items():
        command = getattr(toyprod_cli, fault.replace("-", "_"))
        cli_defaults = [p.default.default for p in inspect.signature(command).parameters.values()]
        api_defaults = [f.default for name, f in model.model_fields.items() if name != "route"]
        assert cli_defaults[: len(api_defaults)] == api_defaults, fault
    # disk-fill's route picks its own default rate (16 MB/s), as the CLI does.
    assert inspect.signature(toyprod_cli.disk_fill).parameters["rate"].default.default == 16.0


def test_fault_lists_are_checked_and_keep_their_order() -> None:
    assert parse_faults("") == list(FAULT_ORDER)
    assert parse_faults(" cpu-burn , memory-leak,") == ["cpu-burn", "memory-leak"]
    with pytest.raises(ValueError, match="nope"):
        parse_faults("cpu-burn,nope")


# ---- one incident ----------------------------------------------------------------------------------------------


def test_alert_names_keep_what_tells_variants_apart() -> None:
    assert alert_name({"alertname": "ToyprodDependencyDown", "service": "toyprod", "dependency": "database"}) == (
        "ToyprodDependencyDown{dependency=database}"
    )
    assert alert_name({"alertname": "ToyprodHigh5xxRate", "service": "toyprod", "severity": "critical"}) == (
        "ToyprodHigh5xxRate"
    )


def test_a_new_incident_with_its_diagnosis() -> None:
    d = detail(
        "inc-1",
        [event(1, 95, K.OPENED), event(2, 95, K.ALERT_NEW), event(3, 140, K.DIAGNOSED, **DIAGNOSED_DB)],
        [record("ToyprodDependencyDown", 30, dependency="database"), record("ToyprodHigh5xxRate", 40)],
    )
    answer = incident_answer(d, T0)
    assert answer is not None
    assert (answer.opened_at, answer.reopened, answer.diagnosed_at) == (at(95), False, at(140))
    assert (answer.category, answer.component, answer.confidence) == ("database", "database", 0.82)
    assert answer.alerts == ["ToyprodDependencyDown{dependency=database}", "ToyprodHigh5xxRate"]


def test_a_reopened_incident_counts_only_the_diagnosis_after_the_reopening() -> None:
    d = detail(
        "inc-2",
        [
            event(1, -900, K.OPENED),
            event(2, -880, K.DIAGNOSED, category="dependency", component="payments", confidence=0.7),
            event(3, -300, K.RESOLVED),
            event(4, 100, K.REOPENED),
        ],
        [record("ToyprodHigh5xxRate", -950, resolved_at=-400), record("ToyprodHigh5xxRate", 60, instance="b")],
    )
    answer = incident_answer(d, T0)
    assert answer is not None
    assert answer.reopened
    assert answer.diagnosed_at is None
    assert answer.category is None
    assert answer.alerts == ["ToyprodHigh5xxRate"]  # only the episode that began after t0
    d.state.timeline.append(event(5, 130, K.DIAGNOSED, **DIAGNOSED_DB))  # type: ignore[union-attr]
    answer = incident_answer(d, T0)
    assert answer is not None
    assert (answer.category, answer.diagnosed_at) == ("database", at(130))


def test_an_incident_still_open_is_the_faults_from_its_first_new_alert() -> None:
    d = detail("inc-3", [event(1, -600, K.OPENED), event(2, 70, K.ALERT_REFIRED)], [record("ToyprodHigh5xxRate", 40)])
    answer = incident_answer(d, T0)
    assert answer is not None
    assert answer.opened_at == at(70)
    assert answer.reopened


def test_an_incident_the_fault_did_not_reach_is_not_an_answer() -> None:
    d = detail("inc-4", [event(1, -600, K.OPENED), event(2, -500, K.DIAGNOSED, **DIAGNOSED_DB)], [])
    assert incident_answer(d, T0) is None


def test_cleared_needs_every_alert_of_the_fault_resolved() -> None:
    older = record("ToyprodHigh5xxRate", -900)  # still firing, but not this fault's: not waited for
    a = record("ProcessMemoryGrowing", 20, resolved_at=400)
    b = record("ToyprodHigh5xxRate", 50)
    d = detail("inc-5", [event(1, 60, K.OPENED)], [older, a, b])
    assert fault_alerts(d, T0) == ["ProcessMemoryGrowing", "ToyprodHigh5xxRate"]
    assert not alerts_cleared(d, T0)
    assert last_resolved(d, T0) is None
    b = record("ToyprodHigh5xxRate", 50, resolved_at=430)
    d = detail("inc-5", [event(1, 60, K.OPENED)], [older, a, b])
    assert alerts_cleared(d, T0)
    assert last_resolved(d, T0) == at(430)


# ---- the fault's answer and the report -------------------------------------------------------------------------


def answer(incident_id: str, opened: float, category: str | None, diagnosed: float | None = None) -> IncidentAnswer:
    return IncidentAnswer(
        incident_id=incident_id,
        opened_at=at(opened),
        alerts=[f"Alert{incident_id}"],
        diagnosed_at=at(diagnosed) if diagnosed is not None else None,
        category=category,
        component="toyprod" if category else None,
        confidence=0.6 if category else None,
    )


def test_the_first_incident_to_open_is_the_faults_answer() -> None:
    late_right = answer("b", 200, "memory", 230)
    early_wrong = answer("a", 120, "compute", 260)
    assert first_incident([late_right, early_wrong]) == early_wrong
    assert first_incident([]) is None
    result = FaultResult(fault="memory-leak", expected="memory", expected_why="w", t0=T0)
    fill_result(result, [late_right, early_wrong])
    assert (result.incident_id, result.t_incident, result.t_diagnosis) == ("a", 120.0, 260.0)
    assert result.category == "compute"
    assert not result.right
    assert result.alerts == ["Alerta", "Alertb"]
    assert [i.incident_id for i in result.incidents] == ["a", "b"]


def test_no_incident_leaves_the_fault_unanswered_and_wrong() -> None:
    result = FaultResult(fault="cpu-burn", expected="compute", expected_why="w", t0=T0)
    fill_result(result, [])
    assert result.incident_id is None
    assert result.t_incident is None
    assert not result.right


def report_of(results: list[FaultResult]) -> ChaosReport:
    return ChaosReport(
        started_at=T0,
        params=ChaosParams(api="http://a", toyprod="http://t", faults=[r.fault for r in results]),
        results=results,
    )


def test_the_summary_counts_right_opened_and_cleared() -> None:
    right = FaultResult(fault="db-down", expected="database", expected_why="w", t0=T0)
    fill_result(right, [answer("x", 90, "database", 120)])
    right.cleared, right.t_clear = True, 310.0
    wrong = FaultResult(fault="latency", expected="network", expected_why="w", t0=T0)
    fill_result(wrong, [answer("y", 150, "compute", 170)])
    silent = FaultResult(fault="cpu-burn", expected="compute", expected_why="w", t0=T0, failure="no incident")
    report = report_of([right, wrong, silent])
    assert report.right == 1
    assert report.summary() == "right: 1/3; incident opened: 2/3; cleared after reset: 1/3"
    data = report.to_json()
    json.dumps(data)  # plain JSON
    assert (data["right"], data["total"]) == (1, 3)
    assert [r["right"] for r in data["results"]] == [True, False, False]
    assert data["results"][0]["t_incident"] == 90.0


def test_the_table_shows_each_fault_with_its_expected_answer() -> None:
    right = FaultResult(fault="db-down", expected="database", expected_why="w", t0=T0)
    fill_result(right, [answer("x", 90, "database", 120)])
    right.cleared, right.t_clear, right.t_clear_seen = True, 31.0, 290.0
    silent = FaultResult(fault="cpu-burn", expected="compute", expected_why="w", t0=T0, failure="no incident in 900 s")
    out = io.StringIO()
    print_report(report_of([right, silent]), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    db_row = next(line for line in text.splitlines() if "db-down" in line)
    assert "Alertx" in db_row
    assert "90" in db_row
    assert "120" in db_row
    assert "✓ database (database)" in db_row
    assert "0.60" in db_row
    assert "yes, 31 s (290 s)" in db_row
    cpu_row = next(line for line in text.splitlines() if "cpu-burn │" in line)
    assert "✗ — (compute)" in cpu_row
    assert "no" in cpu_row
    assert "cpu-burn: no incident in 900 s" in text
    assert "right: 1/2; incident opened: 1/2; cleared after reset: 1/2" in text


def test_incidents_that_open_late_join_the_list_but_not_the_answer() -> None:
    result = FaultResult(fault="bad-deploy", expected="deployment", expected_why="w", t0=T0)
    fill_result(result, [answer("a", 120, "deployment", 125)])
    record_incidents(result, [answer("a", 120, "deployment", 125), answer("b", 190, "dependency")])
    assert (result.incident_id, result.category, result.t_incident) == ("a", "deployment", 120.0)
    assert result.alerts == ["Alerta", "Alertb"]
    assert [i.incident_id for i in result.incidents] == ["a", "b"]


@pytest.mark.parametrize("command", ["chaos", "remediation"])
def test_an_unknown_fault_is_refused_before_any_stack_is_reached(command: str) -> None:
    result = CliRunner().invoke(
        app, ["eval", command, "--faults", "bad-deploy,no-such-fault", "--api", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert "unknown fault(s) no-such-fault" in result.output
