"""OTLP trace intake: an `ExportTraceServiceRequest` as OTLP/HTTP carries it (binary protobuf, or OTLP/JSON with
hex ids and lowerCamelCase or snake_case field names) turned into `Span`s. Pure: no I/O.

Each span stands alone: a bad span is rejected with the reason and counted, the good ones in the same request are
kept (OTLP's partial success). Only a body that cannot be read at all fails whole. Of a span's attributes only
`KEPT_ATTRIBUTES` are kept; text is cut to its limit and NUL / lone surrogates become U+FFFD, as for log lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import ValidationError

from vigil.analysis.traces import (
    KEPT_ATTRIBUTES,
    MAX_ATTRIBUTE_CHARS,
    MAX_NAME_CHARS,
    MAX_SERVICE_CHARS,
    Span,
    SpanKind,
)
from vigil.untrusted_json import JSONInputError, loads_untrusted, storable

MAX_ERRORS = 20
"""Rejected spans reported back with their reason; every rejected span is still counted."""
UNKNOWN_SERVICE = "unknown_service"
"""The service of spans whose resource names none (OpenTelemetry SDKs use the same default)."""
STATUS_CODE_ERROR = 2
KINDS = {
    0: SpanKind.UNSPECIFIED,
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_KIND_NAMES = {f"SPAN_KIND_{kind.name}": number for number, kind in KINDS.items()}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NS_DIGITS = 19
_KEPT = frozenset(KEPT_ATTRIBUTES)
_HEX = frozenset("0123456789abcdef")


class OTLPPayloadError(ValueError):
    """The body as a whole is not an ExportTraceServiceRequest (400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManySpansError(ValueError):
    """More spans in one request than allowed (413)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _SpanError(Exception):
    """One span is unusable; the others go on."""


@dataclass
class ParsedSpans:
    spans: list[Span] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rejected: int = 0

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{where}: {reason}"[:500])


# --- one span, whatever the encoding ----------------------------------------------------------------------------


def _text(value: str, limit: int) -> str:
    return storable(value[:limit])


def _time(nanos: int, name: str) -> datetime:
    if nanos <= 0:
        raise _SpanError(f"{name} is missing")
    try:
        return _EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError as exc:
        raise _SpanError(f"{name} {nanos} is out of range") from exc


def _span(
    *,
    service: str,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    status_code: int,
    status_message: str,
    attributes: dict[str, str],
) -> Span:
    if kind not in KINDS:
        raise _SpanError(f"unknown span kind {kind}")
    start, end = _time(start_ns, "startTimeUnixNano"), _time(end_ns, "endTimeUnixNano")
    if end < start:
        raise _SpanError("endTimeUnixNano is before startTimeUnixNano")
    try:
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent_span_id,
            service=_text(service, MAX_SERVICE_CHARS) or UNKNOWN_SERVICE,
            name=_text(name, MAX_NAME_CHARS),
            kind=KINDS[kind],
            start=start,
            end=end,
            error=status_code == STATUS_CODE_ERROR,
            status_message=_text(status_message, MAX_ATTRIBUTE_CHARS) or None,
            attributes={key: _text(value, MAX_ATTRIBUTE_CHARS) for key, value in attributes.items()},
        )
    except ValidationError as exc:  # what the checks above let through; reported, never raised
        first = exc.errors()[0]
        raise _SpanError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc


def _check_count(count: int, max_spans: int | None) -> None:
    if max_spans is not None and count > max_spans:
        raise TooManySpansError(f"{count} spans in one request (limit {max_spans})")


# --- OTLP/JSON ----------------------------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field by its lowerCamelCase name (OTLP/JSON) or its proto name (which protobuf JSON parsers accept too)."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _list(obj: Mapping[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = _get(obj, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _SpanError(f"{where}.{camel} is not an array")
    return value


def _json_hex_id(value: object, size: int, name: str, *, optional: bool = False) -> str | None:
    if optional and (value is None or value == ""):
        return None
    if not isinstance(value, str):
        raise _SpanError(f"{name} is missing" if value is None else f"{name} is not a string")
    text = value.lower()
    if len(text) != size * 2 or not set(text) <= _HEX:
        raise _SpanError(f"{name} is not {size * 2} hex digits")
    if set(text) == {"0"}:
        raise _SpanError(f"{name} is all zeros")
    return text


def _json_int(value: object, name: str, names: Mapping[str, int] | None = None) -> int:
    """An int64/enum as OTLP/JSON writes it: a number, a decimal string, or (enums) the value's name."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _SpanError(f"{name} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if names is not None and value in names:
            return names[value]
        if value.isdigit() and len(value) <= _MAX_NS_DIGITS:
            return int(value)
    raise _SpanError(f"{name} {str(value)[:40]!r} is not a non-negative integer")


def _json_scalar(value: object) -> str | None:
    """The text of a scalar OTLP/JSON AnyValue; None for arrays, maps, bytes or junk."""
    if not isinstance(value, dict):
        return None
    for key in ("stringValue", "string_value", "intValue", "int_value", "doubleValue", "double_value"):
        inner = value.get(key)
        if isinstance(inner, str | int | float) and not isinstance(inner, bool):
            return str(inner)
    inner = value.get("boolValue", value.get("bool_value"))
    return None if not isinstance(inner, bool) else ("true" if inner else "false")


def _json_attributes(items: object, wanted: frozenset[str]) -> dict[str, str]:
    """The wanted attributes of a KeyValue list; malformed entries are skipped (only a few are kept anyway)."""
    kept: dict[str, str] = {}
    if not isinstance(items, list):
        return kept
    for item in items:
        if isinstance(item, dict) and item.get("key") in wanted:
            text = _json_scalar(item.get("value"))
            if text is not None:
                kept[item["key"]] = text
    return kept


def _json_span(obj: object, service: str) -> Span:
    if not isinstance(obj, dict):
        raise _SpanError("a span is a JSON object")
    status = obj.get("status") or {}
    if not isinstance(status, dict):
        raise _SpanError("status is not an object")
    message = status.get("message") or ""
    name = obj.get("name") or ""
    if not isinstance(message, str) or not isinstance(name, str):
        raise _SpanError("name and status.message are strings")
    return _span(
        service=service,
        trace_id=_json_hex_id(_get(obj, "traceId", "trace_id"), 16, "traceId") or "",
        span_id=_json_hex_id(_get(obj, "spanId", "span_id"), 8, "spanId") or "",
        parent_span_id=_json_hex_id(_get(obj, "parentSpanId", "parent_span_id"), 8, "parentSpanId", optional=True),
        name=name,
        kind=_json_int(obj.get("kind"), "kind", _KIND_NAMES),
        start_ns=_json_int(_get(obj, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
        end_ns=_json_int(_get(obj, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
        status_code=_json_int(status.get("code"), "status.code", _STATUS_NAMES),
        status_message=message,
        attributes=_json_attributes(obj.get("attributes"), _KEPT),
    )


def _json_groups(data: Mapping[str, Any]) -> Iterator[tuple[str, str, list[Any] | _SpanError]]:
    """(where, service, spans or why the group is unreadable) for every scope's span list."""
    resource_spans = _get(data, "resourceSpans", "resource_spans")
    if resource_spans is None:
        return
    if not isinstance(resource_spans, list):
        raise OTLPPayloadError("resourceSpans is not an array")
    for r, resource_span in enumerate(resource_spans):
        where = f"resourceSpans[{r}]"
        if not isinstance(resource_span, dict):
            yield where, "", _SpanError("not an object")
            continue
        resource = resource_span.get("resource") or {}
        attributes = resource.get("attributes") if isinstance(resource, dict) else None
        service = _json_attributes(attributes, frozenset({"service.name"})).get("service.name", UNKNOWN_SERVICE)
        try:
            scopes = _list(resource_span, "scopeSpans", "scope_spans", where) or _list(
                resource_span, "instrumentationLibrarySpans", "instrumentation_library_spans", where
            )
        except _SpanError as exc:
            yield where, service, exc
            continue
        for s, scope in enumerate(scopes):
            scope_where = f"{where}.scopeSpans[{s}]"
            try:
                if not isinstance(scope, dict):
                    raise _SpanError("not an object")
                yield scope_where, service, _list(scope, "spans", "spans", scope_where)
            except _SpanError as exc:
                yield scope_where, service, exc


def parse_otlp_json_object(data: object, *, max_spans: int | None) -> ParsedSpans:
    """Spans of a decoded OTLP/JSON ExportTraceServiceRequest."""
    if not isinstance(data, dict):
        raise OTLPPayloadError(f"an ExportTraceServiceRequest is a JSON object, not {type(data).__name__}")
    groups = list(_json_groups(data))
    _check_count(sum(len(spans) for _, _, spans in groups if isinstance(spans, list)), max_spans)
    parsed = ParsedSpans()
    for where, service, spans in groups:
        if isinstance(spans, _SpanError):
            parsed.reject(where, str(spans))
            continue
        for k, obj in enumerate(spans):
            try:
                parsed.spans.append(_json_span(obj, service))
            except _SpanError as exc:
                parsed.reject(f"{where}.spans[{k}]", str(exc))
    return parsed


def parse_otlp_json(body: bytes, *, max_spans: int | None) -> ParsedSpans:
    """Spans of an OTLP/JSON body."""
    try:
        data = loads_untrusted(body)
    except JSONInputError as exc:
        raise OTLPPayloadError(f"body is not JSON: {exc}") from exc
    return parse_otlp_json_object(data, max_spans=max_spans)


# --- OTLP/protobuf ------------------------------------------------------------------------------------------------


def _pb_scalar(value: AnyValue) -> str | None:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which in ("int_value", "double_value"):
        return str(getattr(value, which))
    return None


def _pb_attributes(items: Iterator[KeyValue] | Any, wanted: frozenset[str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for item in items:
        if item.key in wanted and (text := _pb_scalar(item.value)) is not None:
            kept[item.key] = text
    return kept


def _pb_id(value: bytes, size: int, name: str, *, optional: bool = False) -> str | None:
    if optional and not value:
        return None
    if len(value) != size:
        raise _SpanError(f"{name} is {len(value)} bytes, not {size}")
    if not any(value):
        raise _SpanError(f"{name} is all zeros")
    return value.hex()


def parse_otlp_protobuf(body: bytes, *, max_spans: int | None) -> ParsedSpans:
    """Spans of a binary protobuf ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise OTLPPayloadError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from exc
    _check_count(sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans), max_spans)
    parsed = ParsedSpans()
    for r, resource_span in enumerate(request.resource_spans):
        service = _pb_attributes(resource_span.resource.attributes, frozenset({"service.name"})).get(
            "service.name", UNKNOWN_SERVICE
        )
        for s, scope in enumerate(resource_span.scope_spans):
            for k, span in enumerate(scope.spans):
                try:
                    parsed.spans.append(
                        _span(
                            service=service,
                            trace_id=_pb_id(span.trace_id, 16, "trace_id") or "",
                            span_id=_pb_id(span.span_id, 8, "span_id") or "",
                            parent_span_id=_pb_id(span.parent_span_id, 8, "parent_span_id", optional=True),
                            name=span.name,
                            kind=span.kind,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            status_code=span.status.code,
                            status_message=span.status.message,
                            attributes=_pb_attributes(span.attributes, _KEPT),
                        )
                    )
                except _SpanError as exc:
                    parsed.reject(f"resourceSpans[{r}].scopeSpans[{s}].spans[{k}]", str(exc))
    return parsed


# --- answers --------------------------------------------------------------------------------------------------


def _status_class() -> Any:
    """google.rpc.Status (code, message; its `details` are never sent), the body of an OTLP/HTTP error."""
    pool = descriptor_pool.DescriptorPool()
    proto = descriptor_pb2.FileDescriptorProto(name="vigil/rpc_status.proto", package="google.rpc", syntax="proto3")
    field_type = descriptor_pb2.FieldDescriptorProto
    proto.message_type.add(
        name="Status",
        field=[
            field_type(name="code", number=1, label=field_type.LABEL_OPTIONAL, type=field_type.TYPE_INT32),
            field_type(name="message", number=2, label=field_type.LABEL_OPTIONAL, type=field_type.TYPE_STRING),
        ],
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


Status: Any = _status_class()


def export_response(parsed: ParsedSpans) -> ExportTraceServiceResponse:
    """The success answer: partial success names how many spans were rejected and why (the first few)."""
    response = ExportTraceServiceResponse()
    if parsed.rejected:
        response.partial_success.rejected_spans = parsed.rejected
        response.partial_success.error_message = "; ".join(parsed.errors[:5])
    return response


def encode(message: Message, protobuf: bool) -> bytes:
    """A message in the request's encoding: binary protobuf, or OTLP/JSON (lowerCamelCase, int64 as strings)."""
    if protobuf:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()
