"""Per-request telemetry: request and trace ids, metrics, the access log, and turning errors into answers.

It also plays the TLS terminator in front of the shop (an expired certificate fails every handshake) and
the slow path the latency fault adds.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from toyprod.chaos import Chaos
from toyprod.errors import ShopError
from toyprod.logs import RequestContext, request_context
from toyprod.shop import Shop

SHOP_ROUTES = frozenset({"/products", "/orders", "/checkout"})
OTHER_ROUTES = frozenset({"/healthz", "/metrics", "/chaos", "/admin"})
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")
TLS_HANDSHAKE_FAILED = 525
"""What the proxy in front of toyprod answers when the TLS handshake with it fails."""

CallNext = Callable[[Request], Awaitable[Response]]


def route_label(path: str) -> str:
    """A bounded set of route labels: unknown paths share one."""
    if path in SHOP_ROUTES or path in OTHER_ROUTES:
        return path
    if path.startswith("/chaos/"):
        return "/chaos/{fault}"
    if path.startswith("/admin/"):
        return "/admin/{fix}"
    return "other"


def trace_id_of(traceparent: str | None) -> str:
    """The trace id of a W3C traceparent header, or a new one."""
    match = TRACEPARENT.match((traceparent or "").strip().lower())
    if match and match.group(1) != "0" * 32:
        return match.group(1)
    return secrets.token_hex(16)


def install(app: FastAPI, shop: Shop, chaos: Chaos) -> None:
    metrics, log = shop.metrics, shop.log

    async def serve(request: Request, call_next: CallNext, route: str) -> Response:
        method = request.method
        if route in SHOP_ROUTES:
            if shop.cert_expires_at <= time.time():
                metrics.errors.labels("tls").inc()
                log.error(
                    "toyprod.tls",
                    f"TLS handshake error from {request.client.host if request.client else '-'}: "
                    "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired (_ssl.c:1000)",
                )
                return JSONResponse({"detail": "SSL handshake failed"}, status_code=TLS_HANDSHAKE_FAILED)
            if chaos.latency_s and chaos.latency_route in (None, route):
                await asyncio.sleep(chaos.latency_s)
        try:
            return await call_next(request)
        except ShopError as exc:
            metrics.errors.labels(exc.kind).inc()
            log.error(exc.logger, f"{method} {route} failed", exc=exc)
            return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=exc.status)
        except Exception as exc:
            metrics.errors.labels("exception").inc()
            log.error("toyprod.http", f"Exception in ASGI application: {method} {request.url.path}", exc=exc)
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)

    @app.middleware("http")
    async def telemetry(request: Request, call_next: CallNext) -> Response:
        route, method = route_label(request.url.path), request.method
        given_id = request.headers.get("x-request-id", "")
        request_id = given_id if REQUEST_ID.match(given_id) else uuid.uuid4().hex
        context = RequestContext(request_id, trace_id_of(request.headers.get("traceparent")), route)
        start = time.perf_counter()
        metrics.in_flight.inc()
        with request_context(context):
            try:
                response = await serve(request, call_next, route)
            finally:
                metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            status = response.status_code
            metrics.requests.labels(route, method, str(status)).inc()
            metrics.duration.labels(route, method).observe(elapsed)
            if route in SHOP_ROUTES:
                duration_ms = round(elapsed * 1000, 1)
                if elapsed >= shop.config.slow_request_s:
                    log.warning(
                        "toyprod.http",
                        f"slow request: {method} {route} took {duration_ms:.0f} ms",
                        status=status,
                        duration_ms=duration_ms,
                    )
                else:
                    log.info("toyprod.http", f"{method} {route} {status}", status=status, duration_ms=duration_ms)
        response.headers["X-Request-ID"] = request_id
        response.headers["X-Trace-ID"] = context.trace_id
        return response
