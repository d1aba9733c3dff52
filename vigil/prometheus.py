"""Metric series around an incident, from the Prometheus that fired its alerts.

An Alertmanager alert carries its rule's expression in `generatorURL` (`…/graph?g0.expr=…`). Vigil asks that
Prometheus for the expression over the incident's window (with a trailing threshold comparison removed, so the
series is the measured value, not only the points above the threshold); the analysis engine finds its change
points and onset. Prometheus is optional: any failure returns no series, with a reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

import httpx

from vigil.analysis.bundle import MetricSeries

if TYPE_CHECKING:
    from vigil.models import AlertRecord

MAX_ALERT_EXPRESSIONS = 3
MAX_SERIES = 10
MAX_POINTS = 400
_THRESHOLD = re.compile(r"^(?P<value>.+?)\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?[-+]?[0-9.]+(?:e[-+]?\d+)?\s*$", re.S)


def expr_from_generator_url(url: str | None) -> str | None:
    if not url:
        return None
    values = parse_qs(urlparse(url).query).get("g0.expr")
    return values[0].strip() if values and values[0].strip() else None


def measured(expr: str) -> str:
    """The expression without a trailing `> 0.05`-style threshold, when it has exactly that shape."""
    match = _THRESHOLD.match(expr)
    if match is None:
        return expr
    value = match.group("value").strip()
    return value if value.count("(") == value.count(")") else expr


def alert_expressions(alerts: Iterable[AlertRecord], limit: int = MAX_ALERT_EXPRESSIONS) -> dict[str, str]:
    """The measured expressions of the alerts' rules (from their `generatorURL`), each with the first alert name
    that carries it, at most `limit`: what the diagnosis charts and what the console shows again."""
    exprs: dict[str, str] = {}
    for alert in alerts:
        expr = expr_from_generator_url(alert.generator_url)
        if expr and len(exprs) < limit:
            exprs.setdefault(measured(expr), alert.labels.get("alertname", "alert"))
    return exprs


async def query_range(
    base_url: str, expr: str, start: datetime, end: datetime, *, name: str, timeout: float = 10.0
) -> list[MetricSeries]:
    """The expression's series over [start, end], at most MAX_SERIES series of at most MAX_POINTS points."""
    seconds = max((end - start).total_seconds(), 1.0)
    step = max(math.ceil(seconds / MAX_POINTS), 1)
    params: dict[str, str | float] = {"query": expr, "start": start.timestamp(), "end": end.timestamp(), "step": step}
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, trust_env=False) as client:
        response = await client.get("/api/v1/query_range", params=params)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise ValueError(f"Prometheus answered {body.get('errorType')}: {body.get('error')}")
    series: list[MetricSeries] = []
    for result in body["data"]["result"][:MAX_SERIES]:
        labels = {k: str(v) for k, v in result.get("metric", {}).items() if k != "__name__"}
        points = [(float(t), float(v)) for t, v in result.get("values", []) if math.isfinite(float(v))]
        series.append(MetricSeries(name=result.get("metric", {}).get("__name__", name), labels=labels, points=points))
    return series
