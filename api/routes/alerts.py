"""Alert webhooks: Alertmanager (v4), Grafana alerting, and Vigil's own JSON."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status
from temporalio.service import RPCError

from api.deps import RETRY_AFTER, BearerDep, Refusal, SettingsDep, SignallerDep, authorize_intake
from api.metrics import ALERTS_RECEIVED, WEBHOOK_LATENCY, WEBHOOK_REJECTED, WEBHOOK_REQUESTS
from vigil.alerts import AlertPayloadError, parse_alertmanager, parse_grafana, parse_vigil
from vigil.models import Alert, AlertSource, IngestResponse
from vigil.untrusted_json import JSONInputError, loads_untrusted

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

Parser = Callable[..., list[Alert]]
_PARSERS: dict[AlertSource, Parser] = {
    AlertSource.ALERTMANAGER: parse_alertmanager,
    AlertSource.GRAFANA: parse_grafana,
    AlertSource.VIGIL: parse_vigil,
}
_ERROR_RESPONSES: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing or wrong bearer token."},
    403: {"description": "A viewer's API token: intake needs VIGIL_API_TOKEN or a responder's (or admin's) token."},
    413: {"description": "Body larger than VIGIL_MAX_PAYLOAD_BYTES."},
    415: {"description": "Body is not JSON."},
    422: {"description": "Malformed payload; `detail` says where."},
    503: {"description": "Temporal unreachable; retry later (nothing was accepted)."},
}


def _reject(source: AlertSource, code: int, reason: str, detail: str) -> HTTPException:
    WEBHOOK_REJECTED.labels(source.value, reason).inc()
    WEBHOOK_REQUESTS.labels(source.value, reason).inc()
    headers = RETRY_AFTER if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return HTTPException(code, detail, headers=headers)


async def _read_body(request: Request, source: AlertSource, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _reject(source, 413, "too_large", f"body over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _reject(source, 413, "too_large", f"body over the {limit}-byte limit")
    return bytes(body)


async def _ingest(
    source: AlertSource, request: Request, settings: SettingsDep, signaller: SignallerDep, credentials: BearerDep
) -> IngestResponse:
    started = time.perf_counter()
    try:
        authorize_intake(request, credentials)
    except Refusal as refusal:
        WEBHOOK_REJECTED.labels(source.value, refusal.reason).inc()
        WEBHOOK_REQUESTS.labels(source.value, refusal.reason).inc()
        raise
    body = await _read_body(request, source, settings.max_payload_bytes)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
        raise _reject(source, 415, "not_json", f"content-type {content_type!r} is not application/json")
    try:
        payload = loads_untrusted(body)
    except JSONInputError as exc:
        raise _reject(source, 422, "invalid_json", f"body is not valid JSON: {exc.reason}") from exc
    try:
        alerts = _PARSERS[source](payload, group_by=settings.group_by, received_at=datetime.now(UTC))
    except AlertPayloadError as exc:
        raise _reject(source, 422, "invalid_payload", exc.reason) from exc
    try:
        incidents = await signaller.deliver(alerts)
    except RPCError as exc:
        raise _reject(source, 503, "temporal_unavailable", f"Temporal did not accept the alerts: {exc}") from exc
    for alert in alerts:
        ALERTS_RECEIVED.labels(source.value, alert.status.value).inc()
    WEBHOOK_REQUESTS.labels(source.value, "accepted").inc()
    WEBHOOK_LATENCY.labels(source.value).observe(time.perf_counter() - started)
    return IngestResponse(accepted=len(alerts), incidents=incidents)


def _route(source: AlertSource, path: str, summary: str, tags: Sequence[str] = ()) -> None:
    async def endpoint(
        request: Request, settings: SettingsDep, signaller: SignallerDep, credentials: BearerDep
    ) -> IngestResponse:
        return await _ingest(source, request, settings, signaller, credentials)

    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=IngestResponse,
        summary=summary,
        responses=_ERROR_RESPONSES,
        operation_id=f"ingest_{source.value}",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        },
    )


_route(AlertSource.ALERTMANAGER, "/alertmanager", "Alertmanager webhook (version 4), firing and resolved")
_route(AlertSource.GRAFANA, "/grafana", "Grafana alerting webhook")
_route(AlertSource.VIGIL, "", 'Vigil\'s own alert JSON: one alert object or {"alerts": [...]}')
