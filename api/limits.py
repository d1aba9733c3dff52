"""App-wide request limits, enforced as the body streams in: no route can be made to read more than
`VIGIL_MAX_PAYLOAD_BYTES`, nor to parse JSON nested deeper than `MAX_JSON_DEPTH`.

The checks sit in the ASGI `receive` channel rather than in front of the app, so a route that never reads its body
costs nothing, and routes that enforce the cap themselves (the intake routes, which count refusals per source)
still answer first with their own metrics: the chunk that crosses the cap is handed over marked as not the last,
so such a route sees the excess and refuses, and any other reader gets 413 on its next read instead of the end
of the body.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import HTTP_REJECTED
from vigil.untrusted_json import MAX_JSON_DEPTH, too_deep


def _is_plain_json(headers: Headers) -> bool:
    """JSON as sent (not compressed: a compressed body is checked by the route that inflates it)."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    json_type = content_type == "application/json" or content_type.endswith("+json")
    return json_type and headers.get("content-encoding", "identity").strip().lower() in ("", "identity")


def _declared_length(headers: Headers) -> int | None:
    declared = headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


class _BodyGuard:
    """The `receive` of one request, counting body bytes and checking the nesting of a JSON body at its end."""

    def __init__(self, receive: Receive, headers: Headers, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        declared = _declared_length(headers)
        self._over = declared is not None and declared > limit
        self._received = 0
        self._json: bytearray | None = bytearray() if _is_plain_json(headers) else None

    def _refuse(self, code: int, reason: str, detail: str) -> HTTPException:
        HTTP_REJECTED.labels(reason).inc()
        return HTTPException(code, detail)

    async def receive(self) -> Message:
        if self._over:
            raise self._refuse(
                status.HTTP_413_CONTENT_TOO_LARGE,
                "too_large",
                f"body over the {self._limit}-byte limit (VIGIL_MAX_PAYLOAD_BYTES)",
            )
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        chunk: bytes = message.get("body", b"")
        self._received += len(chunk)
        if self._received > self._limit:
            self._over = True
            return {**message, "more_body": True}
        if self._json is not None:
            self._json.extend(chunk)
            if not message.get("more_body", False) and too_deep(bytes(self._json)):
                raise self._refuse(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    "too_deep",
                    f"body: arrays and objects nest deeper than {MAX_JSON_DEPTH} levels",
                )
        return message


class RequestLimits:
    """ASGI middleware: the body cap and the JSON nesting check for every HTTP route (see the module doc)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = _BodyGuard(receive, Headers(scope=scope), self.max_body_bytes)
        await self.app(scope, guard.receive, send)
