"""Connection, migrations and the queries every process shares."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from importlib import resources
from types import TracebackType
from typing import Any, Self

import asyncpg
from pydantic import BaseModel, Field

from vigil.analysis.traces import Span
from vigil.feedback import DiagnosisFeedback, StoredFeedback
from vigil.models import (
    AlertRecord,
    DeployEvent,
    IncidentRow,
    LogRecord,
    PersistIncidentInput,
    PersistIncidentResult,
    StoredDeployEvent,
    TimelineEvent,
)
from vigil.mttx import IncidentTimings
from vigil.rca.models import RootCauseAnalysis
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
                             annotations, count, repeats, first_seen, last_seen, starts_at, ends_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (incident_id, fingerprint) DO UPDATE SET
    generation = EXCLUDED.generation, source = EXCLUDED.source, status = EXCLUDED.status,
    severity = EXCLUDED.severity, summary = EXCLUDED.summary, labels = EXCLUDED.labels,
    annotations = EXCLUDED.annotations, count = EXCLUDED.count, repeats = EXCLUDED.repeats,
    first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen, starts_at = EXCLUDED.starts_at,
    ends_at = EXCLUDED.ends_at
WHERE incident_alerts.generation <> EXCLUDED.generation
   OR (incident_alerts.count, incident_alerts.repeats, incident_alerts.last_seen)
      <= (EXCLUDED.count, EXCLUDED.repeats, EXCLUDED.last_seen)
"""

_INSERT_EVENT = """
INSERT INTO timeline_events (incident_id, event_id, seq, at, kind, actor, message, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (incident_id, event_id) DO NOTHING
"""


_LOG_COLUMNS = ("ts", "service", "level", "message", "labels", "trace_id", "request_id", "received_at")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r\x00]")
_COPY_CHUNK_ROWS = 2_000
_LABELS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_RETENTION_BATCH = 50_000


def _copy_field(value: str | None) -> str:
    """One field of COPY's text format: NULL as \\N; backslash, tab, CR and LF escaped; NUL (which PostgreSQL
    cannot store) replaced. Most fields have none of these, so look before translating."""
    if value is None:
        return "\\N"
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def _copy_labels(labels: dict[str, str]) -> str:
    text = _LABELS_JSON(labels)
    if "\\u0000" in text:  # jsonb refuses NUL; replace it in keys and values, not in the JSON text
        text = _LABELS_JSON({k.replace("\x00", "\ufffd"): v.replace("\x00", "\ufffd") for k, v in labels.items()})
    return _copy_field(text)


def _copy_rows(records: Sequence[LogRecord], received_at: datetime) -> Iterator[bytes]:
    """COPY text rows of `records`, `_COPY_CHUNK_ROWS` at a time."""
    received = received_at.isoformat()
    for offset in range(0, len(records), _COPY_CHUNK_ROWS):
        yield "".join(
            f"{r.ts.isoformat()}\t{_copy_field(r.service)}\t{_copy_field(r.level)}\t{_copy_field(r.message)}\t"
            f"{_copy_labels(r.labels)}\t{_copy_field(r.trace_id)}\t{_copy_field(r.request_id)}\t{received}\n"
            for r in records[offset : offset + _COPY_CHUNK_ROWS]
        ).encode()


_SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "start_ts",
    "end_ts",
    "error",
    "status_message",
    "attributes",
    "received_at",
)


def _copy_span_rows(spans: Sequence[Span], received_at: datetime) -> Iterator[bytes]:
    """COPY text rows of `spans`, `_COPY_CHUNK_ROWS` at a time."""
    received = received_at.isoformat()
    for offset in range(0, len(spans), _COPY_CHUNK_ROWS):
        yield "".join(
            f"{_copy_field(s.trace_id)}\t{_copy_field(s.span_id)}\t{_copy_field(s.parent_span_id)}\t"
            f"{_copy_field(s.service)}\t{_copy_field(s.name)}\t{s.kind.value}\t{s.start.isoformat()}\t"
            f"{s.end.isoformat()}\t{'t' if s.error else 'f'}\t{_copy_field(s.status_message)}\t"
            f"{_copy_labels(s.attributes)}\t{received}\n"
            for s in spans[offset : offset + _COPY_CHUNK_ROWS]
        ).encode()


_SPANS_WINDOW = """
WITH matched AS (
    SELECT trace_id, count(*) AS n FROM spans
    WHERE start_ts >= $2 AND start_ts < $3
      AND ($1::text[] IS NULL OR trace_id IN (
          SELECT trace_id FROM spans WHERE service = ANY($1::text[]) AND start_ts >= $2 AND start_ts < $3))
    GROUP BY trace_id
), picked AS (
    SELECT trace_id FROM (SELECT trace_id, sum(n) OVER (ORDER BY md5(trace_id), trace_id) AS upto FROM matched) AS r
    WHERE upto <= $4
)
SELECT trace_id, span_id, parent_span_id, service, name, kind, start_ts AS start, end_ts AS "end", error,
       status_message, attributes
FROM spans WHERE trace_id IN (SELECT trace_id FROM picked) AND start_ts >= $2 AND start_ts < $3
ORDER BY start_ts, id
"""
"""Whole traces (their spans inside the window) that touch the services, or all traces with NULL. Over the limit,
a uniform sample of whole traces (by the hash of their id), so the window's start and end are both kept."""


_INSERT_DEPLOY = """
INSERT INTO deploy_events (service, version, commit, author, description, ts, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (service, version, COALESCE(commit, ''), ts) DO NOTHING
RETURNING id, service, version, commit, author, description, ts, received_at
"""

_SELECT_DEPLOY = """
SELECT id, service, version, commit, author, description, ts, received_at FROM deploy_events
WHERE service = $1 AND version = $2 AND COALESCE(commit, '') = COALESCE($3, '') AND ts = $4
"""


STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError (connecting, acquiring) is one too
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08: the connection broke or does not exist
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up, admin or crash shutdown
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # client side: the pool is closing or closed, the connection was lost (see below)
)
"""What PostgreSQL being down or restarting looks like to a caller of the store: retry later (503), not a bug."""


def store_unavailable(exc: BaseException) -> bool:
    """True for the outages of `STORE_UNAVAILABLE`. The subclasses of asyncpg's InterfaceError are not outages
    (a query argument it cannot encode, a client misconfiguration): those stay bugs, answered 500."""
    if isinstance(exc, asyncpg.InterfaceError):
        return type(exc) is asyncpg.InterfaceError
    return isinstance(exc, STORE_UNAVAILABLE)


class ActionRun(BaseModel):
    """A row of `action_runs`: one remediation run, keyed by incident + proposal (+ `/rollback`)."""

    key: str
    incident_id: str
    proposal_id: int
    action: str
    params: dict[str, str]
    dry_run: bool
    status: str
    """'running' until finished; then an `ActionOutcome` value ('unknown' when a dead attempt was not re-run)."""
    output: str
    attempts: int
    """How many times the executor was started for this key."""
    started_at: datetime
    finished_at: datetime | None


_FEEDBACK_COLUMNS = (
    "id, incident_id, verdict, category, component, note, actor, diagnosed_category, diagnosed_component, "
    "diagnosis_confidence, at"
)
_BEST_DIAGNOSIS = (
    "SELECT category, confidence, rca FROM incident_diagnoses WHERE incident_id = $1 "
    "ORDER BY (source = 'llm') DESC, created_at DESC LIMIT 1"
)
"""The incident's best diagnosis (as `Store.diagnosis` picks it), as a subquery on parameter $1."""
ACTION_RUN_RUNNING = "running"
_RUN_COLUMNS = (
    "key, incident_id, proposal_id, action, params, dry_run, status, output, attempts, started_at, finished_at"
)


class Store:
    """asyncpg pool plus the queries of the durable record. Writes are idempotent upserts."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10) -> Self:
        """Connects lazily (no connection at open): a process started while PostgreSQL is down comes up, and its
        store calls fail with STORE_UNAVAILABLE until PostgreSQL is back."""
        pool = await asyncpg.create_pool(url, min_size=0, max_size=max_size, init=_init_connection)
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
                            a.repeats,
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
            "SELECT fingerprint, source, status, severity, summary, labels, annotations, count, repeats, first_seen, "
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

    async def insert_logs(self, records: Sequence[LogRecord], *, received_at: datetime) -> int:
        """Bulk insert with COPY; returns the rows written. Text format, because asyncpg has no binary jsonb
        encoder for COPY. The rows go out in chunks as they are built, so PostgreSQL parses one chunk while the
        next is built (measured: ~1.9x plain executemany on two cores, see benchmarks/logs.py)."""
        if not records:
            return 0

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in _copy_rows(records, received_at):
                yield chunk

        async with self._pool.acquire() as conn:
            await conn.copy_to_table("log_lines", source=chunks(), columns=list(_LOG_COLUMNS), format="text")
        return len(records)

    async def logs_window(self, service: str, start: datetime, end: datetime, limit: int) -> list[LogRecord]:
        """The service's lines with start <= ts < end, oldest first (in arrival order at equal ts)."""
        records = await self._pool.fetch(
            "SELECT ts, service, level, message, labels, trace_id, request_id FROM log_lines "
            "WHERE service = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, id LIMIT $4",
            service,
            start,
            end,
            limit,
        )
        return [LogRecord.model_validate(dict(r)) for r in records]

    async def _delete_in_batches(self, delete: str, ts: datetime) -> int:
        """Run `delete` ($1 = ts, $2 = batch size) until a batch comes back short, so no single transaction holds
        millions of row locks; returns the rows deleted."""
        deleted = 0
        while True:
            status = await self._pool.execute(delete, ts, _RETENTION_BATCH)
            count = int(status.split()[-1])
            deleted += count
            if count < _RETENTION_BATCH:
                return deleted

    async def delete_logs_before(self, ts: datetime) -> int:
        """Delete lines older than `ts`, in batches."""
        return await self._delete_in_batches(
            "DELETE FROM log_lines WHERE id IN (SELECT id FROM log_lines WHERE ts < $1 LIMIT $2)", ts
        )

    async def insert_spans(self, spans: Sequence[Span], *, received_at: datetime) -> int:
        """Bulk insert with COPY, as `insert_logs`; returns the rows written."""
        if not spans:
            return 0

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in _copy_span_rows(spans, received_at):
                yield chunk

        async with self._pool.acquire() as conn:
            await conn.copy_to_table("spans", source=chunks(), columns=list(_SPAN_COLUMNS), format="text")
        return len(spans)

    async def spans_window(
        self, services: Sequence[str] | None, start: datetime, end: datetime, limit: int
    ) -> list[Span]:
        """Spans starting in [start, end), oldest first: of every trace that has a span of one of `services` in the
        window (so the callees outside `services` come along), or of all traces with None. At most `limit`: a
        sample of whole traces when there are more."""
        records = await self._pool.fetch(_SPANS_WINDOW, None if services is None else list(services), start, end, limit)
        return [Span.model_validate(dict(r)) for r in records]

    async def delete_spans_before(self, ts: datetime) -> int:
        """Delete spans that started before `ts`, in batches."""
        return await self._delete_in_batches(
            "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE start_ts < $1 LIMIT $2)", ts
        )

    async def insert_deploy(self, event: DeployEvent, *, received_at: datetime) -> tuple[StoredDeployEvent, bool]:
        """Store a deploy event once: a re-sent one (same service, version, commit and ts) returns the stored row.
        Returns the row and whether it was new. Without `ts` the event takes `received_at`."""
        ts = event.ts or received_at
        args = (event.service, event.version, event.commit, event.author, event.description, ts, received_at)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_INSERT_DEPLOY, *args)
            created = row is not None
            if row is None:
                row = await conn.fetchrow(_SELECT_DEPLOY, event.service, event.version, event.commit, ts)
        if row is None:  # deleted between the two statements; vanishingly rare, but never answer without an id
            raise RuntimeError("deploy event vanished while being stored")
        return StoredDeployEvent.model_validate(dict(row)), created

    async def deploys(
        self, *, service: str | None, start: datetime, end: datetime, limit: int = 1000
    ) -> list[StoredDeployEvent]:
        """Deploy events with start <= ts < end, of one service or all, oldest first."""
        records = await self._pool.fetch(
            "SELECT id, service, version, commit, author, description, ts, received_at FROM deploy_events "
            "WHERE ($1::text IS NULL OR service = $1) AND ts >= $2 AND ts < $3 ORDER BY ts, id LIMIT $4",
            service,
            start,
            end,
            limit,
        )
        return [StoredDeployEvent.model_validate(dict(r)) for r in records]

    async def save_timings(self, timings: IncidentTimings) -> bool:
        """Keep an incident's MTTx; True the first time (so a retried activity counts it into metrics once)."""
        inserted = await self._pool.fetchval(
            "INSERT INTO incident_timings (incident_id, timings) VALUES ($1, $2) "
            "ON CONFLICT (incident_id) DO NOTHING RETURNING true",
            timings.incident_id,
            timings.model_dump(mode="json"),
        )
        return bool(inserted)

    async def timings(self, incident_id: str) -> IncidentTimings | None:
        value = await self._pool.fetchval("SELECT timings FROM incident_timings WHERE incident_id = $1", incident_id)
        return None if value is None else IncidentTimings.model_validate(value)

    async def claim_action_run(
        self, key: str, *, incident_id: str, proposal_id: int, action: str, params: dict[str, str], dry_run: bool
    ) -> tuple[ActionRun, bool]:
        """Record that the run `key` starts (status 'running'), unless a row for `key` exists: then that row.
        Returns the row and whether this call created it; one statement per case, so two attempts never both
        claim a key (the loser reads the winner's row)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO action_runs (key, incident_id, proposal_id, action, params, dry_run, status) "
                f"VALUES ($1, $2, $3, $4, $5, $6, 'running') ON CONFLICT (key) DO NOTHING RETURNING {_RUN_COLUMNS}",
                key,
                incident_id,
                proposal_id,
                action,
                params,
                dry_run,
            )
            if row is not None:
                return ActionRun.model_validate(dict(row)), True
            row = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM action_runs WHERE key = $1", key)
        if row is None:  # rows are never deleted; a vanished one is a bug, never answer as if claimed
            raise RuntimeError(f"action run {key!r} vanished while being claimed")
        return ActionRun.model_validate(dict(row)), False

    async def restart_action_run(self, key: str) -> ActionRun | None:
        """Run a still 'running' key once more (an idempotent action whose earlier attempt died): one more attempt,
        started now. None when the row is no longer 'running' (another attempt finished it meanwhile)."""
        row = await self._pool.fetchrow(
            f"UPDATE action_runs SET attempts = attempts + 1, started_at = now() "
            f"WHERE key = $1 AND status = 'running' RETURNING {_RUN_COLUMNS}",
            key,
        )
        return None if row is None else ActionRun.model_validate(dict(row))

    async def finish_action_run(
        self, key: str, status: str, output: str, *, only_running: bool = False
    ) -> ActionRun | None:
        """Record a run's end: its status (an outcome, or 'unknown'), redacted output and finish time. None when
        there is no such row, or with `only_running` when it is no longer 'running'."""
        row = await self._pool.fetchrow(
            f"UPDATE action_runs SET status = $2, output = $3, finished_at = now() "
            f"WHERE key = $1 AND (NOT $4 OR status = 'running') RETURNING {_RUN_COLUMNS}",
            key,
            status,
            output,
            only_running,
        )
        return None if row is None else ActionRun.model_validate(dict(row))

    async def action_run(self, key: str) -> ActionRun | None:
        row = await self._pool.fetchrow(f"SELECT {_RUN_COLUMNS} FROM action_runs WHERE key = $1", key)
        return None if row is None else ActionRun.model_validate(dict(row))

    async def action_runs(self, incident_id: str) -> list[ActionRun]:
        """An incident's remediation runs, oldest first."""
        records = await self._pool.fetch(
            f"SELECT {_RUN_COLUMNS} FROM action_runs WHERE incident_id = $1 ORDER BY started_at, key", incident_id
        )
        return [ActionRun.model_validate(dict(r)) for r in records]

    async def save_diagnosis(self, incident_id: str, rca: RootCauseAnalysis) -> None:
        """Upsert the incident's diagnosis of this source (idempotent: a retried activity rewrites the row)."""
        await self._pool.execute(
            "INSERT INTO incident_diagnoses (incident_id, source, category, confidence, rca) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_id, source) DO UPDATE SET "
            "category = EXCLUDED.category, confidence = EXCLUDED.confidence, rca = EXCLUDED.rca, created_at = now()",
            incident_id,
            rca.source,
            rca.category.value,
            rca.confidence,
            rca.model_dump(mode="json"),
        )

    async def diagnosis(self, incident_id: str) -> RootCauseAnalysis | None:
        """The incident's best diagnosis: the LLM's when there is one, else the deterministic one."""
        row = await self._pool.fetchrow(
            "SELECT rca FROM incident_diagnoses WHERE incident_id = $1 "
            "ORDER BY (source = 'llm') DESC, created_at DESC LIMIT 1",
            incident_id,
        )
        return RootCauseAnalysis.model_validate(row["rca"]) if row else None

    # --- diagnosis feedback (vigil.feedback) and report queries (vigil.insights) ---------------------------

    async def record_feedback(self, feedback: DiagnosisFeedback) -> StoredFeedback:
        """Store one verdict with the diagnosis it judges (the incident's best stored diagnosis now: the LLM's
        when there is one), read in the same statement."""
        row = await self._pool.fetchrow(
            f"INSERT INTO diagnosis_feedback (incident_id, verdict, category, component, note, actor, "
            f"diagnosed_category, diagnosed_component, diagnosis_confidence) "
            f"SELECT $1, $2, $3, $4, $5, $6, d.category, d.rca->'root_cause'->>'component', d.confidence "
            f"FROM (SELECT 1) AS one LEFT JOIN LATERAL ({_BEST_DIAGNOSIS}) AS d ON true "
            f"RETURNING {_FEEDBACK_COLUMNS}",
            feedback.incident_id,
            feedback.verdict.value,
            feedback.category.value if feedback.category else None,
            feedback.component,
            feedback.note,
            feedback.actor,
        )
        if row is None:  # INSERT ... RETURNING always answers a row
            raise RuntimeError("feedback was not stored")
        return StoredFeedback.model_validate(dict(row))

    async def feedback(self, incident_id: str) -> list[StoredFeedback]:
        """Every verdict on one incident, oldest first."""
        records = await self._pool.fetch(
            f"SELECT {_FEEDBACK_COLUMNS} FROM diagnosis_feedback WHERE incident_id = $1 ORDER BY at, id", incident_id
        )
        return [StoredFeedback.model_validate(dict(r)) for r in records]

    async def latest_feedback(self, incident_ids: Sequence[str] | None = None) -> dict[str, StoredFeedback]:
        """The latest verdict of each incident (of the given ones; of all with None)."""
        records = await self._pool.fetch(
            f"SELECT DISTINCT ON (incident_id) {_FEEDBACK_COLUMNS} FROM diagnosis_feedback "
            f"WHERE $1::text[] IS NULL OR incident_id = ANY($1::text[]) ORDER BY incident_id, at DESC, id DESC",
            None if incident_ids is None else list(incident_ids),
        )
        return {r["incident_id"]: StoredFeedback.model_validate(dict(r)) for r in records}

    async def report_rows(self, query: str, *args: object) -> list[dict[str, Any]]:
        """Rows of one report query (vigil.insights), in a read-only transaction: a report never writes."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            records = await conn.fetch(query, *args)
        return [dict(r) for r in records]

    async def incidents_opened_since(self, since: datetime, *, limit: int = 5) -> list[IncidentRow]:
        """Incidents opened at or after `since`, oldest first (the console's Simulate page follows the incident a
        fault it started opens)."""
        records = await self._pool.fetch(
            "SELECT * FROM incidents WHERE opened_at >= $1 ORDER BY opened_at, incident_id LIMIT $2", since, limit
        )
        return [IncidentRow.model_validate(dict(r)) for r in records]

    # --- the console's incident list -------------------------------------------------------------------------

    async def incident_list(self, query: IncidentListQuery) -> list[IncidentListRow]:
        """One page of the incident list, newest change first, narrowed by `query` (all parameters bound)."""
        records = await self._pool.fetch(
            _LIST_INCIDENTS,
            query.status,
            query.severity,
            query.service,
            query.category,
            query.since,
            None if query.text is None else f"%{like_escape(query.text)}%",
            query.limit,
        )
        return [IncidentListRow.model_validate(dict(r)) for r in records]

    async def incident_changes(self, cursor: int | None, *, limit: int = 1000) -> IncidentChanges:
        """The incidents written (row or diagnosis) by transactions at or after `cursor`, and the next cursor.

        The cursor is the oldest transaction still running when the changes were read: every transaction before
        it had ended, so nothing written before the next call is missed however late it commits (a row may come
        twice; readers key rows by incident id). `cursor` None: only the cursor, to start from now."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            # Repeatable read: both statements see the one snapshot whose xmin becomes the cursor.
            next_cursor = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
            if cursor is None:
                return IncidentChanges(cursor=next_cursor, rows=[], complete=True)
            records = await conn.fetch(_CHANGED_INCIDENTS, cursor, limit + 1)
        rows = [IncidentListRow.model_validate(dict(r)) for r in records[:limit]]
        return IncidentChanges(cursor=next_cursor, rows=rows, complete=len(records) <= limit)

    async def incident_services(self, *, limit: int = 500) -> list[str]:
        """Services that have incidents, for the list's service filter."""
        records = await self._pool.fetch(
            "SELECT DISTINCT service FROM incidents WHERE service IS NOT NULL ORDER BY service LIMIT $1", limit
        )
        return [r["service"] for r in records]


def like_escape(text: str) -> str:
    """`text` matched literally by LIKE/ILIKE (whose escape character is the backslash): no wildcards in it."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class IncidentListQuery(BaseModel):
    """Filters of the incident list; None: any. `text` is found in the title, the incident id or the service."""

    status: str | None = None
    severity: str | None = None
    service: str | None = None
    category: str | None = None
    since: datetime | None = Field(default=None, description="Only incidents changed at or after this moment.")
    text: str | None = None
    limit: int = Field(default=500, gt=0, le=5000)


class IncidentListRow(BaseModel):
    """One incident as the list shows it: its row, the best diagnosis's confidence, alert repeats, who acked."""

    incident_id: str
    title: str
    service: str | None
    severity: str
    category: str | None = Field(description="The incident's category, else its diagnosis's.")
    status: str
    opened_at: datetime
    updated_at: datetime
    alert_count: int = Field(description="Firing episodes over all fingerprints.")
    fingerprint_count: int = Field(description="Distinct alerts.")
    repeats: int = Field(description="Notifications de-duplicated: they changed nothing.")
    confidence: float | None
    acknowledged_by: str | None


class IncidentChanges(BaseModel):
    cursor: int
    rows: list[IncidentListRow]
    complete: bool = Field(description="False when more rows changed than were read: re-read the whole list.")


_LIST_COLUMNS = """
SELECT i.incident_id, i.title, i.service, i.severity, COALESCE(i.category, d.category) AS category, i.status,
       i.opened_at, i.updated_at, i.alert_count, i.fingerprint_count, COALESCE(a.repeats, 0) AS repeats,
       d.confidence, ack.actor AS acknowledged_by
FROM incidents i
LEFT JOIN LATERAL (
    SELECT category, confidence FROM incident_diagnoses
    WHERE incident_id = i.incident_id ORDER BY (source = 'llm') DESC, created_at DESC LIMIT 1
) d ON true
LEFT JOIN LATERAL (
    SELECT sum(repeats)::integer AS repeats FROM incident_alerts WHERE incident_id = i.incident_id
) a ON true
LEFT JOIN LATERAL (
    SELECT actor FROM timeline_events
    WHERE incident_id = i.incident_id AND kind = 'acknowledged' ORDER BY at DESC, seq DESC LIMIT 1
) ack ON true
"""

_LIST_INCIDENTS = (
    _LIST_COLUMNS
    + """
WHERE ($1::text IS NULL OR i.status = $1)
  AND ($2::text IS NULL OR i.severity = $2)
  AND ($3::text IS NULL OR i.service = $3)
  AND ($4::text IS NULL OR COALESCE(i.category, d.category) = $4)
  AND ($5::timestamptz IS NULL OR i.updated_at >= $5)
  AND ($6::text IS NULL OR i.title ILIKE $6 OR i.incident_id ILIKE $6 OR i.service ILIKE $6)
ORDER BY i.updated_at DESC, i.incident_id
LIMIT $7
"""
)

_CHANGED_INCIDENTS = (
    _LIST_COLUMNS
    + """
WHERE i.incident_id IN (
    SELECT incident_id FROM incidents WHERE changed_xid >= $1::xid8
    UNION SELECT incident_id FROM incident_diagnoses WHERE changed_xid >= $1::xid8
)
ORDER BY i.updated_at DESC, i.incident_id
LIMIT $2
"""
)
