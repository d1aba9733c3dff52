"""Span intake: OTLP/HTTP `POST /v1/traces` (binary protobuf or OTLP/JSON, as OpenTelemetry SDKs and collectors
export), the window read, and the call graph with its blame ranking.

Answers follow the OTLP/HTTP specification: 200 with an `ExportTraceServiceResponse` in the request's encoding
(`partialSuccess` counts and explains rejected spans), 400 for data that can never be accepted, 415 for a
Content-Type other than `application/x-protobuf` or `application/json`, 503 with Retry-After when PostgreSQL is
down; error bodies are a `google.rpc.Status` (code and message), also in the request's encoding.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from api.deps import (
    AUTH_RESPONSES,
    RETRY_AFTER,
    BearerDep,
    Refusal,
    SettingsDep,
    StoreDep,
    authorize_intake,
    require_viewer,
)
from api.metrics import SPANS_RECEIVED, TRACE_REQUESTS
from api.routes.logs import DEFAULT_WINDOW, NO_NUL, TimeOutOfRange, read_capped_body, to_utc, window
from vigil.analysis.traces import CallGraph, ServiceBlame, Span, blame, call_graph
from vigil.logs import LogPayloadError, PushTooLargeError, decode_content
from vigil.otlp import (
    OTLPPayloadError,
    ParsedSpans,
    Status,
    TooManySpansError,
    encode,
    export_response,
    parse_otlp_json,
    parse_otlp_protobuf,
)
from vigil.settings import Settings
from vigil.store.database import STORE_UNAVAILABLE, store_unavailable

router = APIRouter(tags=["traces"])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_READ_SPANS = 50_000
GRPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 503: 14}
"""google.rpc.Code of each refusal: INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
UNAVAILABLE."""
OptionalService = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=NO_NUL, description="Only traces that touch this service."),
]


class OTLPRefusal(Exception):
    """A refused export, answered as a google.rpc.Status in the request's encoding."""

    def __init__(self, code: int, message: str, *, protobuf: bool, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.protobuf = protobuf
        self.headers = headers

    def response(self) -> Response:
        body = encode(Status(code=GRPC_CODES.get(self.code, 2), message=self.message[:2000]), self.protobuf)
        media_type = PROTOBUF if self.protobuf else JSON
        return Response(body, status_code=self.code, media_type=media_type, headers=self.headers)


def _refuse(
    fmt: str, code: int, reason: str, message: str, *, rejected_spans: int = 0, headers: dict[str, str] | None = None
) -> OTLPRefusal:
    TRACE_REQUESTS.labels(fmt, reason).inc()
    if rejected_spans:
        SPANS_RECEIVED.labels(fmt, "rejected").inc(rejected_spans)
    if code == status.HTTP_503_SERVICE_UNAVAILABLE:
        headers = {**(headers or {}), **RETRY_AFTER}
    return OTLPRefusal(code, message, protobuf=fmt == "otlp_protobuf", headers=headers)


def _authorize(request: Request, credentials: HTTPAuthorizationCredentials | None, fmt: str) -> None:
    try:
        authorize_intake(request, credentials)
    except Refusal as refusal:
        raise _refuse(
            fmt, refusal.status_code, refusal.reason, str(refusal.detail), headers=dict(refusal.headers or {})
        ) from None


async def _parse(request: Request, settings: Settings, fmt: str) -> ParsedSpans:
    limit = settings.max_payload_bytes
    try:
        body = await read_capped_body(request, limit)
    except HTTPException as exc:  # the app-wide JSON nesting check (api.limits): bad data, 400 in OTLP's terms
        raise _refuse(fmt, 400, "too_deep", str(exc.detail)) from exc
    if body is None:
        raise _refuse(fmt, 413, "too_large", f"body over the {limit}-byte limit (VIGIL_MAX_PAYLOAD_BYTES)")
    try:
        body = decode_content(body, request.headers.get("content-encoding"), limit)
        max_spans = settings.max_log_lines_per_request
        if fmt == "otlp_protobuf":
            return parse_otlp_protobuf(body, max_spans=max_spans)
        return parse_otlp_json(body, max_spans=max_spans)
    except (PushTooLargeError, TooManySpansError) as exc:
        raise _refuse(fmt, 413, "too_large", exc.reason) from exc
    except (LogPayloadError, OTLPPayloadError) as exc:
        raise _refuse(fmt, 400, "invalid_payload", exc.reason) from exc


@router.post(
    "/v1/traces",
    status_code=status.HTTP_200_OK,
    response_class=Response,
    summary="OTLP/HTTP trace export: OpenTelemetry SDKs and collectors send spans here",
    description=(
        "An `ExportTraceServiceRequest` as binary protobuf (`application/x-protobuf`) or OTLP/JSON "
        "(`application/json`, hex trace and span ids); `Content-Encoding: gzip` as exporters send it. The service "
        "is the resource's `service.name`; of the span attributes only those naming the callee and the outcome "
        "are kept (`peer.service`, `server.address`, `db.system`, `http.response.status_code`, ...).\n\n"
        "200 with an `ExportTraceServiceResponse` in the request's encoding: good spans are stored even when "
        "others are rejected, and `partialSuccess` says how many were and why. 400 (a `google.rpc.Status`) when "
        "the body cannot be read or not one span was usable; 413 over the size or span limit "
        "(VIGIL_MAX_PAYLOAD_BYTES, VIGIL_MAX_LOG_LINES_PER_REQUEST); 415 for another Content-Type; 503 with "
        "Retry-After when PostgreSQL is down."
    ),
    responses={
        **AUTH_RESPONSES,
        200: {"description": "Stored; `partialSuccess` counts rejected spans."},
        400: {"description": "Not an ExportTraceServiceRequest, or no span usable: a google.rpc.Status."},
        413: {"description": "Body or span count over the limit."},
        415: {"description": "Content-Type is neither application/x-protobuf nor application/json."},
        503: {"description": "PostgreSQL unreachable; retry later (nothing was stored)."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": {"type": "object"}},
                PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def export_traces(request: Request, settings: SettingsDep, store: StoreDep, credentials: BearerDep) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = "otlp_protobuf" if content_type == PROTOBUF else "otlp_json"
    try:
        _authorize(request, credentials, fmt)
        if content_type not in (PROTOBUF, JSON):
            raise _refuse(
                fmt, 415, "unsupported_media_type", f"content-type {content_type!r}: send {PROTOBUF} or {JSON}"
            )
        parsed = await _parse(request, settings, fmt)
        if not parsed.spans and parsed.rejected:
            reasons = "; ".join(parsed.errors)
            raise _refuse(
                fmt,
                400,
                "no_valid_spans",
                f"no span stored, {parsed.rejected} rejected: {reasons}",
                rejected_spans=parsed.rejected,
            )
        try:
            await store.insert_spans(parsed.spans, received_at=datetime.now(UTC))
        except STORE_UNAVAILABLE as exc:
            if not store_unavailable(exc):
                raise
            raise _refuse(fmt, 503, "database_unavailable", f"PostgreSQL did not take the spans: {exc}") from exc
    except OTLPRefusal as refusal:
        return refusal.response()
    SPANS_RECEIVED.labels(fmt, "accepted").inc(len(parsed.spans))
    if parsed.rejected:
        SPANS_RECEIVED.labels(fmt, "rejected").inc(parsed.rejected)
    TRACE_REQUESTS.labels(fmt, "partial" if parsed.rejected else "accepted").inc()
    protobuf = fmt == "otlp_protobuf"
    return Response(encode(export_response(parsed), protobuf), media_type=PROTOBUF if protobuf else JSON)


@router.get(
    "/api/v1/traces",
    response_model=list[Span],
    summary="Spans in a time window (whole traces), oldest first",
    description=(
        "Spans with start <= span start < end (default: the last 15 minutes), ordered by start time. With "
        "`service`, the spans of every trace that touches the service (its callers and callees come along). At "
        "most `limit`: a sample of whole traces when there are more."
    ),
    dependencies=[Depends(require_viewer)],
    responses={**AUTH_RESPONSES, 422: {"description": "Bad parameters."}},
)
async def read_spans(
    store: StoreDep,
    service: OptionalService = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READ_SPANS)] = 5000,
) -> list[Span]:
    start, end = window(start, end, DEFAULT_WINDOW)
    return await store.spans_window(None if service is None else [service], start, end, limit)


def _onset_error(message: str) -> RequestValidationError:
    """Refused like FastAPI refuses a parameter: 422 with its `loc` (see api.app)."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", "onset"), "msg": message}])


class TraceAnalysis(BaseModel):
    """The call graph of the window's spans and every node ranked by blame, highest first."""

    spans: int
    graph: CallGraph
    blame: list[ServiceBlame]


@router.get(
    "/api/v1/traces/blame",
    response_model=TraceAnalysis,
    summary="Call graph and blame: which service's own errors or latency rose at the onset",
    description=(
        "The call graph between services (and un-instrumented callees named by client spans, such as a database "
        "host) with per-edge calls, error rate and p50/p95 latency before and after `onset`, and the nodes "
        "ranked by how much their *own* errors and self time rose: a callee that fails is ranked above the "
        "callers that only pass its failure on. `onset` defaults to the middle of the window."
    ),
    dependencies=[Depends(require_viewer)],
    responses={**AUTH_RESPONSES, 422: {"description": "Bad parameters."}},
)
async def trace_blame(
    store: StoreDep,
    service: OptionalService = None,
    start: datetime | None = None,
    end: datetime | None = None,
    onset: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READ_SPANS)] = 20_000,
) -> TraceAnalysis:
    start, end = window(start, end, DEFAULT_WINDOW)
    try:
        at = start + (end - start) / 2 if onset is None else to_utc(onset, "onset")
    except TimeOutOfRange as exc:
        raise _onset_error(str(exc)) from exc
    if not start <= at < end:
        raise _onset_error("onset must lie in [start, end)")
    spans = await store.spans_window(None if service is None else [service], start, end, limit)
    graph, ranked = await asyncio.to_thread(lambda: (call_graph(spans, at), blame(spans, at)))
    return TraceAnalysis(spans=len(spans), graph=graph, blame=ranked)
