"""`vigil bench ingest`: N Alertmanager alerts over HTTP into a running stack.

Reports alerts/s, webhook latency p50/p99, the time until every alert is counted in its incident workflow, and
how many were lost (must be 0). The baseline, run in the same process against the same server, is plain
GET /healthz round-trips at the same concurrency: the ratio shows what intake costs over bare HTTP.

With `rate`, requests are sent open-loop at that many per second (as alerting systems do: they do not wait for
one webhook to finish before the next alert fires), each latency counted from when its request was due, so
queueing shows; the baseline is /healthz at the same rate, and its p50/p99 are reported beside the webhook's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.progress import Progress
from rich.table import Table


@dataclass(frozen=True)
class IngestParams:
    n: int
    concurrency: int
    batch: int
    fingerprints: int
    groups: int
    repeats: int
    rate: float | None = None


@dataclass(frozen=True)
class IngestRun:
    alerts: int
    requests: int
    seconds: float
    alerts_per_second: float
    p50_ms: float
    p99_ms: float
    seconds_until_in_workflows: float
    lost: int
    baseline_requests_per_second: float
    baseline_p50_ms: float
    baseline_p99_ms: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _alert(tag: str, group: int, fingerprint: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "status": "firing",
        "labels": {
            "alertname": f"BenchIngest{tag}",
            "service": f"svc{group}",
            "namespace": "bench",
            "instance": f"i{fingerprint}",
            "severity": "warning",
        },
        "annotations": {"summary": f"bench alert {fingerprint} of group {group}"},
        "startsAt": now,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://bench.invalid/",
        "fingerprint": "",
    }


def alertmanager_webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """A webhook body as Alertmanager (version 4) sends it, for load generators."""
    return {
        "version": "4",
        "groupKey": "bench",
        "truncatedAlerts": 0,
        "status": "firing" if any(alert["status"] == "firing" for alert in alerts) else "resolved",
        "receiver": "vigil",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://bench.invalid",
        "alerts": alerts,
    }


def _webhooks(tag: str, *, n: int, batch: int, fingerprints: int, groups: int) -> list[dict[str, Any]]:
    """Alert i belongs to group i % groups and has fingerprint i % fingerprints. As Alertmanager does, each
    webhook carries alerts of one group only; webhooks of different groups are interleaved."""
    per_group: list[list[dict[str, Any]]] = [[] for _ in range(groups)]
    for i in range(n):
        per_group[i % groups].append(_alert(tag, i % groups, i % fingerprints))
    chunked = [[alerts[i : i + batch] for i in range(0, len(alerts), batch)] for alerts in per_group]
    bodies: list[dict[str, Any]] = []
    for round_ in range(max(len(chunks) for chunks in chunked)):
        bodies.extend(alertmanager_webhook(chunks[round_]) for chunks in chunked if round_ < len(chunks))
    return bodies


async def _drive(concurrency: int, jobs: list[Any], send: Any, progress: Progress | None) -> list[float]:
    """Run `send(job)` over all jobs with `concurrency` in flight; returns each call's latency."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []
    task = progress.add_task("sending", total=len(jobs)) if progress else None

    async def runner() -> None:
        while not queue.empty():
            job = queue.get_nowait()
            started = time.perf_counter()
            await send(job)
            latencies.append(time.perf_counter() - started)
            if progress is not None and task is not None:
                progress.advance(task)

    await asyncio.gather(*(runner() for _ in range(concurrency)))
    if progress is not None and task is not None:
        progress.remove_task(task)
    return latencies


async def _drive_at_rate(rate: float, jobs: list[Any], send: Any, progress: Progress | None) -> list[float]:
    """Open loop: job i is due `i / rate` seconds after the start, whatever the earlier ones are doing; its latency
    runs from when it was due (a late start is waiting too)."""
    latencies: list[float] = []
    task = progress.add_task(f"sending at {rate:g}/s", total=len(jobs)) if progress else None
    start = time.perf_counter() + 0.05

    async def one(index: int, job: Any) -> None:
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await send(job)
        latencies.append(time.perf_counter() - due)
        if progress is not None and task is not None:
            progress.advance(task)

    await asyncio.gather(*(one(index, job) for index, job in enumerate(jobs)))
    if progress is not None and task is not None:
        progress.remove_task(task)
    return latencies


CONNECTIONS_PER_CLIENT = 8
"""httpx's connection pool scans every connection for each request (quadratic in the pool's size): with one pool of
hundreds of connections the load generator, not the server, was the bottleneck (py-spy: 60% of its time in
`_assign_requests_to_connections` at 200 requests/s). Requests are spread over small pools instead."""


class _Senders:
    """Clients with small pools, taken in turn."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self._clients = clients
        self._next = 0

    def next(self) -> httpx.AsyncClient:
        self._next = (self._next + 1) % len(self._clients)
        return self._clients[self._next]


async def run_once(
    http: httpx.AsyncClient,
    params: IngestParams,
    progress: Progress | None = None,
    settle_timeout: float = 300.0,
    senders: _Senders | None = None,
) -> IngestRun:
    tag = uuid.uuid4().hex[:8]
    n, concurrency = params.n, params.concurrency
    bodies = _webhooks(tag, n=n, batch=params.batch, fingerprints=params.fingerprints, groups=params.groups)
    expected: Counter[str] = Counter()
    failures: list[str] = []

    def sender() -> httpx.AsyncClient:
        return senders.next() if senders is not None else http

    async def post(body: dict[str, Any]) -> None:
        response = await sender().post("/api/v1/alerts/alertmanager", json=body)
        if response.status_code != 202:
            failures.append(f"{response.status_code} {response.text[:200]}")
            return
        for ref in response.json()["incidents"]:
            expected[ref["incident_id"]] += ref["alerts"]

    async def healthz(_: object) -> None:
        (await sender().get("/healthz")).raise_for_status()

    def drive(jobs: list[Any], send: Any, shown: Progress | None) -> Any:
        if params.rate is not None:
            return _drive_at_rate(params.rate, jobs, send, shown)
        return _drive(concurrency, jobs, send, shown)

    baseline_started = time.perf_counter()
    baseline = await drive(list(range(len(bodies))), healthz, None)
    baseline_rps = len(bodies) / (time.perf_counter() - baseline_started)

    started = time.perf_counter()
    latencies = await drive(bodies, post, progress)
    sent_seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} webhook(s) refused, first: {failures[0]}")

    async def counted() -> dict[str, int]:
        out: dict[str, int] = {}
        for incident_id in expected:
            response = await http.get(f"/api/v1/incidents/{incident_id}")
            state = response.json().get("state") if response.status_code == 200 else None
            # every notification taken in: an alert's first firing plus its repeats (the same fingerprint again)
            out[incident_id] = sum(a["count"] + a["repeats"] for a in state["alerts"].values()) if state else 0
        return out

    deadline = time.monotonic() + settle_timeout
    observed = await counted()
    while observed != dict(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        observed = await counted()
    in_workflows = time.perf_counter() - started
    lost = sum(max(0, expected[i] - observed.get(i, 0)) for i in expected) + (n - sum(expected.values()))
    await _clean_up(http, list(expected))
    return IngestRun(
        alerts=n,
        requests=len(bodies),
        seconds=sent_seconds,
        alerts_per_second=n / sent_seconds,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        seconds_until_in_workflows=in_workflows,
        lost=lost,
        baseline_requests_per_second=baseline_rps,
        baseline_p50_ms=_percentile(baseline, 0.50) * 1000,
        baseline_p99_ms=_percentile(baseline, 0.99) * 1000,
    )


async def _clean_up(http: httpx.AsyncClient, incident_ids: list[str]) -> None:
    """Resolve the incidents the run opened, so a benchmark leaves no open incident behind in the console."""
    for incident_id in incident_ids:
        response = await http.post(
            f"/api/v1/incidents/{incident_id}/resolve", json={"by": "vigil-bench", "reason": "benchmark run over"}
        )
        if response.status_code not in (200, 409):
            raise RuntimeError(f"could not resolve {incident_id}: {response.status_code} {response.text[:200]}")


async def run_benchmark(base_url: str, token: SecretStr | None, params: IngestParams) -> list[IngestRun]:
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    per_client = min(CONNECTIONS_PER_CLIENT, params.concurrency)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60)
            )
            for _ in range(max(1, -(-params.concurrency // per_client)))
        ]
        http = clients[0]
        (await http.get("/readyz")).raise_for_status()
        with Progress(transient=True) as progress:
            return [await run_once(http, params, progress, senders=_Senders(clients)) for _ in range(params.repeats)]


def report(runs: list[IngestRun], params: IngestParams, console: Console) -> None:
    def median(field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs))

    paced = f", {params.rate:g} requests/s open loop" if params.rate is not None else ""
    table = Table(title=f"vigil bench ingest — medians of {len(runs)} run(s){paced}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    first = runs[0]
    rps = median("alerts_per_second")
    request_rate = median("requests") / median("seconds")
    table.add_row("alerts per run / requests per run", f"{first.alerts} / {first.requests}")
    table.add_row("alerts/s (webhook, accepted durably)", f"{rps:,.0f}")
    table.add_row("webhook latency p50", f"{median('p50_ms'):.1f} ms")
    table.add_row("webhook latency p99", f"{median('p99_ms'):.1f} ms")
    table.add_row("time until every alert is in its workflow", f"{median('seconds_until_in_workflows'):.2f} s")
    table.add_row("alerts lost (all runs)", str(sum(run.lost for run in runs)))
    table.add_row("baseline: GET /healthz requests/s", f"{median('baseline_requests_per_second'):,.0f}")
    table.add_row(
        "baseline: GET /healthz p50 / p99", f"{median('baseline_p50_ms'):.1f} ms / {median('baseline_p99_ms'):.1f} ms"
    )
    table.add_row("webhook requests/s ÷ baseline", f"{request_rate / median('baseline_requests_per_second'):.2f}")
    console.print(table)


def run_cli(*, base_url: str, token: SecretStr | None, params: IngestParams) -> int:
    console = Console()
    if min(params.n, params.concurrency, params.batch, params.fingerprints, params.groups, params.repeats) < 1:
        console.print("[red]every count must be at least 1[/red]")
        return 2
    try:
        runs = asyncio.run(run_benchmark(base_url, token, params))
    except (httpx.HTTPError, RuntimeError) as exc:
        console.print(f"[red]benchmark failed[/red]: {exc}")
        return 1
    report(runs, params, console)
    return 1 if any(run.lost for run in runs) else 0
