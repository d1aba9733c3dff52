"""Structured JSON logs: one object per line on stdout, and the same line handed to the log shipper.

Request fields (request id, trace id, route) come from context variables set by the request middleware, so
every line logged while serving a request carries them without being passed around.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from toyprod import SERVICE

Sink = Callable[[str], None]
"""Receives one serialised JSON log line (without the newline)."""


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    trace_id: str
    route: str


_request: ContextVar[RequestContext | None] = ContextVar("toyprod_request", default=None)


@contextmanager
def request_context(context: RequestContext) -> Iterator[None]:
    token = _request.set(context)
    try:
        yield
    finally:
        _request.reset(token)


def stdout_sink(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class JsonLog:
    """The service's logger. `ship=False` keeps a line local (the shipper's own complaints about Vigil)."""

    def __init__(self, sinks: Iterable[Sink], shipper: Sink | None = None) -> None:
        self._sinks = list(sinks)
        self._shipper = shipper

    def log(self, level: str, logger: str, message: str, *, ship: bool = True) -> None:
        self._emit(level, logger, message, None, ship, {})

    def info(self, logger: str, message: str, *, ship: bool = True, **fields: object) -> None:
        self._emit("INFO", logger, message, None, ship, fields)

    def warning(self, logger: str, message: str, *, ship: bool = True, **fields: object) -> None:
        self._emit("WARNING", logger, message, None, ship, fields)

    def error(self, logger: str, message: str, *, exc: BaseException | None = None, **fields: object) -> None:
        """An error; with `exc`, its stack trace follows the message, as logging.exception() writes it."""
        self._emit("ERROR", logger, message, exc, True, fields)

    def _emit(
        self,
        level: str,
        logger: str,
        message: str,
        exc: BaseException | None,
        ship: bool,
        fields: dict[str, object],
    ) -> None:
        if exc is not None:
            message = f"{message}\n{''.join(traceback.format_exception(exc)).rstrip()}"
        record: dict[str, object] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "service": SERVICE,
            "logger": logger,
            "message": message,
        }
        context = _request.get()
        if context is not None:
            record.update(request_id=context.request_id, trace_id=context.trace_id, route=context.route)
        record.update((key, value) for key, value in fields.items() if value is not None)
        line = json.dumps(record, ensure_ascii=False, default=str)
        for sink in self._sinks:
            sink(line)
        if ship and self._shipper is not None:
            self._shipper(line)
