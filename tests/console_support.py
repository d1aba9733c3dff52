"""Helpers of the console tests: settings with a private users file, users with passwords, signing in through the
real `/login` form in NiceGUI's user simulation, and incidents written with the store's own `persist_incident`."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nicegui.testing import User, user_simulation
from pydantic import SecretStr

from ui.console import ConsoleServices, console_root, install_routes
from vigil.analysis.models import Category
from vigil.auth.directory import UserDirectory
from vigil.auth.roles import Role
from vigil.models import (
    AlertRecord,
    AlertSource,
    AlertStatus,
    IncidentRow,
    IncidentStatus,
    PersistIncidentInput,
    Severity,
    TimelineEvent,
    TimelineKind,
)
from vigil.rca.models import RCARootCause, RootCauseAnalysis
from vigil.settings import Settings
from vigil.store.database import Store


def console_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings independent of the environment running the tests, with a users file of this test's own."""
    values: dict[str, Any] = {
        "TEMPORAL_ADDRESS": None,
        "temporal_namespace": "default",
        "temporal_ui_port": 8233,
        "api_host": "127.0.0.1",
        "api_port": 8000,
        "state_dir": tmp_path / "state",
        "users_file": tmp_path / "users.json",
        "DATABASE_URL": None,
        "oidc_issuer": None,
        "oidc_client_id": None,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def add_user(settings: Settings, name: str, role: Role) -> str:
    """A user of the settings' users file; returns the password."""
    password = secrets.token_urlsafe(12)
    UserDirectory.of(settings).add(name, role, password)
    return password


async def sign_in(user: User, name: str, password: str, *, path: str = "/") -> None:
    """Open `path` signed out (which leads to the sign-in form) and sign in there, as a person would."""
    await user.open(path)
    await user.should_see(marker="login-name")
    user.find(marker="login-name").type(name)
    user.find(marker="login-password").type(password)
    user.find(marker="login-submit").click()


def services_for(settings: Settings, store: Store | None) -> ConsoleServices:
    return ConsoleServices.create(settings, store=store)


def database_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    return console_settings(tmp_path, DATABASE_URL=SecretStr(database_url), **overrides)


def incident(
    incident_id: str,
    *,
    title: str,
    service: str = "checkout",
    status: IncidentStatus = IncidentStatus.OPEN,
    severity: Severity = Severity.CRITICAL,
    category: str | None = None,
    alert_count: int = 1,
    fingerprint_count: int = 1,
    updated_at: datetime | None = None,
) -> IncidentRow:
    now = updated_at or datetime.now(UTC)
    return IncidentRow(
        incident_id=incident_id,
        group_key=f"alertname={title}",
        title=title,
        service=service,
        severity=severity,
        category=category,
        status=status,
        opened_at=now - timedelta(minutes=5),
        updated_at=now,
        resolved_at=None,
        closed_at=None,
        alert_count=alert_count,
        fingerprint_count=fingerprint_count,
    )


def alert(fingerprint: str, count: int, repeats: int) -> AlertRecord:
    """A stored alert: `count` firing episodes, `repeats` notifications that changed nothing."""
    now = datetime.now(UTC)
    return AlertRecord(
        fingerprint=fingerprint,
        status=AlertStatus.FIRING,
        labels={"alertname": fingerprint},
        severity=Severity.CRITICAL,
        summary=fingerprint,
        count=count,
        repeats=repeats,
        first_seen=now,
        last_seen=now,
        starts_at=now,
        source=AlertSource.ALERTMANAGER,
    )


async def persist(
    store: Store,
    row: IncidentRow,
    *,
    acknowledged_by: str | None = None,
    seq: int = 1,
    alerts: list[AlertRecord] | None = None,
) -> None:
    events = (
        [
            TimelineEvent(
                seq=seq,
                at=row.updated_at,
                kind=TimelineKind.ACKNOWLEDGED,
                message=f"{acknowledged_by} acknowledged",
                actor=acknowledged_by,
            )
        ]
        if acknowledged_by
        else []
    )
    await store.persist_incident(
        PersistIncidentInput(incident=row, alerts=alerts or [], events=events, generation="g1")
    )


def diagnosis(confidence: float, category: Category = Category.DATABASE) -> RootCauseAnalysis:
    return RootCauseAnalysis(
        source="deterministic",
        category=category,
        confidence=confidence,
        severity="critical",
        code_related=False,
        root_cause=RCARootCause(summary="db down", component="checkout/database", evidence=["detector:x"]),
    )


@asynccontextmanager
async def simulated_console(services: ConsoleServices) -> AsyncIterator[User]:
    """The console as `serve` builds it (root, `/login`, `/metrics`), in NiceGUI's user simulation."""
    async with user_simulation(root=console_root(services)) as user:
        install_routes(services)
        yield user
