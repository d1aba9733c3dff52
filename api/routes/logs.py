"""Log intake: Vigil's JSON lines (`POST /api/v1/logs`), the Loki push API (`POST /loki/api/v1/push`, so
Promtail, Grafana Alloy and Vector ship here unchanged), and the service + time-window read.

Good lines are stored even when others in the same request are rejected: the answer counts and explains the
rejected ones. A request is refused whole only when it cannot be read at all, or when not one line was usable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

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
from api.metrics import LOG_LINES_RECEIVED, LOG_REQUESTS
from vigil.logs import (
    LogPayloadError,
    ParsedLogs,
    PushTooLargeError,
    decode_content,
    decompress_snappy,
    parse_json_logs,
    parse_loki_json,
    parse_loki_protobuf,
)
from vigil.models import LogIngestResult, LogRecord
from vigil.store.database import STORE_UNAVAILABLE, Store, store_unavailable

router = APIRouter(tags=["logs"])

DEFAULT_WINDOW = timedelta(minutes=15)
MAX_READ_LIMIT = 10_000
JSON_LINES_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/json"}
)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Times outside [EARLIEST, LATEST) are refused: no log or deploy lies there, and window arithmetic near the ends
of `datetime`'s range would overflow."""
NO_NUL = r"^[^\x00]+$"
"""Pattern of a service in a query: no NUL, which PostgreSQL cannot take (and no stored service holds)."""
ServiceName = Annotated[str, Query(min_length=1, max_length=200, pattern=NO_NUL)]

_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token."},
    403: {"description": "A viewer's API token: intake needs VIGIL_API_TOKEN or a responder's (or admin's) token."},
    413: {
        "description": "Body larger than VIGIL_MAX_PAYLOAD_BYTES (a compressed body may expand to 8x that), or "
        "more lines than VIGIL_MAX_LOG_LINES_PER_REQUEST."
    },
    415: {"description": "Content-Type not accepted here; `detail` says which are."},
    503: {"description": "PostgreSQL unreachable; retry later (nothing was stored)."},
}


def content_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_capped_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is over `limit` bytes (declared or streamed: chunked bodies are counted too)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _refuse(fmt: str, code: int, reason: str, detail: object, rejected_lines: int = 0) -> HTTPException:
    LOG_REQUESTS.labels(fmt, reason).inc()
    if rejected_lines:
        LOG_LINES_RECEIVED.labels(fmt, "rejected").inc(rejected_lines)
    headers = RETRY_AFTER if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return HTTPException(code, detail, headers=headers)


async def _read(request: Request, fmt: str, settings: SettingsDep, credentials: BearerDep) -> bytes:
    """Auth, then the size-capped body with its Content-Encoding undone."""
    try:
        authorize_intake(request, credentials)
    except Refusal as refusal:
        LOG_REQUESTS.labels(fmt, refusal.reason).inc()
        raise
    limit = settings.max_payload_bytes
    body = await read_capped_body(request, limit)
    if body is None:
        raise _refuse(fmt, 413, "too_large", f"body over the {limit}-byte limit (VIGIL_MAX_PAYLOAD_BYTES)")
    encoding = request.headers.get("content-encoding")
    if fmt == "loki_protobuf" and (encoding or "").strip().lower() == "snappy":
        encoding = None  # the protobuf push is always snappy: decompressed below, not twice
    try:
        return decode_content(body, encoding, limit)
    except PushTooLargeError as exc:
        raise _refuse(fmt, 413, "too_large", exc.reason) from exc
    except LogPayloadError as exc:
        code = 400 if fmt.startswith("loki") else 422
        raise _refuse(fmt, code, "invalid_encoding", exc.reason) from exc


async def _store(fmt: str, store: Store, parsed: ParsedLogs, received_at: datetime) -> None:
    try:
        await store.insert_logs(parsed.records, received_at=received_at)
    except STORE_UNAVAILABLE as exc:  # an outage (store_unavailable tells): 503, so shippers retry
        if not store_unavailable(exc):
            raise
        raise _refuse(fmt, 503, "database_unavailable", f"PostgreSQL did not take the lines: {exc}") from exc
    LOG_LINES_RECEIVED.labels(fmt, "accepted").inc(len(parsed.records))
    if parsed.rejected:
        LOG_LINES_RECEIVED.labels(fmt, "rejected").inc(parsed.rejected)
    LOG_REQUESTS.labels(fmt, "partial" if parsed.rejected else "accepted").inc()


@router.post(
    "/api/v1/logs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LogIngestResult,
    summary="Push log lines: JSON lines, or a JSON array of objects",
    description=(
        "One JSON object per line (`application/x-ndjson`; `application/json` may also hold JSON lines, one "
        "object, or an array of objects). Fields: `service` (required unless `?service=` gives it), the text in "
        "`message`, `msg`, `line` or `log`, `ts` (ISO-8601, or unix seconds/ms/µs/ns; default: received time), "
        "optional `level`, `trace_id`, `request_id`; every other field becomes a label (nested objects as "
        "dotted keys). `Content-Encoding: gzip` is accepted.\n\n"
        "Good lines are stored even when others are rejected: 202 says how many of each, with the first 20 "
        "rejected lines (line number and reason). 422 when not one line could be accepted."
    ),
    responses={
        **_COMMON_ERRORS,
        422: {
            "description": "Not one line could be accepted (or the body is not readable); `detail` holds "
            "`message`, `rejected` and `errors` (line number and reason)."
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def push_logs(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    credentials: BearerDep,
    service: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Service of lines that name none.")
    ] = None,
) -> LogIngestResult:
    fmt = "json"
    content_type = content_type_of(request)
    body = await _read(request, fmt, settings, credentials)
    if content_type and content_type not in JSON_LINES_TYPES and not content_type.endswith("+json"):
        raise _refuse(
            fmt, 415, "unsupported_media_type", f"content-type {content_type!r}: send application/x-ndjson or JSON"
        )
    received_at = datetime.now(UTC)
    try:
        _, parsed = parse_json_logs(
            body, default_service=service, max_lines=settings.max_log_lines_per_request, received_at=received_at
        )
    except PushTooLargeError as exc:
        raise _refuse(fmt, 413, "too_many_lines", exc.reason) from exc
    except LogPayloadError as exc:
        raise _refuse(fmt, 422, "invalid_json", exc.reason) from exc
    if not parsed.records:
        result = parsed.result()
        detail = {
            "message": "no log line could be accepted" if parsed.rejected else "the body holds no log lines",
            "rejected": result.rejected,
            "errors": [error.model_dump() for error in result.errors],
        }
        raise _refuse(fmt, 422, "no_valid_lines", detail, parsed.rejected)
    await _store(fmt, store, parsed, received_at)
    return parsed.result()


@router.post(
    "/loki/api/v1/push",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Loki push API: Promtail, Grafana Alloy and Vector ship here as to Loki",
    description=(
        'JSON (`{"streams": [{"stream": {labels}, "values": [["<unix ns>", "<line>", {metadata}?]]}]}`) or '
        "snappy-compressed protobuf (`application/x-protobuf`, logproto.PushRequest: what Promtail and Alloy "
        "send by default). The service is the first stream label present of `service`, `service_name`, `job`, "
        "`app`, `container`; the other labels and structured metadata become labels (`level`, `trace_id`, "
        "`request_id` become fields).\n\n204 when stored, as Loki answers, also when some entries were "
        "rejected (they are counted in `vigil_log_lines_received_total`); 400 when not one entry was usable."
    ),
    responses={
        **_COMMON_ERRORS,
        204: {"description": "Stored (possibly after rejecting some entries)."},
        400: {"description": "Not a Loki push request, or no entry usable; `detail` says why."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def loki_push(request: Request, settings: SettingsDep, store: StoreDep, credentials: BearerDep) -> Response:
    content_type = content_type_of(request)
    fmt = "loki_protobuf" if content_type == "application/x-protobuf" else "loki_json"
    body = await _read(request, fmt, settings, credentials)
    limit = settings.max_log_lines_per_request
    try:
        if fmt == "loki_protobuf":
            parsed = parse_loki_protobuf(decompress_snappy(body, settings.max_payload_bytes), max_lines=limit)
        elif not content_type or content_type == "application/json":
            parsed = parse_loki_json(body, max_lines=limit)
        else:
            raise _refuse(
                fmt,
                415,
                "unsupported_media_type",
                f"content-type {content_type!r}: send application/json or snappy-compressed application/x-protobuf",
            )
    except PushTooLargeError as exc:
        raise _refuse(fmt, 413, "too_many_lines", exc.reason) from exc
    except LogPayloadError as exc:
        raise _refuse(fmt, 400, "invalid_payload", exc.reason) from exc
    if not parsed.records and parsed.rejected:
        reasons = "; ".join(f"entry {error.line}: {error.reason}" for error in parsed.errors)
        raise _refuse(
            fmt, 400, "no_valid_lines", f"no entry stored, {parsed.rejected} rejected: {reasons}", parsed.rejected
        )
    await _store(fmt, store, parsed, datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class TimeOutOfRange(ValueError):
    """A time that cannot be converted to UTC, or lies outside [EARLIEST, LATEST)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def to_utc(value: datetime, field: str) -> datetime:
    """`value` in UTC (naive means UTC), or `TimeOutOfRange` naming `field`. Converting can overflow:
    9999-12-31T23:59:59-23:59 is past the year 9999 in UTC."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise TimeOutOfRange(field, f"{value.isoformat()} is out of range once converted to UTC") from exc
    if not EARLIEST <= utc < LATEST:
        raise TimeOutOfRange(field, f"{value.isoformat()} is not between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return utc


def _query_error(field: str, message: str) -> RequestValidationError:
    """A query parameter refused like FastAPI refuses one: 422 with its `loc` (see api.app)."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", field), "msg": message}])


def window(start: datetime | None, end: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    """[start, end) in UTC: end defaults to now, start to `default` before end; naive times are UTC."""
    try:
        end = datetime.now(UTC) if end is None else to_utc(end, "end")
        start = end - default if start is None else to_utc(start, "start")
    except TimeOutOfRange as exc:
        raise _query_error(exc.field, str(exc)) from exc
    if start >= end:
        raise _query_error("start", "start must be before end")
    return start, end


@router.get(
    "/api/v1/logs",
    response_model=list[LogRecord],
    summary="Log lines of one service in a time window, oldest first",
    description="Lines with start <= ts < end (default: the last 15 minutes), ordered by ts, at most `limit`.",
    dependencies=[Depends(require_viewer)],
    responses={**AUTH_RESPONSES, 422: {"description": "Bad parameters."}},
)
async def read_logs(
    store: StoreDep,
    service: ServiceName,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READ_LIMIT)] = 1000,
) -> list[LogRecord]:
    start, end = window(start, end, DEFAULT_WINDOW)
    return await store.logs_window(service, start, end, limit)
