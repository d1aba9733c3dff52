"""`vigil console`: the NiceGUI incident console. `/` is a live list of incidents read from Temporal visibility;
`/incidents/{id}` (ui.incident) shows one incident's diagnosis, evidence and timeline from the workflow's
`state` query.

The data shaping (summary -> table row, links, messages) lives in pure functions so tests need no browser; the
page itself only wires them to NiceGUI elements. NiceGUI is imported inside `serve` and the page builder, not at
module level: it reads its storage location from the environment when it is first imported, and `serve` must
set that first so nothing is written into the working directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from vigil.incident_list import incident_summary, list_incidents, locate
from vigil.models import IncidentState, IncidentStatus, IncidentSummary, Severity
from vigil.settings import Settings
from vigil.temporal import connect

log = logging.getLogger(__name__)

E = TypeVar("E", bound=StrEnum)

PAGE_TITLE = "Vigil — incidents"
REFRESH_SECONDS = 5.0
LIST_LIMIT = 200
TEMPORAL_TIMEOUT_SECONDS = 5.0
"""Longest wait for Temporal to connect, and again to list: the client's own retries would take much longer."""
QUERY_TIMEOUT_SECONDS = 5.0
"""Longest wait for a worker to answer the `state` query of one incident."""
MISSING = "—"

TEMPORAL_ERRORS: tuple[type[Exception], ...] = (RuntimeError, RPCError, TimeoutError)
"""What talking to Temporal raises when it is down or refuses the query: a failed `Client.connect` is a
RuntimeError, a failed call an RPCError, and our own deadlines a TimeoutError."""

COLUMNS: list[dict[str, Any]] = [
    {"name": "incident_id", "label": "Incident", "field": "incident_id", "align": "left"},
    {"name": "title", "label": "Title", "field": "title", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left", "sortable": True},
    {"name": "severity", "label": "Severity", "field": "severity", "align": "left"},
    {"name": "service", "label": "Service", "field": "service", "align": "left", "sortable": True},
    {"name": "started", "label": "Started (UTC)", "field": "started", "align": "left", "sortable": True},
]

# The id opens the incident page; beside it the workflow in the Temporal Web UI when there is one we know of,
# and the API detail always.
ID_CELL_TEMPLATE = """
<q-td :props="props">
  <a :href="props.row.console_url" class="text-primary"
     title="Diagnosis, evidence and timeline">{{ props.row.incident_id }}</a>
  <a v-if="props.row.temporal_url" :href="props.row.temporal_url" target="_blank"
     class="q-ml-sm text-caption text-grey-7" title="Workflow in the Temporal Web UI">Temporal</a>
  <a :href="props.row.api_url" target="_blank" class="q-ml-sm text-caption text-grey-7"
     title="Live state and timeline from the Vigil API">API</a>
</q-td>
"""


# --- pure functions: links, rows, messages ---------------------------------------------------------------


def _browsable_host(host: str) -> str:
    """A host a browser can open: a wildcard bind address means this machine; IPv6 literals need brackets."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def api_base_url(settings: Settings) -> str:
    return f"http://{_browsable_host(settings.api_host)}:{settings.api_port}"


def api_docs_url(settings: Settings) -> str:
    return f"{api_base_url(settings)}/docs"


def api_incident_url(settings: Settings, incident_id: str) -> str:
    return f"{api_base_url(settings)}/api/v1/incidents/{quote(incident_id, safe='')}"


def console_incident_path(incident_id: str) -> str:
    return f"/incidents/{quote(incident_id, safe='')}"


def temporal_ui_url(settings: Settings) -> str | None:
    """Workflow list of the embedded dev server's Web UI; None for an external Temporal, whose UI we don't know."""
    if not settings.temporal_is_embedded:
        return None
    namespace = quote(settings.temporal_namespace, safe="")
    return f"http://127.0.0.1:{settings.temporal_ui_port}/namespaces/{namespace}/workflows"


def temporal_workflow_url(settings: Settings, summary: IncidentSummary) -> str | None:
    """The incident's own run in the Web UI (its group's workflow id names every incident of the group)."""
    base = temporal_ui_url(settings)
    if base is None:
        return None
    url = f"{base}/{quote(summary.group_id or summary.incident_id, safe='')}"
    return f"{url}/{quote(summary.run_id, safe='')}/history" if summary.run_id else url


def format_utc(moment: datetime | None) -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC; a naive datetime is taken to be UTC already (as Temporal's are)."""
    if moment is None:
        return MISSING
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def label(member: StrEnum) -> str:
    return member.value.replace("_", " ")


def incident_row(summary: IncidentSummary, settings: Settings) -> dict[str, str | None]:
    """One table row. Missing values show as a dash; `temporal_url` is None when there is no Web UI to link."""
    return {
        "incident_id": summary.incident_id,
        "title": summary.title or MISSING,
        "status": label(summary.status) if summary.status else MISSING,
        "severity": label(summary.severity) if summary.severity else MISSING,
        "service": summary.service or MISSING,
        "started": format_utc(summary.started_at),
        "console_url": console_incident_path(summary.incident_id),
        "temporal_url": temporal_workflow_url(settings, summary),
        "api_url": api_incident_url(settings, summary.incident_id),
    }


def enum_options(enum: type[E]) -> dict[E, str]:
    """Select-box options: the members themselves as values (NiceGUI hands them back as is), readable labels."""
    return {member: label(member) for member in enum}


def listed_message(count: int, at: datetime) -> str:
    shown = f"newest {count} incidents" if count >= LIST_LIMIT else f"{count} incident{'s' if count != 1 else ''}"
    return f"{shown} · updated {format_utc(at)} UTC · refreshes every {REFRESH_SECONDS:g} s"


def temporal_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {TEMPORAL_TIMEOUT_SECONDS:g} s"
    return str(error) or type(error).__name__


def unavailable_message(target: str, error: BaseException, last_listed: datetime | None) -> str:
    reason = temporal_reason(error)
    shown = f" The table shows the list of {format_utc(last_listed)} UTC." if last_listed else ""
    return f"Cannot list incidents from Temporal at {target}: {reason}. Retrying every {REFRESH_SECONDS:g} s.{shown}"


# --- Temporal ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentView:
    """One incident as Temporal tells it: `summary` from the workflow's description (no worker needed; None when
    Temporal has no such incident), `state` from its `state` query (None when no worker answered, and why)."""

    summary: IncidentSummary | None
    state: IncidentState | None = None
    query_error: str | None = None


class IncidentSource:
    """The console's one Temporal client, shared by every browser tab.

    It connects at startup; while Temporal is down, each refresh tries again, so the console recovers by itself
    once Temporal is back. A client that did connect re-establishes its channel on its own, so it is kept.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    @property
    def target(self) -> str:
        return self._settings.temporal_target

    async def _connected(self) -> Client:
        async with self._lock:  # one connection attempt at a time, however many tabs refresh
            if self._client is None:
                async with asyncio.timeout(TEMPORAL_TIMEOUT_SECONDS):
                    self._client = await connect(self._settings)
            return self._client

    async def connect_at_startup(self) -> None:
        try:
            await self._connected()
        except TEMPORAL_ERRORS as error:
            log.warning("%s", unavailable_message(self.target, error, None))

    async def incidents(self, *, status: IncidentStatus | None, severity: Severity | None) -> list[IncidentSummary]:
        client = await self._connected()
        async with asyncio.timeout(TEMPORAL_TIMEOUT_SECONDS):
            return await list_incidents(client, status=status, severity=severity, limit=LIST_LIMIT)

    async def incident(self, incident_id: str) -> IncidentView:
        client = await self._connected()
        try:
            async with asyncio.timeout(TEMPORAL_TIMEOUT_SECONDS):
                location = await locate(client, incident_id)
                if location is None:
                    return IncidentView(summary=None)
                handle = client.get_workflow_handle(location.workflow_id, run_id=location.run_id)
                description = await handle.describe()
                memo = await description.memo()
        except ValueError:  # not an incident id at all
            return IncidentView(summary=None)
        except RPCError as error:
            if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return IncidentView(summary=None)
            raise
        if description.workflow_type != "IncidentWorkflow":
            return IncidentView(summary=None)
        summary = incident_summary(description, memo)
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_SECONDS + 1):
                state = await handle.query(
                    "state", result_type=IncidentState, rpc_timeout=timedelta(seconds=QUERY_TIMEOUT_SECONDS)
                )
        except TimeoutError:
            return IncidentView(summary, query_error=f"no answer within {QUERY_TIMEOUT_SECONDS:g} s")
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
            return IncidentView(summary, query_error=str(error) or type(error).__name__)
        return IncidentView(summary, state)


# --- page --------------------------------------------------------------------------------------------------


def index_page(settings: Settings, source: IncidentSource) -> None:
    """Build `/` for one browser tab. Its timer only runs while the tab is connected, so closed tabs cost nothing."""
    from nicegui import ui

    ui.page_title(PAGE_TITLE)
    with ui.row().classes("w-full items-baseline"):
        ui.label(PAGE_TITLE).classes("text-h5")
        ui.space()
        ui.link("API docs", api_docs_url(settings), new_tab=True)
        web_ui = temporal_ui_url(settings)
        if web_ui is not None:
            ui.link("Temporal Web UI", web_ui, new_tab=True)
        else:
            ui.label(f"Temporal: {settings.temporal_target}").classes("text-grey-7")
    with ui.row().classes("w-full items-center"):
        status_filter = ui.select(enum_options(IncidentStatus), label="Status", clearable=True).classes("w-48")
        severity_filter = ui.select(enum_options(Severity), label="Severity", clearable=True).classes("w-48")
        message = ui.label("Loading incidents…").classes("text-grey-7")
    table = ui.table(columns=COLUMNS, rows=[], row_key="incident_id").classes("w-full")
    table.props('no-data-label="Waiting for the first list from Temporal" flat bordered')
    table.add_slot("body-cell-incident_id", ID_CELL_TEMPLATE)
    last_listed: datetime | None = None

    async def refresh() -> None:
        nonlocal last_listed
        status, severity = status_filter.value, severity_filter.value
        try:
            summaries = await source.incidents(status=status, severity=severity)
        except TEMPORAL_ERRORS as error:
            message.set_text(unavailable_message(source.target, error, last_listed))
            message.classes(replace="text-negative")
            return
        if (status_filter.value, severity_filter.value) != (status, severity):
            return  # the filters changed while listing: the refresh that change started shows the right rows
        last_listed = datetime.now(UTC)
        table.rows = [incident_row(summary, settings) for summary in summaries]
        table.props["no-data-label"] = "No incidents"
        message.set_text(listed_message(len(summaries), last_listed))
        message.classes(replace="text-grey-7")

    status_filter.on_value_change(refresh)
    severity_filter.on_value_change(refresh)
    ui.timer(REFRESH_SECONDS, refresh)


def console_root(settings: Settings, source: IncidentSource) -> None:
    """Every page of the console, routed in the browser: the list and each incident."""
    from nicegui import ui

    from ui.incident import CSS, incident_page

    ui.add_css(CSS)

    async def incident(incident_id: str) -> None:
        await incident_page(settings, source, incident_id)

    ui.sub_pages({"/": lambda: index_page(settings, source), "/incidents/{incident_id}": incident})


def serve(settings: Settings) -> None:
    """Serve the console on listen_host:console_port until interrupted (SIGINT/SIGTERM)."""
    storage = os.environ.setdefault("NICEGUI_STORAGE_PATH", str((settings.state_dir / "console").resolve()))
    Path(storage).mkdir(parents=True, exist_ok=True)

    from nicegui import app, ui

    source = IncidentSource(settings)
    app.on_startup(source.connect_at_startup)
    # reload=False: NiceGUI's reloader would re-import the main module, which is the CLI (`python -m vigil`).
    ui.run(
        lambda: console_root(settings, source),
        host=settings.listen_host,
        port=settings.console_port,
        title=PAGE_TITLE,
        reload=False,
        show=False,
    )
