"""`vigil console`: the NiceGUI incident console.

Routes (all but `/login` and `/metrics` need a signed-in user; ui.login):
`/` the live incident list, read from PostgreSQL (the durable record) and kept current by one shared poller
(ui.incident_feed) that pushes changed rows to every open tab; `/incidents/{id}` one incident (ui.incident);
`/insights`, `/knowledge`, `/simulate` (ui.insights, ui.knowledge, ui.simulate); `/login`, `/login/oidc`,
`/login/oidc/callback`; `/metrics` for Prometheus.

The data shaping (stored row -> table row, links, filters, messages) lives in pure functions so tests need no
browser; the page itself only wires them to NiceGUI elements. NiceGUI is imported inside `serve` and the page
builders, not at module level: it reads its storage location from the environment when it is first imported, and
`serve` must set that first so nothing is written into the working directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from vigil.analysis.models import Category
from vigil.incident_list import incident_summary, locate
from vigil.models import IncidentState, IncidentStatus, IncidentSummary, Severity
from vigil.settings import Settings
from vigil.store.database import IncidentListQuery, IncidentListRow, Store
from vigil.temporal import INCIDENT_ATTR, connect

if TYPE_CHECKING:
    from fastapi import Request
    from starlette.responses import Response

    from ui.context import ConsoleContext
    from ui.incident_feed import FeedUpdate, IncidentFeed
    from ui.login import SignInThrottle
    from ui.session import SignedInUser
    from vigil.auth.directory import UserDirectory

log = logging.getLogger(__name__)

E = TypeVar("E", bound=StrEnum)

PAGE_TITLE = "Vigil — incidents"
REFRESH_SECONDS = 5.0
"""How often the incident page asks Temporal again (ui.incident)."""
LIST_LIMIT = 500
"""Rows one list tab holds: the newest changes that pass its filters."""
AGE_REFRESH_SECONDS = 60.0
TEMPORAL_TIMEOUT_SECONDS = 5.0
"""Longest wait for Temporal to connect, and again to describe: the client's own retries would take much longer."""
QUERY_TIMEOUT_SECONDS = 5.0
"""Longest wait for a worker to answer the `state` query of one incident."""
MISSING = "—"
TABLE_TESTID = "incident-table"
ROW_TESTID = "incident-row"

TEMPORAL_ERRORS: tuple[type[Exception], ...] = (RuntimeError, RPCError, TimeoutError)
"""What talking to Temporal raises when it is down or refuses the query: a failed `Client.connect` is a
RuntimeError, a failed call an RPCError, and our own deadlines a TimeoutError."""

COLUMNS: list[dict[str, Any]] = [
    {"name": "incident_id", "label": "Incident", "field": "incident_id", "align": "left"},
    {"name": "title", "label": "Title", "field": "title", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left", "sortable": True},
    {"name": "severity", "label": "Severity", "field": "severity", "align": "left", "sortable": True},
    {"name": "service", "label": "Service", "field": "service", "align": "left", "sortable": True},
    {"name": "category", "label": "Category", "field": "category", "align": "left", "sortable": True},
    {"name": "confidence", "label": "Confidence", "field": "confidence", "align": "right"},
    {"name": "age", "label": "Age", "field": "age", "align": "right"},
    {"name": "alerts", "label": "Alerts", "field": "alerts", "align": "right", "sortable": True},
    {"name": "repeats", "label": "Repeats", "field": "repeats", "align": "right", "sortable": True},
    {"name": "acknowledged_by", "label": "Acknowledged by", "field": "acknowledged_by", "align": "left"},
    {"name": "updated", "label": "Updated (UTC)", "field": "updated", "align": "left", "sortable": True},
]

# One template for every row: the row carries a stable marker and its incident id (for browser tests and
# measurements); the id cell opens the incident page, with the workflow in the Temporal Web UI and the API beside
# it. Every other cell is text (Vue interpolation escapes it): titles come from alerts and are untrusted.
ROW_TEMPLATE = f"""
<q-tr :props="props" data-testid="{ROW_TESTID}" :data-incident-id="props.row.incident_id">
  <q-td v-for="col in props.cols" :key="col.name" :props="props">
    <template v-if="col.name === 'incident_id'">
      <a :href="props.row.console_url" class="text-primary"
         title="Diagnosis, evidence and timeline">{{{{ props.row.incident_id }}}}</a>
      <a v-if="props.row.temporal_url" :href="props.row.temporal_url" target="_blank" rel="noopener"
         class="q-ml-sm text-caption text-grey-7" title="Workflow in the Temporal Web UI">Temporal</a>
      <a :href="props.row.api_url" target="_blank" rel="noopener" class="q-ml-sm text-caption text-grey-7"
         title="Live state and timeline from the Vigil API">API</a>
    </template>
    <template v-else-if="col.name === 'alerts'">
      {{{{ col.value }}}}<span class="text-caption text-grey-7"> ({{{{ props.row.distinct }}}} distinct)</span>
    </template>
    <template v-else>{{{{ col.value }}}}</template>
  </q-td>
</q-tr>
"""


class TimeWindow(StrEnum):
    """The list's time filter: incidents changed within the last hour, day, week, or any time."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"
    ALL = "all"

    @property
    def span(self) -> timedelta | None:
        return {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}.get(self.value)


TIME_WINDOW_LABELS = {
    TimeWindow.HOUR: "last hour",
    TimeWindow.DAY: "last 24 h",
    TimeWindow.WEEK: "last 7 days",
    TimeWindow.ALL: "any time",
}


# --- pure functions: links, rows, filters, messages --------------------------------------------------------


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
    """Workflow list of the Temporal Web UI (the configured one, else the embedded dev server's); None when
    Temporal is external and no Web UI is configured."""
    base = settings.temporal_ui_base_url
    if base is None:
        return None
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows"


def temporal_workflow_url(settings: Settings, summary: IncidentSummary) -> str | None:
    """The incident's own run in the Web UI (its group's workflow id names every incident of the group)."""
    base = temporal_ui_url(settings)
    if base is None:
        return None
    url = f"{base}/{quote(summary.group_id or summary.incident_id, safe='')}"
    return f"{url}/{quote(summary.run_id, safe='')}/history" if summary.run_id else url


def temporal_incident_search_url(settings: Settings, incident_id: str) -> str | None:
    """The Web UI's workflow list narrowed to the incident's runs, by its search attribute: the stored row does
    not name the workflow id or run, and a search finds them across continue-as-new."""
    return RowLinks.of(settings).temporal_search(incident_id)


def format_utc(moment: datetime | None) -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC; a naive datetime is taken to be UTC already (as Temporal's are)."""
    if moment is None:
        return MISSING
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_age(since: datetime, now: datetime) -> str:
    """How long ago, in the two largest units: `45s`, `12m`, `3h 05m`, `2d 04h`."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{days}d {hours % 24:02d}h"


def label(member: StrEnum | str) -> str:
    return (member.value if isinstance(member, StrEnum) else member).replace("_", " ")


def enum_options(enum: type[E]) -> dict[E, str]:
    """Select-box options: the members themselves as values (NiceGUI hands them back as is), readable labels."""
    return {member: label(member) for member in enum}


@dataclass(frozen=True)
class RowLinks:
    """The link bases of every row, worked out once per list rather than once per row (a page has hundreds)."""

    api_incidents: str
    temporal_workflows: str | None

    @classmethod
    def of(cls, settings: Settings) -> RowLinks:
        return cls(f"{api_base_url(settings)}/api/v1/incidents/", temporal_ui_url(settings))

    def temporal_search(self, incident_id: str) -> str | None:
        if self.temporal_workflows is None:
            return None
        escaped = incident_id.replace("\\", "\\\\").replace('"', '\\"')
        search = f'{INCIDENT_ATTR.name}="{escaped}"'
        return f"{self.temporal_workflows}?query={quote(search, safe='')}"


def list_row(row: IncidentListRow, links: RowLinks, now: datetime) -> dict[str, Any]:
    """One table row. Missing values show as a dash; `temporal_url` is None when there is no Web UI to link."""
    quoted = quote(row.incident_id, safe="")
    return {
        "incident_id": row.incident_id,
        "title": row.title or MISSING,
        "status": label(row.status),
        "severity": label(row.severity),
        "service": row.service or MISSING,
        "category": label(row.category) if row.category else MISSING,
        "confidence": MISSING if row.confidence is None else f"{round(row.confidence * 100)}%",
        "age": format_age(row.opened_at, now),
        "opened_at": row.opened_at.isoformat(),
        "alerts": row.alert_count,
        "distinct": row.fingerprint_count,
        "repeats": row.repeats,
        "acknowledged_by": row.acknowledged_by or MISSING,
        "updated": format_utc(row.updated_at),
        "console_url": f"/incidents/{quoted}",
        "temporal_url": links.temporal_search(row.incident_id),
        "api_url": f"{links.api_incidents}{quoted}",
    }


@dataclass(frozen=True)
class ListFilters:
    """What one tab asked to see; the same test in SQL (`query`) and for pushed rows (`matches`)."""

    status: IncidentStatus | None = None
    severity: Severity | None = None
    service: str | None = None
    category: str | None = None
    window: TimeWindow = TimeWindow.ALL
    text: str = ""

    def since(self, now: datetime) -> datetime | None:
        span = self.window.span
        return None if span is None else now - span

    def query(self, now: datetime, limit: int = LIST_LIMIT) -> IncidentListQuery:
        return IncidentListQuery(
            status=self.status.value if self.status else None,
            severity=self.severity.value if self.severity else None,
            service=self.service or None,
            category=self.category or None,
            since=self.since(now),
            text=self.text.strip() or None,
            limit=limit,
        )

    def matches(self, row: IncidentListRow, now: datetime) -> bool:
        since = self.since(now)
        needle = self.text.strip().casefold()
        return (
            (self.status is None or row.status == self.status.value)
            and (self.severity is None or row.severity == self.severity.value)
            and (not self.service or row.service == self.service)
            and (not self.category or row.category == self.category)
            and (since is None or row.updated_at >= since)
            and (
                not needle
                or any(needle in (value or "").casefold() for value in (row.title, row.incident_id, row.service))
            )
        )


@dataclass
class LiveList:
    """The rows one tab shows, newest change first, one per incident id, at most `limit`; shaped table rows are
    kept so a pushed change re-shapes only the rows it touches."""

    settings: Settings
    filters: ListFilters
    limit: int = LIST_LIMIT
    _links: RowLinks = field(init=False)
    _rows: dict[str, IncidentListRow] = field(default_factory=dict)
    _shaped: dict[str, dict[str, Any]] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._links = RowLinks.of(self.settings)

    def load(self, rows: Iterable[IncidentListRow], now: datetime) -> None:
        self._rows, self._shaped, self._order = {}, {}, []
        for row in rows:
            if row.incident_id in self._rows:  # never two rows for one incident
                continue
            self._rows[row.incident_id] = row
            self._shaped[row.incident_id] = list_row(row, self._links, now)
            self._order.append(row.incident_id)
        del self._order[self.limit :]

    def apply(self, changed: Iterable[IncidentListRow], now: datetime) -> bool:
        """Take pushed rows: update a shown incident in place, add a new one on top, drop one that no longer
        passes the filters; an older copy of a row than the one shown changes nothing. True if anything changed."""
        touched = False
        for row in sorted(changed, key=lambda r: r.updated_at):
            known = self._rows.get(row.incident_id)
            if known is not None and row.updated_at < known.updated_at:
                continue
            if not self.filters.matches(row, now):
                if known is not None:
                    self._forget(row.incident_id)
                    touched = True
                continue
            if known is None:
                self._order.insert(0, row.incident_id)
            elif known == row:
                continue
            self._rows[row.incident_id] = row
            self._shaped[row.incident_id] = list_row(row, self._links, now)
            touched = True
        for dropped in self._order[self.limit :]:
            self._forget(dropped)
        return touched

    def _forget(self, incident_id: str) -> None:
        self._rows.pop(incident_id, None)
        self._shaped.pop(incident_id, None)
        if incident_id in self._order:
            self._order.remove(incident_id)

    def refresh_ages(self, now: datetime) -> None:
        for incident_id, row in self._rows.items():
            self._shaped[incident_id]["age"] = format_age(row.opened_at, now)

    def table_rows(self) -> list[dict[str, Any]]:
        return [self._shaped[incident_id] for incident_id in self._order]

    @property
    def ids(self) -> list[str]:
        return list(self._order)


def list_message(count: int, limit: int, at: datetime) -> str:
    shown = f"newest {count} incidents" if count >= limit else f"{count} incident{'s' if count != 1 else ''}"
    return f"{shown} · live, read {format_utc(at)} UTC"


def store_down_message(reason: str, last_read: datetime | None) -> str:
    shown = f" The table shows the list of {format_utc(last_read)} UTC." if last_read else ""
    return f"Cannot read incidents from PostgreSQL: {reason}. Retrying by itself.{shown}"


def temporal_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {TEMPORAL_TIMEOUT_SECONDS:g} s"
    return str(error) or type(error).__name__


# --- Temporal (the incident page) --------------------------------------------------------------------------


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

    async def client(self) -> Client:
        """The connected client (connecting now if need be), for pages that run workflow Updates."""
        return await self._connected()

    async def connect_at_startup(self) -> None:
        try:
            await self._connected()
        except TEMPORAL_ERRORS as error:
            log.warning("console: cannot connect to Temporal at %s: %s", self.target, temporal_reason(error))

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


# --- pages -------------------------------------------------------------------------------------------------


@dataclass
class ConsoleServices:
    """What the console process holds for all tabs: the shared context pages get, the live-list poller, the users
    file and the sign-in throttle."""

    context: ConsoleContext
    feed: IncidentFeed
    directory: UserDirectory
    throttle: SignInThrottle

    @classmethod
    def create(cls, settings: Settings, *, store: Store | None = None) -> ConsoleServices:
        from ui.context import ConsoleContext
        from ui.incident_feed import IncidentFeed
        from ui.login import SignInThrottle
        from vigil.auth.directory import UserDirectory

        context = ConsoleContext(settings=settings, source=IncidentSource(settings), store=store)
        return cls(context, IncidentFeed(context), UserDirectory.of(settings), SignInThrottle())

    async def close(self) -> None:
        await self.feed.stop()
        if self.context.store is not None:
            await self.context.store.close()


async def index_page(services: ConsoleServices, user: SignedInUser) -> None:
    """Build `/` for one tab: filters, then the list as the store has it, kept current by the shared feed."""
    import asyncpg
    from nicegui import ui

    from ui.incident_feed import outage_reason
    from vigil.store.database import store_unavailable

    settings, feed = services.context.settings, services.feed
    ui.page_title(PAGE_TITLE)
    with ui.row().classes("w-full items-center gap-2"):
        status_filter = ui.select(enum_options(IncidentStatus), label="Status", clearable=True).classes("w-40")
        severity_filter = ui.select(enum_options(Severity), label="Severity", clearable=True).classes("w-36")
        service_filter = ui.select([], label="Service", clearable=True, with_input=True).classes("w-48")
        category_filter = ui.select(
            {member.value: label(member) for member in Category}, label="Category", clearable=True
        ).classes("w-44")
        window_filter = ui.select(TIME_WINDOW_LABELS, value=TimeWindow.ALL, label="Changed").classes("w-36")
        search = (
            ui.input("Search title, id, service")
            .props("clearable debounce=300 data-testid=incident-search")
            .mark("incident-search")
            .classes("w-64")
        )
    message = ui.label("Loading incidents…").classes("text-grey-7").props("data-testid=incident-list-message")
    table = ui.table(columns=COLUMNS, rows=[], row_key="incident_id", pagination=0).classes("w-full")
    table.props(
        f'data-testid={TABLE_TESTID} no-data-label="No incidents" flat bordered virtual-scroll '
        ':rows-per-page-options="[0]" hide-bottom'
    ).style("max-height: calc(100vh - 180px)")
    table.add_slot("body", ROW_TEMPLATE)

    live = LiveList(settings, ListFilters())
    last_read: datetime | None = None
    loading = False
    needs_load = True
    held: list[IncidentListRow] = []  # rows pushed while a load runs, applied after it
    known_services: set[str] = set()

    def filters() -> ListFilters:
        return ListFilters(
            status=status_filter.value,
            severity=severity_filter.value,
            service=service_filter.value or None,
            category=category_filter.value or None,
            window=window_filter.value or TimeWindow.ALL,
            text=search.value or "",
        )

    def say(text: str, *, error: bool = False) -> None:
        message.set_text(text)
        message.classes(replace="text-negative" if error else "text-grey-7")

    def show_services(names: Iterable[str | None]) -> None:
        fresh = {name for name in names if name} - known_services
        if fresh:
            known_services.update(fresh)
            service_filter.set_options(sorted(known_services), value=service_filter.value)

    def show(now: datetime) -> None:
        nonlocal last_read
        last_read = now
        table.update_rows(live.table_rows())
        say(list_message(len(live.ids), live.limit, now))

    async def load() -> None:
        nonlocal loading, needs_load
        store = services.context.store
        if store is None:
            say(store_down_message(feed.error or "connecting to PostgreSQL", last_read), error=True)
            return
        wanted = filters()
        loading = True
        try:
            now = datetime.now(UTC)
            rows = await store.incident_list(wanted.query(now))
            names = await store.incident_services()
        except Exception as error:
            if not store_unavailable(error) and not isinstance(error, asyncpg.PostgresError):
                raise
            needs_load = True
            say(store_down_message(outage_reason(error), last_read), error=True)
            return
        finally:
            loading = False
        if filters() != wanted:
            return  # the filters changed while reading: the load that change started shows the right rows
        needs_load = False
        live.filters = wanted
        live.load(rows, now)
        if held:
            live.apply(held, now)
            held.clear()
        show_services(names)
        show(now)

    async def on_update(update: FeedUpdate) -> None:
        if table.is_deleted:  # the tab went to another page
            feed.unsubscribe(on_update)
            return
        if update.error is not None:
            say(store_down_message(update.error, last_read), error=True)
        elif update.reload:
            await load()
        elif loading:
            held.extend(update.rows)
        else:
            now = datetime.now(UTC)
            show_services(row.service for row in update.rows)
            if live.apply(update.rows, now):
                show(now)

    async def retry() -> None:
        if needs_load and not loading:
            await load()

    def refresh_ages() -> None:
        live.refresh_ages(datetime.now(UTC))
        table.update_rows(live.table_rows())

    for element in (status_filter, severity_filter, service_filter, category_filter, window_filter, search):
        element.on_value_change(load)
    feed.subscribe(on_update)
    ui.context.client.on_delete(lambda: feed.unsubscribe(on_update))
    ui.timer(2.0, retry)
    ui.timer(AGE_REFRESH_SECONDS, refresh_ages)
    await load()


def _other_page(module: str, function: str, name: str) -> Callable[..., Awaitable[None]]:
    """A page another module builds, imported when first opened; a page this build lacks says so."""
    import importlib

    try:
        page: Callable[..., Awaitable[None]] = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as error:
        if error.name != module:
            raise  # the page exists but imports something missing: a bug to see, not a page to hide

        async def missing(context: ConsoleContext, user: SignedInUser, **_: object) -> None:
            from nicegui import ui

            ui.label(f"The {name} page is not available in this build.").classes("text-grey-7")

        return missing
    return page


def console_root(services: ConsoleServices) -> Callable[[Request], Response | None]:
    """The root of every console page but `/login` (see `install_routes`): for a signed-in user only, else a
    redirect to `/login?next=...`; the shared header, and the pages routed in the browser."""

    def root(request: Request) -> Response | None:
        from nicegui import app, ui
        from starlette.responses import RedirectResponse

        from ui.layout import header
        from ui.login import login_url, session_user

        settings = services.context.settings
        user = session_user(app.storage.user, services.directory)
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(login_url(target), status_code=303)

        header(settings, user)

        def current() -> SignedInUser | None:
            """The session checked again on every page the tab opens: a user signed out (or removed) elsewhere
            goes to the sign-in page instead. Path and query parameters reach the builders by name."""
            who = session_user(app.storage.user, services.directory)
            if who is None:
                ui.navigate.to(login_url("/"))
            return who

        async def incidents() -> None:
            if who := current():
                await index_page(services, who)

        async def incident(incident_id: str) -> None:
            from ui.incident import incident_page

            if who := current():
                await incident_page(services.context, incident_id, who)

        async def insights() -> None:
            if who := current():
                await _other_page("ui.insights", "insights_page", "Insights")(services.context, who)

        async def knowledge(doc: str | None = None) -> None:
            if who := current():
                page = _other_page("ui.knowledge", "knowledge_page", "Knowledge")
                await (page(services.context, who, doc=doc) if doc else page(services.context, who))

        async def simulate() -> None:
            from vigil.auth.roles import Role

            if not (who := current()):
                return
            if not who.may(Role.RESPONDER):
                ui.label("Simulations are for responders and admins.").classes("text-negative")
                return
            await _other_page("ui.simulate", "simulate_page", "Simulate")(services.context, who)

        with ui.column().classes("w-full q-pa-sm"):
            ui.sub_pages(
                {
                    "/": incidents,
                    "/incidents/{incident_id}": incident,
                    "/insights": insights,
                    "/knowledge": knowledge,
                    "/simulate": simulate,
                }
            ).classes("w-full")
        return None

    return root


def install_routes(services: ConsoleServices) -> None:
    """The console's routes besides the root: the `/login` page, `/metrics` (unauthenticated, as the API's), the
    OIDC redirects and the Insights CSV downloads (signed in). A real page for `/login`, not a sub page:
    navigating there always loads it afresh."""
    from nicegui import app, ui
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.responses import RedirectResponse, Response

    from ui.insights import register_routes as register_insights_csv
    from ui.login import LOGIN_PATH, install_oidc_routes, login_page, safe_next, session_user

    settings = services.context.settings

    @ui.page(LOGIN_PATH, title="Vigil — sign in")
    def login(next: str | None = None, oidc: str | None = None) -> Response | None:
        if session_user(app.storage.user, services.directory) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        login_page(settings, services.directory, services.throttle, next or "/", oidc_failed=oidc == "failed")
        return None

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    install_oidc_routes(settings)
    register_insights_csv(app, services.context, lambda: session_user(app.storage.user, services.directory))


def serve(settings: Settings) -> None:
    """Serve the console on listen_host:console_port until interrupted (SIGINT/SIGTERM)."""
    storage = os.environ.setdefault("NICEGUI_STORAGE_PATH", str((settings.state_dir / "console").resolve()))
    Path(storage).mkdir(parents=True, exist_ok=True)

    from nicegui import app, ui

    from vigil.auth.console_session import session_cookie_options, storage_secret

    services = ConsoleServices.create(settings)
    app.on_startup(services.context.source.connect_at_startup)
    app.on_startup(services.feed.start)
    app.on_shutdown(services.close)
    install_routes(services)
    # reload=False: NiceGUI's reloader would re-import the main module, which is the CLI (`python -m vigil`).
    ui.run(
        console_root(services),
        host=settings.listen_host,
        port=settings.console_port,
        title=PAGE_TITLE,
        reload=False,
        show=False,
        storage_secret=storage_secret(settings),
        session_middleware_kwargs=session_cookie_options(settings),
    )
