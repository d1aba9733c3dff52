"""`vigil eval remediation`: chaos -> resolved for each toyprod fault that has a catalogue action, against a
RUNNING stack (`vigil up`), and how much of that time is detection, diagnosis, approval wait, action and
verification.

For each repeat and fault: `vigil chaos reset` and wait until no toyprod incident is open, note t0, switch the
fault on (the same `/chaos` request `vigil chaos <fault>` sends, with its defaults), follow the toyprod incidents
opened after t0 until the one with a remediation proposal is resolved, then reset the fault. The benchmark plays
an on-call engineer (`bench-oncall`) who approves the first pending proposal of each such incident at once
(`--no-approve`: only the policy's automatic approvals, or a person's). The stages come from the incident's
timeline (workflow time), t0 from this machine's clock:

    detection     opened - t0                      alert rule `for:`, Alertmanager grouping, debounce
    diagnosis     first diagnosed - opened         the deterministic RCA
    proposal      remediation_proposed - diagnosed the LLM RCA when configured, and planning under the policy
    approval      approved - proposed              0 when the policy approves
    action        remediation_run - approved       the executor
    verification  verified - remediation_run       the action's verification window (`for_seconds`)
    resolution    resolved - verified              the alerts resolving, then the quiet period
    total         resolved - t0

A run succeeds when the approved action ran, was verified, the incident resolved, and the action is the one the
fault calls for. Every run goes into the JSON report, which is rewritten after each run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field, TypeAdapter
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from vigil.models import IncidentDetail, IncidentStatus, IncidentSummary, TimelineEvent, TimelineKind

ONCALL = "bench-oncall"
SERVICE = "toyprod"
FINAL = frozenset({IncidentStatus.RESOLVED, IncidentStatus.CLOSED})
REOPEN_GRACE_SECONDS = 120.0
"""A fault that only re-opened a resolved incident (same alert group) and brought no proposal this long: failed."""
TIMELINE_TAIL = 12


@dataclass(frozen=True)
class Fault:
    """A toyprod fault as `vigil chaos <name>` switches it on (same path, same defaults), and its fix."""

    name: str
    path: str
    action: str
    body: dict[str, float] | None = None


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault("bad-deploy", "/bad-deploy", "toyprod-rollback-deploy"),
        Fault("memory-leak", "/memory-leak", "toyprod-restart", {"mb_per_s": 10.0}),
        Fault("cpu-burn", "/cpu-burn", "toyprod-restart", {"fraction": 0.9}),
        Fault("db-pool-exhaustion", "/db-pool-exhaustion", "toyprod-grow-db-pool"),
        Fault("payments-failing", "/payments-failing", "toyprod-payments-failover"),
        Fault("payments-ratelimit", "/payments-ratelimit", "toyprod-payments-failover"),
        Fault("disk-fill", "/disk-fill", "toyprod-disk-free", {"mb_per_s": 16.0}),
        Fault("cert-expiry", "/cert-expiry", "toyprod-cert-renew", {"days": 3.0}),
    )
}

TIMING_ENV = (
    "VIGIL_DEBOUNCE_SECONDS",
    "VIGIL_DIAGNOSIS_WAIT_SECONDS",
    "VIGIL_QUIET_PERIOD_SECONDS",
    "VIGIL_ESCALATION_SECONDS",
    "VIGIL_CLOSE_AFTER_SECONDS",
    "VIGIL_LLM_TIMEOUT_SECONDS",
    "VIGIL_TOYPROD_TRAFFIC_RPS",
    "VIGIL_SHIPPED_ACTIONS",
    "VIGIL_ACTIONS_DIRS",
    "VIGIL_REMEDIATION_POLICY",
    "LLM_BASE_URL",
    "VIGIL_LLM_BASE_URL",
    "LLM_MODEL",
    "VIGIL_LLM_MODEL",
)
"""Environment variables that shape the stages (besides every VIGIL_MONITORING_*), shown in the note."""


# ---- the pure part: stages from a timeline, medians over repeats ---------------------------------------------


class Stages(BaseModel):
    """Seconds of each stage; None where the timeline does not reach it."""

    detection: float | None = None
    diagnosis: float | None = None
    proposal: float | None = None
    approval_wait: float | None = None
    action: float | None = None
    verification: float | None = None
    resolution: float | None = None
    total: float | None = None


STAGE_NAMES: tuple[str, ...] = tuple(Stages.model_fields)


class Breakdown(BaseModel):
    """What one incident's timeline says about one fault run."""

    stages: Stages = Field(default_factory=Stages)
    opened_at: datetime | None = None
    reopened: bool = Field(default=False, description="The run re-opened a resolved incident; no new one opened.")
    diagnosed: bool = False
    proposal_id: int | None = None
    proposed_action: str | None = None
    approved_by: str | None = None
    auto_approved: bool = False
    action_ran: str | None = None
    action_outcome: str | None = None
    verification: str | None = Field(default=None, description="verified, not_recovered, or None (no verdict yet).")
    resolved: bool = False


def merged_timeline(detail: IncidentDetail) -> list[TimelineEvent]:
    """The stored timeline and the live one together, by sequence number (either may be behind the other)."""
    events = {event.seq: event for event in detail.timeline}
    if detail.state is not None:
        events.update((event.seq, event) for event in detail.state.timeline)
    return [events[seq] for seq in sorted(events)]


def _gap(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def _proposal_id(event: TimelineEvent) -> int | None:
    value = event.data.get("proposal_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stage_breakdown(timeline: Sequence[TimelineEvent], t0: datetime) -> Breakdown:
    """The stages of the run that switched the fault on at t0: only events at or after t0 count. The chain
    followed is the first approved proposal: its proposal, its (non-rollback) run and that run's verdict."""
    events = sorted((event for event in timeline if event.at >= t0), key=lambda event: event.seq)

    def first(
        kinds: Iterable[TimelineKind],
        after: TimelineEvent | None = None,
        where: Callable[[TimelineEvent], bool] | None = None,
    ) -> TimelineEvent | None:
        wanted = set(kinds)
        return next(
            (
                e
                for e in events
                if e.kind in wanted and (after is None or e.seq > after.seq) and (where is None or where(e))
            ),
            None,
        )

    opened = first([TimelineKind.OPENED])
    reopened = opened is None and (opened := first([TimelineKind.REOPENED])) is not None
    diagnosed = first([TimelineKind.DIAGNOSED], opened)
    approved = first([TimelineKind.APPROVED])
    proposed: TimelineEvent | None
    run: TimelineEvent | None = None
    if approved is not None:
        pid = _proposal_id(approved)
        proposed = first(
            [TimelineKind.REMEDIATION_PROPOSED], where=lambda e: pid is not None and (_proposal_id(e) or e.seq) == pid
        ) or next(
            (e for e in reversed(events) if e.kind is TimelineKind.REMEDIATION_PROPOSED and e.seq < approved.seq),
            None,
        )
        run = first(
            [TimelineKind.REMEDIATION_RUN],
            approved,
            where=lambda e: not e.data.get("rollback") and _proposal_id(e) in (None, pid),
        )
    else:
        proposed = first([TimelineKind.REMEDIATION_PROPOSED])
    verdict = first([TimelineKind.VERIFIED, TimelineKind.NOT_RECOVERED], run) if run is not None else None
    last_settle = next(
        (e for e in reversed(events) if e.kind in (TimelineKind.RESOLVED, TimelineKind.REOPENED)),
        None,
    )
    resolved = last_settle if last_settle is not None and last_settle.kind is TimelineKind.RESOLVED else None
    if resolved is not None and opened is not None and resolved.seq < opened.seq:
        resolved = None

    def at(event: TimelineEvent | None) -> datetime | None:
        return event.at if event is not None else None

    verified = verdict if verdict is not None and verdict.kind is TimelineKind.VERIFIED else None
    stages = Stages(
        detection=_gap(t0, at(opened)),
        diagnosis=_gap(at(opened), at(diagnosed)),
        proposal=_gap(at(diagnosed), at(proposed)) if diagnosed and proposed and proposed.seq > diagnosed.seq else None,
        approval_wait=_gap(at(proposed), at(approved)),
        action=_gap(at(approved), at(run)),
        verification=_gap(at(run), at(verdict)),
        resolution=_gap(at(verified), at(resolved)) if verified and resolved and resolved.seq > verified.seq else None,
        total=_gap(t0, at(resolved)),
    )
    action_ran = run.data.get("action") if run is not None else None
    outcome = run.data.get("outcome") if run is not None else None
    return Breakdown(
        stages=stages,
        opened_at=at(opened),
        reopened=reopened,
        diagnosed=diagnosed is not None,
        proposal_id=(_proposal_id(proposed) or proposed.seq) if proposed is not None else None,
        proposed_action=str(proposed.data["action"]) if proposed is not None and "action" in proposed.data else None,
        approved_by=approved.actor if approved is not None else None,
        auto_approved=approved is not None and approved.actor.startswith("policy:"),
        action_ran=str(action_ran) if action_ran is not None else None,
        action_outcome=str(outcome) if outcome is not None else None,
        verification=verdict.kind.value if verdict is not None else None,
        resolved=resolved is not None,
    )


def judge(breakdown: Breakdown, expected_action: str) -> str | None:
    """None when the run closed the loop with the expected action; else what went wrong, in words."""
    if breakdown.action_ran is None:
        if breakdown.proposed_action is not None:
            return f"'{breakdown.proposed_action}' was proposed but never approved and run"
        return "no catalogue action was proposed" if breakdown.opened_at is not None else "no incident opened"
    if breakdown.action_ran != expected_action:
        return f"ran '{breakdown.action_ran}', expected '{expected_action}'"
    if breakdown.action_outcome != "succeeded":
        return f"'{breakdown.action_ran}' {breakdown.action_outcome or 'has no outcome'}"
    if breakdown.verification != "verified":
        return f"'{breakdown.action_ran}' {breakdown.verification or 'was not verified'}"
    if not breakdown.resolved:
        return "verified, but the incident did not resolve"
    return None


def phase(breakdown: Breakdown | None) -> str:
    """Where a run stands, for the progress line and a timeout's message."""
    if breakdown is None or breakdown.opened_at is None:
        return "waiting for a toyprod incident"
    if breakdown.resolved:
        return "resolved"
    if breakdown.verification is not None:
        return f"{breakdown.verification}, waiting for the incident to resolve"
    if breakdown.action_ran is not None:
        return f"'{breakdown.action_ran}' {breakdown.action_outcome}, verifying"
    if breakdown.approved_by is not None:
        return f"approved by {breakdown.approved_by}, waiting for the action to run"
    if breakdown.proposed_action is not None:
        return f"'{breakdown.proposed_action}' proposed, awaiting approval"
    if breakdown.diagnosed:
        return "diagnosed, waiting for a proposal"
    return "re-opened, waiting for a proposal" if breakdown.reopened else "opened, waiting for the diagnosis"


def median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(statistics.median(present)) if present else None


class RunRecord(BaseModel):
    """One fault switched on once, followed to the end (or the timeout)."""

    fault: str
    repeat: int
    expected_action: str
    t0: datetime
    ok: bool = False
    matched: bool = Field(default=False, description="The action that ran is the one the fault calls for.")
    failure: str | None = None
    incident_id: str | None = None
    breakdown: Breakdown | None = None
    other_incidents: list[str] = Field(default_factory=list, description="Toyprod incidents also opened meanwhile.")
    approvals_sent: list[str] = Field(default_factory=list, description="'incident/proposal: answer' of each.")
    last_timeline: list[str] = Field(default_factory=list, description="The incident's last lines, on failure.")
    admin_before: dict[str, Any] | None = Field(default=None, description="toyprod's GET /admin before the fault.")
    admin_after: dict[str, Any] | None = Field(default=None, description="... after the run, before the reset.")
    wall_seconds: float = 0.0


class FaultSummary(BaseModel):
    fault: str
    expected_action: str
    runs: int
    ok: int
    matched: int
    auto_approved: int = Field(description="Runs whose proposal the policy approved.")
    person_approved: int = Field(description="Runs whose proposal a person (or the benchmark) approved.")
    actions: dict[str, int] = Field(default_factory=dict, description="Actions that ran (first approved), counted.")
    medians: Stages = Field(default_factory=Stages)
    medians_of: str = Field(default="ok", description="'ok': medians of the successful runs; 'all': none succeeded.")


def summarize(runs: Sequence[RunRecord], faults: Sequence[str]) -> list[FaultSummary]:
    """Per fault (in the given order): successes, the actions that ran, and each stage's median over the
    successful runs, or over every run that reached the stage when none succeeded."""
    summaries: list[FaultSummary] = []
    for name in faults:
        mine = [run for run in runs if run.fault == name]
        if not mine:
            continue
        good = [run for run in mine if run.ok]
        basis = good or mine
        breakdowns = [run.breakdown for run in basis if run.breakdown is not None]
        approvals = [run.breakdown for run in mine if run.breakdown is not None and run.breakdown.approved_by]
        summaries.append(
            FaultSummary(
                fault=name,
                expected_action=mine[0].expected_action,
                runs=len(mine),
                ok=len(good),
                matched=sum(run.matched for run in mine),
                auto_approved=sum(1 for b in approvals if b.auto_approved),
                person_approved=sum(1 for b in approvals if not b.auto_approved),
                actions=dict(
                    Counter(run.breakdown.action_ran for run in mine if run.breakdown and run.breakdown.action_ran)
                ),
                medians=Stages(
                    **{stage: median(getattr(b.stages, stage) for b in breakdowns) for stage in STAGE_NAMES}
                ),
                medians_of="ok" if good else "all",
            )
        )
    return summaries


# ---- talking to the stack ------------------------------------------------------------------------------------


class RemediationParams(BaseModel):
    api: str
    toyprod: str
    faults: list[str] = Field(default_factory=lambda: list(FAULTS))
    repeats: int = Field(default=3, ge=1)
    approve: bool = True
    timeout: float = Field(default=600.0, gt=0, description="Per fault run; also the wait for a settled stack.")
    wait_closed: bool = Field(default=False, description="Before each run, wait for resolved incidents to close.")
    poll_seconds: float = Field(default=1.0, gt=0)
    out: Path | None = None


class RemediationReport(BaseModel):
    started_at: datetime
    params: RemediationParams
    machine: dict[str, Any] = Field(default_factory=dict)
    stack_timings: dict[str, str] = Field(default_factory=dict)
    runs: list[RunRecord] = Field(default_factory=list)
    summaries: list[FaultSummary] = Field(default_factory=list)
    aborted: str | None = Field(default=None, description="Why the benchmark stopped before the end.")
    seconds: float = 0.0


class SettleError(RuntimeError):
    """The stack did not come back to no open toyprod incident."""


_SUMMARIES = TypeAdapter(list[IncidentSummary])


@dataclass
class VigilApi:
    http: httpx.AsyncClient

    async def incidents(self) -> list[IncidentSummary]:
        response = await self.http.get("/api/v1/incidents", params={"service": SERVICE, "limit": 200})
        response.raise_for_status()
        return _SUMMARIES.validate_python(response.json())

    async def detail(self, incident_id: str) -> IncidentDetail | None:
        response = await self.http.get(f"/api/v1/incidents/{incident_id}")
        if response.status_code in (404, 503):
            return None
        response.raise_for_status()
        return IncidentDetail.model_validate(response.json())

    async def approve(self, incident_id: str, proposal_id: int) -> str:
        response = await self.http.post(
            f"/api/v1/incidents/{incident_id}/approval",
            json={"decision": "approve", "by": ONCALL, "proposal_id": proposal_id},
        )
        return "approved" if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"

    async def resolve(self, incident_id: str, reason: str) -> str:
        response = await self.http.post(
            f"/api/v1/incidents/{incident_id}/resolve", json={"by": ONCALL, "reason": reason}
        )
        return "resolved" if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"


@dataclass
class Toyprod:
    http: httpx.AsyncClient

    async def inject(self, fault: Fault) -> None:
        response = await self.http.post(f"/chaos{fault.path}", json=fault.body)
        if not response.is_success:
            raise RuntimeError(f"toyprod refused {fault.name}: {response.status_code} {response.text[:300]}")

    async def reset(self) -> None:
        (await self.http.post("/chaos/reset")).raise_for_status()

    async def admin(self) -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await self.http.get("/admin")
            if response.is_success:
                return dict(response.json())
        return None


@contextlib.asynccontextmanager
async def stack_clients(
    api: str,
    toyprod: str,
    *,
    api_token: str | None,
    chaos_token: str | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[tuple[VigilApi, Toyprod]]:
    """The Vigil API and toyprod's chaos and admin API, each with its own bearer token."""
    api_headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
    async with (
        httpx.AsyncClient(
            base_url=api, headers=api_headers, timeout=30, transport=transport, trust_env=False
        ) as api_http,
        httpx.AsyncClient(
            base_url=toyprod,
            headers={"Authorization": f"Bearer {chaos_token}"},
            timeout=30,
            transport=transport,
            trust_env=False,
        ) as toy_http,
    ):
        yield VigilApi(api_http), Toyprod(toy_http)


def _is_open(row: IncidentSummary, *, wait_closed: bool) -> bool:
    if wait_closed:
        return row.status is not IncidentStatus.CLOSED
    return row.status not in FINAL


async def settle(
    vigil: VigilApi, toy: Toyprod, params: RemediationParams, ours: set[str], say: Callable[[str], None]
) -> None:
    """`vigil chaos reset`, then wait until no toyprod incident is open (with `wait_closed`: until every one is
    closed). An incident of ours still awaiting approval cannot resolve by itself (the fault is gone, the
    proposal is moot): it is resolved by hand. Someone else's blocks the benchmark: an error at once."""
    await toy.reset()
    deadline = time.monotonic() + params.timeout
    resolved_by_hand: set[str] = set()
    while True:
        still = [row for row in await vigil.incidents() if _is_open(row, wait_closed=params.wait_closed)]
        if not still:
            return
        for row in still:
            if row.status is not IncidentStatus.AWAITING_APPROVAL or row.incident_id in resolved_by_hand:
                continue
            if row.incident_id not in ours:
                raise SettleError(
                    f"toyprod incident {row.incident_id} awaits approval and is not this benchmark's: decide or "
                    "resolve it first (POST /api/v1/incidents/{id}/approval or /resolve)"
                )
            answer = await vigil.resolve(row.incident_id, "benchmark run over: the fault was reset")
            resolved_by_hand.add(row.incident_id)
            say(f"  resolved {row.incident_id} by hand (it still awaited approval): {answer}")
        if time.monotonic() > deadline:
            listed = ", ".join(f"{row.incident_id} ({row.status.value if row.status else '?'})" for row in still)
            raise SettleError(f"toyprod incidents still open {params.timeout:g}s after the reset: {listed}")
        await asyncio.sleep(max(params.poll_seconds, 1.0))


async def clean_up(vigil: VigilApi, toy: Toyprod, ours: set[str], say: Callable[[str], None]) -> None:
    """At the end: every fault reset, and no incident of the benchmark's left awaiting approval."""
    await toy.reset()
    for row in await vigil.incidents():
        if row.status is IncidentStatus.AWAITING_APPROVAL and row.incident_id in ours:
            answer = await vigil.resolve(row.incident_id, "benchmark over: the fault was reset")
            say(f"  resolved {row.incident_id} by hand (it still awaited approval): {answer}")


def _tail(timeline: Sequence[TimelineEvent]) -> list[str]:
    return [
        f"{event.at:%H:%M:%S} {event.kind.value} [{event.actor}] {event.message[:240]}"
        for event in timeline[-TIMELINE_TAIL:]
    ]


@dataclass
class _Followed:
    """The toyprod incidents a run has seen, and its approvals."""

    t0: datetime
    expected: str
    details: dict[str, IncidentDetail] = field(default_factory=dict)
    breakdowns: dict[str, Breakdown] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    approvals: list[str] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)

    def target(self) -> str | None:
        """The incident the run is about: one whose proposal is the expected action, else the first with any
        proposal (by opening time); None while no incident has a proposal."""
        proposing = [i for i, b in self.breakdowns.items() if b.proposed_action is not None or b.action_ran]
        if not proposing:
            return None

        def key(incident_id: str) -> tuple[bool, datetime]:
            b = self.breakdowns[incident_id]
            matching = self.expected in (b.proposed_action, b.action_ran)
            return (not matching, b.opened_at or self.t0)

        return min(proposing, key=key)

    def showing(self) -> str | None:
        """The incident to describe: the target, else the one seen first."""
        target = self.target()
        if target is not None:
            return target
        return min(self.first_seen, key=lambda i: self.first_seen[i]) if self.first_seen else None


def finished(breakdown: Breakdown) -> bool:
    """Nothing more will happen on its own: resolved, or the approved action failed, was a dry run or did not
    restore service (later proposals are not the benchmark's to approve)."""
    if breakdown.resolved or breakdown.verification == "not_recovered":
        return True
    return breakdown.action_outcome is not None and breakdown.action_outcome != "succeeded"


async def follow(
    vigil: VigilApi,
    fault: Fault,
    t0: datetime,
    before: dict[str, IncidentStatus | None],
    params: RemediationParams,
    status: Callable[[str], None],
) -> tuple[_Followed, str | None]:
    """Poll the toyprod incidents opened (or re-opened) after t0 until the run's incident is finished; approve
    each one's first pending proposal when the benchmark approves. An incident is the run's when it is open
    (settle left none open), or was not in `before`, the listing just before the fault. Returns what was seen
    and, when the run did not finish, why."""
    seen = _Followed(t0=t0, expected=fault.action)
    started = time.monotonic()
    deadline = started + params.timeout
    while True:
        for row in await vigil.incidents():
            new = row.incident_id not in before  # it may have opened and resolved between two polls
            if row.incident_id not in seen.first_seen and (new or row.status not in FINAL):
                seen.first_seen[row.incident_id] = time.monotonic()
        for incident_id in seen.first_seen:
            detail = await vigil.detail(incident_id)
            if detail is None:
                continue
            seen.details[incident_id] = detail
            seen.breakdowns[incident_id] = stage_breakdown(merged_timeline(detail), t0)
            if params.approve:
                await _approve_first(vigil, seen, incident_id, detail)
        target = seen.target()
        shown = seen.showing()
        status(f"{fault.name}: {phase(seen.breakdowns.get(shown) if shown else None)}")
        if target is not None and finished(seen.breakdowns[target]):
            return seen, None
        now = time.monotonic()
        if (
            target is None
            and seen.breakdowns
            and all(b.reopened for b in seen.breakdowns.values())
            and now - min(seen.first_seen.values()) > min(REOPEN_GRACE_SECONDS, params.timeout)
        ):
            return seen, (
                f"the fault re-opened resolved incident(s) {', '.join(seen.breakdowns)} (same alert group) and no "
                "proposal followed: run with --wait-closed against a stack with a short VIGIL_CLOSE_AFTER_SECONDS"
            )
        if now > deadline:
            return seen, f"timed out after {params.timeout:g}s: {phase(seen.breakdowns.get(shown) if shown else None)}"
        await asyncio.sleep(params.poll_seconds)


async def _approve_first(vigil: VigilApi, seen: _Followed, incident_id: str, detail: IncidentDetail) -> None:
    """The on-call engineer approves an incident's first proposal of this run at once, and nothing after it."""
    if incident_id in seen.decided or detail.state is None:
        return
    breakdown = seen.breakdowns[incident_id]
    if breakdown.approved_by is not None or any(
        e.kind is TimelineKind.REJECTED and e.at >= seen.t0 for e in merged_timeline(detail)
    ):
        seen.decided.add(incident_id)  # decided already, by the policy or a person
        return
    pending = detail.state.pending_approval
    if pending is None or pending.requested_at < seen.t0:
        return
    seen.decided.add(incident_id)
    answer = await vigil.approve(incident_id, pending.proposal_id)
    seen.approvals.append(f"{incident_id}/{pending.proposal_id} {pending.proposal.action}: {answer}")


async def run_one(
    vigil: VigilApi,
    toy: Toyprod,
    fault: Fault,
    repeat: int,
    params: RemediationParams,
    ours: set[str],
    say: Callable[[str], None],
    status: Callable[[str], None],
) -> RunRecord:
    status(f"{fault.name}: waiting until no toyprod incident is open")
    await settle(vigil, toy, params, ours, say)
    admin_before = await toy.admin()
    before = {row.incident_id: row.status for row in await vigil.incidents()}
    t0 = datetime.now(UTC)
    started = time.monotonic()
    record = RunRecord(fault=fault.name, repeat=repeat, expected_action=fault.action, t0=t0, admin_before=admin_before)
    try:
        await toy.inject(fault)
        seen, unfinished = await follow(vigil, fault, t0, before, params, status)
        record.admin_after = await toy.admin()
    finally:
        with contextlib.suppress(httpx.HTTPError):
            await toy.reset()
    ours.update(seen.first_seen)
    shown = seen.showing()
    record.incident_id = shown
    record.other_incidents = [i for i in seen.first_seen if i != shown]
    record.approvals_sent = seen.approvals
    record.wall_seconds = time.monotonic() - started
    if shown is not None:
        record.breakdown = seen.breakdowns.get(shown)
        if shown in seen.details:
            record.last_timeline = _tail(merged_timeline(seen.details[shown]))
    breakdown = record.breakdown
    record.matched = breakdown is not None and breakdown.action_ran == fault.action
    verdict = judge(breakdown, fault.action) if breakdown is not None else "no toyprod incident opened"
    record.failure = unfinished or verdict
    record.ok = record.failure is None
    if record.ok:
        record.last_timeline = []
    return record


# ---- the report ----------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "node": platform.node(),
    }


def _verification_windows(actions: set[str]) -> dict[str, str]:
    """for/within seconds of the expected actions, from the action files this machine's settings name (the
    shipped set unless VIGIL_SHIPPED_ACTIONS=false, and VIGIL_ACTIONS_DIRS). Best effort: nothing on trouble."""
    try:
        import yaml

        from vigil.remediation.catalogue import SHIPPED_ACTIONS
        from vigil.settings import get_settings

        settings = get_settings()
        folders = [*([SHIPPED_ACTIONS] if settings.shipped_actions else []), *settings.actions_dirs]
        windows: dict[str, str] = {}
        for folder in folders:
            for path in sorted([*Path(folder).glob("*.yml"), *Path(folder).glob("*.yaml")]):
                action = yaml.safe_load(path.read_text())
                if isinstance(action, dict) and action.get("name") in actions:
                    check = action.get("verification") or {}
                    windows[str(action["name"])] = (
                        f"for {check.get('for_seconds', 0)}s within {check.get('within_seconds', '?')}s"
                    )
        return windows
    except Exception:
        return {}


def stack_timings(faults: Sequence[str]) -> dict[str, str]:
    """What this environment sets that shapes the stages; the stack's own environment is not visible here."""
    shown = {key: value for key, value in sorted(os.environ.items()) if key.startswith("VIGIL_MONITORING_")}
    shown.update({key: os.environ[key] for key in TIMING_ENV if key in os.environ})
    for action, window in sorted(_verification_windows({FAULTS[f].action for f in faults}).items()):
        shown[f"verification {action}"] = window
    return shown


def print_note(report: RemediationReport, console: Console) -> None:
    m = report.machine
    console.print(
        f"[bold]machine[/]: {m.get('cores')} cores, {escape(str(m.get('platform')))}, Python {m.get('python')}"
    )
    if report.stack_timings:
        console.print("[bold]stack timings seen in this environment[/] (the stack's own may differ):")
        for key, value in report.stack_timings.items():
            console.print(f"  {key} = {escape(value)}")
    else:
        console.print("[bold]stack timings[/]: none set in this environment (defaults, or set where the stack runs)")
    p = report.params
    console.print(
        f"faults {', '.join(p.faults)}; {p.repeats} repeat(s); "
        + ("approved at once by bench-oncall" if p.approve else "no approvals from the benchmark")
        + f"; {p.timeout:g}s per run"
        + ("; waiting for incidents to close between runs" if p.wait_closed else "")
    )


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def print_report(report: RemediationReport, console: Console) -> None:
    table = Table(title=f"vigil eval remediation — chaos to resolved, medians (s) of {report.params.repeats} repeat(s)")
    table.add_column("fault")
    table.add_column("ok", justify="right")
    table.add_column("action")
    table.add_column("approved")
    for label in ("detect", "diagnose", "propose", "approval", "action", "verify", "resolve", "total"):
        table.add_column(label, justify="right")
    for summary in report.summaries:
        others = {name: n for name, n in summary.actions.items() if name != summary.expected_action}
        action = summary.expected_action + "".join(f"\n[red]ran {name} ({n}x)[/]" for name, n in others.items())
        approved = ", ".join(
            f"{n} {who}" for n, who in ((summary.auto_approved, "policy"), (summary.person_approved, "person")) if n
        )
        style = "" if summary.medians_of == "ok" else "dim"
        table.add_row(
            summary.fault,
            f"{summary.ok}/{summary.runs}",
            action,
            approved or "—",
            *(_seconds(getattr(summary.medians, stage)) for stage in STAGE_NAMES),
            style=style,
        )
    if report.summaries:
        console.print(table)
    if any(summary.medians_of != "ok" for summary in report.summaries):
        console.print("[dim]dim rows: no run succeeded; their medians are of the runs that reached each stage[/]")
    for run in report.runs:
        if run.ok:
            continue
        console.print(f"[red]{run.fault} #{run.repeat}[/]: {escape(run.failure or '')} ({run.incident_id or 'none'})")
        for line in run.last_timeline:
            console.print(f"    {escape(line)}", style="dim")
    if report.aborted:
        console.print(f"[red]aborted[/]: {escape(report.aborted)}")


@dataclass(frozen=True)
class RemediationRunIndex:
    number: int
    of: int


def progress_line(index: RemediationRunIndex, record: RunRecord) -> str:
    stages = record.breakdown.stages if record.breakdown is not None else Stages()
    parts = ", ".join(
        f"{label} {_seconds(getattr(stages, stage))}"
        for label, stage in (
            ("detect", "detection"),
            ("diagnose", "diagnosis"),
            ("propose", "proposal"),
            ("approve", "approval_wait"),
            ("act", "action"),
            ("verify", "verification"),
            ("resolve", "resolution"),
        )
    )
    ran = record.breakdown.action_ran if record.breakdown is not None else None
    head = f"[{index.number}/{index.of}] {record.fault} #{record.repeat}"
    if record.ok:
        return f"{head}: [green]ok[/] {_seconds(stages.total)} s ({parts}) {ran}"
    return f"{head}: [red]failed[/] {escape(record.failure or '')} ({parts}) {ran or ''}"


def _status_line(status: Status, index: RemediationRunIndex) -> Callable[[str], None]:
    def show(text: str) -> None:
        status.update(f"[{index.number}/{index.of}] {escape(text)}")

    return show


def write_report(report: RemediationReport) -> None:
    if report.params.out is not None:
        report.params.out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")


async def run_eval(
    params: RemediationParams,
    *,
    api_token: str | None,
    chaos_token: str,
    console: Console,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RemediationReport:
    """Every repeat of every fault in turn; the report is rewritten after each run. A stack that does not
    settle (or stops answering) aborts the benchmark with what it measured so far."""
    report = RemediationReport(
        started_at=datetime.now(UTC),
        params=params,
        machine=machine(),
        stack_timings=stack_timings(params.faults),
    )
    print_note(report, console)
    started = time.monotonic()
    ours: set[str] = set()
    total = params.repeats * len(params.faults)
    async with stack_clients(
        params.api, params.toyprod, api_token=api_token, chaos_token=chaos_token, transport=transport
    ) as (vigil, toy):
        with console.status("starting") as shown:
            try:
                for repeat in range(1, params.repeats + 1):
                    for name in params.faults:
                        index = RemediationRunIndex(len(report.runs) + 1, total)
                        record = await run_one(
                            vigil,
                            toy,
                            FAULTS[name],
                            repeat,
                            params,
                            ours,
                            console.print,
                            _status_line(shown, index),
                        )
                        report.runs.append(record)
                        console.print(progress_line(index, record))
                        report.summaries = summarize(report.runs, params.faults)
                        report.seconds = time.monotonic() - started
                        write_report(report)
            except (SettleError, httpx.HTTPError, RuntimeError) as exc:
                where = f" ({exc.request.method} {exc.request.url})" if isinstance(exc, httpx.RequestError) else ""
                report.aborted = f"{type(exc).__name__}: {exc}{where}"
            with contextlib.suppress(httpx.HTTPError):
                await clean_up(vigil, toy, ours, console.print)
    report.summaries = summarize(report.runs, params.faults)
    report.seconds = time.monotonic() - started
    write_report(report)
    return report


def parse_faults(text: str) -> list[str]:
    """`a,b,c` -> the names, checked; empty: all eight."""
    names = [name.strip() for name in text.split(",") if name.strip()] or list(FAULTS)
    unknown = [name for name in names if name not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; these have actions: {', '.join(FAULTS)}")
    return names


def main(params: RemediationParams, *, api_token: str | None, chaos_token: str | None) -> int:
    console = Console()
    if chaos_token is None:
        console.print("[red]no chaos token[/]: set VIGIL_CHAOS_TOKEN or write one to {VIGIL_STATE_DIR}/chaos-token")
        return 2
    try:
        report = asyncio.run(run_eval(params, api_token=api_token, chaos_token=chaos_token, console=console))
    except KeyboardInterrupt:
        console.print(f"interrupted; the runs so far are in {params.out}" if params.out else "interrupted")
        return 130
    print_report(report, console)
    if params.out is not None:
        console.print(f"report: {params.out}")
    return 0 if report.runs and all(run.ok for run in report.runs) and report.aborted is None else 1
