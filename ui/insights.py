"""`/insights`: charts of what the durable record says over 24 hours to 90 days (vigil.insights), each with a
"CSV" link to the numbers behind it at `/insights/{chart}.csv?range=...` (a plain HTTP route, signed-in users
only).

The ECharts options are built by pure functions from the report rows, so tests check them without a browser.
Series names are services, categories and components: text from alerts and diagnoses, which ECharts renders as
text (no HTML formatter is set anywhere).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel

from ui.marks import tagged
from ui.session import SignedInUser
from vigil import insights
from vigil.insights import (
    AccuracyRow,
    CountRow,
    Dimension,
    NoiseRow,
    RootCauseRow,
    TimeRange,
    TimingRow,
)
from vigil.store.database import Store, store_unavailable

if TYPE_CHECKING:
    from ui.context import ConsoleContext

log = logging.getLogger(__name__)

PAGE_TITLE = "Vigil — insights"
DEFAULT_RANGE = TimeRange.MONTH
STORE_DOWN = "PostgreSQL is not reachable, so there are no insights to show: {reason}. Choose a range to try again."
CHART_TESTID = "insights-chart-{slug}"
CSV_TESTID = "insights-csv-{slug}"

CSV_DOWNLOADS = Counter(
    "vigil_console_csv_downloads_total",
    "Insights CSV downloads by chart and outcome: ok, unknown_chart, bad_range, signed_out, store_down.",
    ["chart", "outcome"],
)


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    about: str
    model: type[BaseModel]
    load: Callable[[Store, TimeRange], Awaitable[Sequence[BaseModel]]]


def _by(dimension: Dimension) -> Callable[[Store, TimeRange], Awaitable[Sequence[BaseModel]]]:
    async def load(store: Store, time_range: TimeRange) -> Sequence[BaseModel]:
        return await insights.incidents_by(store, dimension, time_range)

    return load


CHARTS: dict[str, Chart] = {
    chart.slug: chart
    for chart in (
        Chart(
            "incidents-by-category",
            "Incidents by category",
            "Incidents opened per bucket, by the category of their diagnosis.",
            CountRow,
            _by(Dimension.CATEGORY),
        ),
        Chart(
            "incidents-by-service",
            "Incidents by service",
            "Incidents opened per bucket, by the service they fired on.",
            CountRow,
            _by(Dimension.SERVICE),
        ),
        Chart(
            "incidents-by-severity",
            "Incidents by severity",
            "Incidents opened per bucket, by severity.",
            CountRow,
            _by(Dimension.SEVERITY),
        ),
        Chart(
            "mtta-mttr",
            "MTTA and MTTR",
            "Medians per bucket of closed incidents: opened to the first human action (MTTA), impact start to "
            "resolution (MTTR).",
            TimingRow,
            insights.timings,
        ),
        Chart(
            "noise",
            "Alerts received vs incidents opened",
            "Alert notifications grouped into the incidents opened per bucket, and the share that did not become "
            "an incident of their own (noise reduction).",
            NoiseRow,
            insights.noise,
        ),
        Chart(
            "accuracy",
            "Diagnosis accuracy from feedback",
            "Responders' latest verdict on each diagnosis given in the range, per diagnosed category.",
            AccuracyRow,
            insights.accuracy,
        ),
        Chart(
            "root-causes",
            "Top recurring root causes",
            "Incidents per diagnosed category and component (responders' corrections applied).",
            RootCauseRow,
            insights.root_causes,
        ),
    )
}


# --- pure functions ----------------------------------------------------------------------------------------


def csv_path(slug: str, time_range: TimeRange) -> str:
    return f"/insights/{slug}.csv?range={time_range.value}"


def csv_filename(slug: str, time_range: TimeRange) -> str:
    return f"vigil-{slug}-{time_range.value}.csv"


def bucket_label(bucket: datetime, time_range: TimeRange) -> str:
    return bucket.strftime("%m-%d %H:00" if time_range.bucket == "hour" else "%Y-%m-%d")


def range_options() -> dict[str, str]:
    return {member.value: member.label for member in TimeRange}


def _axis(time_range: TimeRange, axis: Sequence[datetime]) -> dict[str, Any]:
    return {"type": "category", "data": [bucket_label(b, time_range) for b in axis]}


def counts_option(rows: Sequence[CountRow], axis: Sequence[datetime], time_range: TimeRange) -> dict[str, Any]:
    """Stacked bars: one series per key (category, service, severity), a zero where a bucket has none."""
    index = {bucket: i for i, bucket in enumerate(axis)}
    series: dict[str, list[int]] = {}
    for row in rows:
        position = index.get(row.bucket)
        if position is not None:
            series.setdefault(row.key, [0] * len(axis))[position] += row.incidents
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll"},
        "xAxis": _axis(time_range, axis),
        "yAxis": {"type": "value", "minInterval": 1, "name": "incidents"},
        "series": [
            {"name": key, "type": "bar", "stack": "incidents", "data": values} for key, values in sorted(series.items())
        ],
    }


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 2)


def timings_option(rows: Sequence[TimingRow], axis: Sequence[datetime], time_range: TimeRange) -> dict[str, Any]:
    """MTTA and MTTR medians in minutes; a bucket without closed incidents is a gap, not a zero."""
    by_bucket = {row.bucket: row for row in rows}
    mtta = [_minutes(by_bucket[b].mtta_median_seconds) if b in by_bucket else None for b in axis]
    mttr = [_minutes(by_bucket[b].mttr_median_seconds) if b in by_bucket else None for b in axis]
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {},
        "xAxis": _axis(time_range, axis),
        "yAxis": {"type": "value", "name": "minutes (median)"},
        "series": [
            {"name": "MTTA", "type": "line", "connectNulls": True, "data": mtta},
            {"name": "MTTR", "type": "line", "connectNulls": True, "data": mttr},
        ],
    }


def noise_option(rows: Sequence[NoiseRow], axis: Sequence[datetime], time_range: TimeRange) -> dict[str, Any]:
    by_bucket = {row.bucket: row for row in rows}
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {},
        "xAxis": _axis(time_range, axis),
        "yAxis": [
            {"type": "value", "minInterval": 1, "name": "count"},
            {"type": "value", "min": 0, "max": 100, "name": "reduction %"},
        ],
        "series": [
            {
                "name": "alerts received",
                "type": "bar",
                "data": [by_bucket[b].alerts if b in by_bucket else 0 for b in axis],
            },
            {
                "name": "incidents opened",
                "type": "bar",
                "data": [by_bucket[b].incidents if b in by_bucket else 0 for b in axis],
            },
            {
                "name": "noise reduction %",
                "type": "line",
                "yAxisIndex": 1,
                "connectNulls": True,
                "data": [round(by_bucket[b].reduction * 100, 1) if b in by_bucket else None for b in axis],
            },
        ],
    }


def accuracy_option(rows: Sequence[AccuracyRow]) -> dict[str, Any]:
    per_category = [row for row in rows if row.category != "all"]
    names = [row.category for row in per_category]
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {},
        "xAxis": {"type": "category", "data": names},
        "yAxis": {"type": "value", "minInterval": 1, "name": "verdicts"},
        "series": [
            {
                "name": "right",
                "type": "bar",
                "stack": "verdicts",
                "color": "#16a34a",
                "data": [r.right for r in per_category],
            },
            {
                "name": "wrong",
                "type": "bar",
                "stack": "verdicts",
                "color": "#dc2626",
                "data": [r.wrong for r in per_category],
            },
        ],
    }


def accuracy_summary(rows: Sequence[AccuracyRow]) -> str:
    overall = next((row for row in rows if row.category == "all"), None)
    if overall is None:
        return "No feedback in this range yet: responders give it on each incident's page."
    return (
        f"{round(overall.accuracy * 100)}% of {overall.right + overall.wrong} judged diagnoses were right "
        f"({overall.right} right, {overall.wrong} wrong)."
    )


def root_causes_option(rows: Sequence[RootCauseRow]) -> dict[str, Any]:
    """Horizontal bars, the most frequent on top."""
    ordered = list(reversed(rows))
    return {
        "tooltip": {"trigger": "axis"},
        "grid": {"containLabel": True},
        "xAxis": {"type": "value", "minInterval": 1, "name": "incidents"},
        "yAxis": {"type": "category", "data": [f"{r.category} / {r.component}" for r in ordered]},
        "series": [{"name": "incidents", "type": "bar", "data": [r.incidents for r in ordered]}],
    }


def chart_option(
    slug: str, rows: Sequence[BaseModel], axis: Sequence[datetime], time_range: TimeRange
) -> dict[str, Any]:
    if slug.startswith("incidents-by-"):
        return counts_option(rows, axis, time_range)  # type: ignore[arg-type]
    if slug == "mtta-mttr":
        return timings_option(rows, axis, time_range)  # type: ignore[arg-type]
    if slug == "noise":
        return noise_option(rows, axis, time_range)  # type: ignore[arg-type]
    if slug == "accuracy":
        return accuracy_option(rows)  # type: ignore[arg-type]
    return root_causes_option(rows)  # type: ignore[arg-type]


def empty_message(slug: str, time_range: TimeRange) -> str | None:
    """What to say instead of an empty chart."""
    if slug == "mtta-mttr":
        return f"No incident closed among those opened in the last {time_range.label}."
    if slug == "accuracy":
        return None  # accuracy_summary says it
    return f"No incidents in the last {time_range.label}."


def store_down_message(error: BaseException) -> str:
    return STORE_DOWN.format(reason=str(error) or type(error).__name__)


# --- page --------------------------------------------------------------------------------------------------


async def insights_page(context: ConsoleContext, user: SignedInUser) -> None:
    """Build `/insights` for one tab: a range select, then one card per chart with its CSV link."""
    from nicegui import ui

    del user  # every signed-in user may read insights
    ui.page_title(PAGE_TITLE)
    with ui.row().classes("w-full items-center"):
        ui.label("Insights").classes("text-h5")
        ui.space()
        select = tagged(
            ui.select(range_options(), value=DEFAULT_RANGE.value, label="Time range").classes("w-40"), "insights-range"
        )
    message = tagged(ui.label("").classes("text-negative"), "insights-message")
    message.set_visibility(False)
    body = ui.column().classes("w-full")

    async def show() -> None:
        time_range = TimeRange(select.value)
        store = context.store
        if store is None:
            message.set_text(store_down_message(ConnectionError("the console has not reached it yet")))
            message.set_visibility(True)
            body.clear()
            return
        try:
            results = {slug: await chart.load(store, time_range) for slug, chart in CHARTS.items()}
        except Exception as error:
            if not store_unavailable(error):
                raise
            message.set_text(store_down_message(error))
            message.set_visibility(True)
            body.clear()
            return
        if select.value != time_range.value:
            return  # the range changed while reading: the read that change started draws
        message.set_visibility(False)
        axis = insights.buckets(time_range)
        body.clear()
        with body, ui.grid(columns=2).classes("w-full gap-4"):
            for slug, chart in CHARTS.items():
                _chart_card(chart, results[slug], axis, time_range)

    select.on_value_change(show)
    await show()


def _chart_card(chart: Chart, rows: Sequence[BaseModel], axis: Sequence[datetime], time_range: TimeRange) -> None:
    from nicegui import ui

    with tagged(ui.card().classes("w-full"), CHART_TESTID.format(slug=chart.slug)):
        with ui.row().classes("w-full items-baseline"):
            ui.label(chart.title).classes("text-subtitle1 text-weight-medium")
            ui.space()
            link = tagged(ui.link("CSV", csv_path(chart.slug, time_range)), CSV_TESTID.format(slug=chart.slug))
            link.props["download"] = csv_filename(chart.slug, time_range)
        ui.label(chart.about).classes("text-caption text-grey-7")
        if chart.slug == "accuracy":
            tagged(ui.label(accuracy_summary(rows)), "insights-accuracy")  # type: ignore[arg-type]
        empty = empty_message(chart.slug, time_range)
        if not rows and empty is not None:
            ui.label(empty).classes("text-grey-7")
            return
        ui.echart(chart_option(chart.slug, rows, axis, time_range)).classes("w-full h-64")


# --- CSV route ---------------------------------------------------------------------------------------------


def register_routes(app: FastAPI, context: ConsoleContext, current_user: Callable[[], SignedInUser | None]) -> None:
    """`GET /insights/{chart}.csv?range=24h|7d|30d|90d`: the rows behind one chart. `current_user` is the
    console's session check (ui.login.session_user over `app.storage.user`); without a user the answer is a
    redirect to the sign-in page, which returns here afterwards."""
    from ui.login import login_url

    @app.get("/insights/{chart}.csv", include_in_schema=False)
    async def insights_csv(request: Request, chart: str) -> Response:
        if current_user() is None:
            CSV_DOWNLOADS.labels(chart="-", outcome="signed_out").inc()
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(login_url(target), status_code=303)
        spec = CHARTS.get(chart)
        if spec is None:
            CSV_DOWNLOADS.labels(chart="-", outcome="unknown_chart").inc()
            raise HTTPException(404, f"no chart {chart!r}: one of {', '.join(CHARTS)}")
        try:
            time_range = TimeRange(request.query_params.get("range", DEFAULT_RANGE.value))
        except ValueError:
            CSV_DOWNLOADS.labels(chart=chart, outcome="bad_range").inc()
            raise HTTPException(400, f"range must be one of {', '.join(r.value for r in TimeRange)}") from None
        store = context.store
        try:
            if store is None:
                raise ConnectionError("the console has not reached PostgreSQL yet")
            rows = await spec.load(store, time_range)
        except Exception as error:
            if not store_unavailable(error):
                raise
            CSV_DOWNLOADS.labels(chart=chart, outcome="store_down").inc()
            raise HTTPException(503, f"PostgreSQL is not reachable: {error}") from None
        CSV_DOWNLOADS.labels(chart=chart, outcome="ok").inc()
        return Response(
            insights.to_csv(rows, spec.model),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{csv_filename(chart, time_range)}"'},
        )
