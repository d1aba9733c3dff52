"""toyprod, the demo shop: metrics and logs of normal traffic, the signature of every chaos fault, chaos auth,
log shipping to a local stand-in for Vigil, and the `vigil chaos` / `vigil traffic` CLI against a real
toyprod process. The app runs for real (in-process over ASGI, or as a subprocess); nothing of it is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import eventually, free_port
from tests.vigil_up import wait_until
from toyprod import COMMIT, VERSION
from toyprod.app import create_app
from toyprod.chaos import Chaos
from toyprod.config import MIB, ToyConfig
from toyprod.shop import Shop
from vigil.models import DeployEvent

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "chaos-test-token"
CART = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 3, "quantity": 1}]}
PROMO_CART = {**CART, "promo": {"code": "SPRING10", "percent": 10}}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class VigilStub:
    """A stand-in for Vigil's log and deploy-event endpoints on 127.0.0.1; can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                lines = [line for line in body.splitlines() if line.strip()]
                answer = json.dumps({"accepted": len(lines), "rejected": 0, "errors": []}).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def log_lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for request in self.received
            if request.path == "/api/v1/logs"
            for line in request.body.decode().splitlines()
        ]

    def deploys(self) -> list[DeployEvent]:
        return [DeployEvent.model_validate_json(r.body) for r in self.received if r.path == "/api/v1/events/deploy"]


@pytest.fixture
def vigil_stub() -> Iterator[VigilStub]:
    stub = VigilStub(free_port())
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


@dataclass
class Toy:
    client: httpx.AsyncClient
    shop: Shop
    chaos_engine: Chaos
    lines: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.shop.metrics.registry.get_sample_value(name, labels)

    async def log_containing(self, text: str, level: str | None = None) -> dict[str, Any]:
        def match(records: list[dict[str, Any]]) -> bool:
            return any(text in r["message"] and level in (None, r["level"]) for r in records)

        records = await eventually(self._records, match, timeout=10)
        return next(r for r in records if text in r["message"] and level in (None, r["level"]))

    async def _records(self) -> list[dict[str, Any]]:
        return self.records()

    async def chaos(self, fault: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(f"/chaos/{fault}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def base_config(state_dir: Path, **overrides: Any) -> ToyConfig:
    config = ToyConfig(
        state_dir=state_dir,
        chaos_token=TOKEN,
        pool_timeout_s=0.3,
        watchdog_interval_s=0.1,
        disk_quota_bytes=4 * MIB,
        ship_interval_s=0.1,
        ship_max_backoff_s=0.2,
    )
    return replace(config, **overrides)


@asynccontextmanager
async def running(config: ToyConfig) -> AsyncIterator[Toy]:
    lines: list[str] = []
    app = create_app(config, sinks=[lines.append])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://toyprod.test") as client:
            yield Toy(client, app.state.shop, app.state.chaos, lines)


@pytest.fixture
async def toy(tmp_path: Path, vigil_stub: VigilStub) -> AsyncIterator[Toy]:
    async with running(base_config(tmp_path, vigil_url=vigil_stub.url, vigil_token="vigil-secret")) as started:
        yield started


async def test_normal_traffic_metrics_and_logs(toy: Toy) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await toy.client.get(
        "/products", headers={"X-Request-ID": "req-123", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-123"
    assert len(response.json()) == 8
    assert (await toy.client.post("/orders", json=CART)).status_code == 201
    checkout = await toy.client.post("/checkout", json=CART)
    assert checkout.status_code == 200
    assert checkout.json()["status"] == "paid"
    assert (await toy.client.get("/healthz")).json()["version"] == VERSION

    assert toy.sample("toyprod_http_requests_total", route="/products", method="GET", status="200") == 1
    assert toy.sample("toyprod_http_requests_total", route="/orders", method="POST", status="201") == 1
    assert toy.sample("toyprod_http_request_duration_seconds_count", route="/checkout", method="POST") == 1
    assert toy.sample("toyprod_http_requests_in_flight") == 0
    assert toy.sample("toyprod_build_info", version=VERSION, commit=COMMIT) == 1
    assert toy.sample("toyprod_db_pool_size") == 10
    assert toy.sample("toyprod_db_pool_in_use") == 0
    assert toy.sample("toyprod_dependency_up", dependency="database") == 1
    assert toy.sample("toyprod_dependency_up", dependency="payments") == 1
    expiry = toy.sample("toyprod_certificate_expiry_timestamp_seconds")
    assert expiry is not None
    assert abs(expiry - (time.time() + 90 * 86_400)) < 60
    usage = toy.sample("toyprod_disk_usage_ratio")
    assert usage is not None
    assert 0 < usage < 0.01  # the order journal

    exposition = (await toy.client.get("/metrics")).text
    for name in (
        "toyprod_http_requests_total",
        "toyprod_http_request_duration_seconds_bucket",
        'le="10.0"',
        "toyprod_http_requests_in_flight",
        "toyprod_disk_usage_ratio",
        "toyprod_certificate_expiry_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert name in exposition

    records = toy.records()
    for record in records:
        assert record["service"] == "toyprod"
        assert record["level"] in {"INFO", "WARNING", "ERROR"}
        assert record["ts"].endswith("Z")
    access = next(r for r in records if r.get("request_id") == "req-123")
    assert access["trace_id"] == trace
    assert access["route"] == "/products"
    assert access["status"] == 200
    assert access["duration_ms"] >= 0
    assert access["logger"] == "toyprod.http"


async def test_chaos_needs_a_token(tmp_path: Path) -> None:
    async with running(base_config(tmp_path, chaos_token=None)) as toy:
        response = await toy.client.get("/chaos")
        assert response.status_code == 503
        assert response.json()["detail"] == "chaos disabled: no token"
        (tmp_path / "chaos-token").write_text("from-file\n")
        assert (await toy.client.get("/chaos")).status_code == 401
        wrong = await toy.client.post("/chaos/db-down", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert toy.shop.db.down is False
        right = await toy.client.get("/chaos", headers={"Authorization": "Bearer from-file"})
        assert right.status_code == 200
        assert right.json()["faults"] == {}


async def test_latency(toy: Toy) -> None:
    await toy.chaos("latency", {"ms": 450, "route": "/checkout"})
    started = time.monotonic()
    assert (await toy.client.post("/checkout", json=CART)).status_code == 200
    assert time.monotonic() - started >= 0.45
    slow = await toy.log_containing("slow request: POST /checkout", "WARNING")
    assert slow["duration_ms"] >= 450
    started = time.monotonic()
    await toy.client.get("/products")
    assert time.monotonic() - started < 0.4
    assert toy.sample("toyprod_http_request_duration_seconds_bucket", route="/checkout", method="POST", le="0.25") == 0


async def test_errors(toy: Toy) -> None:
    await toy.chaos("errors", {"rate": 1.0})
    response = await toy.client.get("/products")
    assert response.status_code == 500
    record = await toy.log_containing("Exception in ASGI application: GET /products", "ERROR")
    assert "Traceback (most recent call last):" in record["message"]
    assert "ValueError: invalid literal for int() with base 10: 'N/A'" in record["message"]
    assert toy.sample("toyprod_errors_total", kind="exception") == 1
    assert toy.sample("toyprod_http_requests_total", route="/products", method="GET", status="500") == 1
    await toy.chaos("reset")
    assert (await toy.client.get("/products")).status_code == 200


async def test_memory_leak_grows_rss_until_reset(toy: Toy) -> None:
    def rss() -> float:
        value = toy.sample("process_resident_memory_bytes")
        assert value is not None
        return value

    before = rss()
    await toy.chaos("memory-leak", {"mb_per_s": 256})

    async def probe() -> float:
        return rss()

    await eventually(probe, lambda now: now - before >= 100 * MIB, timeout=10)
    await toy.log_containing("memory usage growing", "WARNING")
    assert (await toy.client.get("/chaos", headers={"Authorization": f"Bearer {TOKEN}"})).json()["faults"][
        "memory-leak"
    ]["mb_per_s"] == 256
    await toy.chaos("reset")
    assert toy.chaos_engine.leaked_bytes == 0


async def test_cpu_burn(toy: Toy) -> None:
    def cpu() -> float:
        value = toy.sample("process_cpu_seconds_total")
        assert value is not None
        return value

    before = cpu()
    await toy.chaos("cpu-burn", {"fraction": 1.0})
    await toy.log_containing("high CPU usage", "WARNING")

    async def probe() -> float:
        return cpu()

    await eventually(probe, lambda now: now - before >= 0.5, timeout=10)
    await toy.chaos("reset")
    assert not any(thread.name == "toyprod-cpu-burn" for thread in threading.enumerate())


async def test_db_down(toy: Toy) -> None:
    await toy.chaos("db-down")
    response = await toy.client.post("/orders", json=CART)
    assert response.status_code == 503
    record = await toy.log_containing("POST /orders failed", "ERROR")
    assert "Connection refused" in record["message"]
    assert "Traceback (most recent call last):" in record["message"]
    assert record["logger"] == "toyprod.db"
    assert toy.sample("toyprod_dependency_up", dependency="database") == 0
    assert toy.sample("toyprod_errors_total", kind="database") == 1
    await toy.chaos("reset")

    async def up() -> float | None:
        return toy.sample("toyprod_dependency_up", dependency="database")

    await eventually(up, lambda value: value == 1)
    assert (await toy.client.post("/orders", json=CART)).status_code == 201


async def test_db_pool_exhaustion(toy: Toy) -> None:
    await toy.chaos("db-pool-exhaustion")

    async def in_use() -> float | None:
        return toy.sample("toyprod_db_pool_in_use")

    await eventually(in_use, lambda value: value == 10)
    started = time.monotonic()
    assert (await toy.client.get("/products")).status_code == 503
    assert time.monotonic() - started >= 0.3
    record = await toy.log_containing("GET /products failed", "ERROR")
    assert "QueuePool limit of size 10 overflow 0 reached, connection timed out" in record["message"]
    assert toy.sample("toyprod_dependency_up", dependency="database") == 1
    await toy.chaos("reset")
    assert toy.sample("toyprod_db_pool_in_use") == 0
    assert (await toy.client.get("/products")).status_code == 200


async def test_payments_failing(toy: Toy) -> None:
    await toy.chaos("payments-failing")
    assert (await toy.client.post("/checkout", json=CART)).status_code == 502
    record = await toy.log_containing("POST /checkout failed", "ERROR")
    assert any(code in record["message"] for code in ("502 Bad Gateway", "503 Service Unavailable"))
    assert record["logger"] == "toyprod.payments"
    assert toy.sample("toyprod_dependency_up", dependency="payments") == 0
    assert toy.sample("toyprod_errors_total", kind="payment") == 1
    await toy.chaos("reset")
    assert (await toy.client.post("/checkout", json=CART)).status_code == 200
    assert toy.sample("toyprod_dependency_up", dependency="payments") == 1


async def test_payments_ratelimit(toy: Toy) -> None:
    await toy.chaos("payments-ratelimit")
    answers = await asyncio.gather(*(toy.client.post("/checkout", json=CART) for _ in range(10)))
    assert {answer.status_code for answer in answers} <= {200, 503}
    record = await toy.log_containing("429 Too Many Requests", "WARNING")
    assert "retry 1/3" in record["message"]
    limited = toy.sample("toyprod_errors_total", kind="ratelimit")
    assert limited is not None
    assert limited >= 1
    assert toy.sample("toyprod_dependency_up", dependency="payments") == 1


async def test_bad_deploy_announces_and_breaks_checkout(toy: Toy, vigil_stub: VigilStub) -> None:
    result = await toy.chaos("bad-deploy")
    assert result["deploy_event_sent"] is True
    assert result["version"] == "2.0.1-bad"
    [event] = vigil_stub.deploys()
    assert (event.service, event.version, event.commit) == ("toyprod", "2.0.1-bad", result["commit"])
    assert event.ts is not None
    deploy_request = next(r for r in vigil_stub.received if r.path == "/api/v1/events/deploy")
    assert deploy_request.headers["authorization"] == "Bearer vigil-secret"
    assert toy.sample("toyprod_build_info", version="2.0.1-bad", commit=result["commit"]) == 1
    assert toy.sample("toyprod_build_info", version=VERSION, commit=COMMIT) is None

    assert (await toy.client.post("/checkout", json=CART)).status_code == 500
    assert (await toy.client.post("/checkout", json=PROMO_CART)).status_code == 200
    record = await toy.log_containing("Exception in ASGI application: POST /checkout", "ERROR")
    assert "TypeError: 'NoneType' object is not subscriptable" in record["message"]
    assert "in _apply_promo_v2\n" in record["message"]

    await toy.chaos("reset")
    assert [event.version for event in vigil_stub.deploys()] == ["2.0.1-bad", VERSION]
    assert toy.sample("toyprod_build_info", version=VERSION, commit=COMMIT) == 1
    assert (await toy.client.post("/checkout", json=CART)).status_code == 200


async def test_disk_fill_stays_within_its_quota(toy: Toy, tmp_path: Path) -> None:
    data = tmp_path / "toyprod-data"

    def used() -> int:
        return sum(path.stat().st_size for path in data.rglob("*") if path.is_file())

    await toy.chaos("disk-fill", {"mb_per_s": 64})

    async def ratio() -> float | None:
        return toy.sample("toyprod_disk_usage_ratio")

    await eventually(ratio, lambda value: value == 1.0)
    assert used() <= 4 * MIB
    assert (await toy.client.post("/orders", json=CART)).status_code == 500
    record = await toy.log_containing("POST /orders failed", "ERROR")
    assert "OSError: [Errno 28] No space left on device" in record["message"]
    assert toy.sample("toyprod_errors_total", kind="disk") == 1
    await toy.log_containing("disk usage of", "WARNING")
    await toy.chaos("reset")
    assert not (data / "cache").exists()
    assert used() < MIB
    assert (await toy.client.post("/orders", json=CART)).status_code == 201


async def test_cert_expiry(toy: Toy) -> None:
    await toy.chaos("cert-expiry", {"days": 3})
    expiry = toy.sample("toyprod_certificate_expiry_timestamp_seconds")
    assert expiry is not None
    assert abs(expiry - (time.time() + 3 * 86_400)) < 60
    await toy.log_containing("expires in 3.0 days", "WARNING")
    assert (await toy.client.get("/products")).status_code == 200

    await toy.chaos("cert-expiry", {"days": -1})
    assert (await toy.client.get("/products")).status_code == 525
    await toy.log_containing("certificate expired", "ERROR")
    assert toy.sample("toyprod_errors_total", kind="tls") == 1
    await toy.chaos("reset")
    assert (await toy.client.get("/products")).status_code == 200


async def test_log_shipper_delivers_and_survives_vigil_down(tmp_path: Path, vigil_stub: VigilStub) -> None:
    config = base_config(tmp_path, vigil_url=vigil_stub.url, vigil_token="vigil-secret", ship_buffer=50, ship_batch=20)
    async with running(config) as toy:
        await toy.client.get("/products", headers={"X-Request-ID": "shipped-1"})

        async def shipped() -> list[dict[str, Any]]:
            return vigil_stub.log_lines()

        await eventually(shipped, lambda lines: any(line.get("request_id") == "shipped-1" for line in lines))
        request = next(r for r in vigil_stub.received if r.path == "/api/v1/logs")
        assert request.headers["content-type"] == "application/x-ndjson"
        assert request.headers["authorization"] == "Bearer vigil-secret"

        vigil_stub.stop()
        for _ in range(120):  # 120 access lines against a buffer of 50
            assert (await toy.client.get("/products")).status_code == 200
        dropped = toy.sample("toyprod_log_records_dropped_total", reason="overflow")
        assert dropped is not None
        assert dropped >= 120 - 50
        await toy.log_containing("log shipping to", "WARNING")

        vigil_stub.start()
        await toy.client.get("/products", headers={"X-Request-ID": "after-outage"})
        await eventually(shipped, lambda lines: any(line.get("request_id") == "after-outage" for line in lines))
        await toy.log_containing("recovered", "INFO")


def run_vigil(args: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_chaos_and_traffic_cli_against_a_toyprod_process(tmp_path: Path, vigil_stub: VigilStub) -> None:
    port = free_port()
    (tmp_path / "chaos-token").write_text("cli-token\n")
    env = {
        **os.environ,
        "VIGIL_TOYPROD_PORT": str(port),
        "VIGIL_STATE_DIR": str(tmp_path),
        "VIGIL_API_PORT": str(vigil_stub.port),
        "VIGIL_API_HOST": "127.0.0.1",
    }
    env.pop("VIGIL_CHAOS_TOKEN", None)
    env.pop("VIGIL_API_TOKEN", None)
    stdout = (tmp_path / "toyprod.out").open("w")
    process = subprocess.Popen([sys.executable, "-m", "vigil", "toyprod"], env=env, cwd=REPO_ROOT, stdout=stdout)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    try:
        wait_until(healthy, 20, "toyprod to answer")
        assert process.poll() is None

        errors = run_vigil(["chaos", "errors", "1.0"], env)
        assert errors.returncode == 0, errors.stderr
        assert "errors(rate=1.0)" in errors.stdout

        traffic = run_vigil(["traffic", "--rps", "20", "--duration", "1"], env)
        assert traffic.returncode == 0, traffic.stderr
        assert "500:" in traffic.stdout

        status = run_vigil(["chaos", "status"], env)
        assert "errors(rate=1.0)" in status.stdout
        reset = run_vigil(["chaos", "reset"], env)
        assert "no active faults" in reset.stdout
        healed = run_vigil(["traffic", "--rps", "20", "--duration", "1"], env)
        assert "500:" not in healed.stdout
        assert "200:" in healed.stdout

        # As under `vigil up`: no terminal, runs until SIGTERM, then stops cleanly with its summary.
        endless = subprocess.Popen(
            [sys.executable, "-m", "vigil", "traffic", "--rps", "20"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert endless.stdout is not None
        assert "20 requests/s" in endless.stdout.readline()  # printed once its SIGTERM handler is in place
        endless.terminate()
        out, err = endless.communicate(timeout=20)
        assert endless.returncode == 0, err
        assert "requests in" in out

        refused = run_vigil(["chaos", "db-down"], {**env, "VIGIL_CHAOS_TOKEN": "wrong"})
        assert refused.returncode == 1
        assert "401" in refused.stderr

        wait_until(lambda: any(r.get("status") == 500 for r in vigil_stub.log_lines()), 10, "shipped error logs")
    finally:
        process.terminate()
        process.wait(timeout=10)
        stdout.close()
    lines = [json.loads(line) for line in (tmp_path / "toyprod.out").read_text().splitlines() if line.strip()]
    assert any("invalid literal for int()" in line["message"] for line in lines)
