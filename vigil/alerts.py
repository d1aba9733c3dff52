"""Alert intake: turn Alertmanager, Grafana and Vigil webhook bodies into normalised `Alert`s.

Pure functions, no I/O. Everything a sender can get wrong surfaces as `AlertPayloadError`, whose `reason`
names the JSON path of each problem, so the API can answer 4xx with a message the sender can act on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from vigil.models import Alert, AlertSource, AlertStatus, Severity
from vigil.untrusted_json import storable

MAX_ALERTS_PER_PAYLOAD = 5000

# Bounds on every field that reaches workflow state or a database key: a sender that exceeds one gets a 422
# naming the field, so no alert can push an incident past a Temporal payload limit or a btree row limit.
MAX_KEY_LENGTH = 128
MAX_FINGERPRINT_LENGTH = 128
MAX_LABELS = 64
MAX_ANNOTATIONS = 64
MAX_URL_LENGTH = 4096
_MAX_VALUE_LENGTH = 1024  # models.Label
_MAX_SUMMARY_LENGTH = 300
_MAX_REPORTED_ERRORS = 10
_SLUG_LENGTH = 60
_SERVICE_LABELS = ("service", "job", "app", "app_kubernetes_io_name", "container")
_SEVERITY_LABELS = ("severity", "priority")
_GO_ZERO_TIME = datetime.min.replace(tzinfo=UTC)
_SUPPORTED_ALERTMANAGER_VERSIONS = ("4",)

_SEVERITY_ALIASES: dict[str, Severity] = {
    **dict.fromkeys(("critical", "page", "p1", "sev1", "fatal", "emergency"), Severity.CRITICAL),
    **dict.fromkeys(("error", "high", "major", "p2", "sev2"), Severity.HIGH),
    **dict.fromkeys(("warning", "warn", "medium", "minor", "p3", "sev3"), Severity.WARNING),
    **dict.fromkeys(("info", "informational", "low", "none", "ok", "p4", "p5", "sev4", "sev5"), Severity.INFO),
}


class AlertPayloadError(ValueError):
    """A payload we cannot accept; `reason` names the JSON path: "alerts[3].labels: must be an object"."""

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- public helpers -------------------------------------------------------------------------------------


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """Stable identity of a label set: independent of label order, 16 hex chars like Alertmanager's."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_ALERT_OVERHEAD_BYTES = 400
"""Field names, timestamps and enums of one serialised alert, beside its strings."""


def alert_size(alert: Alert) -> int:
    """An upper estimate of the alert's serialised size (JSON escapes aside, its strings dominate)."""
    strings = (*alert.labels.items(), *alert.annotations.items())
    text = sum(len(key) + len(value) for key, value in strings)
    extras = len(alert.summary) + len(alert.generator_url or "") + len(alert.fingerprint) + len(alert.group_key)
    return 4 * (text + extras) // 3 + _ALERT_OVERHEAD_BYTES


def normalise_severity(value: str | None) -> Severity:
    """Map the spellings teams use (P1, sev-2, warn, ...) onto Vigil's four levels; unknown is WARNING."""
    if value is None:
        return Severity.WARNING
    key = re.sub(r"[\s_-]+", "", value).lower()
    return _SEVERITY_ALIASES.get(key, Severity.WARNING)


def group_labels(labels: Mapping[str, str], group_by: Sequence[str]) -> dict[str, str]:
    """The labels that decide an alert's group.

    An entry `a|b` takes the first of `a`, `b` with a non-empty value and records it under `a`. Entries that
    resolve to nothing are left out; when none resolves, the alert is grouped by its `alertname` alone.
    Raises ValueError when there is not even an alertname (the parse functions guarantee one).
    """
    resolved: dict[str, str] = {}
    for entry in group_by:
        names = [name.strip() for name in entry.split("|") if name.strip()]
        if not names or names[0] in resolved:
            continue
        if (value := _first_label(labels, names)) is not None:
            resolved[names[0]] = value
    if resolved:
        return resolved
    if alertname := labels.get("alertname"):
        return {"alertname": alertname}
    raise ValueError("labels have none of the group_by labels and no alertname")


def group_key(labels: Mapping[str, str], group_by: Sequence[str]) -> str:
    """Canonical `k=v,k=v` string of `group_labels`, sorted by key.

    Backslash, ',' and '=' are escaped with a backslash, so two different groups never share a key.
    """
    resolved = group_labels(labels, group_by)
    return ",".join(f"{_escape(name)}={_escape(resolved[name])}" for name in sorted(resolved))


def incident_id_for(group_key: str) -> str:
    """Deterministic incident (workflow) id: a readable slug of the key's values plus a hash of the key.

    Only [a-z0-9-], at most 80 characters: safe as a Temporal workflow id and as a URL path segment.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(_group_key_values(group_key)).lower()).strip("-")
    slug = slug[:_SLUG_LENGTH].rstrip("-")
    digest = hashlib.sha256(group_key.encode()).hexdigest()[:10]
    return f"incident-{slug}-{digest}" if slug else f"incident-{digest}"


# --- parsers --------------------------------------------------------------------------------------------


def parse_alertmanager(payload: object, *, group_by: Sequence[str], received_at: datetime) -> list[Alert]:
    """Alertmanager webhook (version 4)."""
    body = _validate(_AlertmanagerPayload, payload)
    return _from_webhook(body.alerts, AlertSource.ALERTMANAGER, (), group_by, received_at)


def parse_grafana(payload: object, *, group_by: Sequence[str], received_at: datetime) -> list[Alert]:
    """Grafana unified alerting webhook; any version.

    An alert without `alertname` is named after `__alert_rule_title__`, else the notification's title.
    """
    body = _validate(_GrafanaPayload, payload)
    return _from_webhook(
        body.alerts,
        AlertSource.GRAFANA,
        ("__alert_rule_title__",),
        group_by,
        received_at,
        fallback_name=body.title,
    )


def parse_vigil(payload: object, *, group_by: Sequence[str], received_at: datetime) -> list[Alert]:
    """Vigil's own JSON: one alert object, or `{"alerts": [...]}`."""
    if isinstance(payload, dict) and "alerts" in payload:
        alerts = _validate(_VigilBatch, payload).alerts
    else:
        alerts = [_validate(_VigilAlert, payload)]
    return [_vigil_alert(alert, group_by, _utc(received_at)) for alert in alerts]


# --- private payload models -----------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime out of range") from None


def _timestamp(value: datetime | None) -> datetime | None:
    """UTC, with Go's zero time (Alertmanager's "not set") read as None."""
    if value is None:
        return None
    value = _utc(value)
    return None if value == _GO_ZERO_TIME else value


_Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH)]
_Value = Annotated[str, StringConstraints(max_length=_MAX_VALUE_LENGTH)]
_Labels = Annotated[dict[_Key, _Value], Field(max_length=MAX_LABELS)]
_Annotations = Annotated[dict[_Key, str], Field(max_length=MAX_ANNOTATIONS)]
_Fingerprint = Annotated[str, StringConstraints(max_length=MAX_FINGERPRINT_LENGTH)]
_Url = Annotated[str, StringConstraints(max_length=MAX_URL_LENGTH)]
_Timestamp = Annotated[datetime | None, AfterValidator(_timestamp)]


class _Lenient(BaseModel):
    """Senders add fields of their own: keep validating what we read, ignore the rest."""

    model_config = ConfigDict(extra="allow")


class _WebhookAlert(_Lenient):
    status: AlertStatus
    labels: _Labels
    annotations: _Annotations = {}
    startsAt: _Timestamp
    endsAt: _Timestamp = None
    generatorURL: _Url | None = None
    fingerprint: _Fingerprint | None = None


class _WebhookPayload(_Lenient):
    alerts: list[_WebhookAlert]


class _AlertmanagerPayload(_WebhookPayload):
    version: str

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        if value not in _SUPPORTED_ALERTMANAGER_VERSIONS:
            supported = ", ".join(repr(version) for version in _SUPPORTED_ALERTMANAGER_VERSIONS)
            raise ValueError(f"unsupported Alertmanager webhook version {value!r}; supported: {supported}")
        return value


class _GrafanaPayload(_WebhookPayload):
    title: str | None = None


class _VigilAlert(_Lenient):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=_MAX_VALUE_LENGTH)]
    status: AlertStatus = AlertStatus.FIRING
    severity: _Value | None = None
    service: _Value | None = None
    labels: _Labels = {}
    annotations: _Annotations = {}
    summary: str | None = None
    description: str | None = None
    starts_at: _Timestamp = None
    ends_at: _Timestamp = None
    fingerprint: _Fingerprint | None = None
    generator_url: _Url | None = None


class _VigilBatch(_Lenient):
    alerts: list[_VigilAlert]


# --- conversion -----------------------------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], payload: object) -> _M:
    _check_alert_count(payload)
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise AlertPayloadError(_describe(error)) from None


def _check_alert_count(payload: object) -> None:
    """Checked before validation, so an oversized storm is refused without validating thousands of items."""
    alerts = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(alerts, list):
        return
    if not alerts:
        raise AlertPayloadError("alerts: no alerts in payload")
    if len(alerts) > MAX_ALERTS_PER_PAYLOAD:
        raise AlertPayloadError(
            f"alerts: {len(alerts)} alerts in one payload; at most {MAX_ALERTS_PER_PAYLOAD} are accepted"
        )


def _from_webhook(
    alerts: list[_WebhookAlert],
    source: AlertSource,
    name_labels: Sequence[str],
    group_by: Sequence[str],
    received_at: datetime,
    *,
    fallback_name: str | None = None,
) -> list[Alert]:
    received_at = _utc(received_at)
    result: list[Alert] = []
    for index, alert in enumerate(alerts):
        labels = dict(alert.labels)
        if not labels.get("alertname"):
            name = _first_label(labels, name_labels) or fallback_name
            if not name:
                raise AlertPayloadError(f"alerts[{index}].labels.alertname: required label missing")
            labels["alertname"] = name[:_MAX_VALUE_LENGTH]
        result.append(
            _build(
                source=source,
                labels=labels,
                annotations=alert.annotations,
                status=alert.status,
                starts_at=alert.startsAt or received_at,
                ends_at=alert.endsAt,
                generator_url=alert.generatorURL or None,
                fingerprint=alert.fingerprint,
                group_by=group_by,
                received_at=received_at,
            )
        )
    return result


def _vigil_alert(alert: _VigilAlert, group_by: Sequence[str], received_at: datetime) -> Alert:
    labels = {**alert.labels, "alertname": alert.name}
    if alert.severity is not None:
        labels["severity"] = alert.severity
    if alert.service is not None:
        labels["service"] = alert.service
    annotations = dict(alert.annotations)
    if alert.summary is not None:
        annotations["summary"] = alert.summary
    if alert.description is not None:
        annotations["description"] = alert.description
    return _build(
        source=AlertSource.VIGIL,
        labels=labels,
        annotations=annotations,
        status=alert.status,
        starts_at=alert.starts_at or received_at,
        ends_at=alert.ends_at,
        generator_url=alert.generator_url or None,
        fingerprint=alert.fingerprint,
        group_by=group_by,
        received_at=received_at,
    )


def _build(
    *,
    source: AlertSource,
    labels: dict[str, str],
    annotations: Mapping[str, str],
    status: AlertStatus,
    starts_at: datetime,
    ends_at: datetime | None,
    generator_url: str | None,
    fingerprint: str | None,
    group_by: Sequence[str],
    received_at: datetime,
) -> Alert:
    labels = _storable(labels)
    annotations = _storable(annotations)
    fingerprint = storable(fingerprint) if fingerprint else None
    generator_url = storable(generator_url) if generator_url else None
    return Alert(
        source=source,
        fingerprint=(fingerprint or "").strip() or label_fingerprint(labels),
        group_key=group_key(labels, group_by),
        status=status,
        labels=labels,
        annotations={key: _clip(value, _MAX_VALUE_LENGTH) for key, value in annotations.items()},
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
        severity=normalise_severity(_first_label(labels, _SEVERITY_LABELS)),
        service=_first_label(labels, _SERVICE_LABELS),
        summary=_summary(annotations, labels["alertname"]),
        received_at=received_at,
    )


def _storable(values: Mapping[str, str]) -> dict[str, str]:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD, as in stored log lines, so the alert is kept."""
    return {storable(key): storable(value) for key, value in values.items()}


def _first_label(labels: Mapping[str, str], names: Sequence[str]) -> str | None:
    """The value of the first of `names` that is set to a non-empty value."""
    return next((labels[name] for name in names if labels.get(name)), None)


def _summary(annotations: Mapping[str, str], alertname: str) -> str:
    """A one-line title: summary, else description, else alertname."""
    for key in ("summary", "description"):
        line = next((line.strip() for line in annotations.get(key, "").splitlines() if line.strip()), "")
        if line:
            return _clip(line, _MAX_SUMMARY_LENGTH)
    return alertname


def _clip(text: str, limit: int) -> str:
    """Annotations are prose: a long one is shortened (marked with an ellipsis) rather than refused."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- group keys -----------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _group_key_values(key: str) -> list[str]:
    """The values of a `group_key` string, unescaped; a pair without '=' counts as a value."""
    values: list[str] = []
    current: list[str] = []
    in_value = escaped = False
    for char in key:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "=" and not in_value:
            current, in_value = [], True
        elif char == ",":
            values.append("".join(current))
            current, in_value = [], False
        else:
            current.append(char)
    values.append("".join(current))
    return values


# --- error reporting ------------------------------------------------------------------------------------


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _describe(error: ValidationError) -> str:
    problems = [_problem(detail) for detail in error.errors(include_url=False)]
    reason = "; ".join(problems[:_MAX_REPORTED_ERRORS])
    if len(problems) > _MAX_REPORTED_ERRORS:
        reason += f"; and {len(problems) - _MAX_REPORTED_ERRORS} more problems"
    return reason


def _problem(detail: ErrorDetails) -> str:
    loc = detail["loc"]
    if loc and loc[-1] == "[key]":  # a dict key failed: loc is (..., the key, "[key]")
        return f"{_path(loc[:-2])}: keys must be strings of 1 to {MAX_KEY_LENGTH} characters"
    return f"{_path(loc)}: {_message(detail)}"


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path or "payload"


def _message(detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx: dict[str, Any] = detail.get("ctx") or {}
    messages: dict[str, str] = {
        "missing": "required field missing",
        "model_type": "must be a JSON object",
        "model_attributes_type": "must be a JSON object",
        "dict_type": "must be an object",
        "list_type": "must be a list",
        "string_type": "must be a string",
        "string_too_short": "must not be empty",
        "string_too_long": f"longer than {ctx.get('max_length')} characters",
        "too_long": f"more than {ctx.get('max_length')} entries",
        "enum": f"must be {ctx.get('expected')}",
        "literal_error": f"must be {ctx.get('expected')}",
        "value_error": str(ctx.get("error")),
    }
    if kind.startswith("datetime"):
        return "invalid datetime (expected RFC 3339, e.g. 2024-05-01T12:00:00Z)"
    return messages.get(kind, detail["msg"])
