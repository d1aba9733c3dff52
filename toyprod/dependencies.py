"""The shop's dependencies: a database behind a bounded connection pool, and a downstream payments service.

Both are simulated in-process, with latency, but fail the way their real counterparts do: the database
refuses connections or the pool runs dry; the payments service answers 502/503 or rate-limits with 429.
Each outcome updates `toyprod_dependency_up`. The payments client can fail over to a second provider, which
the payments faults (they break the primary) do not reach.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from toyprod.errors import DatabaseError, PaymentError, PaymentRateLimited
from toyprod.logs import JsonLog
from toyprod.metrics import ToyMetrics

DB_HOST = "db.toyprod.internal"
MAX_POOL_SIZE = 200

CATALOG: tuple[tuple[int, str, str], ...] = (
    (1, "espresso beans 1kg", "2490"),
    (2, "ceramic pour-over", "3400"),
    (3, "paper filters x100", "650"),
    (4, "burr grinder", "12900"),
    (5, "gooseneck kettle", "5900"),
    (6, "travel mug", "1990"),
    (7, "milk frother", "2990"),
    (8, "descaler", "890"),
)
Row = dict[str, str | int]


class Database:
    """A database reached through a pool of `size` connections (an asyncio.Semaphore).

    `down`: the server refuses connections. `corrupt_rate`: that share of product reads returns a row whose
    price is not a number, so the code parsing it fails for real. `hold_all()` checks out as many connections
    as the pool has and keeps them, as stuck transactions would: later requests time out waiting for the pool,
    until the pool grows past what is held (`resize`) or the held connections are released (a restart).
    """

    def __init__(self, metrics: ToyMetrics, *, size: int, timeout_s: float, latency_s: float) -> None:
        self._metrics = metrics
        self._size = size
        self._timeout_s = timeout_s
        self._latency_s = latency_s
        self._pool = asyncio.Semaphore(size)
        self._in_use = 0
        self._held = 0
        self._orders: OrderedDict[str, Row] = OrderedDict()
        self.down = False
        self.corrupt_rate = 0.0
        metrics.pool_size.set(size)
        metrics.pool_in_use.set(0)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._pool.acquire(), self._timeout_s)
        except TimeoutError:
            raise DatabaseError(
                f"QueuePool limit of size {self._size} overflow 0 reached, connection timed out, "
                f"timeout {self._timeout_s:.2f} (Background on this error at: https://sqlalche.me/e/20/3o7r)"
            ) from None
        self._checked_out(1)
        try:
            await asyncio.sleep(self._latency_s)
            self._connect()
            yield
        finally:
            self._checked_out(-1)
            self._pool.release()

    def _connect(self) -> None:
        if self.down:
            self._metrics.dependency_up.labels("database").set(0)
            raise DatabaseError(
                f'connection to server at "{DB_HOST}" (10.0.3.7), port 5432 failed: Connection refused\n'
                "\tIs the server running on that host and accepting TCP/IP connections?"
            )
        self._metrics.dependency_up.labels("database").set(1)

    def _checked_out(self, delta: int) -> None:
        self._in_use += delta
        self._metrics.pool_in_use.set(self._in_use)

    @property
    def size(self) -> int:
        return self._size

    @property
    def held(self) -> int:
        return self._held

    def resize(self, size: int) -> None:
        """Grow the pool to `size` connections, at once. Shrinking is refused: connections checked out now
        would have to be taken back."""
        if not self._size <= size <= MAX_POOL_SIZE:
            raise ValueError(f"pool size must be between {self._size} (current) and {MAX_POOL_SIZE}, not {size}")
        for _ in range(size - self._size):
            self._pool.release()
        self._size = size
        self._metrics.pool_size.set(size)

    def ping(self) -> bool:
        """Health probe on a dedicated connection outside the pool, as pool pre-ping checks do."""
        try:
            self._connect()
        except DatabaseError:
            return False
        return True

    async def products(self) -> list[Row]:
        async with self._connection():
            rows: list[Row] = [{"id": pid, "name": name, "price_cents": price} for pid, name, price in CATALOG]
            if random.random() < self.corrupt_rate:
                random.choice(rows)["price_cents"] = "N/A"
            return rows

    async def insert_order(self, order: Row) -> None:
        async with self._connection():
            self._orders[str(order["id"])] = order
            while len(self._orders) > 10_000:
                self._orders.popitem(last=False)

    async def hold_all(self) -> None:
        """Check out as many connections as the pool has now, and keep them until `release_held()`."""
        stuck = self._size
        while self._held < stuck:
            await self._pool.acquire()
            self._held += 1
            self._checked_out(1)

    def release_held(self) -> None:
        for _ in range(self._held):
            self._pool.release()
        self._checked_out(-self._held)
        self._held = 0


class PaymentMode(StrEnum):
    HEALTHY = "healthy"
    FAILING = "failing"
    RATE_LIMITED = "rate-limited"


class PaymentProvider(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"


PAYMENTS_URLS = {
    PaymentProvider.PRIMARY: "https://payments.internal/v1/charges",
    PaymentProvider.SECONDARY: "https://payments-b.internal/v1/charges",
}


class PaymentClient:
    """Client of the downstream payments service, simulated in-process with its latency and failures.

    `mode` is the state of the primary provider (what the payments faults change); the secondary provider
    is a separate service and stays healthy. `provider` is the one charges go to.
    """

    def __init__(
        self, metrics: ToyMetrics, log: JsonLog, *, latency_s: float, retries: int = 3, backoff_s: float = 0.05
    ) -> None:
        self._metrics = metrics
        self._log = log
        self._latency_s = latency_s
        self._retries = retries
        self._backoff_s = backoff_s
        self.mode = PaymentMode.HEALTHY
        self.provider = PaymentProvider.PRIMARY
        metrics.set_payments_provider(self.provider)
        self.rate_limited_share = 0.8
        """Share of attempts answered 429 while rate-limited: some calls get through after retries."""

    def use(self, provider: PaymentProvider) -> None:
        """Send charges to `provider` from now on."""
        self.provider = provider
        self._metrics.set_payments_provider(provider)

    @property
    def _provider_mode(self) -> PaymentMode:
        return self.mode if self.provider is PaymentProvider.PRIMARY else PaymentMode.HEALTHY

    def ping(self) -> bool:
        healthy = self._provider_mode is not PaymentMode.FAILING
        self._metrics.dependency_up.labels("payments").set(1 if healthy else 0)
        return healthy

    async def charge(self, amount_cents: int) -> str:
        url = PAYMENTS_URLS[self.provider]
        for attempt in range(self._retries + 1):
            await asyncio.sleep(self._latency_s * random.uniform(0.5, 1.5))
            mode = self._provider_mode
            if mode is PaymentMode.FAILING:
                self._metrics.dependency_up.labels("payments").set(0)
                status = random.choice((502, 503))
                reason = "Bad Gateway" if status == 502 else "Service Unavailable"
                raise PaymentError(
                    f"POST {url} failed: {status} {reason}: "
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                    status,
                )
            self._metrics.dependency_up.labels("payments").set(1)
            if mode is PaymentMode.RATE_LIMITED and random.random() < self.rate_limited_share:
                self._metrics.errors.labels("ratelimit").inc()
                if attempt == self._retries:
                    break
                delay = self._backoff_s * 2**attempt
                self._log.warning(
                    "toyprod.payments",
                    f"POST {url}: 429 Too Many Requests (rate limited, Retry-After: {delay:.2f}); "
                    f"retry {attempt + 1}/{self._retries} in {delay:.2f}s",
                )
                await asyncio.sleep(delay)
                continue
            return f"ch_{uuid.uuid4().hex[:24]}"
        raise PaymentRateLimited(
            f"POST {url} failed: 429 Too Many Requests: rate limited after {self._retries} retries", 429
        )
