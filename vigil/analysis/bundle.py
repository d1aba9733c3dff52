"""An incident bundle: what `vigil analyze` and the `analyze_bundle` activity read. Every key is optional.

    {"alerts":  [Alertmanager alert objects],
     "logs":    [{"ts": ISO-8601, "service": "...", "line": "raw line"}],
     "metrics": [{"name": "...", "labels": {...}, "points": [[unix_ts, value], ...]}],
     "deploys": [{"ts": ..., "service": ..., "version": ..., "commit": ..., "author": ..., "description": ...}],
     "traces":  [spans: {"trace_id", "span_id", "parent_span_id", "service", "name", "kind", "start", "end",
                 "error", "attributes"} (vigil.analysis.traces.Span), or OTLP/JSON export requests
                 {"resourceSpans": [...]}, each expanded into its spans]}

Bundle content is untrusted data: it is validated with size limits, analysed, never executed or obeyed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vigil.analysis.traces import Span
from vigil.otlp import OTLPPayloadError, TooManySpansError, parse_otlp_json_object

MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_LOG_RECORDS = 2_000_000
MAX_LINE_CHARS = 64 * 1024
MAX_SPANS = 2_000_000


class BundleError(ValueError):
    """The bundle cannot be read: a one-line message for the user, never a traceback."""


class Alert(BaseModel):
    """An Alertmanager alert (webhook or API shape); unknown keys are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")


class LogRecord(BaseModel):
    ts: datetime | None = None
    service: str | None = None
    line: str = Field(max_length=MAX_LINE_CHARS)


class MetricSeries(BaseModel):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    points: list[tuple[float, float]] = Field(default_factory=list)


class Deploy(BaseModel):
    ts: datetime
    service: str
    version: str | None = None
    commit: str | None = None
    author: str | None = None
    description: str | None = None

    @property
    def ref(self) -> str:
        """What the evidence id names: the commit when known, else the version."""
        return self.commit or self.version or "unknown"


class Bundle(BaseModel):
    alerts: list[Alert] = Field(default_factory=list)
    logs: list[LogRecord] = Field(default_factory=list, max_length=MAX_LOG_RECORDS)
    metrics: list[MetricSeries] = Field(default_factory=list)
    deploys: list[Deploy] = Field(default_factory=list)
    traces: list[Span] = Field(default_factory=list, max_length=MAX_SPANS)

    @field_validator("traces", mode="before")
    @classmethod
    def _expand_otlp(cls, value: Any) -> Any:
        """OTLP/JSON export requests in the list become their spans; a span they hold that is unusable is an
        error naming it (a bundle is checked whole, unlike a push)."""
        if not isinstance(value, list):
            return value
        items: list[Any] = []
        for position, item in enumerate(value):
            if not (isinstance(item, dict) and ("resourceSpans" in item or "resource_spans" in item)):
                items.append(item)
                continue
            try:
                parsed = parse_otlp_json_object(item, max_spans=MAX_SPANS)
            except (OTLPPayloadError, TooManySpansError) as exc:
                raise ValueError(f"traces[{position}]: {exc.reason}") from None
            if parsed.errors:
                raise ValueError(f"traces[{position}].{parsed.errors[0]}")
            items.extend(parsed.spans)
        return items


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": str(exc)}
    where = ".".join(str(p) for p in first.get("loc", ())) or "bundle"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid bundle at {where}: {first.get('msg', 'invalid')}{more}"


def parse_bundle(data: Any) -> Bundle:
    """A Bundle from decoded JSON; BundleError with a short message when it is not one."""
    if not isinstance(data, dict):
        raise BundleError(f"a bundle is a JSON object, not {type(data).__name__}")
    try:
        return Bundle.model_validate(data)
    except ValidationError as exc:
        raise BundleError(_first_error(exc)) from None


def load_bundle(text: str | bytes) -> Bundle:
    """A Bundle from JSON text; BundleError when it is too large, malformed or of the wrong shape."""
    if len(text) > MAX_BUNDLE_BYTES:  # read as module global: tests lower it
        raise BundleError(f"bundle too large: {len(text)} bytes (limit {MAX_BUNDLE_BYTES})")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"malformed JSON: {exc}") from None
    return parse_bundle(data)
