"""The fault suite: an alert storm with duplicate and out-of-order deliveries while the incidents worker, the
Temporal server and PostgreSQL are each SIGKILLed and restarted, then a count of what reached the incidents.

Everything runs privately on 127.0.0.1 under a temporary state dir: a Temporal dev server on a SQLite file (so
it survives its own SIGKILL), an embedded PostgreSQL, an incidents worker process, and the API in this process.
The load generator behaves like Alertmanager: every notification is sent two or three times (as retries after
timeouts are), it retries a 503 with backoff, and half of the alerts are resolved, after which their older
firing notification arrives again (out of order). Afterwards every alert must be present in its group's one
incident exactly once (one firing episode), with the status its own timestamps say, and in the store too.

`python -m eval.faults` or `vigil eval faults`; `tests/test_fault_suite.py` runs a small one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from api.app import create_app
from benchmarks.ingest import alertmanager_webhook
from vigil.models import IncidentDetail, IncidentStatus
from vigil.settings import Settings
from vigil.stack.postgres import EmbeddedPostgres, EmbeddedPostgresError, start_embedded_postgres
from vigil.stack.temporal_server import dev_server_command
from vigil.store.database import Store, migrate_database
from vigil.temporal import connect

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


class FaultParams(BaseModel):
    groups: int = 10
    alerts_per_group: int = 10
    concurrency: int = 8
    seed: int = 7
    settle_timeout: float = 120.0


class FaultReport(BaseModel):
    """What was sent, what the API accepted, and what the incidents hold at the end."""

    notifications: int = 0
    requests_sent: int = 0
    accepted: int = 0
    refused_then_retried: int = 0
    alerts: int = 0
    present: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_status: int = 0
    incidents: int = 0
    extra_incidents: int = 0
    stored_alerts: int = 0
    worker_restarts: int = 0
    faults: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.wrong_status == 0
            and self.extra_incidents == 0
            and self.stored_alerts == self.alerts
        )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Stack:
    """The private stack of one fault run, with a way to kill and restart each part."""

    settings: Settings
    state_dir: Path
    postgres: EmbeddedPostgres
    temporal: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def _log(self, name: str) -> Any:
        path = self.state_dir / f"{name}.log"
        self.logs.append(path)
        return path.open("ab")

    def start_temporal(self) -> None:
        with self._log("temporal") as log:
            self.temporal = subprocess.Popen(
                [*dev_server_command(self.settings), "--headless"], stdout=log, stderr=subprocess.STDOUT
            )

    def start_worker(self) -> None:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.settings.temporal_target,
            "DATABASE_URL": self.postgres.url,
            "VIGIL_STATE_DIR": str(self.state_dir),
            "VIGIL_INCIDENTS_WORKER_METRICS_PORT": str(_free_port()),
        }
        with self._log("worker") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "vigil", "worker", "incidents"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    @staticmethod
    def _kill(process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def kill_worker(self) -> None:
        self._kill(self.worker)
        self.worker = None

    async def supervise_worker(self, report: FaultReport) -> None:
        """As `vigil up` does: a worker that exits by itself (e.g. after Temporal was unreachable for a while)
        is restarted; one that the suite killed stays down until the suite starts it."""
        while True:
            await asyncio.sleep(0.5)
            if self.worker is not None and self.worker.poll() is not None:
                report.worker_restarts += 1
                self.start_worker()

    def kill_temporal(self) -> None:
        self._kill(self.temporal)

    def kill_postgres(self) -> None:
        os.kill(self.postgres.pid, signal.SIGKILL)

    async def restart_postgres(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        await _eventually(self._postgres_down, timeout, "the killed PostgreSQL gone")  # SIGKILL is not instant
        while True:
            try:
                await asyncio.to_thread(self.postgres.restart)
                return
            except EmbeddedPostgresError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)  # the dead server's backends are still exiting

    async def _postgres_down(self) -> bool:
        return not self.postgres.is_running()

    def stop(self) -> None:
        self.kill_worker()
        if self.temporal is not None and self.temporal.poll() is None:
            self.temporal.terminate()
            try:
                self.temporal.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._kill(self.temporal)
        self.postgres.stop()


def _alert(group: int, index: int, tag: str, *, starts: datetime, ends: datetime | None) -> dict[str, Any]:
    return {
        "status": "resolved" if ends else "firing",
        "labels": {
            "alertname": f"Fault{tag}",
            "service": f"svc{group}",
            "namespace": "faults",
            "instance": f"i{index}",
            "severity": "warning",
        },
        "annotations": {"summary": f"fault-suite alert {index} of group {group}"},
        "startsAt": starts.isoformat(),
        "endsAt": ends.isoformat() if ends else GO_ZERO_TIME,
        "generatorURL": "http://faults.invalid/",
        "fingerprint": "",
    }


@dataclass
class _Plan:
    """The notifications in sending order, and what each alert's status must be at the end."""

    waves: list[list[dict[str, Any]]]
    expected: dict[tuple[str, str], str]
    notifications: int


def _plan(params: FaultParams, tag: str) -> _Plan:
    """Wave 1: every alert fires, each notification two or three times over. Wave 2: half of them resolve
    (endsAt after startsAt), sent twice. Wave 3: the older firing notification of those comes again, late."""
    rng = random.Random(params.seed)
    started = datetime.now(UTC) - timedelta(minutes=10)
    firing: list[dict[str, Any]] = []
    resolved: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    expected: dict[tuple[str, str], str] = {}
    for group in range(params.groups):
        for index in range(params.alerts_per_group):
            starts = started + timedelta(seconds=group + index / 100)
            alert = _alert(group, index, tag, starts=starts, ends=None)
            firing += [alertmanager_webhook([alert])] * rng.choice((2, 3))
            if index % 2 == 0:
                resolved += [
                    alertmanager_webhook([_alert(group, index, tag, starts=starts, ends=starts + timedelta(minutes=5))])
                ] * 2
                stale.append(alertmanager_webhook([alert]))
                expected[(f"svc{group}", f"i{index}")] = "resolved"
            else:
                expected[(f"svc{group}", f"i{index}")] = "firing"
    for wave in (firing, resolved, stale):
        rng.shuffle(wave)
    return _Plan(
        waves=[firing, resolved, stale], expected=expected, notifications=len(firing) + len(resolved) + len(stale)
    )


async def _send_all(
    http: httpx.AsyncClient, bodies: list[dict[str, Any]], concurrency: int, report: FaultReport
) -> set[str]:
    """Send like Alertmanager: retry a 503 or a broken connection with backoff until accepted."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    incident_ids: set[str] = set()

    async def sender() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            for attempt in range(1, 200):
                report.requests_sent += 1
                try:
                    response = await http.post("/api/v1/alerts/alertmanager", json=body)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 202:
                    report.accepted += 1
                    incident_ids.update(ref["incident_id"] for ref in response.json()["incidents"])
                    break
                if response is not None and response.status_code != 503:
                    raise RuntimeError(f"webhook refused: {response.status_code} {response.text[:300]}")
                report.refused_then_retried += 1
                await asyncio.sleep(min(0.1 * attempt, 1.0))
            else:
                raise RuntimeError("a notification was never accepted")

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return incident_ids


async def _eventually(probe: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.2)


async def _temporal_up(settings: Settings) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await connect(settings)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def run_faults(params: FaultParams, console: Console | None = None) -> FaultReport:
    say = console.print if console is not None else (lambda *_: None)
    report = FaultReport()
    tag = f"{random.Random(params.seed).getrandbits(32):08x}{os.getpid() % 10000:04d}"
    plan = _plan(params, tag)
    report.notifications, report.alerts = plan.notifications, len(plan.expected)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vigil-faults-") as tmp:
        state_dir = Path(tmp)
        postgres = start_embedded_postgres(state_dir)
        settings = Settings(
            state_dir=state_dir,
            database_url=SecretStr(postgres.url),
            temporal_port=_free_port(),
            temporal_ui_port=_free_port(),
            debounce_seconds=1.0,
            quiet_period_seconds=3600,
            close_after_seconds=3600,
            diagnosis_wait_seconds=0.5,
        )
        stack = _Stack(settings=settings, state_dir=state_dir, postgres=postgres)
        try:
            await migrate_database(postgres.url)
            stack.start_temporal()
            client = await _temporal_up(settings)
            stack.start_worker()
            async with AsyncExitStack() as exits:
                store = await Store.open(postgres.url)
                exits.push_async_callback(store.close)
                app = create_app(settings, client=client, store=store)
                http = await exits.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.faults")
                )
                supervisor = asyncio.create_task(stack.supervise_worker(report))
                exits.callback(supervisor.cancel)
                incident_ids = await _storm(stack, settings, http, plan, params, report, say)
                await _settle(http, incident_ids, plan, params, report, store)
        finally:
            stack.stop()
    report.seconds = time.perf_counter() - started
    return report


async def _storm(
    stack: _Stack,
    settings: Settings,
    http: httpx.AsyncClient,
    plan: _Plan,
    params: FaultParams,
    report: FaultReport,
    say: Callable[..., None],
) -> set[str]:
    """The three waves, with a fault in the middle of each: worker, then Temporal, then PostgreSQL."""
    incident_ids: set[str] = set()

    async def worker_fault() -> None:
        stack.kill_worker()
        report.faults.append("incidents worker SIGKILLed during wave 1, restarted after 2 s")
        await asyncio.sleep(2)
        stack.start_worker()

    async def temporal_fault() -> None:
        stack.kill_temporal()
        report.faults.append("Temporal SIGKILLed during wave 2, restarted after 2 s")
        await asyncio.sleep(2)
        stack.start_temporal()

    async def postgres_fault() -> None:
        stack.kill_postgres()
        report.faults.append("PostgreSQL SIGKILLed during wave 3, restarted")
        await asyncio.sleep(2)
        await stack.restart_postgres()

    for number, (wave, fault) in enumerate(
        zip(plan.waves, (worker_fault, temporal_fault, postgres_fault), strict=True)
    ):
        half = len(wave) // 2
        say(f"wave {number + 1}: {len(wave)} notifications, {fault.__name__.replace('_', ' ')} half-way")
        incident_ids |= await _send_all(http, wave[:half], params.concurrency, report)
        faulting = asyncio.create_task(fault())
        incident_ids |= await _send_all(http, wave[half:], params.concurrency, report)
        await faulting
    return incident_ids


async def _settle(
    http: httpx.AsyncClient,
    incident_ids: set[str],
    plan: _Plan,
    params: FaultParams,
    report: FaultReport,
    store: Store,
) -> None:
    """Wait until every incident shows the expected alerts (or the timeout), then count."""
    details: dict[str, IncidentDetail] = {}

    async def read_all() -> bool:
        for incident_id in incident_ids:
            response = await http.get(f"/api/v1/incidents/{incident_id}")
            if response.status_code == 200:
                details[incident_id] = IncidentDetail.model_validate(response.json())
        seen = {
            (r.labels.get("service", ""), r.labels.get("instance", "")): r.status.value
            for d in details.values()
            if d.state is not None
            for r in d.state.alerts.values()
        }
        stored = 0
        for detail in details.values():
            stored += len(await store.alerts(detail.incident_id))
        report.stored_alerts = stored
        return seen == plan.expected and stored == len(plan.expected)

    with contextlib.suppress(RuntimeError):  # not settled: counted below as lost, duplicated or wrong
        await _eventually(read_all, params.settle_timeout, "incidents settled")
    present: dict[tuple[str, str], int] = {}
    report.incidents = len(details)
    report.extra_incidents = max(0, len(details) - params.groups)
    for detail in details.values():
        if detail.state is None or detail.state.status is IncidentStatus.CLOSED:
            continue
        for record in detail.state.alerts.values():
            key = (record.labels.get("service", ""), record.labels.get("instance", ""))
            present[key] = present.get(key, 0) + record.count
            if plan.expected.get(key) != record.status.value:
                report.wrong_status += 1
    report.present = len(present)
    report.lost = len(set(plan.expected) - set(present))
    report.duplicated = sum(count - 1 for count in present.values())


def print_report(report: FaultReport, console: Console) -> None:
    table = Table(title="vigil eval faults")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in (
        "notifications",
        "requests_sent",
        "accepted",
        "refused_then_retried",
        "alerts",
        "present",
        "lost",
        "duplicated",
        "wrong_status",
        "incidents",
        "extra_incidents",
        "stored_alerts",
        "worker_restarts",
    ):
        table.add_row(name.replace("_", " "), str(getattr(report, name)))
    table.add_row("seconds", f"{report.seconds:.1f}")
    console.print(table)
    for fault in report.faults:
        console.print(f"- {fault}")
    console.print("[green]nothing lost, duplicated or misplaced[/]" if report.clean else "[red]NOT CLEAN[/]")


def main(params: FaultParams) -> int:
    console = Console()
    logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)  # the outages are on purpose: no tracebacks
    report = asyncio.run(run_faults(params, console))
    print_report(report, console)
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main(FaultParams()))
