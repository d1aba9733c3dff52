"""toyprod's admin API: for each fault, inject it through `/chaos`, see it in the metrics scraped from
`/metrics`, apply the operator's fix through `/admin`, see the metric recover; the wrong fix leaves the fault
in place (a remediation loop relies on its verification failing then); fixes need the token and are
idempotent. The app runs for real, in-process over ASGI, as in tests/test_toyprod.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import eventually, free_port
from tests.test_toyprod import CART, TOKEN, Toy, VigilStub, base_config, running
from toyprod import COMMIT, VERSION
from toyprod.config import MIB

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = 86_400


@pytest.fixture
def stub() -> Iterator[VigilStub]:
    vigil = VigilStub(free_port())
    vigil.start()
    try:
        yield vigil
    finally:
        vigil.stop()


@pytest.fixture
async def toy(tmp_path: Path, stub: VigilStub) -> AsyncIterator[Toy]:
    async with running(base_config(tmp_path, vigil_url=stub.url, vigil_token="vigil-secret")) as started:
        yield started


async def scrape(toy: Toy, name: str, **labels: str) -> float | None:
    """One sample as Prometheus would read it from toyprod's /metrics."""
    text = (await toy.client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def metric(toy: Toy, name: str, **labels: str) -> float:
    value = await scrape(toy, name, **labels)
    assert value is not None, f"{name}{labels} not exposed"
    return value


async def fix(toy: Toy, name: str, body: dict[str, Any] | None = None, *, changed: bool = True) -> dict[str, Any]:
    response = await toy.client.post(f"/admin/{name}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["changed"] is changed, result
    return result


async def faults(toy: Toy) -> dict[str, Any]:
    active: dict[str, Any] = (await toy.client.get("/chaos", headers=AUTH)).json()["faults"]
    return active


async def statuses(toy: Toy, method: str, path: str, count: int = 5) -> set[int]:
    body = CART if method == "POST" else None
    answers = await asyncio.gather(*(toy.client.request(method, path, json=body) for _ in range(count)))
    return {answer.status_code for answer in answers}


async def test_admin_needs_the_token(toy: Toy) -> None:
    assert (await toy.client.get("/admin")).status_code == 401
    assert (await toy.client.post("/admin/restart")).status_code == 401
    wrong = await toy.client.post("/admin/db-pool", json={"size": 50}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert await metric(toy, "toyprod_db_pool_size") == 10
    state = (await toy.client.get("/admin", headers=AUTH)).json()
    assert state["version"] == VERSION
    assert state["db_pool_size"] == 10
    assert state["payments_provider"] == "primary"
    assert state["restarts"] == 0
    assert state["rollback_to"] is None
    assert (await toy.client.post("/admin/db-pool", json={"size": 201}, headers=AUTH)).status_code == 422


async def test_rollback_runs_the_previous_version_and_announces_it(toy: Toy, stub: VigilStub) -> None:
    bad = await toy.chaos("bad-deploy")
    assert await metric(toy, "toyprod_build_info", version="2.0.1-bad", commit=bad["commit"]) == 1
    assert await statuses(toy, "POST", "/checkout") == {500}
    assert (await toy.client.get("/admin", headers=AUTH)).json()["rollback_to"] == VERSION

    assert "no restart needed" in (await fix(toy, "restart", changed=False))["detail"]
    assert await statuses(toy, "POST", "/checkout") == {500}

    result = await fix(toy, "rollback")
    assert result["state"]["version"] == VERSION
    assert await metric(toy, "toyprod_build_info", version=VERSION, commit=COMMIT) == 1
    assert await scrape(toy, "toyprod_build_info", version="2.0.1-bad", commit=bad["commit"]) is None
    errors_after_rollback = await metric(toy, "toyprod_errors_total", kind="exception")
    assert await statuses(toy, "POST", "/checkout") == {200}
    assert await metric(toy, "toyprod_errors_total", kind="exception") == errors_after_rollback
    events = stub.deploys()
    assert [(event.version, event.author) for event in events] == [("2.0.1-bad", "ci-bot"), (VERSION, "toyprod-admin")]
    assert events[1].description == f"rollback of 2.0.1-bad to {VERSION}"
    assert "bad-deploy" not in await faults(toy)
    record = await toy.log_containing("admin rollback: rolled back from 2.0.1-bad", "INFO")
    assert (record["fix"], record["changed"]) == ("rollback", True)

    again = await fix(toy, "rollback", changed=False)
    assert "nothing to roll back to" in again["detail"]
    await toy.chaos("reset")
    assert len(stub.deploys()) == 2  # neither the second rollback nor the reset deployed anything
    assert await metric(toy, "toyprod_build_info", version=VERSION, commit=COMMIT) == 1


async def test_restart_frees_leaked_memory(toy: Toy) -> None:
    async def rss() -> float:
        return await metric(toy, "process_resident_memory_bytes")

    before = await rss()
    await toy.chaos("memory-leak", {"mb_per_s": 256})
    await eventually(rss, lambda value: value - before >= 150 * MIB, timeout=10)
    await fix(toy, "disk-free", changed=False)
    await fix(toy, "cert-renew", changed=False)
    assert await rss() - before >= 150 * MIB

    result = await fix(toy, "restart")
    assert "MiB of leaked memory" in result["detail"]
    assert await rss() - before < 50 * MIB
    assert await metric(toy, "toyprod_restarts_total") == 1
    assert "memory-leak" not in await faults(toy)

    again = await fix(toy, "restart", changed=False)
    assert again["state"]["restarts"] == 1
    assert await metric(toy, "toyprod_restarts_total") == 1


async def test_restart_stops_the_cpu_burn(toy: Toy) -> None:
    async def cpu() -> float:
        return await metric(toy, "process_cpu_seconds_total")

    await toy.chaos("cpu-burn", {"fraction": 1.0})
    burning = await cpu()
    await eventually(cpu, lambda now: now - burning >= 0.5, timeout=10)
    await fix(toy, "restart")
    assert not any(thread.name == "toyprod-cpu-burn" for thread in threading.enumerate())
    after = await cpu()
    await asyncio.sleep(1.0)
    assert await cpu() - after < 0.5
    assert "cpu-burn" not in await faults(toy)


async def test_a_bigger_pool_outgrows_the_stuck_connections(toy: Toy) -> None:
    await toy.chaos("db-pool-exhaustion")

    async def in_use() -> float:
        return await metric(toy, "toyprod_db_pool_in_use")

    await eventually(in_use, lambda value: value == 10)
    assert await statuses(toy, "GET", "/products", 2) == {503}

    await fix(toy, "payments-failover")
    assert await statuses(toy, "GET", "/products", 2) == {503}
    await fix(toy, "payments-failover", {"provider": "primary"})

    shrink = await toy.client.post("/admin/db-pool", json={"size": 5}, headers=AUTH)
    assert shrink.status_code == 409
    await fix(toy, "db-pool", {"size": 10}, changed=False)
    assert await statuses(toy, "GET", "/products", 2) == {503}

    result = await fix(toy, "db-pool", {"size": 20})
    assert "10 held by stuck transactions, 10 free" in result["detail"]
    assert result["state"]["db_pool_size"] == 20
    assert await metric(toy, "toyprod_db_pool_size") == 20
    assert await metric(toy, "toyprod_db_pool_in_use") == 10
    assert await statuses(toy, "GET", "/products") == {200}
    await fix(toy, "db-pool", {"size": 20}, changed=False)
    assert "db-pool-exhaustion" in await faults(toy)  # the stuck transactions still hold their connections


async def test_restart_releases_the_stuck_connections(toy: Toy) -> None:
    await toy.chaos("db-pool-exhaustion")

    async def in_use() -> float:
        return await metric(toy, "toyprod_db_pool_in_use")

    await eventually(in_use, lambda value: value == 10)
    result = await fix(toy, "restart")
    assert "released 10 DB connections" in result["detail"]
    assert await metric(toy, "toyprod_db_pool_in_use") == 0
    assert await statuses(toy, "GET", "/products") == {200}


async def test_failover_routes_around_the_failing_provider(toy: Toy) -> None:
    await toy.chaos("payments-failing")
    assert await statuses(toy, "POST", "/checkout", 2) == {502}
    assert await metric(toy, "toyprod_dependency_up", dependency="payments") == 0

    await fix(toy, "restart", changed=False)
    await fix(toy, "rollback", changed=False)
    assert await statuses(toy, "POST", "/checkout", 2) == {502}

    result = await fix(toy, "payments-failover")
    assert result["state"]["payments_provider"] == "secondary"
    assert await statuses(toy, "POST", "/checkout") == {200}
    assert await metric(toy, "toyprod_dependency_up", dependency="payments") == 1
    assert await metric(toy, "toyprod_payments_provider", provider="secondary") == 1
    assert await scrape(toy, "toyprod_payments_provider", provider="primary") is None
    assert "already go to the secondary" in (await fix(toy, "payments-failover", changed=False))["detail"]
    assert "payments-failing" in await faults(toy)

    await fix(toy, "payments-failover", {"provider": "primary"})
    assert await statuses(toy, "POST", "/checkout", 2) == {502}  # the primary is still down
    assert await metric(toy, "toyprod_dependency_up", dependency="payments") == 0


async def test_failover_escapes_the_rate_limit(toy: Toy) -> None:
    await toy.chaos("payments-ratelimit")
    await statuses(toy, "POST", "/checkout", 10)
    assert await metric(toy, "toyprod_errors_total", kind="ratelimit") >= 1
    await fix(toy, "payments-failover")
    limited = await metric(toy, "toyprod_errors_total", kind="ratelimit")
    assert await statuses(toy, "POST", "/checkout", 10) == {200}
    assert await metric(toy, "toyprod_errors_total", kind="ratelimit") == limited


async def test_disk_free_deletes_the_fill(toy: Toy, tmp_path: Path) -> None:
    await toy.chaos("disk-fill", {"mb_per_s": 64})

    async def ratio() -> float:
        return await metric(toy, "toyprod_disk_usage_ratio")

    await eventually(ratio, lambda value: value == 1.0)
    assert await statuses(toy, "POST", "/orders", 2) == {500}

    await fix(toy, "restart", changed=False)
    await fix(toy, "db-pool", {"size": 50})
    assert await ratio() == 1.0
    assert await statuses(toy, "POST", "/orders", 2) == {500}

    result = await fix(toy, "disk-free")
    assert "MiB of cache files" in result["detail"]
    assert await ratio() < 0.01
    assert not (tmp_path / "toyprod-data" / "cache").exists()
    assert await statuses(toy, "POST", "/orders") == {201}
    assert "nothing to free" in (await fix(toy, "disk-free", changed=False))["detail"]
    assert "disk-fill" not in await faults(toy)


async def test_cert_renew_moves_the_expiry_far_out(toy: Toy) -> None:
    await toy.chaos("cert-expiry", {"days": -1})
    assert await metric(toy, "toyprod_certificate_expiry_timestamp_seconds") < time.time()
    assert await statuses(toy, "GET", "/products", 2) == {525}

    await fix(toy, "rollback", changed=False)
    await fix(toy, "restart", changed=False)
    assert await statuses(toy, "GET", "/products", 2) == {525}

    result = await fix(toy, "cert-renew")
    expiry = await metric(toy, "toyprod_certificate_expiry_timestamp_seconds")
    assert expiry > time.time() + 89 * DAY
    assert result["state"]["cert_expires_at"].startswith(time.strftime("%Y", time.gmtime(expiry)))
    assert await statuses(toy, "GET", "/products") == {200}
    assert "not due" in (await fix(toy, "cert-renew", changed=False))["detail"]
    assert await metric(toy, "toyprod_certificate_expiry_timestamp_seconds") == expiry
    assert "cert-expiry" not in await faults(toy)


async def test_restart_does_not_fix_what_lives_outside_the_process(toy: Toy) -> None:
    await toy.chaos("db-down")
    await toy.chaos("payments-failing")
    await toy.chaos("cpu-burn", {"fraction": 0.1})  # something for the restart to end, so it really runs

    async def down() -> tuple[float, float]:
        return (
            await metric(toy, "toyprod_dependency_up", dependency="database"),
            await metric(toy, "toyprod_dependency_up", dependency="payments"),
        )

    await eventually(down, lambda value: value == (0, 0))
    await fix(toy, "restart")
    await fix(toy, "db-pool", {"size": 50})
    await asyncio.sleep(0.3)  # a few watchdog probes
    assert await down() == (0, 0)
    assert await statuses(toy, "POST", "/orders", 2) == {503}
    assert {"db-down", "payments-failing"} <= set(await faults(toy))
