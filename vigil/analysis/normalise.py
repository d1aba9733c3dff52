"""Normalisation: raw log lines of any common shape -> :class:`LogEvent`, the format detected per line.

Read, per line, after stripping a container runtime prefix (CRI ``2026-01-01T00:00:00.123Z stdout F ...``, whose
partial ``P`` lines are joined first, or a docker json-file record ``{"log": "...", "stream": ..., "time": ...}``):

- JSON objects (message in ``message``/``msg``/``log``/..., level, ``ts``/``time``/``@timestamp``, logger;
  nested objects flattened to dotted keys; other scalar keys -> ``fields``; a stack trace in
  ``stack_trace``/``exc_info``/... fills the exception fields);
- logfmt (``key=value`` pairs from the first token on);
- syslog RFC 5424 and RFC 3164 (with or without ``<PRI>``; the level comes from the PRI severity);
- Apache/nginx access logs, combined and common (fields: client, method, path, protocol, status, bytes,
  referer, user_agent; level from status: 5xx error, 4xx warning, else info);
- anything else as a plain line whose header is found without a per-source regex: an optional timestamp (ISO
  8601 and the usual other shapes, bracketed or not), then any of: levels (bare or bracketed), ``[thread]``,
  pids, ``---``/``-``/``|`` separators and a logger (``name:`` or ``dotted.name -``/``:``); klog headers
  (``I0105 08:00:00.123456 1234 file.go:42] ...``) and Python's default ``LEVEL:logger:message`` too. A line
  with neither a timestamp nor a level keeps its text untouched.

Java and Python stack traces are folded into the event of the line that starts them (continuation lines:
``Traceback (most recent call last):``, indented lines, ``at ...`` frames, ``Caused by:``, ``... 12 more``,
and the exception line itself), which gets ``exception_type``, ``exception_message``, ``frames`` (innermost
last, ``file:function``) and ``fields["stack_trace"]``. Nothing is ever dropped: broken JSON, binary garbage
and unknown shapes become plain messages; lines longer than :data:`MAX_LINE` characters are cut (and marked
``fields["truncated"] = "true"``). Timestamps without a zone are taken as UTC; those without a year (RFC 3164,
klog, Android) get the current year, or the previous one when that would put them in the future.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.analysis.models import Level, LogEvent, LogFormat

MAX_LINE = 64 * 1024
_MAX_TRACE = 64 * 1024

_LEVELS: dict[str, Level] = {
    "trace": Level.DEBUG,
    "debug": Level.DEBUG,
    "dbg": Level.DEBUG,
    "verbose": Level.DEBUG,
    "fine": Level.DEBUG,
    "finer": Level.DEBUG,
    "finest": Level.DEBUG,
    "info": Level.INFO,
    "information": Level.INFO,
    "informational": Level.INFO,
    "notice": Level.INFO,
    "log": Level.INFO,
    "warn": Level.WARNING,
    "warning": Level.WARNING,
    "error": Level.ERROR,
    "err": Level.ERROR,
    "severe": Level.ERROR,
    "fatal": Level.CRITICAL,
    "critical": Level.CRITICAL,
    "crit": Level.CRITICAL,
    "alert": Level.CRITICAL,
    "emerg": Level.CRITICAL,
    "emergency": Level.CRITICAL,
    "panic": Level.CRITICAL,
}
_LETTER_LEVELS = {"V": Level.DEBUG, "D": Level.DEBUG, "I": Level.INFO, "W": Level.WARNING, "E": Level.ERROR}
_LETTER_LEVELS["F"] = Level.CRITICAL
_SYSLOG_SEVERITY = [Level.CRITICAL] * 3 + [Level.ERROR, Level.WARNING, Level.INFO, Level.INFO, Level.DEBUG]

_MESSAGE_KEYS = ("message", "msg", "log", "event", "text", "@message", "body", "short_message", "MESSAGE")
_LEVEL_KEYS = ("level", "lvl", "severity", "log.level", "levelname", "loglevel", "@level", "level_name", "levelno")
_TS_KEYS = ("ts", "time", "timestamp", "@timestamp", "datetime", "date", "asctime", "t", "@t")
_LOGGER_KEYS = ("logger", "logger_name", "log.logger", "loggerName", "name", "component")
_SERVICE_KEYS = ("service", "service.name", "app", "application")
_TRACE_KEYS = ("stack_trace", "stacktrace", "exc_info", "exception", "traceback", "stack", "error.stack_trace")

# -- container prefixes ----------------------------------------------------------------------------------------
_CRI = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) (stdout|stderr) ([FP]) ?")

# -- syslog ------------------------------------------------------------------------------------------------------
_SYSLOG_5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?$", re.DOTALL
)
_SYSLOG_3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2} (?: ?\d|\d\d) \d{2}:\d{2}:\d{2}) (\S+) ([^\s:\[]+)(?:\[(\d+)\])?: ?(.*)$",
    re.DOTALL,
)
_SD_PARAM = re.compile(r'([\w.\-@]+)="((?:[^"\\]|\\.)*)"')

# -- access logs -------------------------------------------------------------------------------------------------
_ACCESS = re.compile(
    r'(\S+) (\S+) (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-)'
    r'(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?(.*)$',
    re.DOTALL,
)

# -- logfmt ------------------------------------------------------------------------------------------------------
_LOGFMT_PAIR = re.compile(r'([\w.\-/@]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)')

# -- plain headers -----------------------------------------------------------------------------------------------
_TS = re.compile(
    r"(?P<open>\[)?(?:"
    r"(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?: ?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)"
    r"|(?P<slash>\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)"
    r"|(?P<yy>\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})"
    r"|(?P<clf>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})"
    r"|(?P<ctime>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})"
    r"|(?P<bsd>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})"
    r"|(?P<compact>\d{6} \d{6})"
    r"|(?P<md>\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3})"
    r"|(?P<clock>\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)"
    r")(?(open)\])(?=[\s,|\]:-]|$)[,:]?"
)
_KLOG = re.compile(r"([IWEF])(\d{4} \d{2}:\d{2}:\d{2}\.\d+)\s+(\d+) ([^\s\]]+)\] ?(.*)$", re.DOTALL)
_PY_DEFAULT = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL):([\w.\-]+):(.*)$", re.DOTALL)
_LOGGER_NAME = re.compile(r"[A-Za-z_][\w.$\-/]*")
_PID_THREAD = re.compile(r"\d+#\d+:")

# -- stack traces ------------------------------------------------------------------------------------------------
_JAVA_EXCEPTION = re.compile(
    r'(?:Exception in thread "[^"]*" )?((?:[a-zA-Z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable|Failure))'
    r"(?::\s?(.*))?$"
)
_JAVA_FRAME = re.compile(r"\s+at ([\w$.<>/\-]+)\.([\w$<>\-]+)\(([^)]*)\)")
_JAVA_MORE = re.compile(r"\.\.\. \d+ (?:more|common frames omitted)")
_PY_FRAME = re.compile(r'\s+File "([^"]+)", line \d+(?:, in (.+))?')
_PY_EXCEPTION = re.compile(
    r"([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration|Fault)|[A-Z]\w*)(?::\s?(.*))?$"
)
_PY_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")


class _Pending:
    """The event being built and the state of a stack trace folded into it."""

    __slots__ = ("event", "java_done", "java_frames", "kind", "last_indented", "trace")

    def __init__(self, event: LogEvent) -> None:
        self.event = event
        self.kind: str | None = None  # "python" / "java" once a trace starts
        self.trace: list[str] = []
        self.last_indented = False
        self.java_frames: list[str] = []
        self.java_done = False
        first = event.message
        if first.startswith("Traceback (most recent call last)"):
            self.kind = "python"
        else:
            java = _JAVA_EXCEPTION.match(first)
            if java is not None:
                self.kind = "java"
                event.exception_type = java.group(1)
                event.exception_message = java.group(2)

    def accepts(self, text: str) -> bool:
        """Whether ``text`` continues this event (a blank line, or part of a stack trace)."""
        if not text.strip():
            return True
        if text[0] in " \t":
            return True
        if text.startswith(("Traceback (most recent call last)", "Caused by:", "Suppressed:")):
            return True
        if text.startswith(_PY_CHAIN):
            return self.kind == "python"
        if _JAVA_MORE.match(text):
            return True
        if self.kind == "python" and self.last_indented and _PY_EXCEPTION.match(text):
            return True
        if _JAVA_EXCEPTION.match(text):
            event = self.event
            return (
                self.kind is not None
                or event.level in (Level.ERROR, Level.CRITICAL, Level.WARNING)
                or event.message.rstrip().endswith(":")
            )
        return False

    def fold(self, text: str) -> None:
        event = self.event
        event.line_count += 1
        if sum(len(t) + 1 for t in self.trace) < _MAX_TRACE:
            self.trace.append(text)
        indented = bool(text) and text[0] in " \t"
        if text.startswith("Traceback (most recent call last)"):
            self.kind = "python"
            event.frames = []
        elif self.kind == "python" and indented:
            frame = _PY_FRAME.match(text)
            if frame is not None:
                event.frames.append(f"{frame.group(1)}:{(frame.group(2) or '?').strip()}")
        elif self.kind == "python" and self.last_indented and not indented:
            exc = _PY_EXCEPTION.match(text)
            if exc is not None:
                event.exception_type = exc.group(1)
                event.exception_message = exc.group(2)
        elif indented and (frame := _JAVA_FRAME.match(text)) is not None:
            self.kind = self.kind or "java"
            if not self.java_done:
                self.java_frames.append(f"{frame.group(3).split(':')[0]}:{frame.group(1)}.{frame.group(2)}")
        elif text.startswith(("Caused by:", "Suppressed:")):
            self.java_done = True
        elif not indented and (java := _JAVA_EXCEPTION.match(text)) is not None:
            self.kind = "java"
            if event.exception_type is None:
                event.exception_type = java.group(1)
                event.exception_message = java.group(2)
        self.last_indented = indented

    def finish(self) -> LogEvent:
        event = self.event
        if self.java_frames:
            event.frames = list(reversed(self.java_frames))
        if self.trace:
            event.fields["stack_trace"] = "\n".join(self.trace)
        return event


def normalise(lines: Iterable[str], *, service: str | None = None) -> Iterator[LogEvent]:
    """One :class:`LogEvent` per event of ``lines`` (stack traces folded into the line that starts them)."""
    pending: _Pending | None = None
    for number, span, line, truncated in _physical(lines):
        content, prefix_ts, stream, parsed = _strip_container(line)
        if pending is not None and pending.accepts(content):
            pending.fold(content)
            pending.event.line_count += span - 1
            continue
        if pending is not None:
            yield pending.finish()
        try:
            event = _parse(content, number, service, parsed)
        except Exception:  # a parser bug must never lose a line
            event = LogEvent(line=number, message=content, service=service)
        event.line_count = span
        if event.ts is None and prefix_ts is not None:
            event.ts = prefix_ts
        if stream is not None:
            event.fields.setdefault("stream", stream)
        if truncated:
            event.fields["truncated"] = "true"
        pending = _Pending(event)
    if pending is not None:
        yield pending.finish()


def parse_line(line: str, *, number: int = 1, service: str | None = None) -> LogEvent:
    """One line read on its own (no folding), numbered ``number``."""
    event = next(normalise([line], service=service))
    event.line = number
    return event


def _physical(lines: Iterable[str]) -> Iterator[tuple[int, int, str, bool]]:
    """(first line number, lines spanned, text, truncated): CRI partial lines (``P``) are joined with the lines
    that complete them (the container runtime splits long lines at 16 KiB) before anything else reads them."""
    parts: list[str] = []
    first = 0
    for number, raw in enumerate(lines, start=1):
        line, truncated = _clean(raw)
        cri = _CRI.match(line) if line[:1].isdigit() else None
        if cri is not None and cri.group(3) == "P" and sum(map(len, parts)) < MAX_LINE:
            if not parts:
                first = number
                parts.append(line)  # keep the first prefix: its time and stream describe the event
            else:
                parts.append(line[cri.end() :])
            continue
        if parts:
            if cri is not None:
                joined = "".join(parts) + line[cri.end() :]
                yield first, number - first + 1, joined[:MAX_LINE], truncated or len(joined) > MAX_LINE
                parts = []
                continue
            yield first, number - first, "".join(parts)[:MAX_LINE], False
            parts = []
        yield number, 1, line, truncated
    if parts:
        yield first, len(parts), "".join(parts)[:MAX_LINE], False


# -- helpers -----------------------------------------------------------------------------------------------------


def _clean(raw: str) -> tuple[str, bool]:
    line = raw.rstrip("\r\n")
    truncated = len(line) > MAX_LINE
    if truncated:
        line = line[:MAX_LINE]
    if "\x00" in line:
        line = line.replace("\x00", "\ufffd")
    return line, truncated


def _strip_container(line: str) -> tuple[str, datetime | None, str | None, dict[str, Any] | None]:
    """The line without a CRI or docker json-file wrapper, with the wrapper's time and stream."""
    if line[:1].isdigit():
        cri = _CRI.match(line)
        if cri is not None:
            return line[cri.end() :], _parse_iso(cri.group(1)), cri.group(2), None
    if line.startswith("{"):
        obj = _json_object(line)
        if obj is not None:
            log = obj.get("log")
            if isinstance(log, str) and ("stream" in obj or "time" in obj) and len(obj) <= 4:
                ts = obj.get("time")
                stream = obj.get("stream")
                inner = log.rstrip("\r\n")
                return (
                    inner,
                    _parse_iso(ts) if isinstance(ts, str) else None,
                    stream if isinstance(stream, str) else None,
                    None,
                )
            return line, None, None, obj
    return line, None, None, None


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.rstrip().endswith("}"):
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _parse(content: str, number: int, service: str | None, parsed: dict[str, Any] | None) -> LogEvent:
    if parsed is None and content.startswith("{"):
        parsed = _json_object(content)
    if parsed is not None:
        return _from_json(parsed, content, number, service)
    first = content[:1]
    if first == "<" or first.isupper():
        event = _from_syslog(content, number, service)
        if event is not None:
            return event
    if first and first not in " \t[":
        event = _from_access(content, number, service)
        if event is not None:
            return event
    if "=" in content:
        event = _from_logfmt(content, number, service)
        if event is not None:
            return event
    return _from_plain(content, number, service)


def _flatten(obj: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 3:
            out.update(_flatten(value, f"{name}.", depth + 1))
        else:
            out[name] = value
    return out


def _from_json(obj: dict[str, Any], content: str, number: int, service: str | None) -> LogEvent:
    flat = _flatten(obj)
    used: set[str] = set()

    def take(keys: tuple[str, ...]) -> tuple[str, Any] | None:
        for key in keys:
            if key in flat and flat[key] is not None and not isinstance(flat[key], (dict, list)):
                used.add(key)
                return key, flat[key]
        return None

    message_item = take(_MESSAGE_KEYS)
    message = str(message_item[1]) if message_item is not None else content
    level_item = take(_LEVEL_KEYS)
    level = _json_level(level_item[0], level_item[1]) if level_item is not None else None
    ts_item = take(_TS_KEYS)
    ts = _any_ts(ts_item[1]) if ts_item is not None else None
    logger_item = take(_LOGGER_KEYS)
    service_item = take(_SERVICE_KEYS)
    trace_item = take(_TRACE_KEYS)
    fields: dict[str, str] = {}
    for key, value in flat.items():
        if key in used or isinstance(value, (dict, list)) or value is None:
            continue
        fields[key] = str(value) if not isinstance(value, bool) else str(value).lower()
    message_lines = message.split("\n")
    event = LogEvent(
        line=number,
        ts=ts,
        service=service or (str(service_item[1]) if service_item is not None else None),
        level=level,
        logger=str(logger_item[1]) if logger_item is not None else None,
        message=message_lines[0] if len(message_lines) > 1 else message,
        fields=fields,
        format=LogFormat.JSON,
    )
    trace_text = str(trace_item[1]) if trace_item is not None else ""
    if len(message_lines) > 1:
        trace_text = "\n".join(message_lines[1:]) + ("\n" + trace_text if trace_text else "")
    if trace_text:
        _fold_text(event, trace_text)
    return event


def _fold_text(event: LogEvent, text: str) -> None:
    """Fill the exception fields of ``event`` from a multi-line stack trace held in one field."""
    pending = _Pending(event)
    count = event.line_count
    for part in text.split("\n"):
        pending.fold(part)
    pending.finish()
    event.line_count = count


def _json_level(key: str, value: Any) -> Level | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        n = int(value)
        if key == "levelno":  # Python logging
            return _numeric_level(n, (10, 20, 30, 40, 50))
        return _numeric_level(n, (20, 30, 40, 50, 60))  # pino / bunyan
    return _LEVELS.get(str(value).strip().lower())


def _numeric_level(n: int, steps: tuple[int, int, int, int, int]) -> Level:
    debug, info, warning, error, _critical = steps
    if n <= debug:
        return Level.DEBUG
    if n <= info:
        return Level.INFO
    if n <= warning:
        return Level.WARNING
    if n <= error:
        return Level.ERROR
    return Level.CRITICAL


_PLAIN_ISO_LENGTHS = frozenset({19, 20, 23, 24, 25, 26, 27, 29, 32})  # seconds / ms / us, naive / Z / +hh:mm
_BSD_FORMAT = "%b %d %H:%M:%S"
_BSD_STAMP = re.compile(r"([A-Za-z]{3}) (\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})")
_MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}


def _any_ts(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
        for scale in (1e9, 1e6, 1e3):
            if seconds > scale * 1e8:  # ns, us, ms since the epoch
                seconds /= scale
                break
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    match = _TS.match(text)
    if match is None:
        return None
    return _ts_from_match(match)


def _parse_iso(text: str) -> datetime | None:
    if len(text) in _PLAIN_ISO_LENGTHS and text[10] in "T ":
        # The common shapes ('2026-03-01T10:00:00.123Z', '2026-03-01 10:00:00,123') parse as they are, but
        # for the comma: skip the rewriting.
        try:
            parsed = datetime.fromisoformat(text if text[19:20] != "," else f"{text[:19]}.{text[20:]}")
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    value = text.strip().replace(",", ".")
    for suffix in (" UTC", "UTC", " GMT", "GMT", "Z"):
        if value.endswith(suffix):
            value = value[: -len(suffix)] + "+00:00"
            break
    dot = value.find(".", 17)
    if dot > 0:
        end = dot + 1
        while end < len(value) and value[end].isdigit():
            end += 1
        value = value[: dot + 1] + value[dot + 1 : end][:6].ljust(6, "0") + value[end:]
    if len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit():
        value = f"{value[:-2]}:{value[-2:]}"
    value = value.replace("+00:00", "+00:00").replace(" +", "+").replace(" -", "-")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _no_year(text: str, fmt: str) -> datetime | None:
    now = datetime.now(UTC)
    clean = " ".join(text.split())
    bsd = _BSD_STAMP.fullmatch(clean) if fmt == _BSD_FORMAT else None
    try:
        if bsd is not None and bsd.group(1).lower() in _MONTHS:  # strptime's result, without its cost
            month, day, hour, minute, second = bsd.groups()
            clock = int(hour), int(minute), int(second)
            parsed = datetime(now.year, _MONTHS[month.lower()], int(day), *clock, tzinfo=UTC)
        else:
            parsed = datetime.strptime(f"{now.year} {clean}", f"%Y {fmt}").replace(tzinfo=UTC)
    except ValueError:
        return None
    if parsed > now + timedelta(days=1):
        parsed = parsed.replace(year=now.year - 1)
    return parsed


def _strptime(text: str, fmt: str) -> datetime | None:
    try:
        parsed = datetime.strptime(text, fmt)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _ts_from_match(match: re.Match[str]) -> datetime | None:
    kind = match.lastgroup
    text = match.group(kind) if kind else ""
    if kind == "iso":
        return _parse_iso(text)
    if kind == "slash":
        return _parse_iso(text.replace("/", "-"))
    if kind == "yy":
        return _strptime(text, "%y/%m/%d %H:%M:%S")
    if kind == "clf":
        return _strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    if kind == "ctime":
        return _strptime(re.sub(r"\.\d+", "", " ".join(text.split())), "%a %b %d %H:%M:%S %Y")
    if kind == "bsd":
        return _no_year(text, _BSD_FORMAT)
    if kind == "compact":
        return _strptime(text, "%y%m%d %H%M%S")
    if kind == "md":
        return _no_year(text, "%m-%d %H:%M:%S.%f")
    return None  # a bare clock time: no date to anchor it


def _from_syslog(content: str, number: int, service: str | None) -> LogEvent | None:
    if content.startswith("<"):
        m5 = _SYSLOG_5424.match(content)
        if m5 is not None:
            pri, ts, host, app, procid, msgid, sd, msg = m5.groups()
            fields = {"facility": str(int(pri) // 8)}
            for key, value in (("host", host), ("app", app), ("pid", procid), ("msgid", msgid)):
                if value != "-":
                    fields[key] = value
            if sd != "-":
                for key, value in _SD_PARAM.findall(sd):
                    fields[key] = value
            return LogEvent(
                line=number,
                ts=_parse_iso(ts) if ts != "-" else None,
                service=service,
                level=_SYSLOG_SEVERITY[int(pri) % 8],
                logger=app if app != "-" else None,
                message=(msg or "").lstrip("\ufeff"),
                fields=fields,
                format=LogFormat.SYSLOG_5424,
            )
    m3 = _SYSLOG_3164.match(content)
    if m3 is None:
        return None
    pri, ts, host, app, pid, msg = m3.groups()
    fields = {"host": host}
    if pid:
        fields["pid"] = pid
    level = _SYSLOG_SEVERITY[int(pri) % 8] if pri else None
    if pri:
        fields["facility"] = str(int(pri) // 8)
    if level is None:
        level, msg = _leading_level(msg)
    return LogEvent(
        line=number,
        ts=_no_year(ts, "%b %d %H:%M:%S"),
        service=service,
        level=level,
        logger=app,
        message=msg,
        fields=fields,
        format=LogFormat.SYSLOG_3164,
    )


def _leading_level(message: str) -> tuple[Level | None, str]:
    """A level word at the very start of a syslog message (``ERROR: ...``, ``[warn] ...``), removed."""
    head, _, rest = message.partition(" ")
    word = head.strip("[]:<>")
    marked = head.startswith("[") or head.endswith(":")
    if word and marked and word.lower() in _LEVELS and word.lower() != "log":
        return _LEVELS[word.lower()], rest.lstrip()
    return None, message


def _from_access(content: str, number: int, service: str | None) -> LogEvent | None:
    match = _ACCESS.match(content)
    if match is None:
        return None
    client, ident, user, when, request, status, size, referer, agent, _rest = match.groups()
    method, _, remainder = request.partition(" ")
    path, _, protocol = remainder.rpartition(" ") if " " in remainder else (remainder, "", "")
    fields = {"client": client, "status": status, "method": method, "path": path}
    if protocol:
        fields["protocol"] = protocol
    if size != "-":
        fields["bytes"] = size
    if ident != "-":
        fields["ident"] = ident
    if user != "-":
        fields["user"] = user
    if referer is not None and referer != "-":
        fields["referer"] = referer
    if agent is not None and agent != "-":
        fields["user_agent"] = agent
    code = int(status)
    level = Level.ERROR if code >= 500 else Level.WARNING if code >= 400 else Level.INFO
    return LogEvent(
        line=number,
        ts=_strptime(when, "%d/%b/%Y:%H:%M:%S %z"),
        service=service,
        level=level,
        message=f"{request} {status}",
        fields=fields,
        format=LogFormat.ACCESS,
    )


def _from_logfmt(content: str, number: int, service: str | None) -> LogEvent | None:
    pairs: dict[str, str] = {}
    pos = 0
    length = len(content)
    while pos < length:
        match = _LOGFMT_PAIR.match(content, pos)
        if match is None:
            return None
        value = match.group(2)
        if value.startswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        pairs[match.group(1)] = value
        pos = match.end()
    if len(pairs) < 2:
        return None
    message = ""
    level: Level | None = None
    ts: datetime | None = None
    logger: str | None = None
    fields: dict[str, str] = {}
    for key, value in pairs.items():
        if key in ("msg", "message") and not message:
            message = value
        elif key in ("level", "lvl", "severity") and level is None:
            level = _LEVELS.get(value.lower())
            if level is None:
                fields[key] = value
        elif key in ("ts", "time", "timestamp", "t") and ts is None:
            ts = _any_ts(value)
            if ts is None:
                fields[key] = value
        elif key in ("logger", "component", "module") and logger is None:
            logger = value
        else:
            fields[key] = value
    return LogEvent(
        line=number,
        ts=ts,
        service=service or fields.get("service"),
        level=level,
        logger=logger,
        message=message or content,
        fields=fields,
        format=LogFormat.LOGFMT,
    )


def _from_plain(content: str, number: int, service: str | None) -> LogEvent:
    klog = _KLOG.match(content)
    if klog is not None:
        letter, when, pid, source, message = klog.groups()
        return LogEvent(
            line=number,
            ts=_no_year(when, "%m%d %H:%M:%S.%f"),
            service=service,
            level=_LETTER_LEVELS[letter],
            logger=source,
            message=message,
            fields={"pid": pid},
        )
    py = _PY_DEFAULT.match(content)
    if py is not None:
        return LogEvent(
            line=number, service=service, level=_LEVELS[py.group(1).lower()], logger=py.group(2), message=py.group(3)
        )
    ts: datetime | None = None
    found_ts = False
    pos = 0
    ts_match = _TS.match(content)
    if ts_match is not None:
        found_ts = True
        ts = _ts_from_match(ts_match)
        pos = ts_match.end()
    level: Level | None = None
    logger: str | None = None
    fields: dict[str, str] = {}
    length = len(content)
    consumed = pos
    after_separator = False
    bracketed_level = False
    for _ in range(10):
        while pos < length and content[pos] in " \t":
            pos += 1
        if pos >= length:
            break
        end = content.find(" ", pos)
        if end < 0:
            end = length
        token = content[pos:end]
        if token in ("-", "|", "---", ":", "--", "-->"):
            pos = end
            after_separator = True
            continue
        if token.startswith("["):
            close = content.find("]", pos)
            if close < 0:
                break
            inner = content[pos + 1 : close].strip()
            if level is None and inner.lower() in _LEVELS:
                level = _LEVELS[inner.lower()]
                bracketed_level = True
            elif inner.isdigit():
                fields.setdefault("pid", inner)
            elif "thread" not in fields and inner and " " not in inner and (found_ts or level is not None):
                fields["thread"] = inner
            else:
                break
            pos = close + 1
            if pos < length and content[pos] == ":":
                pos += 1
            consumed = pos
            after_separator = False
            continue
        word = token.rstrip(":,")
        if level is None and word.lower() in _LEVELS and (word.isupper() or word.istitle()):
            if word.lower() == "log" and not token.endswith(":"):
                break
            level = _LEVELS[word.lower()]
            pos = end
            consumed = pos
            after_separator = False
            if token.endswith(":"):  # 'ERROR:  message' (PostgreSQL and friends): the header ends here
                break
            continue
        if level is None and found_ts and word in _LETTER_LEVELS and _followed_by_logger(content, end):
            level = _LETTER_LEVELS[word]
            pos = end
            consumed = pos
            continue
        if found_ts and word.isdigit() and logger is None:
            fields.setdefault("pid", word) if "pid" not in fields else fields.setdefault("tid", word)
            pos = end
            consumed = pos
            continue
        if _PID_THREAD.fullmatch(token):
            fields.setdefault("pid", token.split("#")[0])
            pos = end
            consumed = pos
            continue
        if not (found_ts or level is not None) or logger is not None:
            break
        if (
            token.endswith(":")
            and len(token) > 1
            and not after_separator
            and _LOGGER_NAME.fullmatch(token[:-1])
            and (not bracketed_level or any(c in token for c in "./$"))
        ):
            logger = token[:-1]
            pos = end
            consumed = pos
            break
        if _LOGGER_NAME.fullmatch(token) and ("." in token or "$" in token):
            after = end
            while after < length and content[after] == " ":
                after += 1
            separator = content[after : after + 2]
            if separator in ("- ", ": ", "| ") or (
                content[after : after + 1] in ("-", ":", "|") and after + 1 == length
            ):
                logger = token
                pos = after + 1
                consumed = pos
                continue
        break
    if not found_ts and level is None:
        return LogEvent(line=number, service=service, message=content)
    message = content[consumed:].lstrip(" \t")
    if message.startswith(("- ", ": ", "| ")):
        message = message[2:]
    return LogEvent(line=number, ts=ts, service=service, level=level, logger=logger, message=message, fields=fields)


def _followed_by_logger(content: str, end: int) -> bool:
    rest = content[end:].lstrip(" ")
    head = rest.split(" ", 1)[0]
    return head.endswith(":") and len(head) > 1


__all__ = ["MAX_LINE", "normalise", "parse_line"]
