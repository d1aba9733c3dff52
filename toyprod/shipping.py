"""Ship log lines to Vigil (`POST /api/v1/logs`, ndjson) from a bounded in-memory buffer.

Request handling only appends to a deque: it never waits on Vigil. A background task sends a batch every
interval, or as soon as a full batch is waiting. While Vigil is unreachable the task backs off exponentially
and the buffer keeps the newest records: the oldest beyond the bound are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import httpx

from toyprod.metrics import ToyMetrics

Report = Callable[[str, str], None]
"""(level, message): how the shipper tells the operator about Vigil being unreachable, on stdout only."""

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class LogShipper:
    def __init__(
        self,
        vigil_url: str,
        token: str | None,
        metrics: ToyMetrics,
        report: Report,
        *,
        batch_size: int = 500,
        interval_s: float = 1.0,
        max_buffer: int = 10_000,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._url = f"{vigil_url.rstrip('/')}/api/v1/logs"
        self._headers = {"Content-Type": "application/x-ndjson"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._metrics = metrics
        self._report = report
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_buffer = max_buffer
        self._max_backoff_s = max_backoff_s
        self._buffer: deque[str] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._overflowed = 0
        self._overflowed_when_failing: int | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def submit(self, line: str) -> None:
        """Queue one line; never blocks. Beyond the bound, the oldest line is dropped."""
        self._buffer.append(line)
        self._trim()
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
        self._task = asyncio.create_task(self._run(), name="toyprod-log-shipper")

    async def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Stop the loop, then give what is buffered one last, bounded chance to reach Vigil."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout_s):
                    while self._buffer and await self._send_batch():
                        pass
            await self._client.aclose()

    def _trim(self) -> None:
        excess = len(self._buffer) - self._max_buffer
        for _ in range(excess):
            self._buffer.popleft()
        if excess > 0:
            self._overflowed += excess
            self._metrics.logs_dropped.labels("overflow").inc(excess)

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            if backoff:
                await asyncio.sleep(backoff)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            self._wake.clear()
            while self._buffer:
                if not await self._send_batch():
                    backoff = min(self._max_backoff_s, max(0.5, backoff * 2))
                    break
                backoff = 0.0

    async def _send_batch(self) -> bool:
        """Send one batch. False: Vigil is unreachable, the batch is back at the front of the buffer."""
        assert self._client is not None
        batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
        body = "\n".join(batch) + "\n"
        try:
            response = await self._client.post(self._url, content=body.encode(), headers=self._headers)
        except httpx.HTTPError as exc:
            return self._retry(batch, f"{type(exc).__name__}: {exc}")
        if response.status_code in RETRYABLE_STATUS:
            return self._retry(batch, f"HTTP {response.status_code}")
        self._recovered()
        if response.is_success:
            accepted, rejected = _counts(response, len(batch))
            self._metrics.logs_shipped.inc(accepted)
            if rejected:
                self._metrics.logs_dropped.labels("rejected").inc(rejected)
                self._report("WARNING", f"Vigil rejected {rejected} of {len(batch)} log records: {response.text[:500]}")
        else:
            self._metrics.logs_dropped.labels("rejected").inc(len(batch))
            self._report(
                "ERROR", f"Vigil refused {len(batch)} log records: HTTP {response.status_code} {response.text[:500]}"
            )
        return True

    def _retry(self, batch: list[str], why: str) -> bool:
        self._buffer.extendleft(reversed(batch))
        self._trim()
        if self._overflowed_when_failing is None:
            self._overflowed_when_failing = self._overflowed
            self._report(
                "WARNING",
                f"log shipping to {self._url} failing ({why}); buffering up to {self._max_buffer} records",
            )
        return False

    def _recovered(self) -> None:
        if self._overflowed_when_failing is not None:
            lost = self._overflowed - self._overflowed_when_failing
            self._overflowed_when_failing = None
            self._report("INFO", f"log shipping to {self._url} recovered; {lost} records dropped meanwhile")


def _counts(response: httpx.Response, sent: int) -> tuple[int, int]:
    """(accepted, rejected) from Vigil's 202 body; all accepted when the body says nothing."""
    try:
        body = response.json()
        return int(body.get("accepted", sent)), int(body.get("rejected", 0))
    except (ValueError, AttributeError, TypeError):
        return sent, 0
