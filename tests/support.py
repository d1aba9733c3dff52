"""Helpers shared by tests: waiting on conditions, alert payloads, free ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from vigil.analysis.models import Level, LogEvent

T = TypeVar("T")

VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], *, timeout: float = 30.0, every: float = 0.1
) -> T:
    """Poll `probe` until `until(result)` holds; fail with the last result after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {result!r}")
        await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def am_alert(
    alertname: str,
    *,
    service: str,
    instance: str,
    status: str = "firing",
    severity: str = "critical",
    namespace: str = "prod",
) -> dict[str, Any]:
    """One alert as Alertmanager's webhook (version 4) sends it."""
    now = datetime.now(UTC).isoformat()
    return {
        "status": status,
        "labels": {
            "alertname": alertname,
            "service": service,
            "namespace": namespace,
            "instance": instance,
            "severity": severity,
        },
        "annotations": {"summary": f"{alertname} on {service}/{instance}"},
        "startsAt": now,
        "endsAt": now if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": "",
    }


def am_webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    status = "firing" if any(alert["status"] == "firing" for alert in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": "{}:{alertname}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "vigil",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": alerts,
    }


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
"""Start of the time window of the analysis tests' events."""


def log_event(
    message: str,
    level: Level | None = Level.ERROR,
    *,
    at: float = 0.0,
    service: str | None = "checkout",
    fields: dict[str, str] | None = None,
    exc: str | None = None,
    exc_msg: str | None = None,
    frames: list[str] | None = None,
    line: int = 1,
) -> LogEvent:
    """A normalised event `at` seconds after T0, as the analysis engine receives it."""
    return LogEvent(
        line=line,
        ts=T0 + timedelta(seconds=at),
        service=service,
        level=level,
        message=message,
        fields=fields or {},
        exception_type=exc,
        exception_message=exc_msg,
        frames=frames or [],
    )


class IntegrationsWorker:
    """`vigil worker integrations` in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env = env
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vigil", "worker", "integrations"],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self) -> str:
        return self._log.read_text(errors="replace")[-4000:] if self._log.exists() else "(no worker log)"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
