"""Seeding the durable record for feedback and Insights tests: a database of the test's own on the session's
PostgreSQL server (reports count every incident, so other tests' incidents must not be in it), filled with the
store's own write methods."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from vigil.analysis.models import Category
from vigil.models import (
    AlertRecord,
    AlertSource,
    AlertStatus,
    IncidentRow,
    IncidentStatus,
    PersistIncidentInput,
    Severity,
)
from vigil.mttx import IncidentTimings
from vigil.rca.models import EvidenceItem, RCARootCause, RootCauseAnalysis
from vigil.store.database import Store, migrate_database


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """The URL of a new, migrated database on the server of `database_url`, dropped afterwards."""
    name = f"vigil_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = _with_database(database_url, name)
        await migrate_database(url)
        yield url
    finally:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def fresh_store(database_url: str) -> AsyncIterator[tuple[str, Store]]:
    """A store on a new database (see `fresh_database`) and that database's URL."""
    async with fresh_database(database_url) as url, await Store.open(url) as store:
        yield url, store


@dataclass
class Seed:
    incident_id: str
    opened_at: datetime
    service: str | None = "checkout"
    severity: Severity = Severity.CRITICAL
    category: str | None = None
    alerts: Sequence[tuple[str, int, int]] = (("HighErrorRate", 1, 0),)
    """(alertname, firing episodes, repeats) per alert."""
    diagnosis: tuple[Category, str] | None = None
    """(category, component) of a deterministic diagnosis."""
    evidence: list[EvidenceItem] = field(default_factory=list)
    acknowledge_after: float | None = None
    resolve_after: float | None = None


def alert_record(name: str, service: str | None, at: datetime, count: int = 1, repeats: int = 0) -> AlertRecord:
    labels = {"alertname": name, **({"service": service} if service else {})}
    return AlertRecord(
        fingerprint=f"fp-{name}-{uuid.uuid4().hex[:6]}",
        status=AlertStatus.FIRING,
        labels=labels,
        annotations={"summary": f"{name} on {service}"},
        severity=Severity.CRITICAL,
        summary=f"{name} on {service}",
        count=count,
        repeats=repeats,
        first_seen=at,
        last_seen=at,
        starts_at=at,
        source=AlertSource.ALERTMANAGER,
    )


def rca(category: Category, component: str, evidence: Sequence[EvidenceItem] = ()) -> RootCauseAnalysis:
    return RootCauseAnalysis(
        source="deterministic",
        category=category,
        confidence=0.7,
        severity="critical",
        code_related=False,
        root_cause=RCARootCause(summary=f"{component} failed", component=component, evidence=[]),
        evidence=list(evidence),
    )


async def seed(store: Store, item: Seed) -> None:
    """One incident with its alerts, and optionally its diagnosis and timings, through the store's own writes."""
    resolved = item.opened_at + timedelta(seconds=item.resolve_after) if item.resolve_after is not None else None
    row = IncidentRow(
        incident_id=item.incident_id,
        group_key=f"alertname={item.incident_id}",
        title=f"Incident {item.incident_id}",
        service=item.service,
        severity=item.severity,
        category=item.category,
        status=IncidentStatus.CLOSED if resolved else IncidentStatus.OPEN,
        opened_at=item.opened_at,
        updated_at=resolved or item.opened_at,
        resolved_at=resolved,
        closed_at=resolved,
        alert_count=len(item.alerts),
        fingerprint_count=len(item.alerts),
    )
    alerts = [alert_record(name, item.service, item.opened_at, count, repeats) for name, count, repeats in item.alerts]
    await store.persist_incident(PersistIncidentInput(incident=row, alerts=alerts, generation="g1"))
    if item.diagnosis is not None:
        await store.save_diagnosis(item.incident_id, rca(*item.diagnosis, item.evidence))
    if item.acknowledge_after is not None or item.resolve_after is not None:
        acknowledged = (
            item.opened_at + timedelta(seconds=item.acknowledge_after) if item.acknowledge_after is not None else None
        )
        await store.save_timings(
            IncidentTimings(
                incident_id=item.incident_id,
                impact_started_at=item.opened_at,
                opened_at=item.opened_at,
                acknowledged_at=acknowledged,
                diagnosed_at=None,
                mitigated_at=None,
                resolved_at=resolved,
                time_to_detect_seconds=0.0,
                time_to_acknowledge_seconds=item.acknowledge_after,
                time_to_diagnose_seconds=None,
                time_to_mitigate_seconds=None,
                time_to_resolve_seconds=item.resolve_after,
            )
        )
