"""Log and change intake: JSON lines, JSON arrays and the Loki push API (JSON, or protobuf + snappy) turned into
`LogRecord`s. Pure: no I/O, so every format is testable without a server.

Each line stands alone: a bad line is rejected with its number and the reason, the good ones around it are kept.
Only a body that cannot be read at all (not JSON where JSON is required, not a Loki push request) fails whole.

Message text is untrusted: it is stored as sent and never interpreted. Two things are changed because PostgreSQL
cannot store them otherwise or because a single line must not be able to blow up a row: NUL characters and lone
UTF-16 surrogates (both can come as JSON escapes) become U+FFFD, and a message over `MAX_MESSAGE_CHARS` is cut
there (the original length goes into the label `vigil_truncated_from`). Label values are cut at `MAX_LABEL_CHARS`.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias, cast

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from vigil.models import LogIngestResult, LogLineError, LogRecord
from vigil.untrusted_json import JSONInputError, loads_untrusted, storable

MAX_ERRORS = 20
"""Rejected lines reported back in detail; every rejected line is still counted."""
MAX_MESSAGE_CHARS = 65_536
MAX_LABEL_CHARS = 1024
MAX_SERVICE_CHARS = 200
DECOMPRESSED_SIZE_FACTOR = 8
"""A compressed body may expand to at most this many times the body-size cap (guards against zip bombs)."""

MESSAGE_KEYS = ("message", "msg", "line", "log")
SERVICE_LABELS = ("service", "service_name", "job", "app", "container")
"""Loki stream labels that name the service, first present wins."""
_FIELD_KEYS = ("level", "trace_id", "request_id")
_LOKI_LEVEL_KEYS = ("level", "detected_level")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_LOKI_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_MAX_NS_DIGITS = 19
"""Unix nanoseconds fit 19 digits until 2286; longer is junk (and past 4300 digits `int()` itself refuses)."""


class LogPayloadError(ValueError):
    """The body as a whole cannot be read (422 on /api/v1/logs, 400 on the Loki push API)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PushTooLargeError(ValueError):
    """More lines than allowed, or a compressed body expanding past its limit (413)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _LineError(Exception):
    """One line is unusable; the others go on."""


@dataclass
class ParsedLogs:
    """The good records of one push and the rejected lines (only the first `MAX_ERRORS` with their reason)."""

    records: list[LogRecord] = field(default_factory=list)
    errors: list[LogLineError] = field(default_factory=list)
    rejected: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(LogLineError(line=line, reason=reason[:500]))

    def result(self) -> LogIngestResult:
        return LogIngestResult(accepted=len(self.records), rejected=self.rejected, errors=self.errors)


# --- bodies ---------------------------------------------------------------------------------------------------


def decode_content(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo `Content-Encoding: gzip|deflate|snappy` (as Vector or Promtail may send), at most
    `max_bytes * DECOMPRESSED_SIZE_FACTOR` out."""
    encoding = (content_encoding or "identity").strip().lower()
    limit = max_bytes * DECOMPRESSED_SIZE_FACTOR
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        decompressor = zlib.decompressobj(wbits)
        try:
            out = decompressor.decompress(body, limit + 1)
        except zlib.error as exc:
            raise LogPayloadError(f"body is not valid {encoding}: {exc}") from exc
        if len(out) > limit:
            raise PushTooLargeError(f"body expands past the {limit}-byte limit")
        return out
    if encoding == "snappy":
        return decompress_snappy(body, max_bytes)
    raise LogPayloadError(f"unsupported content-encoding {encoding!r} (use gzip, deflate, snappy or none)")


def decompress_snappy(body: bytes, max_bytes: int) -> bytes:
    """A snappy block (not framed), as the Loki push API carries protobuf."""
    limit = max_bytes * DECOMPRESSED_SIZE_FACTOR
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise LogPayloadError(f"body is not snappy-compressed: {exc}") from exc
    if size > limit:
        raise PushTooLargeError(f"body expands past the {limit}-byte limit")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise LogPayloadError(f"body is not snappy-compressed: {exc}") from exc


# --- field normalisation --------------------------------------------------------------------------------------


def _clean(text: str, limit: int) -> str:
    """The text cut at `limit`, NUL and lone UTF-16 surrogates (see `UNSTORABLE_TEXT`) replaced by U+FFFD."""
    return storable(text[:limit])


def _scalar_text(value: object) -> str | None:
    """Label text of a JSON scalar: strings as is, true/false as JSON spells them, null skipped."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _from_number(value: float | int) -> datetime:
    """Unix time in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude."""
    magnitude = abs(value)
    if magnitude < 1e11:
        return _EPOCH + timedelta(seconds=value)
    if magnitude < 1e14:
        return _EPOCH + timedelta(milliseconds=value)
    if magnitude < 1e17:
        return _EPOCH + timedelta(microseconds=value)
    if isinstance(value, int):
        return _EPOCH + timedelta(microseconds=value // 1000)
    return _EPOCH + timedelta(microseconds=value / 1000)


def parse_ts(value: object) -> datetime:
    """ISO-8601 (naive means UTC) or unix seconds/ms/µs/ns, as a number or a numeric string."""
    try:
        if isinstance(value, bool):
            raise _LineError("ts must be ISO-8601 or a unix time number")
        if isinstance(value, int | float):
            return _from_number(value)
        if isinstance(value, str):
            text = value.strip()
            if _NUMBER.fullmatch(text):
                return _from_number(float(text) if "." in text else int(text))
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _LineError(f"ts {str(value)[:64]!r} is not a valid time: {exc}") from exc
    raise _LineError("ts must be ISO-8601 or a unix time number")


def _flatten(prefix: str, value: object, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)
        return
    text = _scalar_text(value)
    if text is not None:
        out[_clean(prefix, MAX_LABEL_CHARS)] = _clean(text, MAX_LABEL_CHARS)


def _record(
    *,
    ts: datetime,
    service: str,
    message: str,
    level: str | None,
    labels: dict[str, str],
    trace_id: str | None,
    request_id: str | None,
) -> LogRecord:
    service = service.strip()
    if not service:
        raise _LineError("service is empty")
    if len(service) > MAX_SERVICE_CHARS:
        raise _LineError(f"service longer than {MAX_SERVICE_CHARS} characters")
    if len(message) > MAX_MESSAGE_CHARS:
        labels["vigil_truncated_from"] = str(len(message))
    try:
        return LogRecord(
            ts=ts,
            service=_clean(service, MAX_SERVICE_CHARS),
            message=_clean(message, MAX_MESSAGE_CHARS),
            level=None if level is None else _clean(level, MAX_LABEL_CHARS).lower(),
            labels=labels,
            trace_id=None if trace_id is None else _clean(trace_id, MAX_LABEL_CHARS),
            request_id=None if request_id is None else _clean(request_id, MAX_LABEL_CHARS),
        )
    except ValidationError as exc:
        raise _LineError(str(exc.errors()[0]["msg"])) from exc


def record_from_object(obj: object, *, default_service: str | None, received_at: datetime) -> LogRecord:
    """One JSON log object: `service`, the text in `message`/`msg`/`line`/`log`, `ts`, optional `level`,
    `trace_id`, `request_id`; every other field becomes a label (nested objects as dotted keys)."""
    if not isinstance(obj, dict):
        raise _LineError(f"expected a JSON object, got {type(obj).__name__}")
    service_value = obj.get("service")
    service = _scalar_text(service_value) if service_value is not None else default_service
    if service is None:
        raise _LineError("no service: give `service` in the line or ?service= in the URL")
    message_key = next((key for key in MESSAGE_KEYS if key in obj), None)
    if message_key is None:
        raise _LineError("no message: give the text in `message`, `msg`, `line` or `log`")
    message = _scalar_text(obj[message_key]) or ""
    ts_value = obj.get("ts")
    ts = received_at if ts_value is None else parse_ts(ts_value)
    fields = {key: _scalar_text(obj.get(key)) for key in _FIELD_KEYS}
    labels: dict[str, str] = {}
    consumed = {"service", message_key, "ts", *_FIELD_KEYS}
    for key, value in obj.items():
        if key not in consumed:
            _flatten(key, value, labels)
    return _record(
        ts=ts,
        service=service,
        message=message,
        level=fields["level"],
        labels=labels,
        trace_id=fields["trace_id"],
        request_id=fields["request_id"],
    )


def _check_lines(count: int, max_lines: int) -> None:
    if count > max_lines:
        raise PushTooLargeError(f"{count} log lines in one request; the limit is {max_lines}")


# --- JSON lines and JSON arrays -------------------------------------------------------------------------------


def parse_json_logs(
    body: bytes, *, default_service: str | None, max_lines: int, received_at: datetime
) -> tuple[str, ParsedLogs]:
    """JSON lines, a JSON array of objects, or one JSON object. Returns the format found and the result.
    Line numbers are 1-based lines of the body (array: element numbers); blank lines are skipped."""
    parsed = ParsedLogs()
    head = body.lstrip()[:1]
    if head == b"[":
        try:
            items = loads_untrusted(body)
        except JSONInputError as exc:
            raise LogPayloadError(f"body starts with '[' but is not a valid JSON array: {exc.reason}") from exc
        if not isinstance(items, list):
            raise LogPayloadError("body is not a JSON array")
        _check_lines(len(items), max_lines)
        _collect(parsed, enumerate(items, start=1), default_service, received_at)
        return "json_array", parsed
    if head == b"{":
        try:
            single = loads_untrusted(body)
        except JSONInputError:
            pass  # more than one object: JSON lines below
        else:
            _collect(parsed, [(1, single)], default_service, received_at)
            return "ndjson", parsed
    lines = [(number, raw) for number, raw in enumerate(body.split(b"\n"), start=1) if raw.strip()]
    _check_lines(len(lines), max_lines)
    _collect(parsed, _decode_lines(parsed, lines), default_service, received_at)
    return "ndjson", parsed


def _decode_lines(parsed: ParsedLogs, lines: list[tuple[int, bytes]]) -> Iterator[tuple[int, object]]:
    for number, raw in lines:
        try:
            yield number, loads_untrusted(raw)
        except JSONInputError as exc:
            parsed.reject(number, f"not valid JSON: {exc.reason}")


def _collect(
    parsed: ParsedLogs, items: Iterable[tuple[int, object]], default_service: str | None, received_at: datetime
) -> None:
    for number, item in items:
        try:
            parsed.records.append(record_from_object(item, default_service=default_service, received_at=received_at))
        except _LineError as exc:
            parsed.reject(number, str(exc))


# --- Loki push API --------------------------------------------------------------------------------------------


def _loki_record(stream: Mapping[str, str], ts: datetime, line: str, metadata: Mapping[str, str]) -> LogRecord:
    labels = {**stream, **metadata}
    service_key = next((key for key in SERVICE_LABELS if labels.get(key)), None)
    if service_key is None:
        raise _LineError(f"no service: the stream has none of the labels {', '.join(SERVICE_LABELS)}")
    service = labels.pop(service_key)
    level = next((labels.pop(key) for key in _LOKI_LEVEL_KEYS if key in labels), None)
    trace_id = labels.pop("trace_id", None)
    request_id = labels.pop("request_id", None)
    clean_labels = {_clean(key, MAX_LABEL_CHARS): _clean(value, MAX_LABEL_CHARS) for key, value in labels.items()}
    return _record(
        ts=ts,
        service=service,
        message=line,
        level=level,
        labels=clean_labels,
        trace_id=trace_id,
        request_id=request_id,
    )


def _string_map(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _LineError(f"{what} must be an object of strings")
    return cast(dict[str, str], value)


def parse_loki_json(body: bytes, *, max_lines: int) -> ParsedLogs:
    """`{"streams": [{"stream": {labels}, "values": [["<unix ns>", "<line>", {metadata}?], ...]}]}`.
    Entries are numbered from 1 across all streams, in order."""
    try:
        payload = loads_untrusted(body)
    except JSONInputError as exc:
        raise LogPayloadError(f"body is not valid JSON: {exc.reason}") from exc
    streams = payload.get("streams") if isinstance(payload, dict) else None
    if not isinstance(streams, list):
        raise LogPayloadError('not a Loki push request: expected {"streams": [...]}')
    _check_lines(
        sum(len(s["values"]) for s in streams if isinstance(s, dict) and isinstance(s.get("values"), list)), max_lines
    )
    parsed = ParsedLogs()
    number = 0
    for index, stream in enumerate(streams):
        values = stream.get("values") if isinstance(stream, dict) else None
        if not isinstance(values, list):
            number += 1
            parsed.reject(number, f"streams[{index}]: expected an object with a `values` array")
            continue
        labels: dict[str, str] | _LineError
        try:
            labels = _string_map(stream.get("stream", {}), "the stream labels")
        except _LineError as exc:
            labels = exc
        for position, value in enumerate(values):
            number += 1
            try:
                if isinstance(labels, _LineError):
                    raise labels
                parsed.records.append(_loki_json_entry(labels, value))
            except _LineError as exc:
                parsed.reject(number, f"streams[{index}].values[{position}]: {exc}")
    return parsed


def _loki_json_entry(labels: dict[str, str], value: object) -> LogRecord:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise _LineError('expected ["<unix ns>", "<line>"] or ["<unix ns>", "<line>", {metadata}]')
    ts_value, line = value[0], value[1]
    if not isinstance(line, str):
        raise _LineError("the line must be a string")
    ts_text = str(ts_value) if isinstance(ts_value, str | int) and not isinstance(ts_value, bool) else ""
    if not (ts_text.isascii() and ts_text.isdigit() and len(ts_text) <= _MAX_NS_DIGITS):
        raise _LineError("the timestamp must be unix nanoseconds as a string")
    metadata = _string_map(value[2], "structured metadata") if len(value) == 3 else {}
    return _loki_record(labels, parse_ts(int(ts_text)), line, metadata)


def parse_loki_labels(text: str) -> dict[str, str]:
    """A Prometheus-style label set as the protobuf push carries it: `{job="x", app="y"}`."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise _LineError(f'labels {text[:100]!r} are not a {{name="value", ...}} set')
    inner = body[1:-1].strip()
    labels: dict[str, str] = {}
    position = 0
    while position < len(inner):
        match = _LOKI_LABEL.match(inner, position)
        if match is None:
            raise _LineError(f'labels {text[:100]!r} are not a {{name="value", ...}} set')
        labels[match[1]] = re.sub(r"\\(.)", lambda m: _GO_ESCAPES.get(m[1], m[1]), match[2])
        position = match.end()
    return labels


class _LabelPair(Protocol):
    name: str
    value: str


class _Timestamp(Protocol):
    seconds: int
    nanos: int


class _Entry(Protocol):
    timestamp: _Timestamp
    line: str
    structuredMetadata: list[_LabelPair]


class _Stream(Protocol):
    labels: str
    entries: list[_Entry]


class _PushRequest(Protocol):
    streams: list[_Stream]

    def ParseFromString(self, data: bytes) -> int: ...


_FieldType: TypeAlias = descriptor_pb2.FieldDescriptorProto.Type.ValueType


def _push_request_class() -> Any:
    """logproto.PushRequest (Loki's pkg/push/push.proto), defined by hand on the protobuf runtime: the few
    fields a push carries, with Loki's field numbers. Unknown fields (e.g. `hash`) are skipped by protobuf."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="vigil/logproto_push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    field_type = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field_type.LABEL_OPTIONAL, field_type.LABEL_REPEATED

    def message(
        name: str,
        *fields: tuple[str, int, descriptor_pb2.FieldDescriptorProto.Label.ValueType, _FieldType, str],
    ) -> None:
        proto.message_type.add(
            name=name,
            field=[
                field_type(name=fname, number=number, label=label, type=ftype, type_name=type_name or None)
                for fname, number, label, ftype, type_name in fields
            ],
        )

    message(
        "LabelPairAdapter",
        ("name", 1, optional, field_type.TYPE_STRING, ""),
        ("value", 2, optional, field_type.TYPE_STRING, ""),
    )
    message(
        "EntryAdapter",
        ("timestamp", 1, optional, field_type.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ("line", 2, optional, field_type.TYPE_STRING, ""),
        ("structuredMetadata", 3, repeated, field_type.TYPE_MESSAGE, ".logproto.LabelPairAdapter"),
    )
    message(
        "StreamAdapter",
        ("labels", 1, optional, field_type.TYPE_STRING, ""),
        ("entries", 2, repeated, field_type.TYPE_MESSAGE, ".logproto.EntryAdapter"),
    )
    message("PushRequest", ("streams", 1, repeated, field_type.TYPE_MESSAGE, ".logproto.StreamAdapter"))
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest: Any = _push_request_class()
"""The protobuf class of logproto.PushRequest (also what tests and clients build push bodies with)."""


def parse_loki_protobuf(body: bytes, *, max_lines: int) -> ParsedLogs:
    """A decompressed logproto.PushRequest. Entries are numbered from 1 across all streams, in order."""
    request = cast(_PushRequest, PushRequest())
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise LogPayloadError(f"body is not a snappy-compressed logproto.PushRequest: {exc}") from exc
    _check_lines(sum(len(stream.entries) for stream in request.streams), max_lines)
    parsed = ParsedLogs()
    number = 0
    for index, stream in enumerate(request.streams):
        labels: dict[str, str] | _LineError
        try:
            labels = parse_loki_labels(stream.labels)
        except _LineError as exc:
            labels = exc
        for position, entry in enumerate(stream.entries):
            number += 1
            try:
                if isinstance(labels, _LineError):
                    raise labels
                ts = _EPOCH + timedelta(seconds=entry.timestamp.seconds, microseconds=entry.timestamp.nanos // 1000)
                metadata = {pair.name: pair.value for pair in entry.structuredMetadata}
                parsed.records.append(_loki_record(labels, ts, entry.line, metadata))
            except (_LineError, OverflowError) as exc:
                parsed.reject(number, f"streams[{index}].entries[{position}]: {exc}")
    return parsed
