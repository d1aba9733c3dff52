"""`/simulate`: start one of toyprod's faults from the console and follow the incident it opens — for demos and
for training new on-call engineers. Responders and admins only.

It talks to toyprod's chaos API as `vigil chaos` does (same URL, same token: `VIGIL_CHAOS_TOKEN`, else the
`chaos-token` file `vigil up` writes into the state dir). The fault list is toyprod's (`FAULTS`, checked against
its routes by the tests), with demo parameters for the two faults that need one. Every start and reset is logged
with who did it and counted in `vigil_console_simulations_total{fault}` (a reset counts as fault="reset").

After a start the page waits for an incident opened after it (read from the store, as the list does) and links
it; a fault takes a minute or more to become an alert (Prometheus scrapes and rule `for:` durations), so it gives
up after `WAIT_SECONDS` with a message saying what to check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import Counter

from toyprod.cli import chaos_app
from toyprod.config import resolve_chaos_token
from ui.console import console_incident_path
from ui.marks import tagged
from ui.session import SignedInUser
from vigil.settings import Settings
from vigil.store.database import store_unavailable

if TYPE_CHECKING:
    from ui.context import ConsoleContext

log = logging.getLogger(__name__)

PAGE_TITLE = "Vigil — simulate"
WAIT_SECONDS = 300.0
POLL_SECONDS = 2.0
HTTP_TIMEOUT_SECONDS = 15.0
NOT_ALLOWED = "Simulations are for responders and admins: you are signed in as a viewer."

SIMULATIONS = Counter(
    "vigil_console_simulations_total",
    "toyprod faults started from the console's Simulate page, by fault ('reset' for a reset).",
    ["fault"],
)


@dataclass(frozen=True)
class Fault:
    name: str
    body: dict[str, Any] | None = None
    """What is posted: demo parameters where toyprod needs them, else its defaults."""
    shown: str = ""
    """The parameters as shown, when there are any."""

    @property
    def what(self) -> str:
        """What it does: the help text of its `vigil chaos` command, so both say the same."""
        return _CHAOS_HELP.get(self.name, "")


_CHAOS_HELP = {
    command.name: (command.callback.__doc__ or "").strip()
    for command in chaos_app.registered_commands
    if command.name and command.callback
}
FAULTS: tuple[Fault, ...] = (
    Fault("latency", {"ms": 1500}, "+1500 ms on every shop route"),
    Fault("errors", {"rate": 0.3}, "30% of requests"),
    Fault("memory-leak"),
    Fault("cpu-burn"),
    Fault("db-down"),
    Fault("db-pool-exhaustion"),
    Fault("payments-failing"),
    Fault("payments-ratelimit"),
    Fault("bad-deploy"),
    Fault("disk-fill"),
    Fault("cert-expiry"),
)


# --- toyprod's chaos API -----------------------------------------------------------------------------------


class ChaosUnavailable(Exception):
    """toyprod is not running, refuses the token, or has chaos off: the message says which."""


@dataclass(frozen=True)
class ChaosStatus:
    version: str
    active: dict[str, dict[str, Any]]


def toyprod_url(settings: Settings) -> str:
    """Where `vigil chaos` finds toyprod: this machine, `VIGIL_TOYPROD_PORT`."""
    return f"http://127.0.0.1:{settings.toyprod_port}"


def chaos_token(settings: Settings) -> str | None:
    explicit = settings.chaos_token.get_secret_value() if settings.chaos_token else None
    return resolve_chaos_token(explicit, settings.state_dir)


class ChaosClient:
    """toyprod's `/chaos` endpoints. The token goes only into the Authorization header, never into a page."""

    def __init__(self, settings: Settings) -> None:
        self.base_url = toyprod_url(settings)
        self._settings = settings

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> ChaosStatus:
        token = chaos_token(self._settings)
        if token is None:
            where = self._settings.state_dir / "chaos-token"
            raise ChaosUnavailable(f"No chaos token: set VIGIL_CHAOS_TOKEN or let `vigil up` write {where}.")
        url = f"{self.base_url}/chaos{path}"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
                response = await client.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as error:
            raise ChaosUnavailable(
                f"toyprod is not running at {self.base_url} ({type(error).__name__}): start the demo stack with "
                "`vigil up`, or toyprod alone with `vigil toyprod`."
            ) from None
        if response.status_code == 401:
            raise ChaosUnavailable("toyprod refused the chaos token: the console's and toyprod's differ.")
        if response.status_code == 503:
            raise ChaosUnavailable("toyprod has chaos off: it has no chaos token.")
        if not response.is_success:
            raise ChaosUnavailable(f"toyprod answered {response.status_code} to {method} /chaos{path}.")
        try:
            view = response.json()
            return ChaosStatus(version=str(view.get("version", "?")), active=dict(view.get("faults") or {}))
        except (ValueError, AttributeError, TypeError):
            raise ChaosUnavailable(f"toyprod's answer to {method} /chaos{path} is not its chaos status.") from None

    async def status(self) -> ChaosStatus:
        return await self._call("GET", "")

    async def start(self, fault: Fault) -> ChaosStatus:
        return await self._call("POST", f"/{fault.name}", fault.body)

    async def reset(self) -> ChaosStatus:
        return await self._call("POST", "/reset")


def active_text(status: ChaosStatus) -> str:
    if not status.active:
        return f"toyprod {status.version}: no active faults."
    listed = ", ".join(
        f"{name} ({', '.join(f'{k}={v}' for k, v in params.items() if v is not None)})" if params else name
        for name, params in sorted(status.active.items())
    )
    return f"toyprod {status.version}: active faults: {listed}."


def waiting_text(fault: str, started: datetime) -> str:
    return (
        f"{fault} started at {started.strftime('%H:%M:%S')} UTC: waiting for the incident… "
        "(Prometheus needs a minute or two to turn the symptoms into an alert)"
    )


def gave_up_text(fault: str, seconds: float) -> str:
    return (
        f"No incident opened within {seconds / 60:g} minutes of starting {fault}. Check that traffic flows to toyprod "
        "(`vigil up` sends it), that Prometheus and Alertmanager run and send alerts to Vigil, and that the workers "
        "are up (`vigil status`). The fault is still on: Reset heals it."
    )


# --- page --------------------------------------------------------------------------------------------------


async def simulate_page(context: ConsoleContext, user: SignedInUser, *, wait_seconds: float = WAIT_SECONDS) -> None:
    """Build `/simulate` for one tab (`wait_seconds`: how long to wait for the incident)."""
    from nicegui import ui

    ui.page_title(PAGE_TITLE)
    ui.label("Simulate").classes("text-h5")
    if not user.may_act:
        tagged(ui.label(NOT_ALLOWED).classes("text-negative"), "simulate-not-allowed")
        return
    client = ChaosClient(context.settings)
    ui.label(
        "Start a fault in toyprod, the demo shop, and follow the incident Vigil opens for it: for demos and for "
        "training new on-call engineers. Not for production: toyprod only."
    ).classes("text-grey-7")
    status_label = tagged(ui.label("Asking toyprod…"), "simulate-status")
    follow = tagged(ui.label(""), "simulate-follow")
    follow.set_visibility(False)
    incident_row = ui.row().classes("items-baseline")
    faults = ui.column().classes("w-full")
    buttons: list[Any] = []
    waiting: dict[str, Any] = {}

    def enable(on: bool) -> None:
        for button in buttons:
            button.set_enabled(on)

    async def refresh_status() -> bool:
        try:
            status = await client.status()
        except ChaosUnavailable as error:
            status_label.set_text(str(error))
            status_label.classes(replace="text-negative")
            enable(False)
            return False
        status_label.set_text(active_text(status))
        status_label.classes(replace="")
        enable(True)
        return True

    async def start(fault: Fault) -> None:
        enable(False)
        started = datetime.now(UTC)
        try:
            status = await client.start(fault)
        except ChaosUnavailable as error:
            log.warning("simulation: %s could not start %s: %s", user.name, fault.name, error)
            status_label.set_text(str(error))
            status_label.classes(replace="text-negative")
            enable(True)
            return
        log.info("simulation: %s (%s) started toyprod fault %s", user.name, user.role.value, fault.name)
        SIMULATIONS.labels(fault=fault.name).inc()
        status_label.set_text(active_text(status))
        status_label.classes(replace="")
        enable(True)
        incident_row.clear()
        follow.set_text(waiting_text(fault.name, started))
        follow.classes(replace="text-grey-7")
        follow.set_visibility(True)
        waiting.update(fault=fault.name, since=started, deadline=time.monotonic() + wait_seconds)

    async def reset() -> None:
        enable(False)
        try:
            status = await client.reset()
        except ChaosUnavailable as error:
            log.warning("simulation: %s could not reset toyprod: %s", user.name, error)
            status_label.set_text(str(error))
            status_label.classes(replace="text-negative")
            enable(True)
            return
        log.info("simulation: %s (%s) reset toyprod's faults", user.name, user.role.value)
        SIMULATIONS.labels(fault="reset").inc()
        status_label.set_text(active_text(status))
        enable(True)

    async def poll() -> None:
        if not waiting:
            return
        store = context.store
        if store is None:
            follow.set_text("Cannot follow the incident: the console has not reached PostgreSQL yet. Retrying.")
            return
        try:
            opened = await store.incidents_opened_since(waiting["since"], limit=1)
        except Exception as error:
            if not store_unavailable(error):
                raise
            follow.set_text(f"Cannot follow the incident: PostgreSQL is not reachable ({error}). Retrying.")
            return
        if opened:
            incident = opened[0]
            waiting.clear()
            follow.set_text("The incident it opened:")
            follow.classes(replace="text-positive")
            with incident_row:
                tagged(ui.link(incident.incident_id, console_incident_path(incident.incident_id)), "simulate-incident")
                ui.label(incident.title).classes("text-grey-7")
        elif time.monotonic() > waiting["deadline"]:
            follow.set_text(gave_up_text(waiting["fault"], wait_seconds))
            follow.classes(replace="text-negative")
            waiting.clear()

    with faults:
        for fault in FAULTS:
            with ui.row().classes("w-full items-center no-wrap"):
                button = tagged(ui.button("Start", on_click=lambda f=fault: start(f)), f"simulate-start-{fault.name}")
                buttons.append(button)
                ui.label(fault.name).classes("text-weight-medium w-48")
                ui.label(fault.what + (f" ({fault.shown})" if fault.shown else "")).classes("text-grey-8")
        reset_button = tagged(ui.button("Reset all faults", on_click=reset, color="positive"), "simulate-reset")
        buttons.append(reset_button)
    enable(False)
    ui.timer(POLL_SECONDS, poll)
    ui.timer(10.0, refresh_status)
    await refresh_status()
