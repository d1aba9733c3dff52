"""ECharts options for the incident page's metric charts, as pure functions (no NiceGUI, no I/O).

A chart shows the series of one alert rule's measured expression (what the diagnosis read from Prometheus) over
the incident's window, with a line at the onset, a marker at each change point that the analysis engine finds on
the series (`vigil.analysis.metric_anomalies`, the function the diagnosis uses) and a line at each deploy, so
metrics and changes share one time axis. Times are epoch milliseconds, the unit of an ECharts time axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.analysis.bundle import MetricSeries
from vigil.analysis.metric_anomalies import ChangePoint, analyse_series
from vigil.analysis.metric_anomalies import MetricSeries as AnalysedSeries
from vigil.analysis.report import metric_evidence_id
from vigil.models import IncidentState

LOOKBACK = timedelta(minutes=30)
"""Shown before the onset: the diagnosis reads the same 30 minutes (`DiagnoseInput.lookback_minutes`)."""
ONSET_COLOR = "#dc2626"
DEPLOY_COLOR = "#2563eb"
CHANGE_COLOR = "#f59e0b"


@dataclass(frozen=True)
class Marker:
    """A vertical line on the time axis: the onset or a deploy."""

    at: datetime
    label: str


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def incident_onset(state: IncidentState) -> datetime:
    """When it started: the first alert's start, or the incident's opening when it has no alert."""
    starts = [record.starts_at for record in state.alerts.values()]
    return min(starts) if starts else state.opened_at


def chart_window(state: IncidentState, now: datetime) -> tuple[datetime, datetime]:
    """[onset - 30 min, closed (or resolved) or now]."""
    start = min(incident_onset(state), state.opened_at) - LOOKBACK
    end = state.closed_at or state.resolved_at or now
    return start, max(end, start + timedelta(minutes=1))


def series_label(series: MetricSeries) -> str:
    labels = ",".join(f'{key}="{value}"' for key, value in sorted(series.labels.items()))
    return f"{series.name}{{{labels}}}" if labels else series.name


def series_evidence_id(series: MetricSeries) -> str:
    """The id the diagnosis gives this series' evidence item (`metric:<name>{labels}`)."""
    return metric_evidence_id(series.name, series.labels)


def change_points(series: MetricSeries) -> list[ChangePoint]:
    """The series' change points, found by the analysis engine's own function with its defaults."""
    found = analyse_series(AnalysedSeries(name=series.name, labels=series.labels, points=series.points))
    return found.change_points if found is not None else []


def _value_at(points: Sequence[tuple[float, float]], ts: float) -> float | None:
    if not points:
        return None
    return min(points, key=lambda point: abs(point[0] - ts))[1]


def _marker_line(marker: Marker, color: str, line_type: str) -> dict[str, Any]:
    return {
        "xAxis": epoch_ms(marker.at),
        "name": marker.label,
        "label": {"formatter": marker.label, "position": "insideEndTop", "color": color},
        "lineStyle": {"color": color, "type": line_type, "width": 2},
    }


def metric_chart_options(
    title: str,
    series: Sequence[MetricSeries],
    *,
    window: tuple[datetime, datetime],
    onset: datetime | None,
    deploys: Sequence[Marker] = (),
    changes: dict[int, list[ChangePoint]] | None = None,
) -> dict[str, Any]:
    """One chart: a line per series; markLines at the onset (red) and each deploy (blue, dashed), carried by the
    first series (or by an empty one when there is no series, so deploys still show on the axis); a markPoint
    at each change point of each series. `changes` maps a series' index to its change points; None: computed
    here with `change_points`."""
    found = changes if changes is not None else {index: change_points(s) for index, s in enumerate(series)}
    lines = [_marker_line(Marker(onset, "onset"), ONSET_COLOR, "solid")] if onset is not None else []
    lines += [_marker_line(deploy, DEPLOY_COLOR, "dashed") for deploy in deploys]
    chart_series: list[dict[str, Any]] = []
    for index, one in enumerate(series):
        points = sorted(one.points)
        marks = []
        for change in found.get(index, []):
            value = _value_at(points, change.ts)
            if value is None:
                continue
            marks.append(
                {
                    "name": f"change {change.direction}",
                    "coord": [int(change.ts * 1000), value],
                    "value": f"{change.direction} {change.before:g}→{change.after:g}",
                }
            )
        chart_series.append(
            {
                "type": "line",
                "name": series_label(one),
                "showSymbol": False,
                "data": [[int(ts * 1000), value] for ts, value in points],
                "markPoint": {
                    "symbol": "pin",
                    "symbolSize": 36,
                    "itemStyle": {"color": CHANGE_COLOR},
                    "label": {"show": False},
                    "data": marks,
                },
            }
        )
    if not chart_series:
        chart_series.append({"type": "line", "name": "deploys", "data": []})
    chart_series[0]["markLine"] = {"symbol": ["none", "none"], "silent": True, "data": lines}
    return {
        "title": {"text": title, "textStyle": {"fontSize": 13}},
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll", "bottom": 0},
        "grid": {"left": 60, "right": 30, "top": 40, "bottom": 50},
        "xAxis": {"type": "time", "min": epoch_ms(window[0]), "max": epoch_ms(window[1])},
        "yAxis": {"type": "value", "scale": True},
        "series": chart_series,
    }
