"""The console's one connection to the durable record for live lists: it opens the store (retrying while
PostgreSQL is down) and polls it once a second for incidents written since its last look, handing the changed rows
to every open list tab. One poller per console process, however many tabs: a tab costs nothing to PostgreSQL
between its own first load and its filter changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from vigil.store.database import (
    IncidentListRow,
    Store,
    database_url,
    migrate_database,
    store_unavailable,
)

if TYPE_CHECKING:  # ui.context imports ui.console, which imports this module
    from ui.context import ConsoleContext

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
STORE_RETRY_SECONDS = 2.0
STORE_TIMEOUT_SECONDS = 5.0
CHANGES_LIMIT = 1000
"""More changed rows than this in one poll: tabs re-read their whole list instead."""


@dataclass(frozen=True)
class FeedUpdate:
    """What a tab hears: changed rows; or `reload` (read the list again: the store just came (back) up, or too
    much changed at once); or `error`, PostgreSQL's outage in words (None once it answers again)."""

    rows: list[IncidentListRow] = field(default_factory=list)
    reload: bool = False
    error: str | None = None


Listener = Callable[[FeedUpdate], Awaitable[None]]


def outage_reason(error: BaseException) -> str:
    """Why the store did not answer, without the database URL (which may hold a password)."""
    if isinstance(error, TimeoutError):
        return f"no answer within {STORE_TIMEOUT_SECONDS:g} s"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _is_outage(error: BaseException) -> bool:
    # Startup also meets an embedded server that will not start (RuntimeError) and a database that refuses the
    # credentials or is still recovering (PostgresError): all worth retrying, none worth crashing the console.
    return store_unavailable(error) or isinstance(error, (RuntimeError, asyncpg.PostgresError))


class IncidentFeed:
    """Opens `context.store` in the background and polls it for changes while any tab listens."""

    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        self.error: str | None = "connecting to PostgreSQL"
        self._listeners: set[Listener] = set()
        self._cursor: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def start(self) -> None:
        """Start opening the store (unless one was given) and polling; call from the running event loop."""
        if self.context.store is None:
            self._tasks.append(asyncio.create_task(self._open_store(), name="console: open store"))
        self._tasks.append(asyncio.create_task(self._poll_forever(), name="console: incident feed"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _open_store(self) -> None:
        settings = self.context.settings
        while self.context.store is None:
            try:
                url = await asyncio.to_thread(database_url, settings)  # may start the embedded server
                await self._migrate(url)
                self.context.store = await Store.open(url)
            except Exception as error:
                if not _is_outage(error):
                    raise
                self.error = outage_reason(error)
                log.warning("console: PostgreSQL not available (%s); retrying in %g s", self.error, STORE_RETRY_SECONDS)
                await asyncio.sleep(STORE_RETRY_SECONDS)

    @staticmethod
    async def _migrate(url: str) -> None:
        """Apply pending migrations (the list needs 0008's change cursor), as `vigil up` does; a database user
        that may not migrate leaves it to `vigil migrate` and the console goes on."""
        try:
            async with asyncio.timeout(STORE_TIMEOUT_SECONDS * 6):
                await migrate_database(url)
        except asyncpg.PostgresError as error:
            if store_unavailable(error):
                raise
            log.warning("console: migrations not applied (%s: %s); run `vigil migrate`", type(error).__name__, error)

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # a bug in one poll must not end live updates for every tab until a restart
                log.exception("console: the incident feed's poll failed")
            await asyncio.sleep(POLL_SECONDS)

    async def poll_once(self) -> None:
        """One look at the store; tells the listeners what changed (or that it is down, or up again)."""
        store = self.context.store
        if store is None:
            return
        was_down = self.error is not None
        try:
            async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
                changes = await store.incident_changes(self._cursor, limit=CHANGES_LIMIT)
        except Exception as error:
            if not store_unavailable(error) and not isinstance(error, asyncpg.PostgresError):
                raise
            reason = outage_reason(error)
            if reason != self.error:
                log.warning("console: PostgreSQL not available: %s", reason)
                self.error = reason
                await self._tell(FeedUpdate(error=reason))
            return
        self._cursor = changes.cursor
        self.error = None
        if was_down or not changes.complete:
            await self._tell(FeedUpdate(reload=True))
        elif changes.rows:
            await self._tell(FeedUpdate(rows=changes.rows))

    async def _tell(self, update: FeedUpdate) -> None:
        for listener in list(self._listeners):
            try:
                await listener(update)
            except Exception:  # one broken tab must not stop the others' updates
                log.exception("console: a list tab failed to take an update")
