"""`vigil eval chaos`: every toyprod fault in turn on one RUNNING stack (`vigil up`), through the real signal
path (toyprod metrics -> Prometheus rules -> Alertmanager -> Vigil), reset between faults, never restarted.

For each fault: wait until no toyprod incident is open (`vigil chaos reset` first; an incident of this run still
awaiting approval is resolved by hand, as `vigil eval remediation` does), note t0, switch the fault on with
toyprod's defaults (the `/chaos` request `vigil chaos <fault>` sends, without parameters), then wait for

    incident   a toyprod incident opened (or re-opened) at or after t0   t_incident  = opened - t0
    diagnosis  its first diagnosis after that opening                  t_diagnosis = diagnosed - t0
    (then `vigil chaos reset`)
    cleared    every alert the fault fired is resolved in Vigil        t_clear     = last resolved - reset

The fault's answer is the diagnosis of its first incident (the page an on-call engineer opens first); the other
incidents it opened are listed in the JSON report. Nothing is approved: remediation is not what is measured
here (`vigil eval remediation` does that). The expected categories are in EXPECTED, each with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from eval.remediation import (
    FINAL,
    Fault,
    RemediationParams,
    SettleError,
    Toyprod,
    VigilApi,
    clean_up,
    machine,
    merged_timeline,
    settle,
    stack_clients,
)
from vigil.analysis.models import Category
from vigil.models import AlertStatus, IncidentDetail, TimelineEvent, TimelineKind

# ---- the faults and the answers expected of Vigil ----------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    category: Category
    why: str


EXPECTED: dict[str, Expected] = {
    "db-down": Expected(Category.DATABASE, "the database refuses connections"),
    "db-pool-exhaustion": Expected(Category.DATABASE, "stuck transactions hold every pooled connection"),
    "payments-failing": Expected(Category.DEPENDENCY, "the payments service answers 502/503"),
    "payments-ratelimit": Expected(Category.DEPENDENCY, "the payments service answers 429"),
    "bad-deploy": Expected(Category.DEPLOYMENT, "a new build throws at checkout"),
    "disk-fill": Expected(Category.STORAGE, "the data quota fills up, writes fail with ENOSPC"),
    "cert-expiry": Expected(Category.SECURITY, "the served TLS certificate expires within days"),
    "memory-leak": Expected(Category.MEMORY, "the process retains memory up to its cap"),
    "cpu-burn": Expected(Category.COMPUTE, "a thread burns 90% of the process's one core"),
    "errors": Expected(
        Category.DATABASE,
        "corrupt catalogue rows (a price that is not a number) come back from the database and the price parser "
        "throws; no build changed, so not deployment; the fix is repairing the rows at the source, as "
        "runbooks/toyprod/errors-5xx.md says",
    ),
    "latency": Expected(
        Category.NETWORK,
        "a constant delay added to every request, as network-delay injection (netem, toxiproxy) adds it, while "
        "CPU, memory, the pool and both dependencies stay healthy: no resource or dependency to blame",
    ),
}
"""Every toyprod fault (tests check the list against toyprod's chaos API), in the order they run: the first one
finds the stack at rest, and memory-leak comes late enough for toyprod to be past the 5-minute warm-up that
the memory-growth rule ignores."""

FAULT_ORDER: tuple[str, ...] = (
    "db-down",
    "payments-failing",
    "bad-deploy",
    "disk-fill",
    "cert-expiry",
    "cpu-burn",
    "memory-leak",
    "db-pool-exhaustion",
    "payments-ratelimit",
    "errors",
    "latency",
)


def parse_faults(text: str) -> list[str]:
    """`a,b` -> those faults in the given order; empty: all eleven in FAULT_ORDER."""
    names = [name.strip() for name in text.split(",") if name.strip()] or list(FAULT_ORDER)
    unknown = [name for name in names if name not in EXPECTED]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; toyprod's faults: {', '.join(FAULT_ORDER)}")
    return names


# ---- the pure part: what one incident says about one fault ---------------------------------------------------

LABELS_NOT_SHOWN = frozenset({"alertname", "service", "namespace", "job", "instance", "severity", "role"})


def alert_name(labels: dict[str, str]) -> str:
    """`ToyprodDependencyDown{dependency=database}`: the alert name and what tells its variants apart."""
    extra = ",".join(f"{key}={labels[key]}" for key in sorted(labels) if key not in LABELS_NOT_SHOWN)
    name = labels.get("alertname", "?")
    return f"{name}{{{extra}}}" if extra else name


class IncidentAnswer(BaseModel):
    """One toyprod incident the fault opened (or re-opened), and its diagnosis if it has one."""

    incident_id: str
    opened_at: datetime
    reopened: bool = False
    alerts: list[str] = Field(default_factory=list, description="Alerts that fired in it since the fault began.")
    diagnosed_at: datetime | None = None
    category: str | None = None
    component: str | None = None
    confidence: float | None = None
    source: str | None = None


def _opening(events: Sequence[TimelineEvent], t0: datetime) -> TimelineEvent | None:
    """The event that made the incident the fault's: opened or re-opened at or after t0, else (an incident
    still open from before) the first alert that fired into it since t0."""
    since = [event for event in events if event.at >= t0]
    for kinds in ((TimelineKind.OPENED, TimelineKind.REOPENED), (TimelineKind.ALERT_NEW, TimelineKind.ALERT_REFIRED)):
        found = next((event for event in since if event.kind in kinds), None)
        if found is not None:
            return found
    return None


def incident_answer(detail: IncidentDetail, t0: datetime) -> IncidentAnswer | None:
    """What this incident says about the fault switched on at t0; None when the fault did not reach it."""
    events = merged_timeline(detail)
    opening = _opening(events, t0)
    if opening is None:
        return None
    answer = IncidentAnswer(
        incident_id=detail.incident_id,
        opened_at=opening.at,
        reopened=opening.kind is not TimelineKind.OPENED,
        alerts=fault_alerts(detail, t0),
    )
    diagnoses = [e for e in events if e.kind is TimelineKind.DIAGNOSED and e.seq > opening.seq]
    if diagnoses:
        answer.diagnosed_at = diagnoses[0].at
        latest = diagnoses[-1].data
        answer.category = _text(latest.get("category"))
        answer.component = _text(latest.get("component"))
        confidence = latest.get("confidence")
        answer.confidence = float(confidence) if isinstance(confidence, int | float) else None
        answer.source = _text(latest.get("source"))
    return answer


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def fault_alerts(detail: IncidentDetail, t0: datetime) -> list[str]:
    """The incident's alerts whose current firing episode began at or after t0 (Prometheus' activeAt)."""
    if detail.state is None:
        return []
    return sorted({alert_name(r.labels) for r in detail.state.alerts.values() if r.starts_at >= t0})


def alerts_cleared(detail: IncidentDetail, t0: datetime) -> bool:
    """Every alert that fired in the incident since t0 is resolved again."""
    if detail.state is None:
        return False
    return all(r.status is AlertStatus.RESOLVED for r in detail.state.alerts.values() if r.starts_at >= t0)


def last_resolved(detail: IncidentDetail, t0: datetime) -> datetime | None:
    """When the last of the fault's alerts resolved (its endsAt), None while one still fires."""
    if detail.state is None:
        return None
    ends = [r.ends_at for r in detail.state.alerts.values() if r.starts_at >= t0]
    if not ends or any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)


def first_incident(answers: Sequence[IncidentAnswer]) -> IncidentAnswer | None:
    """The fault's page: the incident that opened first (ties: the one diagnosed first)."""
    if not answers:
        return None
    never = datetime.max.replace(tzinfo=UTC)
    return min(answers, key=lambda a: (a.opened_at, a.diagnosed_at or never, a.incident_id))


# ---- the report --------------------------------------------------------------------------------------------


class FaultResult(BaseModel):
    fault: str
    expected: str
    expected_why: str
    t0: datetime
    reset_at: datetime | None = None
    incident_id: str | None = None
    alerts: list[str] = Field(default_factory=list, description="Every alert the fault fired, over its incidents.")
    t_incident: float | None = Field(default=None, description="Seconds from the fault to its first incident.")
    t_diagnosis: float | None = Field(default=None, description="Seconds from the fault to that incident's diagnosis.")
    category: str | None = None
    component: str | None = None
    confidence: float | None = None
    cleared: bool = False
    t_clear: float | None = Field(
        default=None, description="Seconds from the reset to the last alert resolved (Prometheus' endsAt)."
    )
    t_clear_seen: float | None = Field(
        default=None,
        description="Seconds from the reset until Vigil showed every alert resolved (Alertmanager sends resolutions "
        "at its group_interval, 5 minutes by default).",
    )
    incidents: list[IncidentAnswer] = Field(default_factory=list)
    failure: str | None = Field(default=None, description="The stage that timed out, in words.")

    @property
    def right(self) -> bool:
        return self.category == self.expected


def record_incidents(result: FaultResult, answers: Sequence[IncidentAnswer]) -> None:
    """Every incident the fault opened, and the alerts over all of them."""
    result.incidents = sorted(answers, key=lambda a: a.opened_at)
    result.alerts = sorted({name for answer in answers for name in answer.alerts})


def fill_result(result: FaultResult, answers: Sequence[IncidentAnswer]) -> None:
    """The fault's figures from its incidents: alerts over all of them, the rest from the first."""
    record_incidents(result, answers)
    first = first_incident(answers)
    if first is None:
        return
    result.incident_id = first.incident_id
    result.t_incident = (first.opened_at - result.t0).total_seconds()
    if first.diagnosed_at is not None:
        result.t_diagnosis = (first.diagnosed_at - result.t0).total_seconds()
    result.category, result.component, result.confidence = first.category, first.component, first.confidence


class ChaosParams(BaseModel):
    api: str
    toyprod: str
    faults: list[str] = Field(default_factory=lambda: list(FAULT_ORDER))
    incident_timeout: float = Field(default=900.0, gt=0, description="Fault on -> first incident.")
    diagnosis_timeout: float = Field(default=600.0, gt=0, description="Incident -> its diagnosis.")
    clear_timeout: float = Field(default=900.0, gt=0, description="Reset -> every alert of the fault resolved.")
    settle_timeout: float = Field(default=900.0, gt=0, description="Before a fault: no toyprod incident open.")
    poll_seconds: float = Field(default=2.0, gt=0)
    out: Path | None = None


class ChaosReport(BaseModel):
    started_at: datetime
    params: ChaosParams
    machine: dict[str, Any] = Field(default_factory=dict)
    results: list[FaultResult] = Field(default_factory=list)
    aborted: str | None = None
    seconds: float = 0.0

    @property
    def right(self) -> int:
        return sum(result.right for result in self.results)

    def summary(self) -> str:
        opened = sum(result.incident_id is not None for result in self.results)
        cleared = sum(result.cleared for result in self.results)
        n = len(self.results)
        return f"right: {self.right}/{n}; incident opened: {opened}/{n}; cleared after reset: {cleared}/{n}"

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for result, dumped in zip(self.results, data["results"], strict=True):
            dumped["right"] = result.right
        data["right"] = self.right
        data["total"] = len(self.results)
        return data


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def results_table(report: ChaosReport) -> Table:
    table = Table(title="vigil eval chaos — toyprod faults on one running stack")
    for column in ("fault", "alerts"):
        table.add_column(column)
    for column in ("t_incident s", "t_diagnosis s"):
        table.add_column(column, justify="right")
    for column in ("category (expected)", "component"):
        table.add_column(column)
    table.add_column("confidence", justify="right")
    table.add_column("cleared after reset s (in Vigil)")
    for r in report.results:
        mark = "[green]✓[/]" if r.right else "[red]✗[/]"
        category = f"{mark} {escape(r.category or '—')} ({r.expected})"
        cleared = f"yes, {_seconds(r.t_clear)} s ({_seconds(r.t_clear_seen)} s)" if r.cleared else "[red]no[/]"
        table.add_row(
            r.fault,
            escape("\n".join(r.alerts) or "—"),
            _seconds(r.t_incident),
            _seconds(r.t_diagnosis),
            category,
            escape(r.component or "—"),
            "—" if r.confidence is None else f"{r.confidence:.2f}",
            cleared,
        )
    return table


def print_report(report: ChaosReport, console: Console) -> None:
    console.print(results_table(report))
    for r in report.results:
        if r.failure:
            console.print(f"[red]{r.fault}[/]: {escape(r.failure)}")
    if report.aborted:
        console.print(f"[red]aborted[/]: {escape(report.aborted)}")
    console.print(f"[bold]{report.summary()}[/]")


def write_report(report: ChaosReport) -> None:
    if report.params.out is not None:
        report.params.out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")


# ---- talking to the stack ----------------------------------------------------------------------------------


async def _answers(
    vigil: VigilApi, t0: datetime, before: dict[str, Any], details: dict[str, IncidentDetail]
) -> list[IncidentAnswer]:
    """The toyprod incidents the fault reached: new since `before`, or open now (settle left none open)."""
    for row in await vigil.incidents():
        if row.incident_id in before and row.status in FINAL and row.incident_id not in details:
            continue
        detail = await vigil.detail(row.incident_id)
        if detail is not None:
            details[row.incident_id] = detail
    answers = [incident_answer(detail, t0) for detail in details.values()]
    return [answer for answer in answers if answer is not None]


async def _wait(
    what: str,
    timeout: float,
    params: ChaosParams,
    probe: Callable[[], Awaitable[bool]],
    status: Callable[[str], None],
) -> bool:
    """Poll `probe` until it holds (True) or `timeout` seconds pass (False), showing the wait."""
    started = time.monotonic()
    while True:
        if await probe():
            return True
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            return False
        status(f"{what} ({elapsed:.0f}/{timeout:.0f} s)")
        await asyncio.sleep(params.poll_seconds)


async def run_fault(
    vigil: VigilApi,
    toy: Toyprod,
    name: str,
    params: ChaosParams,
    ours: set[str],
    say: Callable[[str], None],
    status: Callable[[str], None],
) -> FaultResult:
    """One fault: settle, switch it on, wait for its incident and diagnosis, reset, wait for its alerts to clear."""
    status(f"{name}: waiting until no toyprod incident is open")
    await settle(vigil, toy, _settle_params(params), ours, say)
    before = {row.incident_id: row.status for row in await vigil.incidents()}
    expected = EXPECTED[name]
    result = FaultResult(fault=name, expected=expected.category.value, expected_why=expected.why, t0=datetime.now(UTC))
    details: dict[str, IncidentDetail] = {}
    answers: list[IncidentAnswer] = []

    async def opened() -> bool:
        nonlocal answers
        answers = await _answers(vigil, result.t0, before, details)
        return bool(answers)

    async def diagnosed() -> bool:
        nonlocal answers
        answers = await _answers(vigil, result.t0, before, details)
        first = first_incident(answers)
        return first is not None and first.diagnosed_at is not None

    try:
        await toy.inject(Fault(name, f"/{name}", action=""))  # no body: toyprod's defaults
        say(f"  {name}: switched on at {result.t0:%H:%M:%S} UTC")
        if not await _wait(f"{name}: waiting for an incident", params.incident_timeout, params, opened, status):
            result.failure = f"no toyprod incident within {params.incident_timeout:g} s"
        else:
            say(f"  {name}: incident after {_elapsed(result.t0):.0f} s")
            if await _wait(f"{name}: waiting for the diagnosis", params.diagnosis_timeout, params, diagnosed, status):
                say(f"  {name}: diagnosed after {_elapsed(result.t0):.0f} s")
            else:
                result.failure = f"no diagnosis within {params.diagnosis_timeout:g} s of the incident"
    finally:
        with contextlib.suppress(httpx.HTTPError):
            await toy.reset()
        result.reset_at = datetime.now(UTC)
    fill_result(result, answers)  # the answer as it stood while the fault was on
    answers = await _answers(vigil, result.t0, before, details)  # and what opened just before the reset
    ours.update(details)
    record_incidents(result, answers)
    if not answers:
        return result

    async def cleared() -> bool:
        nonlocal answers
        answers = await _answers(vigil, result.t0, before, details)
        ours.update(details)
        mine = [details[answer.incident_id] for answer in answers]
        if not all(alerts_cleared(d, result.t0) for d in mine):
            return False
        ends = [end for d in mine if (end := last_resolved(d, result.t0)) is not None]
        if result.reset_at is not None:
            result.t_clear_seen = _elapsed(result.reset_at)
            if ends:
                result.t_clear = max(0.0, (max(ends) - result.reset_at).total_seconds())
        return True

    waiting = f"{name}: reset, waiting for its alerts to resolve"
    result.cleared = await _wait(waiting, params.clear_timeout, params, cleared, status)
    record_incidents(result, answers)
    if result.cleared:
        say(
            f"  {name}: alerts resolved {_seconds(result.t_clear)} s after the reset, in Vigil after "
            f"{_seconds(result.t_clear_seen)} s"
        )
    elif result.failure is None:
        result.failure = f"alerts still firing {params.clear_timeout:g} s after the reset"
    return result


def _elapsed(since: datetime) -> float:
    return (datetime.now(UTC) - since).total_seconds()


def _settle_params(params: ChaosParams) -> RemediationParams:
    return RemediationParams(
        api=params.api, toyprod=params.toyprod, timeout=params.settle_timeout, poll_seconds=params.poll_seconds
    )


async def run_eval(
    params: ChaosParams,
    *,
    api_token: str | None,
    chaos_token: str,
    console: Console,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ChaosReport:
    """Every fault in turn; the report is rewritten after each. A stack that does not settle or stops answering
    aborts the run with what it measured so far."""
    report = ChaosReport(started_at=datetime.now(UTC), params=params, machine=machine())
    started = time.monotonic()
    ours: set[str] = set()
    async with stack_clients(
        params.api, params.toyprod, api_token=api_token, chaos_token=chaos_token, transport=transport
    ) as (vigil, toy):
        with console.status("starting") as shown:
            try:
                for number, name in enumerate(params.faults, start=1):
                    head = f"[{number}/{len(params.faults)}]"

                    def show(text: str, head: str = head) -> None:
                        shown.update(f"{head} {escape(text)}")

                    console.print(f"{head} {name}: waiting for a settled stack (no open toyprod incident)")
                    result = await run_fault(vigil, toy, name, params, ours, console.print, show)
                    report.results.append(result)
                    console.print(progress_line(head, result))
                    report.seconds = time.monotonic() - started
                    write_report(report)
            except (SettleError, httpx.HTTPError, RuntimeError) as exc:
                where = f" ({exc.request.method} {exc.request.url})" if isinstance(exc, httpx.RequestError) else ""
                report.aborted = f"{type(exc).__name__}: {exc}{where}"
            with contextlib.suppress(httpx.HTTPError):
                await clean_up(vigil, toy, ours, console.print)
    report.seconds = time.monotonic() - started
    write_report(report)
    return report


def progress_line(head: str, r: FaultResult) -> str:
    verdict = "[green]right[/]" if r.right else "[red]wrong[/]"
    return (
        f"{head} {r.fault}: {verdict} {escape(r.category or 'no diagnosis')} (expected {r.expected}); "
        f"incident {_seconds(r.t_incident)} s, diagnosis {_seconds(r.t_diagnosis)} s, "
        f"{'cleared' if r.cleared else 'NOT cleared'}; alerts: {escape(', '.join(r.alerts) or 'none')}"
        + (f"; [red]{escape(r.failure)}[/]" if r.failure else "")
    )


def main(params: ChaosParams, *, api_token: str | None, chaos_token: str | None, as_json: bool = False) -> int:
    """Exit 0 when every fault opened an incident that was diagnosed right and cleared after the reset."""
    console = Console(stderr=as_json)
    if chaos_token is None:
        console.print("[red]no chaos token[/]: set VIGIL_CHAOS_TOKEN or write one to {VIGIL_STATE_DIR}/chaos-token")
        return 2
    try:
        report = asyncio.run(run_eval(params, api_token=api_token, chaos_token=chaos_token, console=console))
    except KeyboardInterrupt:
        console.print(f"interrupted; the faults so far are in {params.out}" if params.out else "interrupted")
        return 130
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        print_report(report, console)
        if params.out is not None:
            console.print(f"report: {params.out}")
    done = report.results and report.aborted is None and len(report.results) == len(params.faults)
    return 0 if done and all(r.right and r.cleared for r in report.results) else 1
