"""`vigil eval remediation` without a stack: the stage breakdown from hand-built timelines, the medians over
repeats, the fault table against toyprod's own chaos commands, and the whole loop against a fake API."""

from __future__ import annotations

import inspect
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from eval.remediation import (
    FAULTS,
    ONCALL,
    STAGE_NAMES,
    Breakdown,
    RemediationParams,
    RunRecord,
    Stages,
    finished,
    judge,
    median,
    merged_timeline,
    parse_faults,
    phase,
    print_report,
    run_eval,
    stage_breakdown,
    summarize,
)
from toyprod import cli as toyprod_cli
from toyprod.chaos_api import router as chaos_router
from vigil.models import (
    IncidentDetail,
    IncidentState,
    IncidentStatus,
    PendingApproval,
    RemediationProposal,
    TimelineEvent,
    TimelineKind,
)
from vigil.remediation.catalogue import SHIPPED_ACTIONS

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
K = TimelineKind


Spec = tuple[float, TimelineKind, dict[str, Any]] | tuple[float, TimelineKind, dict[str, Any], str]


def timeline(*specs: Spec) -> list[TimelineEvent]:
    """Events at T0 + seconds (actor last, default vigil), numbered from 1 in order."""
    return [
        TimelineEvent(
            seq=seq,
            at=T0 + timedelta(seconds=spec[0]),
            kind=spec[1],
            message=spec[1].value,
            actor=spec[3] if len(spec) == 4 else "vigil",
            data=spec[2],
        )
        for seq, spec in enumerate(specs, start=1)
    ]


def closed_loop(action: str = "toyprod-rollback-deploy", approver: str = ONCALL) -> list[TimelineEvent]:
    """opened 12s after the fault, diagnosed 3s later, proposed 2s later, approved 5s later, run 1s later,
    verified 10s later, resolved 7s later."""
    return timeline(
        (12, K.OPENED, {}),
        (12, K.ALERT_NEW, {}),
        (15, K.DIAGNOSED, {"category": "deployment"}),
        (17, K.REMEDIATION_PROPOSED, {"action": action, "proposal_id": 4}, "vigil"),
        (22, K.APPROVED, {"action": action, "proposal_id": 4}, approver),
        (23, K.REMEDIATION_RUN, {"action": action, "proposal_id": 4, "outcome": "succeeded", "rollback": False}),
        (33, K.VERIFIED, {"action": action}),
        (35, K.ALERT_RESOLVED, {}),
        (40, K.RESOLVED, {}),
    )


def test_a_closed_loop_splits_into_its_stages() -> None:
    breakdown = stage_breakdown(closed_loop(), T0)

    assert breakdown.stages == Stages(
        detection=12, diagnosis=3, proposal=2, approval_wait=5, action=1, verification=10, resolution=7, total=40
    )
    stages = breakdown.stages
    parts = [getattr(stages, name) for name in STAGE_NAMES if name != "total"]
    assert sum(parts) == stages.total  # the stages cover the whole time, nothing counted twice
    assert breakdown.proposal_id == 4
    assert breakdown.proposed_action == breakdown.action_ran == "toyprod-rollback-deploy"
    assert breakdown.approved_by == ONCALL
    assert not breakdown.auto_approved
    assert breakdown.action_outcome == "succeeded"
    assert breakdown.verification == "verified"
    assert breakdown.resolved
    assert not breakdown.reopened
    assert judge(breakdown, "toyprod-rollback-deploy") is None
    assert finished(breakdown)
    assert phase(breakdown) == "resolved"


def test_the_policy_approving_is_a_zero_approval_wait() -> None:
    events = timeline(
        (8, K.OPENED, {}),
        (9, K.DIAGNOSED, {}),
        (9.5, K.REMEDIATION_PROPOSED, {"action": "toyprod-restart", "proposal_id": 3}),
        (9.5, K.APPROVED, {"action": "toyprod-restart", "proposal_id": 3}, "policy:toyprod-safe-fixes"),
        (10, K.REMEDIATION_RUN, {"action": "toyprod-restart", "proposal_id": 3, "outcome": "succeeded"}),
        (70, K.VERIFIED, {"action": "toyprod-restart"}),
        (75, K.RESOLVED, {}),
    )
    breakdown = stage_breakdown(events, T0)

    assert breakdown.auto_approved
    assert breakdown.approved_by == "policy:toyprod-safe-fixes"
    assert breakdown.stages.approval_wait == 0
    assert breakdown.stages.verification == 60
    assert judge(breakdown, "toyprod-restart") is None


def test_a_failed_first_action_is_the_run_even_when_a_later_one_helps() -> None:
    events = timeline(
        (5, K.OPENED, {}),
        (6, K.DIAGNOSED, {}),
        (7, K.REMEDIATION_PROPOSED, {"action": "toyprod-restart", "proposal_id": 3}),
        (8, K.APPROVED, {"action": "toyprod-restart", "proposal_id": 3}, ONCALL),
        (9, K.REMEDIATION_RUN, {"action": "toyprod-restart", "proposal_id": 3, "outcome": "succeeded"}),
        (54, K.NOT_RECOVERED, {"action": "toyprod-restart"}),
        (54, K.ESCALATED, {}),
        (55, K.REMEDIATION_PROPOSED, {"action": "toyprod-payments-failover", "proposal_id": 8}),
        (90, K.APPROVED, {"action": "toyprod-payments-failover", "proposal_id": 8}, "oncall-ana"),
        (91, K.REMEDIATION_RUN, {"action": "toyprod-payments-failover", "proposal_id": 8, "outcome": "succeeded"}),
        (99, K.VERIFIED, {"action": "toyprod-payments-failover"}),
        (110, K.RESOLVED, {}),
    )
    breakdown = stage_breakdown(events, T0)

    assert breakdown.action_ran == "toyprod-restart"
    assert breakdown.verification == "not_recovered"
    assert breakdown.stages.verification == 45
    assert breakdown.stages.resolution is None  # not after a verified run of this chain
    assert breakdown.stages.total == 110
    assert (
        judge(breakdown, "toyprod-payments-failover") == "ran 'toyprod-restart', expected 'toyprod-payments-failover'"
    )
    assert judge(breakdown, "toyprod-restart") == "'toyprod-restart' not_recovered"
    assert finished(breakdown.model_copy(update={"resolved": False}))


def test_a_rollback_run_is_not_the_action_run() -> None:
    events = timeline(
        (5, K.OPENED, {}),
        (6, K.REMEDIATION_PROPOSED, {"action": "toyprod-grow-db-pool", "proposal_id": 2}),
        (7, K.APPROVED, {"action": "toyprod-grow-db-pool", "proposal_id": 2}, ONCALL),
        (8, K.REMEDIATION_RUN, {"action": "toyprod-x", "proposal_id": 2, "outcome": "succeeded", "rollback": True}),
        (9, K.REMEDIATION_RUN, {"action": "toyprod-grow-db-pool", "proposal_id": 2, "outcome": "failed"}),
    )
    breakdown = stage_breakdown(events, T0)

    assert breakdown.action_ran == "toyprod-grow-db-pool"
    assert breakdown.stages.action == 2
    assert breakdown.stages.diagnosis is None
    assert breakdown.stages.proposal is None
    assert judge(breakdown, "toyprod-grow-db-pool") == "'toyprod-grow-db-pool' failed"
    assert finished(breakdown)  # a failed action: nothing more happens by itself


def test_events_before_the_fault_do_not_count_and_a_reopen_is_said() -> None:
    events = timeline(
        (-300, K.OPENED, {}),
        (-290, K.DIAGNOSED, {}),
        (-280, K.REMEDIATION_PROPOSED, {"action": "toyprod-restart", "proposal_id": 3}),
        (-279, K.APPROVED, {"action": "toyprod-restart", "proposal_id": 3}, ONCALL),
        (-200, K.RESOLVED, {}),
        (14, K.REOPENED, {}),
    )
    breakdown = stage_breakdown(events, T0)

    assert breakdown.reopened
    assert breakdown.stages == Stages(detection=14)
    assert breakdown.proposed_action is None
    assert breakdown.approved_by is None
    assert not breakdown.resolved
    assert judge(breakdown, "toyprod-restart") == "no catalogue action was proposed"
    assert phase(breakdown) == "re-opened, waiting for a proposal"
    assert not finished(breakdown)


def test_resolved_then_reopened_is_not_resolved() -> None:
    reopened = TimelineEvent(seq=10, at=T0 + timedelta(seconds=50), kind=K.REOPENED, message="again")
    events = [*closed_loop(), reopened]
    breakdown = stage_breakdown(events, T0)

    assert not breakdown.resolved
    assert breakdown.stages.total is None
    assert judge(breakdown, "toyprod-rollback-deploy") == "verified, but the incident did not resolve"


def test_phases_in_order() -> None:
    events = closed_loop()
    seen = [phase(stage_breakdown(events[:n], T0)) for n in (0, 1, 3, 4, 5, 6, 7)]

    assert seen == [
        "waiting for a toyprod incident",
        "opened, waiting for the diagnosis",
        "diagnosed, waiting for a proposal",
        "'toyprod-rollback-deploy' proposed, awaiting approval",
        f"approved by {ONCALL}, waiting for the action to run",
        "'toyprod-rollback-deploy' succeeded, verifying",
        "verified, waiting for the incident to resolve",
    ]
    assert judge(stage_breakdown(events[:4], T0), "toyprod-rollback-deploy") == (
        "'toyprod-rollback-deploy' was proposed but never approved and run"
    )
    assert judge(Breakdown(), "toyprod-restart") == "no incident opened"


def test_the_stored_and_live_timelines_merge_by_sequence() -> None:
    events = closed_loop()
    state = IncidentState(
        incident_id="i",
        group_key="g",
        group_labels={},
        title="t",
        opened_at=T0,
        updated_at=T0,
        timeline=events[3:],  # the live tail, ahead of the store
    )
    detail = IncidentDetail(incident_id="i", live=True, state=state, record=None, timeline=events[:5])

    assert [event.seq for event in merged_timeline(detail)] == list(range(1, 10))


def _run(fault: str, repeat: int, events: list[TimelineEvent] | None, expected: str) -> RunRecord:
    breakdown = stage_breakdown(events, T0) if events is not None else None
    failure = judge(breakdown, expected) if breakdown is not None else "timed out after 600s"
    return RunRecord(
        fault=fault,
        repeat=repeat,
        expected_action=expected,
        t0=T0,
        ok=failure is None,
        matched=breakdown is not None and breakdown.action_ran == expected,
        failure=failure,
        breakdown=breakdown,
    )


def _shifted(events: list[TimelineEvent], seconds: float) -> list[TimelineEvent]:
    """The same timeline, every event after the opening `seconds` later (a slower detection)."""
    return [e.model_copy(update={"at": e.at + timedelta(seconds=seconds)}) for e in events]


def test_medians_over_the_successful_repeats() -> None:
    rollback = "toyprod-rollback-deploy"
    runs = [
        _run("bad-deploy", 1, closed_loop(), rollback),
        _run("bad-deploy", 2, _shifted(closed_loop(), 10), rollback),
        _run("bad-deploy", 3, _shifted(closed_loop(), 2), rollback),
        _run("bad-deploy", 4, closed_loop("toyprod-restart"), rollback),  # the wrong action: not in the medians
        _run("cert-expiry", 1, None, "toyprod-cert-renew"),
        _run("cert-expiry", 2, closed_loop("toyprod-cert-renew")[:4], "toyprod-cert-renew"),
    ]
    summaries = summarize(runs, ["cert-expiry", "memory-leak", "bad-deploy"])

    assert [s.fault for s in summaries] == ["cert-expiry", "bad-deploy"]  # the given order; none: no row
    cert, deploy = summaries
    assert (deploy.runs, deploy.ok, deploy.matched) == (4, 3, 3)
    assert deploy.actions == {rollback: 3, "toyprod-restart": 1}
    assert deploy.person_approved == 4
    assert deploy.auto_approved == 0
    assert deploy.medians_of == "ok"
    assert deploy.medians.detection == 14  # of 12, 22, 14
    assert deploy.medians.total == 42
    assert deploy.medians.verification == 10
    assert (cert.runs, cert.ok, cert.medians_of) == (2, 0, "all")
    assert cert.medians.detection == 12
    assert cert.medians.diagnosis == 3
    assert cert.medians.approval_wait is None
    assert cert.medians.total is None
    assert cert.actions == {}


def test_median_skips_missing_values() -> None:
    assert median([None, 3.0, 1.0, None, 2.0]) == 2.0
    assert median([1.0, 2.0]) == 1.5
    assert median([None]) is None
    assert median([]) is None


def test_the_faults_are_vigil_chaos_with_its_defaults_and_a_shipped_action() -> None:
    routes = {getattr(route, "path", "") for route in chaos_router.routes}
    shipped = {yaml.safe_load(path.read_text())["name"] for path in SHIPPED_ACTIONS.glob("*.yml")}
    commands = {
        "memory-leak": toyprod_cli.memory_leak,
        "cpu-burn": toyprod_cli.cpu_burn,
        "disk-fill": toyprod_cli.disk_fill,
        "cert-expiry": toyprod_cli.cert_expiry,
    }
    assert len(FAULTS) == 8
    for fault in FAULTS.values():
        assert f"/chaos{fault.path}" in routes, fault
        assert fault.action in shipped, fault
        if fault.name in commands:
            defaults = [p.default.default for p in inspect.signature(commands[fault.name]).parameters.values()]
            assert list((fault.body or {}).values()) == defaults, fault
        else:
            assert fault.body is None
            assert not inspect.signature(getattr(toyprod_cli, fault.name.replace("-", "_"))).parameters


def test_fault_lists_are_checked() -> None:
    assert parse_faults("") == list(FAULTS)
    assert parse_faults(" cpu-burn , bad-deploy,") == ["cpu-burn", "bad-deploy"]
    with pytest.raises(ValueError, match="db-down"):
        parse_faults("bad-deploy,db-down")


# ---- the whole loop against a fake Vigil API and toyprod ------------------------------------------------------


@dataclass
class FakeIncident:
    incident_id: str
    events: list[TimelineEvent]
    status: IncidentStatus
    pending: PendingApproval | None = None


@dataclass
class FakeStack:
    """Each fault opens an incident that proposes `proposes[fault]` (default: the fault's action), or, for
    faults in `auto`, one the policy approves and that resolves by itself; `silent` faults open nothing."""

    proposes: dict[str, str] = field(default_factory=dict)
    auto: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    foreign_pending: bool = False
    incidents: dict[str, FakeIncident] = field(default_factory=dict)
    resets: int = 0
    approvals: list[dict[str, Any]] = field(default_factory=list)
    auth: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.foreign_pending:
            self.incidents["someone-elses"] = FakeIncident("someone-elses", [], IncidentStatus.AWAITING_APPROVAL)

    def event(
        self, incident: FakeIncident, at: datetime, kind: TimelineKind, data: dict[str, Any], actor: str = "vigil"
    ) -> None:
        incident.events.append(
            TimelineEvent(seq=len(incident.events) + 1, at=at, kind=kind, message=kind.value, actor=actor, data=data)
        )

    def inject(self, name: str) -> None:
        if name in self.silent:
            return
        now = datetime.now(UTC)
        action = self.proposes.get(name, FAULTS[name].action)
        incident = FakeIncident(f"{name}-{len(self.incidents)}", [], IncidentStatus.AWAITING_APPROVAL)
        self.incidents[incident.incident_id] = incident
        self.event(incident, now + timedelta(seconds=10), K.OPENED, {})
        self.event(incident, now + timedelta(seconds=12), K.DIAGNOSED, {})
        proposal_id = len(incident.events) + 1
        self.event(
            incident,
            now + timedelta(seconds=13),
            K.REMEDIATION_PROPOSED,
            {"action": action, "proposal_id": proposal_id},
        )
        if name in self.auto:
            self.finish(incident, action, proposal_id, now + timedelta(seconds=13), "policy:auto-rule")
            return
        incident.pending = PendingApproval(
            proposal=RemediationProposal(action=action, proposed_by="vigil"),
            requested_at=now + timedelta(seconds=13),
            proposal_id=proposal_id,
        )

    def finish(self, incident: FakeIncident, action: str, proposal_id: int, at: datetime, by: str) -> None:
        self.event(incident, at, K.APPROVED, {"action": action, "proposal_id": proposal_id}, by)
        run = {"action": action, "proposal_id": proposal_id, "outcome": "succeeded", "rollback": False}
        self.event(incident, at + timedelta(seconds=1), K.REMEDIATION_RUN, run)
        self.event(incident, at + timedelta(seconds=6), K.VERIFIED, {"action": action})
        self.event(incident, at + timedelta(seconds=9), K.RESOLVED, {})
        incident.status, incident.pending = IncidentStatus.RESOLVED, None

    def detail(self, incident: FakeIncident) -> dict[str, Any]:
        opened = incident.events[0].at if incident.events else datetime.now(UTC)
        state = IncidentState(
            incident_id=incident.incident_id,
            group_key="{}:{alertname=x}",
            group_labels={"service": "toyprod"},
            title=incident.incident_id,
            status=incident.status,
            opened_at=opened,
            updated_at=opened,
            timeline=incident.events,
            pending_approval=incident.pending,
        )
        return IncidentDetail(
            incident_id=incident.incident_id, live=True, state=state, record=None, timeline=incident.events[:2]
        ).model_dump(mode="json")

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.auth.add(request.headers.get("authorization", ""))
        path, method = request.url.path, request.method
        if request.url.host == "toyprod.test":
            if path == "/admin":
                return httpx.Response(200, json={"version": "1.4.2", "restarts": 0})
            if path == "/chaos/reset":
                self.resets += 1
                return httpx.Response(200, json={"faults": {}})
            self.inject(path.removeprefix("/chaos/"))
            return httpx.Response(200, json={"faults": {path: {}}})
        if path == "/api/v1/incidents":
            assert request.url.params["service"] == "toyprod"
            rows = [
                {
                    "incident_id": i.incident_id,
                    "run_id": None,
                    "title": i.incident_id,
                    "group_key": "g",
                    "status": i.status.value,
                    "severity": None,
                    "service": "toyprod",
                    "category": None,
                    "started_at": None,
                    "closed_at": None,
                }
                for i in reversed(self.incidents.values())
            ]
            return httpx.Response(200, json=rows)
        incident_id = path.removeprefix("/api/v1/incidents/").split("/")[0]
        incident = self.incidents[incident_id]
        if method == "GET":
            return httpx.Response(200, json=self.detail(incident))
        body = json.loads(request.content)
        if path.endswith("/approval"):
            assert incident.pending is not None
            assert body["proposal_id"] == incident.pending.proposal_id
            self.approvals.append({"incident": incident_id, **body})
            at = datetime.now(UTC) + timedelta(seconds=20)
            self.finish(incident, incident.pending.proposal.action, incident.pending.proposal_id, at, body["by"])
            return httpx.Response(200, json={})
        if path.endswith("/resolve"):
            incident.status, incident.pending = IncidentStatus.RESOLVED, None
            return httpx.Response(200, json={})
        return httpx.Response(404)


async def _evaluate(stack: FakeStack, tmp_path: Path, **overrides: Any) -> tuple[Any, str]:
    settings: dict[str, Any] = {
        "api": "http://vigil.test",
        "toyprod": "http://toyprod.test",
        "faults": ["bad-deploy", "memory-leak"],
        "repeats": 2,
        "timeout": 5,
        "poll_seconds": 0.01,
        "out": tmp_path / "report.json",
    }
    params = RemediationParams.model_validate({**settings, **overrides})
    console = Console(file=io.StringIO(), width=200)
    report = await run_eval(
        params,
        api_token="api-secret",
        chaos_token="chaos-secret",
        console=console,
        transport=httpx.MockTransport(stack.handle),
    )
    print_report(report, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return report, str(output)


async def test_the_loop_against_a_fake_stack(tmp_path: Path) -> None:
    stack = FakeStack(auto={"memory-leak"})
    report, output = await _evaluate(stack, tmp_path)

    assert report.aborted is None, output
    assert [(run.fault, run.repeat, run.ok) for run in report.runs] == [
        ("bad-deploy", 1, True),
        ("memory-leak", 1, True),
        ("bad-deploy", 2, True),
        ("memory-leak", 2, True),
    ], output
    deploy = report.runs[0].breakdown
    assert deploy is not None
    assert deploy.stages.detection == pytest.approx(10, abs=0.5)
    assert deploy.stages.diagnosis == 2
    assert deploy.stages.proposal == 1
    assert deploy.stages.approval_wait == pytest.approx(7, abs=0.5)  # approved 20s after, 13s of it proposed
    assert (deploy.stages.action, deploy.stages.verification, deploy.stages.resolution) == (1, 5, 3)
    assert deploy.approved_by == ONCALL
    leak = report.runs[1].breakdown
    assert leak is not None
    assert leak.auto_approved
    assert leak.stages.approval_wait == 0
    assert [a["incident"] for a in stack.approvals] == ["bad-deploy-0", "bad-deploy-2"]  # the policy's: not again
    assert all(a["by"] == ONCALL and a["decision"] == "approve" for a in stack.approvals)
    assert stack.resets == 9  # before and after each run, and once more at the end
    assert stack.auth == {"Bearer api-secret", "Bearer chaos-secret"}
    assert [(s.fault, s.ok, s.runs) for s in report.summaries] == [("bad-deploy", 2, 2), ("memory-leak", 2, 2)]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["runs"]) == 4
    assert saved["machine"]["cores"]
    assert "[1/4] bad-deploy #1: ok" in output
    assert "toyprod-rollback-deploy" in output
    assert "cores" in output


async def test_wrong_actions_unapproved_proposals_and_silence_are_failures(tmp_path: Path) -> None:
    stack = FakeStack(proposes={"bad-deploy": "toyprod-restart"}, silent={"memory-leak"})
    report, output = await _evaluate(stack, tmp_path, repeats=1, timeout=0.3)

    deploy, leak = report.runs
    assert not deploy.ok
    assert not deploy.matched
    assert deploy.failure == "ran 'toyprod-restart', expected 'toyprod-rollback-deploy'"
    assert deploy.last_timeline
    assert "remediation_run" in "\n".join(deploy.last_timeline)
    assert not leak.ok
    assert leak.incident_id is None
    assert leak.failure == "timed out after 0.3s: waiting for a toyprod incident"
    assert "ran toyprod-restart (1x)" in output

    stack = FakeStack()
    report, output = await _evaluate(stack, tmp_path, repeats=1, timeout=0.3, approve=False, faults=["cert-expiry"])
    (cert,) = report.runs
    assert cert.failure == "timed out after 0.3s: 'toyprod-cert-renew' proposed, awaiting approval"
    assert not stack.approvals
    assert stack.incidents[cert.incident_id or ""].status is IncidentStatus.RESOLVED  # by hand, after the run


async def test_someone_elses_pending_proposal_stops_the_benchmark(tmp_path: Path) -> None:
    report, _ = await _evaluate(FakeStack(foreign_pending=True), tmp_path)

    assert report.runs == []
    assert report.aborted is not None
    assert "someone-elses" in report.aborted
