"""The Simulate page (ui.simulate) against a real toyprod served over HTTP on this machine: a responder starts a
fault (toyprod's chaos status shows it on), the page follows the incident opened after it (read from real
PostgreSQL), resets; viewers are refused; toyprod down or a wrong token say so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute
from nicegui.storage import Storage
from nicegui.testing import user_simulation
from prometheus_client import REGISTRY
from pydantic import SecretStr

from tests.insights_support import Seed, fresh_store, seed
from tests.support import eventually, free_port
from toyprod import chaos_api
from toyprod.app import create_app
from toyprod.chaos import Chaos
from toyprod.config import ToyConfig
from ui.console import IncidentSource, console_incident_path
from ui.context import ConsoleContext
from ui.session import SignedInUser
from ui.simulate import FAULTS, NOT_ALLOWED, simulate_page
from vigil.auth.roles import Role
from vigil.settings import Settings
from vigil.store.database import Store

RESPONDER = SignedInUser("rita", Role.RESPONDER)
TOKEN = "simulate-token"


def test_the_fault_list_is_toyprods() -> None:
    routes = {
        route.path
        for route in chaos_api.router.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or set()) and route.path != "/chaos/reset"
    }
    assert {f"/chaos/{fault.name}" for fault in FAULTS} == routes
    assert all(fault.what for fault in FAULTS)  # each described by its `vigil chaos` help


@dataclass
class Toyprod:
    port: int
    state_dir: Path
    chaos: Chaos


@asynccontextmanager
async def toyprod_served(state_dir: Path) -> AsyncIterator[Toyprod]:
    """toyprod over real HTTP on a free port, with the state dir (and its chaos token file) `state_dir`."""
    app: FastAPI = create_app(ToyConfig(state_dir=state_dir, watchdog_interval_s=0.1), sinks=[lambda _: None])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await eventually(started, bool, timeout=20)
        yield Toyprod(port, state_dir, app.state.chaos)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def toy_state(tmp_path: Path) -> Path:
    """A state dir with the chaos token file, as `vigil up` leaves it."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "chaos-token").write_text(TOKEN + "\n")
    return state_dir


@pytest.fixture
async def toyprod(toy_state: Path) -> AsyncIterator[Toyprod]:
    async with toyprod_served(toy_state) as served:
        yield served


@pytest.fixture
async def own_store(database_url: str) -> AsyncIterator[Store]:
    async with fresh_store(database_url) as (_, opened):
        yield opened


@pytest.fixture(autouse=True)
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


def context_for(port: int, state_dir: Path, store: Store | None = None, **extra: object) -> ConsoleContext:
    settings = Settings.model_validate(
        {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "toyprod_port": port, "state_dir": state_dir, **extra}
    )
    return ConsoleContext(settings, IncidentSource(settings), store)


def simulations(fault: str) -> float:
    return REGISTRY.get_sample_value("vigil_console_simulations_total", {"fault": fault}) or 0.0


async def test_a_responder_starts_a_fault_follows_its_incident_and_resets(
    toyprod: Toyprod, own_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ui.simulate")
    context = context_for(toyprod.port, toyprod.state_dir, own_store)
    errors_before, resets_before = simulations("errors"), simulations("reset")

    async with user_simulation(root=lambda: simulate_page(context, RESPONDER)) as user:
        await user.open("/")
        await user.should_see("no active faults", retries=100)
        await user.should_see("Fail a share of requests with 500s")  # the `vigil chaos errors` help

        user.find(marker="simulate-start-errors").click()
        await user.should_see("waiting for the incident", retries=100)
        assert toyprod.chaos.active == {"errors": {"rate": 0.3}}
        await user.should_see("active faults: errors (rate=0.3)")
        assert simulations("errors") == errors_before + 1
        assert "rita (responder) started toyprod fault errors" in caplog.text

        # The incident the fault opens (here written as the incident worker writes it).
        await seed(own_store, Seed("incident-checkout-errors", datetime.now(UTC), service="toyprod"))
        await user.should_see("The incident it opened:", retries=100)
        link = next(iter(user.find(marker="simulate-incident").elements))
        assert link.props["href"] == console_incident_path("incident-checkout-errors")

        user.find(marker="simulate-reset").click()
        await user.should_see("no active faults", retries=100)
        assert toyprod.chaos.active == {}
        assert simulations("reset") == resets_before + 1
        assert "rita (responder) reset toyprod's faults" in caplog.text
        await user.should_not_see(TOKEN)


async def test_the_page_gives_up_waiting_with_a_clear_message(toyprod: Toyprod, own_store: Store) -> None:
    context = context_for(toyprod.port, toyprod.state_dir, own_store)

    async with user_simulation(root=lambda: simulate_page(context, RESPONDER, wait_seconds=0.5)) as user:
        await user.open("/")
        await user.should_see("no active faults", retries=100)
        user.find(marker="simulate-start-db-down").click()
        await user.should_see("No incident opened within", retries=100)
        assert "db-down" in toyprod.chaos.active


async def test_a_viewer_is_refused(toyprod: Toyprod) -> None:
    context = context_for(toyprod.port, toyprod.state_dir)

    async with user_simulation(root=lambda: simulate_page(context, SignedInUser("vera", Role.VIEWER))) as user:
        await user.open("/")
        await user.should_see(NOT_ALLOWED)
        await user.should_not_see(marker="simulate-start-errors")
    assert toyprod.chaos.active == {}


async def test_toyprod_down_or_a_wrong_token_is_said_plainly(toyprod: Toyprod, tmp_path: Path) -> None:
    down = context_for(free_port(), tmp_path / "other-state", chaos_token=SecretStr(TOKEN))
    async with user_simulation(root=lambda: simulate_page(down, RESPONDER)) as user:
        await user.open("/")
        await user.should_see("toyprod is not running at", retries=100)

    wrong = context_for(toyprod.port, toyprod.state_dir, chaos_token=SecretStr("not-the-token"))
    async with user_simulation(root=lambda: simulate_page(wrong, RESPONDER)) as user:
        await user.open("/")
        await user.should_see("toyprod refused the chaos token", retries=100)
        user.find(marker="simulate-start-errors").click()  # disabled: nothing happens
        await user.should_not_see("waiting for the incident")
    assert toyprod.chaos.active == {}

    missing = context_for(toyprod.port, tmp_path / "no-token-here")
    async with user_simulation(root=lambda: simulate_page(missing, RESPONDER)) as user:
        await user.open("/")
        await user.should_see("No chaos token", retries=100)
