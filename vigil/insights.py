"""Insights: what the durable record says about incidents over a time range, as rows for charts and CSV.

Each report is one SQL statement grouped in the database (`date_trunc` buckets in UTC, `percentile_cont`
medians), so a chart costs one round trip whatever the number of incidents. Rows are pydantic models; `to_csv`
writes any of them with a header row, ISO 8601 times and RFC 4180 quoting.

The reports:
- incidents opened per bucket, by category (the incident's, else its best diagnosis's), service or severity;
- MTTA and MTTR per bucket: medians of the stored timings (`incident_timings`, written at close; vigil.mttx) of
  the incidents opened in the bucket;
- alerts received vs incidents opened per bucket (noise reduction): alert notifications (firing episodes plus
  notifications that changed nothing) grouped into the incidents opened in the bucket;
- diagnosis accuracy from feedback: the latest verdict of each incident, per diagnosed category;
- top recurring root causes: incidents per (category, component) of the best diagnosis, corrected by the
  latest verdict where a responder gave the right ones.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from vigil.store.database import Store

UNKNOWN = "unknown"
TOP_ROOT_CAUSES = 10


class TimeRange(StrEnum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    QUARTER = "90d"

    @property
    def span(self) -> timedelta:
        return _SPANS[self.value]

    @property
    def bucket(self) -> Bucket:
        """The bucket width: enough points for a trend, few enough that each holds incidents."""
        return _BUCKETS[self.value]

    @property
    def label(self) -> str:
        return _LABELS[self.value]


Bucket = Literal["hour", "day", "week"]
_SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
_BUCKETS: dict[str, Bucket] = {"24h": "hour", "7d": "day", "30d": "day", "90d": "week"}
_LABELS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days", "90d": "90 days"}


class Dimension(StrEnum):
    CATEGORY = "category"
    SERVICE = "service"
    SEVERITY = "severity"


_BEST_CATEGORY = (
    "(SELECT d.category FROM incident_diagnoses d WHERE d.incident_id = i.incident_id "
    "ORDER BY (d.source = 'llm') DESC, d.created_at DESC LIMIT 1)"
)
_DIMENSION_SQL = {
    Dimension.CATEGORY: f"COALESCE(i.category, {_BEST_CATEGORY}, '{UNKNOWN}')",
    Dimension.SERVICE: f"COALESCE(i.service, '{UNKNOWN}')",
    Dimension.SEVERITY: "i.severity",
}


# --- rows ---------------------------------------------------------------------------------------------------


class CountRow(BaseModel):
    bucket: datetime
    key: str
    incidents: int


class TimingRow(BaseModel):
    bucket: datetime
    incidents: int
    """Closed incidents opened in the bucket (those with stored timings)."""
    acknowledged: int
    mtta_median_seconds: float | None
    resolved: int
    mttr_median_seconds: float | None


class NoiseRow(BaseModel):
    bucket: datetime
    alerts: int
    """Alert notifications: firing episodes plus re-notifications that changed nothing."""
    fingerprints: int
    """Distinct alerts."""
    incidents: int
    reduction: float
    """1 - incidents / alerts: the share of notifications that did not become an incident of their own."""


class AccuracyRow(BaseModel):
    category: str
    """The diagnosed category the verdicts judged; `all` for every category together."""
    right: int
    wrong: int
    accuracy: float


class RootCauseRow(BaseModel):
    category: str
    component: str
    incidents: int
    corrected: int
    """Incidents among them whose category or component comes from a responder's correction."""
    last_opened_at: datetime
    example_incident_id: str


# --- queries ------------------------------------------------------------------------------------------------


def since(time_range: TimeRange, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - time_range.span


def buckets(time_range: TimeRange, now: datetime | None = None) -> list[datetime]:
    """Every bucket start of the range, oldest first (UTC, as `date_trunc(..., 'UTC')` gives them): the x axis,
    so a bucket without incidents shows as a zero instead of vanishing."""
    end = now or datetime.now(UTC)
    first = _truncate(since(time_range, end), time_range.bucket)
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[time_range.bucket]
    out: list[datetime] = []
    at = first
    while at <= end:
        out.append(at)
        at += step
    return out


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if unit == "day" else day - timedelta(days=day.weekday())  # ISO weeks start on Monday


async def incidents_by(
    store: Store, dimension: Dimension, time_range: TimeRange, *, now: datetime | None = None
) -> list[CountRow]:
    rows = await store.report_rows(
        f"SELECT date_trunc($2, i.opened_at, 'UTC') AS bucket, {_DIMENSION_SQL[dimension]} AS key, "
        f"count(*)::int AS incidents FROM incidents i WHERE i.opened_at >= $1 GROUP BY 1, 2 ORDER BY 1, 2",
        since(time_range, now),
        time_range.bucket,
    )
    return [CountRow.model_validate(_utc(row)) for row in rows]


_TIMINGS = """
WITH t AS (
    SELECT (timings->>'opened_at')::timestamptz AS opened_at,
           (timings->>'time_to_acknowledge_seconds')::float8 AS tta,
           (timings->>'time_to_resolve_seconds')::float8 AS ttr
    FROM incident_timings
)
SELECT date_trunc($2, opened_at, 'UTC') AS bucket, count(*)::int AS incidents,
       count(tta)::int AS acknowledged, percentile_cont(0.5) WITHIN GROUP (ORDER BY tta) AS mtta_median_seconds,
       count(ttr)::int AS resolved, percentile_cont(0.5) WITHIN GROUP (ORDER BY ttr) AS mttr_median_seconds
FROM t WHERE opened_at >= $1 GROUP BY 1 ORDER BY 1
"""


async def timings(store: Store, time_range: TimeRange, *, now: datetime | None = None) -> list[TimingRow]:
    rows = await store.report_rows(_TIMINGS, since(time_range, now), time_range.bucket)
    return [TimingRow.model_validate(_utc(row)) for row in rows]


_NOISE = """
SELECT date_trunc($2, i.opened_at, 'UTC') AS bucket,
       COALESCE(sum(a.count + a.repeats), 0)::int AS alerts, count(a.fingerprint)::int AS fingerprints,
       count(DISTINCT i.incident_id)::int AS incidents
FROM incidents i LEFT JOIN incident_alerts a ON a.incident_id = i.incident_id
WHERE i.opened_at >= $1 GROUP BY 1 ORDER BY 1
"""


async def noise(store: Store, time_range: TimeRange, *, now: datetime | None = None) -> list[NoiseRow]:
    rows = await store.report_rows(_NOISE, since(time_range, now), time_range.bucket)
    return [
        NoiseRow.model_validate({**_utc(row), "reduction": noise_reduction(row["alerts"], row["incidents"])})
        for row in rows
    ]


def noise_reduction(alerts: int, incidents: int) -> float:
    return round(1 - incidents / alerts, 4) if alerts > 0 and incidents <= alerts else 0.0


_ACCURACY = """
WITH latest AS (
    SELECT DISTINCT ON (incident_id) verdict, COALESCE(diagnosed_category, 'unknown') AS category
    FROM diagnosis_feedback WHERE at >= $1 ORDER BY incident_id, at DESC, id DESC
)
SELECT COALESCE(category, 'all') AS category, count(*) FILTER (WHERE verdict = 'right')::int AS right,
       count(*) FILTER (WHERE verdict = 'wrong')::int AS wrong
FROM latest GROUP BY ROLLUP (category) ORDER BY (category IS NULL), category
"""


async def accuracy(store: Store, time_range: TimeRange, *, now: datetime | None = None) -> list[AccuracyRow]:
    """Per diagnosed category, of the latest verdicts given in the range; the last row is `all` (none without
    feedback)."""
    rows = await store.report_rows(_ACCURACY, since(time_range, now))
    return [
        AccuracyRow(
            category=row["category"],
            right=row["right"],
            wrong=row["wrong"],
            accuracy=round(row["right"] / (row["right"] + row["wrong"]), 4),
        )
        for row in rows
        if row["right"] + row["wrong"] > 0  # ROLLUP's grand total of no rows at all
    ]


_ROOT_CAUSES = """
WITH diagnosed AS (
    SELECT i.incident_id, i.opened_at, d.category AS category, d.rca->'root_cause'->>'component' AS component,
           f.category AS fixed_category, f.component AS fixed_component
    FROM incidents i
    JOIN LATERAL (
        SELECT category, rca FROM incident_diagnoses WHERE incident_id = i.incident_id
        ORDER BY (source = 'llm') DESC, created_at DESC LIMIT 1
    ) d ON true
    LEFT JOIN LATERAL (
        SELECT category, component FROM diagnosis_feedback WHERE incident_id = i.incident_id
        ORDER BY at DESC, id DESC LIMIT 1
    ) f ON true
    WHERE i.opened_at >= $1
)
SELECT COALESCE(fixed_category, category) AS category, COALESCE(fixed_component, component, 'unknown') AS component,
       count(*)::int AS incidents,
       count(*) FILTER (WHERE fixed_category IS NOT NULL OR fixed_component IS NOT NULL)::int AS corrected,
       max(opened_at) AS last_opened_at, (array_agg(incident_id ORDER BY opened_at DESC))[1] AS example_incident_id
FROM diagnosed GROUP BY 1, 2 ORDER BY incidents DESC, last_opened_at DESC LIMIT $2
"""


async def root_causes(
    store: Store, time_range: TimeRange, *, now: datetime | None = None, limit: int = TOP_ROOT_CAUSES
) -> list[RootCauseRow]:
    rows = await store.report_rows(_ROOT_CAUSES, since(time_range, now), limit)
    return [RootCauseRow.model_validate(_utc(row)) for row in rows]


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value.astimezone(UTC) if isinstance(value, datetime) else value for key, value in row.items()}


# --- CSV ----------------------------------------------------------------------------------------------------


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return "" if value is None else value


def to_csv(rows: Sequence[BaseModel], model: type[BaseModel]) -> str:
    """A header row (the model's fields, in order), then one line per row: ISO 8601 UTC times, empty cells for
    unknown values, fields quoted where they hold a comma, quote or line break. A leading `=`, `+`, `-` or `@` of
    a text field (a service name, a component) is prefixed with `'`, so a spreadsheet never runs it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    fields = list(model.model_fields)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_defused(_cell(getattr(row, name))) for name in fields])
    return out.getvalue()


def _defused(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
