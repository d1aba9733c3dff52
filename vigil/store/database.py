"""Connection, migrations and the queries every process shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from types import TracebackType
from typing import Any, Self

import asyncpg

from vigil.models import (
    AlertRecord,
    IncidentRow,
    PersistIncidentInput,
    PersistIncidentResult,
    TimelineEvent,
)
from vigil.settings import Settings

_MIGRATION_LOCK = 0x76696769  # pg_advisory_xact_lock key: one migrator at a time across processes


def database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, else the embedded server under the state dir (started when not running)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from vigil.stack.postgres import embedded_database_url

    return embedded_database_url(settings.state_dir)


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("vigil.store") / "migrations"
    files = sorted((entry.name, entry) for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), entry.read_text()) for name, entry in files]


async def migrate_database(url: str) -> list[str]:
    """Apply pending versioned SQL migrations in order; returns the versions applied now."""
    conn = await asyncpg.connect(url)
    try:
        applied: list[str] = []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in _migrations():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
        return applied
    finally:
        await conn.close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


_UPSERT_INCIDENT = """
INSERT INTO incidents (incident_id, generation, group_key, title, service, severity, category, status,
                       opened_at, updated_at, resolved_at, closed_at, alert_count, fingerprint_count)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (incident_id) DO UPDATE SET
    generation = EXCLUDED.generation, group_key = EXCLUDED.group_key, title = EXCLUDED.title,
    service = EXCLUDED.service, severity = EXCLUDED.severity, category = EXCLUDED.category,
    status = EXCLUDED.status, opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at,
    resolved_at = EXCLUDED.resolved_at, closed_at = EXCLUDED.closed_at,
    alert_count = EXCLUDED.alert_count, fingerprint_count = EXCLUDED.fingerprint_count
WHERE incidents.updated_at <= EXCLUDED.updated_at
"""

_UPSERT_ALERT = """
INSERT INTO incident_alerts (incident_id, fingerprint, generation, source, status, severity, summary, labels,
                             annotations, count, first_seen, last_seen, starts_at, ends_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (incident_id, fingerprint) DO UPDATE SET
    generation = EXCLUDED.generation, source = EXCLUDED.source, status = EXCLUDED.status,
    severity = EXCLUDED.severity, summary = EXCLUDED.summary, labels = EXCLUDED.labels,
    annotations = EXCLUDED.annotations, count = EXCLUDED.count, first_seen = EXCLUDED.first_seen,
    last_seen = EXCLUDED.last_seen, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at
WHERE incident_alerts.generation <> EXCLUDED.generation OR incident_alerts.count <= EXCLUDED.count
"""

_INSERT_EVENT = """
INSERT INTO timeline_events (incident_id, event_id, seq, at, kind, actor, message, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (incident_id, event_id) DO NOTHING
"""


class Store:
    """asyncpg pool plus the queries of the durable record. Writes are idempotent upserts."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10) -> Self:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, init=_init_connection)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def persist_incident(self, data: PersistIncidentInput) -> PersistIncidentResult:
        row = data.incident
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _UPSERT_INCIDENT,
                row.incident_id,
                data.generation,
                row.group_key,
                row.title,
                row.service,
                row.severity.value,
                row.category,
                row.status.value,
                row.opened_at,
                row.updated_at,
                row.resolved_at,
                row.closed_at,
                row.alert_count,
                row.fingerprint_count,
            )
            if data.alerts:
                await conn.executemany(
                    _UPSERT_ALERT,
                    [
                        (
                            row.incident_id,
                            a.fingerprint,
                            data.generation,
                            a.source.value,
                            a.status.value,
                            a.severity.value,
                            a.summary,
                            a.labels,
                            a.annotations,
                            a.count,
                            a.first_seen,
                            a.last_seen,
                            a.starts_at,
                            a.ends_at,
                        )
                        for a in data.alerts
                    ],
                )
            if data.events:
                await conn.executemany(
                    _INSERT_EVENT,
                    [
                        (
                            row.incident_id,
                            f"{data.generation}:{e.seq}",
                            e.seq,
                            e.at,
                            e.kind.value,
                            e.actor,
                            e.message,
                            e.data,
                        )
                        for e in data.events
                    ],
                )
        return PersistIncidentResult(alerts_written=len(data.alerts), events_written=len(data.events))

    async def get_incident(self, incident_id: str) -> IncidentRow | None:
        record = await self._pool.fetchrow("SELECT * FROM incidents WHERE incident_id = $1", incident_id)
        return None if record is None else IncidentRow.model_validate(dict(record))

    async def timeline(self, incident_id: str, *, limit: int = 500) -> list[TimelineEvent]:
        records = await self._pool.fetch(
            "SELECT seq, at, kind, actor, message, data FROM timeline_events "
            "WHERE incident_id = $1 ORDER BY at, seq LIMIT $2",
            incident_id,
            limit,
        )
        return [TimelineEvent.model_validate(dict(r)) for r in records]

    async def alerts(self, incident_id: str) -> list[AlertRecord]:
        records = await self._pool.fetch(
            "SELECT fingerprint, source, status, severity, summary, labels, annotations, count, first_seen, "
            "last_seen, starts_at, ends_at FROM incident_alerts WHERE incident_id = $1 ORDER BY first_seen",
            incident_id,
        )
        return [AlertRecord.model_validate(dict(r)) for r in records]

    async def count_rows(self, table: str, incident_ids: Sequence[str]) -> int:
        """Rows of one table belonging to the given incidents (used by checks and benchmarks)."""
        if table not in {"incidents", "incident_alerts", "timeline_events"}:
            raise ValueError(f"unknown table {table!r}")
        value: Any = await self._pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE incident_id = ANY($1::text[])", list(incident_ids)
        )
        return int(value)
